"""The simulator's contact effect: randomised campaigns, their assignment files, and the true uplift.

Arms, contacts and kinds are read back from the written files (assignment files, ``contacts``,
``customers``, ``services``, ``tax_records``, ``loans`` and ``oracle/uplift.parquet``), not from
the simulator's state. A small bank serves the fast tier; the realised effect of the campaigns
needs a larger one (marked slow).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from bankexport import sim_params as P
from bankexport.sim_federation import simulate_federation
from bankexport.simulate import PRODUCTS, simulate

H = 90
SMALL = {"customers": 2_000, "months": 14, "end": "2026-10", "seed": 5, "horizon_days": H}
LARGE = {"customers": 12_000, "months": 24, "end": "2026-10", "seed": 13, "horizon_days": H}
EXPORT_DATE = pd.Timestamp("2026-11-01")
ASSIGNMENT_COLUMNS = ["campaign_id", "product", "list_date", "customer_id", "arm"]


class Bank:
    """A simulated bank read back: its tables, assignment files and true uplift."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tables = {
            t: pd.read_parquet(out / "export" / f"{t}.parquet")
            for t in ("customers", "contacts", "loans", "services", "tax_records")
        }
        self.files = sorted((out / "campaigns").glob("*.csv"))
        self.arms = pd.concat(
            [pd.read_csv(f, dtype=str, encoding="utf-8-sig") for f in self.files], ignore_index=True
        ).assign(list_date=lambda d: pd.to_datetime(d["list_date"]))
        self.uplift = pd.read_parquet(out / "oracle" / "uplift.parquet").assign(
            as_of=lambda d: pd.to_datetime(d["as_of"])
        )
        self.oracle = pd.read_parquet(out / "oracle" / "oracle.parquet").assign(
            as_of=lambda d: pd.to_datetime(d["as_of"])
        )

    def arms_with_uplift(self) -> pd.DataFrame:
        """Every randomised customer with the uplift row of its campaign's list date (inner join)."""
        return self.arms.merge(
            self.uplift,
            left_on=["customer_id", "product", "list_date"],
            right_on=["customer_id", "product", "as_of"],
        )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    out = tmp_path_factory.mktemp("sim-contact") / "bank"
    simulate(out, **SMALL)
    return Bank(out)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    out = tmp_path_factory.mktemp("sim-contact-large") / "bank"
    simulate(out, **LARGE)
    return Bank(out)


def _granted(loans: pd.DataFrame) -> pd.DataFrame:
    g = loans[loans["grant_date"].notna()].copy()
    for col in ("grant_date", "end_date"):
        g[col] = pd.to_datetime(g[col])
    return g


# ------------------------------------------------------------------ campaigns and their files
def test_assignment_files_name_each_campaign_in_the_agreed_layout(small: Bank) -> None:
    months = pd.period_range(end=SMALL["end"], periods=SMALL["months"], freq="M")
    expected = {
        f"RCT-{p}-{months[m].strftime('%Y%m')}"
        for p in PRODUCTS
        for m in range(P.CAMPAIGN_FIRST[p], len(months), P.CAMPAIGN_EVERY)
    }
    assert {f.stem for f in small.files} == expected
    for f in small.files:
        head = pd.read_csv(f, dtype=str, nrows=0, encoding="utf-8").columns.tolist()
        assert head == ASSIGNMENT_COLUMNS, f.name
        one = pd.read_csv(f, dtype=str)
        assert (one["campaign_id"] == f.stem).all() and one["product"].nunique() == 1
        assert one["list_date"].nunique() == 1 and one["list_date"].iloc[0].endswith("-01")
        assert not one["customer_id"].duplicated().any()
    assert set(small.arms["arm"]) == {"treatment", "control"}
    assert set(small.arms["customer_id"]) <= set(small.tables["customers"]["customer_id"])


def test_a_tiny_bank_runs_only_campaigns_with_both_arms(tmp_path: Path) -> None:
    simulate(tmp_path / "b", customers=12, months=8, end="2026-10", seed=2, horizon_days=H)
    assert list((tmp_path / "b" / "campaigns").glob("*.csv"))
    for f in (tmp_path / "b" / "campaigns").glob("*.csv"):
        assert set(pd.read_csv(f, dtype=str)["arm"]) == {"treatment", "control"}, f.name


