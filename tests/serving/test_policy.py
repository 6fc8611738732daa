"""Contact policy rules on tiny hand-made frames (serving/policy.py)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from nbp.config import Config
from nbp.errors import DataContractError
from serving.policy import build_target_list, control_flags, default_campaign_id, percentile_in_branch

LIST_DATE = date(2026, 10, 1)
NO_CONTACTS = pd.DataFrame(columns=["customer_id", "product", "contact_date", "channel", "outcome", "campaign_id"])
NO_MANAGERS = pd.DataFrame(columns=["manager_id", "branch_id", "capacity_per_month"])


def _cfg(cooldown: int = 30, control_share: float = 0.0) -> Config:
    return Config.model_validate(
        {
            "serving": {"contact_cooldown_days": cooldown, "control_share": control_share},
            "products": {
                "consumer": {"name_zh": "消费贷", "name_en": "consumer loan", "value": 1.0},
                "tax_linked": {"name_zh": "税易贷", "name_en": "tax-linked loan", "value": 4.0},
            },
        }
    )


def _cands(rows: list[tuple]) -> pd.DataFrame:
    """rows: (customer_id, manager_id, product, propensity); branch B01."""
    df = pd.DataFrame(rows, columns=["customer_id", "manager_id", "product", "propensity"])
    df.insert(1, "branch_id", "B01")
    return df


def _build(
    cands: pd.DataFrame, *, contacts=NO_CONTACTS, dnc=(), managers=NO_MANAGERS, cfg=None, top=100, campaign="c1"
):
    return build_target_list(
        cands, contacts, dnc, managers, cfg or _cfg(), list_date=LIST_DATE, campaign_id=campaign, top=top
    )


def test_do_not_contact_is_dropped() -> None:
    out = _build(_cands([("C1", "M1", "consumer", 0.9), ("C2", "M1", "consumer", 0.5)]), dnc={"C1"})
    assert out["customer_id"].tolist() == ["C2"]
    assert out.attrs["dropped"]["do_not_contact"] == 1


@pytest.mark.parametrize(("days_ago", "kept"), [(0, False), (29, False), (30, True), (31, True), (-1, True)])
def test_cooldown_boundary(days_ago: int, kept: bool) -> None:
    contacts = pd.DataFrame(
        {
            "customer_id": ["C1", "C1"],
            "product": ["consumer", "tax_linked"],  # another product's contact never blocks
            "contact_date": [LIST_DATE - timedelta(days=days_ago), LIST_DATE],
            "channel": ["phone", "sms"],
            "outcome": ["no_response", "declined"],
            "campaign_id": [None, None],
        }
    )
    out = _build(_cands([("C1", "M1", "consumer", 0.9)]), contacts=contacts)
    assert (len(out) == 1) is kept


def test_cooldown_zero_turns_the_rule_off() -> None:
    contacts = pd.DataFrame(
        {"customer_id": ["C1"], "product": ["consumer"], "contact_date": [str(LIST_DATE)], "campaign_id": [None]}
    )
    assert len(_build(_cands([("C1", "M1", "consumer", 0.9)]), contacts=contacts, cfg=_cfg(cooldown=0))) == 1


def test_one_product_per_customer_keeps_best_expected_value() -> None:
    # C1: consumer ev 0.5 vs tax_linked ev 0.2 × 4 = 0.8 → tax_linked, despite the lower propensity.
    cands = _cands([("C1", "M1", "consumer", 0.5), ("C1", "M1", "tax_linked", 0.2), ("C2", "M1", "consumer", 0.3)])
    out = _build(cands)
    assert dict(zip(out["customer_id"], out["product"], strict=True)) == {"C1": "tax_linked", "C2": "consumer"}
    assert out.attrs["dropped"]["one_product_per_customer"] == 1
    assert out.loc[out["customer_id"] == "C1", "expected_value"].item() == pytest.approx(0.8)


def test_customer_contacted_in_this_campaign_about_another_product_is_dropped() -> None:
    contacts = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "product": ["tax_linked", "tax_linked"],
            "contact_date": [LIST_DATE - timedelta(days=90)] * 2,
            "campaign_id": ["c1", "other"],
        }
    )
    out = _build(_cands([("C1", "M1", "consumer", 0.9), ("C2", "M1", "consumer", 0.8)]), contacts=contacts)
    assert out["customer_id"].tolist() == ["C2"]


def test_manager_capacity_cut_and_customers_without_manager_kept() -> None:
    cands = _cands(
        [
            ("C1", "M1", "consumer", 0.9),
            ("C2", "M1", "consumer", 0.8),
            ("C3", "M1", "consumer", 0.7),
            ("C4", "M2", "consumer", 0.6),
            ("C5", None, "consumer", 0.5),
            ("C6", "M3", "consumer", 0.4),  # M3 not in the table: no limit
        ]
    )
    managers = pd.DataFrame({"manager_id": ["M1", "M2"], "branch_id": ["B01", "B01"], "capacity_per_month": [2, 0]})
    out = _build(cands, managers=managers)
    assert out["customer_id"].tolist() == ["C1", "C2", "C5", "C6"]
    assert out["rank"].tolist() == [1, 2, 3, 4]
    assert out["no_manager"].tolist() == [False, False, True, False]
    assert out.attrs["dropped"]["manager_capacity"] == 2


def test_top_cuts_treatment_rows_by_propensity() -> None:
    cands = _cands([(f"C{i}", "M1", "consumer", i / 10) for i in range(10)])
    out = _build(cands, top=3)
    assert out["customer_id"].tolist() == ["C9", "C8", "C7"]
    assert out["rank"].tolist() == [1, 2, 3]


def test_control_share_is_binomial_stable_and_per_campaign() -> None:
    ids = pd.Series([f"C{i:06d}" for i in range(20_000)])
    a = control_flags(ids, "consumer-202610", 0.10)
    # 20,000 × 0.1 = 2,000 expected, sd = sqrt(20,000 × 0.1 × 0.9) ≈ 42.4; allow 4 sd.
    assert abs(int(a.sum()) - 2_000) < 4 * 42.4
    assert a.equals(control_flags(ids, "consumer-202610", 0.10))
    assert a.iloc[::-1].equals(control_flags(ids.iloc[::-1], "consumer-202610", 0.10))  # order-free
    b = control_flags(ids, "consumer-202611", 0.10)
    overlap = int((a & b).sum())
    assert overlap < 400  # independent draws overlap ≈ 200; identical ones would give ≈ 2,000
    assert not control_flags(ids, "x", 0.0).any()


def test_control_rows_flagged_unranked_and_outside_top() -> None:
    cands = _cands([(f"C{i:04d}", "M1", "consumer", 1 - i / 1000) for i in range(1000)])
    out = _build(cands, top=200, cfg=_cfg(control_share=0.10))
    treat, ctrl = out.loc[~out["control"]], out.loc[out["control"]]
    assert len(treat) == 200 and treat["rank"].tolist() == list(range(1, 201))
    assert ctrl["rank"].isna().all()
    # Control rows are those who would have made the list: at or above the last treatment row.
    assert ctrl["propensity"].min() >= treat["propensity"].min()
    assert 5 <= len(ctrl) <= 45  # ≈ 200 × 0.1 / 0.9 = 22
    expected = control_flags(cands["customer_id"], "c1", 0.10)
    assert set(ctrl["customer_id"]) <= set(cands.loc[expected, "customer_id"])
    again = _build(cands, top=200, cfg=_cfg(control_share=0.10))
    assert again["customer_id"].tolist() == out["customer_id"].tolist()


def test_control_rows_respect_a_full_managers_floor() -> None:
    cands = _cands([(f"C{i:04d}", "M1", "consumer", 1 - i / 1000) for i in range(1000)])
    managers = pd.DataFrame({"manager_id": ["M1"], "branch_id": ["B01"], "capacity_per_month": [50]})
    out = _build(cands, managers=managers, top=500, cfg=_cfg(control_share=0.10))
    treat, ctrl = out.loc[~out["control"]], out.loc[out["control"]]
    assert len(treat) == 50
    assert len(ctrl) > 0 and ctrl["propensity"].min() >= treat["propensity"].min()


def test_missing_column_is_a_clear_error() -> None:
    with pytest.raises(DataContractError, match="candidates: missing column.*propensity"):
        _build(_cands([("C1", "M1", "consumer", 0.9)]).drop(columns="propensity"))


def test_percentile_in_branch() -> None:
    scores = pd.DataFrame(
        {
            "branch_id": ["B1", "B1", "B1", "B1", "B2", "B2"],
            "product": ["consumer"] * 6,
            "propensity": [0.1, 0.2, 0.3, 0.4, 0.9, 0.1],
        }
    )
    assert percentile_in_branch(scores).tolist() == [25.0, 50.0, 75.0, 100.0, 100.0, 50.0]


def test_default_campaign_id() -> None:
    assert default_campaign_id("consumer", LIST_DATE) == "consumer-202610"


def test_no_candidates_gives_an_empty_list_with_all_columns() -> None:
    empty = pd.DataFrame(columns=["customer_id", "branch_id", "manager_id", "product", "propensity"])
    out = _build(empty, cfg=_cfg(control_share=0.1))
    assert out.empty
    assert {"control", "rank", "no_manager", "expected_value"} <= set(out.columns)


# ------------------------------------------------------------------------- the prepared policy
def _reference(candidates, contacts, dnc, managers, cfg, *, list_date, campaign_id, top):
    """The contact policy written plainly in pandas over every candidate (the specification
    TargetPolicy must reproduce); capacity counts aside (TargetPolicy counts only the rows
    it walked through)."""
    import numpy as np

    from serving.policy import _capacity_by_manager, _cooled_down, _expected_value, _row_capacity

    df = candidates.copy()
    df["expected_value"] = _expected_value(df, cfg)
    df = df.loc[~df["customer_id"].astype(str).isin({str(c) for c in dnc})]
    df = df.loc[~_cooled_down(df, contacts, list_date, cfg.serving.contact_cooldown_days)]
    same = contacts.loc[contacts["campaign_id"].astype(str) == campaign_id, ["customer_id", "product"]]
    by_cust = same.groupby(same["customer_id"].astype(str))["product"].agg(set)
    hit = df["customer_id"].astype(str).map(by_cust)
    df = df.loc[[not (isinstance(s, set) and bool(s - {p})) for s, p in zip(hit, df["product"], strict=True)]]
    df = df.sort_values(["expected_value", "propensity", "customer_id"], ascending=[False, False, True], kind="stable")
    df = df.drop_duplicates("customer_id", keep="first")
    df = df.sort_values(["propensity", "customer_id"], ascending=[False, True], kind="stable")
    df["control"] = control_flags(df["customer_id"], campaign_id, cfg.serving.control_share)
    df["no_manager"] = df["manager_id"].isna()
    cap = _capacity_by_manager(managers)
    treat = df.loc[~df["control"]]
    slot = treat.groupby(treat["manager_id"].fillna("\x00")).cumcount()
    chosen = treat.loc[slot < _row_capacity(treat, cap)].head(top).copy()
    chosen["rank"] = pd.array(range(1, len(chosen) + 1), dtype="Int64")
    ctrl = df.loc[df["control"]].copy()
    floor = chosen["propensity"].min() if len(chosen) == top else -np.inf
    per_mgr = chosen.groupby("manager_id")["propensity"].agg(["size", "min"])
    full = per_mgr.loc[per_mgr["size"] >= cap.reindex(per_mgr.index).fillna(np.inf), "min"]
    floors = pd.concat([full, pd.Series(np.inf, index=cap.index[cap == 0])])
    mfloor = ctrl["manager_id"].map(floors).astype(float).fillna(-np.inf)
    ctrl = ctrl.loc[(ctrl["propensity"] >= floor) & (ctrl["propensity"] >= mfloor)]
    ctrl["rank"] = pd.array([pd.NA] * len(ctrl), dtype="Int64")
    return pd.concat([chosen, ctrl]).reset_index(drop=True)


# Four seeds (both kinds of candidates) in the fast tier, the rest with the full suite: each seed
# checks 32 lists against the pandas reference, about half a second.
@pytest.mark.parametrize("seed", [*range(4), *(pytest.param(s, marks=pytest.mark.slow) for s in range(4, 12))])
def test_prepared_policy_draws_what_the_rules_say(seed: int) -> None:
    """TargetPolicy (numpy, control drawn lazily) gives the very list of the plain pandas rules, on
    random candidates with ties, several products, capacities, cool-downs and campaign contacts."""
    import numpy as np

    from serving.policy import TargetPolicy

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    cands = pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in rng.integers(0, max(n // 2, 1) if seed % 2 else 10_000, n)],
            "branch_id": rng.choice(["B1", "B2", None], n),
            "manager_id": rng.choice(["M1", "M2", "M3", "M4", None], n),
            "product": rng.choice(["consumer", "tax_linked"], n),
            "propensity": np.round(rng.random(n), 2),  # ties
        }
    )
    if seed % 2 == 0:  # one product, unique customers: the service's case
        cands = cands.drop_duplicates("customer_id").assign(product="consumer")
    ids = cands["customer_id"].unique()
    k = min(len(ids), 30)
    contacts = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, k),
            "product": rng.choice(["consumer", "tax_linked"], k),
            "contact_date": [LIST_DATE - timedelta(days=int(d)) for d in rng.integers(-5, 90, k)],
            "campaign_id": rng.choice(["c1", "c2", None], k),
        }
    )
    managers = pd.DataFrame(
        {
            "manager_id": ["M1", "M2", "M3"],
            "branch_id": ["B1", "B1", "B2"],
            "capacity_per_month": [int(rng.integers(0, 20)), None, int(rng.integers(1, 60))],
        }
    )
    dnc = set(rng.choice(ids, min(len(ids), 5)))
    cfg = _cfg(control_share=0.2)
    policy = TargetPolicy(cands, contacts, dnc, managers, cfg, list_date=LIST_DATE)
    for top in (1, 7, 50, 1000):
        for campaign in ("c1", "c9"):
            for branch, manager in ((None, None), ("B1", None), ("B2", "M3"), (None, "M1")):
                want = cands
                if branch is not None:
                    want = want[want["branch_id"] == branch]
                if manager is not None:
                    want = want[want["manager_id"] == manager]
                ref = _reference(want, contacts, dnc, managers, cfg, list_date=LIST_DATE, campaign_id=campaign, top=top)
                got = policy.draw(campaign, top, policy.rows(branch, manager))
                pd.testing.assert_frame_equal(got, ref, check_dtype=False)