def test_arms_are_balanced_and_unrelated_to_the_score(small: Bank) -> None:
    for cid, one in small.arms.groupby("campaign_id"):
        n = one["arm"].value_counts()
        assert abs(n["treatment"] - n["control"]) <= 1, cid
    # the rank of the baseline (what a propensity score ranks by) does not tell the arms apart
    m = small.arms_with_uplift()
    treat = (m["arm"] == "treatment").to_numpy()
    r = m["p_base"].rank().to_numpy()
    n1, n0 = int(treat.sum()), int((~treat).sum())
    auc = (r[treat].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    se = math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))
    assert n1 > 300 and abs(auc - 0.5) < 4 * se, f"AUC of p_base between arms {auc:.3f} (se {se:.3f})"


def test_control_customers_get_no_contact_of_their_campaign(small: Bank) -> None:
    c = small.tables["contacts"]
    rct = c[c["campaign_id"].str.startswith(f"{P.CAMPAIGN_PREFIX}-")]
    assert len(rct) > 0 and not c["campaign_id"].str.fullmatch(r"[a-z_]+-\d{6}").any()  # never nbp's own ids
    contacted = rct.merge(small.arms, on=["campaign_id", "customer_id"], how="left")
    assert contacted["arm"].notna().all(), "a campaign contact of a customer outside the campaign"
    assert (contacted["arm"] == "treatment").all(), "a control customer contacted by the campaign"
    assert (contacted["product_x"] == contacted["product_y"]).all()
    day = pd.to_datetime(contacted["contact_date"])
    assert (day.dt.to_period("M") == contacted["list_date"].dt.to_period("M")).all()
    # coverage below 1: some treatment customers are never contacted, most are
    treated = small.arms[small.arms["arm"] == "treatment"]
    reached = treated.merge(rct[["campaign_id", "customer_id"]].drop_duplicates(), how="inner")
    assert 0.5 * len(treated) < len(reached) < len(treated)


# ------------------------------------------------------------------ kinds and the true uplift
def test_the_four_kinds_exist_with_the_stated_signs(small: Bank) -> None:
    u = small.uplift
    bound = math.expm1(P.CONTACT_TAU_HIDDEN)  # |tau| <= hidden part: |uplift| <= (e^h - 1) p_base
    for product, d in u.groupby("product"):
        assert set(d["kind"]) == set(P.CONTACT_KINDS), product
        live = d[d["p_base"] > 0]
        k = live.groupby("kind")
        assert (k.get_group("persuadable")["uplift_true"] > 0).all(), product
        assert (k.get_group("sleeping_dog")["uplift_true"] < 0).all(), product
        for kind in ("sure_thing", "lost_cause"):
            g = k.get_group(kind)
            assert (g["uplift_true"].abs() <= bound * g["p_base"] + 1e-15).all(), (product, kind)
        base = k["p_base"].mean()
        # persuadables are not the highest baseline: sure things above them, lost causes below
        assert base["sure_thing"] > base["persuadable"] > base["lost_cause"], product
        upl = k["uplift_true"].mean()
        assert upl["persuadable"] > 10 * upl[["sure_thing", "lost_cause"]].abs().max(), product


def test_kinds_follow_traits_in_the_export(small: Bank) -> None:
    """At the latest as-of, kinds can be read off what a bank's data show (rules in sim_params)."""
    T = EXPORT_DATE
    u = small.uplift[small.uplift["as_of"] == T]
    cust = small.tables["customers"].set_index("customer_id")
    age = (T - pd.to_datetime(cust["birth_date"])).dt.days / 365.25
    svc = small.tables["services"]
    payroll = set(svc.loc[svc["service"] == "payroll_agency", "customer_id"])
    cons = u[u["product"] == "consumer"]
    sure = cons.loc[cons["kind"] == "sure_thing", "customer_id"]
    assert len(sure) > 0 and sure.isin(payroll).all()
    pers = cons.loc[cons["kind"] == "persuadable", "customer_id"]
    lo, hi = P.CONSUMER_PERSUADABLE_AGE
    assert len(pers) > 0 and age[pers].between(lo, hi).all()
    assert not pers.isin(payroll).any()
    assert not cust.loc[pers, "occupation"].isin(["farmer", "retired"]).any()
    tax = small.tables["tax_records"]
    known = tax[pd.to_datetime(tax["published_date"]) < T].sort_values("tax_year").groupby("customer_id").last()
    tl = u[u["product"] == "tax_linked"]
    grade = tl["customer_id"].map(known["credit_grade"])
    assert (grade[tl["kind"] == "sure_thing"] == "A").all() and (tl["kind"] == "sure_thing").any()
    assert grade[tl["kind"] == "persuadable"].isin(["B", "M"]).all()


def test_uplift_is_the_difference_and_reaches_the_latest_as_of(small: Bank) -> None:
    u = small.uplift
    assert list(u.columns) == ["customer_id", "product", "as_of", "p_base", "p_contacted", "uplift_true", "kind"]
    assert (u["uplift_true"] == u["p_contacted"] - u["p_base"]).all()
    assert ((u["p_base"] >= 0) & (u["p_base"] < 1) & (u["p_contacted"] >= 0) & (u["p_contacted"] < 1)).all()
    assert not u.duplicated(["customer_id", "product", "as_of"]).any()
    # the oracle's rows and the latest as-of the pipeline scores (the export date's month start)
    assert set(u["as_of"]) == set(small.oracle["as_of"]) | {EXPORT_DATE}
    both = small.oracle.merge(u, on=["customer_id", "product", "as_of"], how="left")
    assert both["p_base"].notna().all()
    latest = u[u["as_of"] == EXPORT_DATE]
    assert set(latest["product"]) == set(PRODUCTS) and (latest["p_base"] > 0).all()
    g = _granted(small.tables["loans"])
    held = g[(g["grant_date"] < EXPORT_DATE) & ~(g["end_date"] < EXPORT_DATE)]
    for product, d in latest.groupby("product"):
        holders = set(held.loc[held["product"] == product, "customer_id"])
        assert not holders & set(d["customer_id"]), f"{product}: holders among the latest candidates"


def test_same_seed_same_files_including_campaigns_and_uplift(tmp_path: Path) -> None:
    kw = {"customers": 600, "months": 7, "end": "2026-10", "seed": 3, "horizon_days": H}
    simulate(tmp_path / "a", **kw)
    simulate(tmp_path / "b", **kw)
    simulate(tmp_path / "c", **{**kw, "seed": 4})
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(f.parts[0] == "campaigns" for f in files) and Path("oracle/uplift.parquet") in files
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    differ = [f for f in files if f.parts[0] == "campaigns" or f.name == "uplift.parquet"]
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in differ)


def test_each_federation_bank_has_its_campaigns_and_uplift(tmp_path: Path) -> None:
    out = tmp_path / "fed"
    simulate_federation(out, k=2, seed=3, sizes=[400, 300], scale=1.0, months=7, end="2026-10")
    banks = json.loads((out / "federation.json").read_text(encoding="utf-8"))["banks"]
    for b in banks:
        assert (out / b["uplift"]).exists() and (out / b["uplift"]).parent == (out / b["oracle"]).parent
        files = list((out / b["campaigns"]).glob("RCT-*.csv"))
        assert files and (out / b["campaigns"]).parent == (out / b["export"]).parent, b["bank_code"]


# ------------------------------------------------------------------ the realised effect
@pytest.mark.slow
def test_treatment_takes_up_more_than_control_among_persuadables_only(large: Bank) -> None:
    """Uptake within the horizon of each closed campaign, by arm and kind at the list date.

    Persuadables: treatment above control by more than 3 standard errors. Sure things: the
    difference is within 3 standard errors of the expected one (the uplift of the reached
    share, next to nothing) and below the persuadables'.
    """
    m = large.arms_with_uplift()
    m = m[m["list_date"] + pd.Timedelta(days=H) < EXPORT_DATE]
    g = _granted(large.tables["loans"])[["customer_id", "product", "grant_date"]]
    hit = m.merge(g, on=["customer_id", "product"])
    hit = hit[(hit["grant_date"] > hit["list_date"]) & (hit["grant_date"] <= hit["list_date"] + pd.Timedelta(days=H))]
    m = m.assign(y=(m["campaign_id"] + "|" + m["customer_id"]).isin(hit["campaign_id"] + "|" + hit["customer_id"]))
    reached = P.CAMPAIGN_ATTEMPTED * (1 - P.CONTACT_UNREACHABLE)
    diffs = {}
    for kind in ("persuadable", "sure_thing"):
        d = m[m["kind"] == kind]
        t, c = d.loc[d["arm"] == "treatment", "y"], d.loc[d["arm"] == "control", "y"]
        se = math.sqrt(t.mean() * (1 - t.mean()) / len(t) + c.mean() * (1 - c.mean()) / len(c))
        expected = reached * d.loc[d["arm"] == "treatment", "uplift_true"].mean()
        diffs[kind] = (t.mean() - c.mean(), se, expected)
    diff, se, expected = diffs["persuadable"]
    assert diff > 3 * se and abs(diff - expected) < 3 * se, diffs
    diff_s, se_s, expected_s = diffs["sure_thing"]
    assert abs(diff_s - expected_s) < 3 * se_s and diff_s < diff, diffs
