"""The customer's profile (serving/profile.py, ``POST /profile``) on the tiny trained workspace."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from servingkit import TOKENS, Built, bearer

from bankexport.quality import FIELD_RULES, KNOWN, customer_completeness
from features import tiers
from features.catalog import BY_NAME
from serving.audit import read_audit
from serving.engine import Recommender
from serving.profile import HELD, TREND_MONTHS, _cached, customer_profile, holdings_of, last_contacts, tier_trend
from serving.schemas import TierPoint


def _contacts(rows: list[tuple[str, str, str, str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "product", "contact_date", "channel", "outcome"]).assign(
        campaign_id=None
    )


# ------------------------------------------------------------------------- pure parts
def test_last_contacts_are_newest_first_and_at_most_n() -> None:
    c = _contacts(
        [
            ("A", "consumer", "2026-03-01", "sms", "declined"),
            ("A", "tax_linked", "2026-05-10", "phone", None),
            ("B", "consumer", "2026-06-01", "visit", "accepted"),
            ("A", "business_flow", "2026-05-10", None, "accepted"),  # same day, later row: shown first
            ("A", "consumer", "2026-01-15", "branch", "no_response"),
        ]
    )
    got = last_contacts(c, "A", "zh", n=3)
    assert [(r.contact_date, r.product) for r in got] == [
        ("2026-05-10", "business_flow"),
        ("2026-05-10", "tax_linked"),
        ("2026-03-01", "consumer"),
    ]
    assert got[0].product_name == "流水贷" and got[0].channel is None and got[0].outcome_name == "接受"
    assert got[1].channel_name == "电话" and got[1].outcome is None and got[2].outcome_name == "拒绝"
    assert last_contacts(c, "A", "en")[0].outcome_name == "accepted"
    assert last_contacts(c, "NOBODY") == []


def test_tier_trend_compares_the_latest_tier_with_the_first_shown() -> None:
    def pts(*levels: int | None) -> list[TierPoint]:
        return [TierPoint(as_of=f"2026-{i + 1:02d}-01", level=lv, tier=None, score=None) for i, lv in enumerate(levels)]

    assert tier_trend(pts(2, 2, 1)) == "up"  # a lower level is a higher tier
    assert tier_trend(pts(0, 1, 1)) == "down"
    assert tier_trend(pts(1, 0, 1)) == "same"
    assert tier_trend(pts(None, 2, None)) is None and tier_trend([]) is None
    assert tier_trend(pts(None, 2, 1)) == "up"


def test_holdings_read_only_positive_known_values_of_catalogue_features() -> None:
    assert all(feature in BY_NAME for _, _, feature, _ in HELD)
    row = {
        "holdings_account_savings_held": 1.0,
        "holdings_account_current_held": 0.0,
        "holdings_service_mobile_banking_held": 1.0,
        "holdings_service_wechat_banking_held": float("nan"),
        "holdings_loans_active_consumer_count": 2.0,
    }
    got = [(h.kind, h.key, h.name, h.count) for h in holdings_of(row)]
    assert got == [
        ("account", "savings", "储蓄账户", None),
        ("service", "mobile_banking", "手机银行", None),
        ("loan", "consumer", "消费贷", 2),
    ]


def test_shared_tables_are_read_again_only_when_a_file_changes(tmp_path: Path) -> None:
    class Rec:  # stands in for a recommender: the cache keys on the object
        pass

    f, calls = tmp_path / "t.parquet", []
    f.write_bytes(b"one")
    build = lambda: calls.append(1) or len(calls)  # noqa: E731
    rec = Rec()
    assert [_cached(rec, "t", [f], build) for _ in range(3)] == [1, 1, 1]
    f.write_bytes(b"three")  # another size: another version of the file
    assert _cached(rec, "t", [f], build) == 2 and _cached(Rec(), "t", [f], build) == 3
    f.unlink()
    assert _cached(rec, "t", [f], build) == 4


# ------------------------------------------------------------------------- on the built workspace
integration = pytest.mark.integration


@pytest.fixture(scope="module")
def rec(built: Built) -> Recommender:
    return Recommender.load(built.cfg, built.ws)


@integration
def test_tier_trend_is_the_last_twelve_built_months_oldest_first(rec: Recommender, built: Built) -> None:
    p = customer_profile(rec, built.customer)
    table = tiers.read(built.ws, customer_ids=[built.customer])
    want = table.tail(TREND_MONTHS)
    assert len(table) > TREND_MONTHS  # the fixture has more months than the trend shows
    assert [t.as_of for t in p.tier_history] == [pd.Timestamp(d).date().isoformat() for d in want["as_of"]]
    assert [t.level for t in p.tier_history] == want["tier_level"].astype(int).tolist()
    assert [t.score for t in p.tier_history] == pytest.approx(want["tier_score"].tolist(), abs=0.01)
    assert [t.tier for t in p.tier_history] == [built.cfg.tiers.levels[int(v)].zh for v in want["tier_level"]]
    assert p.tier == p.tier_history[-1] and p.as_of == p.tier_history[-1].as_of
    assert p.tier_trend == tier_trend(p.tier_history)
    # the sparklines: the month before each as-of, the tier table's monthly figures
    assert len(p.months) == len(p.tier_history)
    for m, t, (_, r) in zip(p.months, p.tier_history, want.iterrows(), strict=True):
        d = date.fromisoformat(t.as_of)
        assert m.month == (pd.Timestamp(d) - pd.DateOffset(months=1)).strftime("%Y-%m")
        assert m.balance == pytest.approx(r["tier_deposit_balance_1m"], nan_ok=True)
        assert m.turnover == pytest.approx(r["tier_turnover_1m"], nan_ok=True)
    assert any(m.turnover for m in p.months)
    assert customer_profile(rec, built.customer, "en").tier.tier == built.cfg.tiers.levels[p.tier.level].en


@integration
def test_held_products_agree_with_the_holdings_features(rec: Recommender, built: Built) -> None:
    hold = pd.read_parquet(built.ws.feature_table("holdings"))
    latest = hold[hold["event_timestamp"] == hold["event_timestamp"].max()].set_index("customer_id")
    # customers of the branch holding several things, loans among them where there are any
    with_loans = latest[latest["holdings_loans_active_count"] > 0].index
    picks = [built.customer, *with_loans[:3]]
    for cid in picks:
        p = customer_profile(rec, cid)
        row = latest.loc[cid]
        want = {(kind, key) for kind, key, feature, _ in HELD if pd.notna(row[feature]) and row[feature] > 0}
        assert {(h.kind, h.key) for h in p.holdings} == want, cid
        loans = {h.key: h.count for h in p.holdings if h.kind == "loan"}
        assert loans == {k: int(row[f]) for kind, k, f, _ in HELD if kind == "loan" and row[f] > 0}
        demo = pd.read_parquet(
            built.ws.feature_table("demo"), columns=["customer_id", "event_timestamp", "demo_tenure_months"]
        )
        t = demo[(demo["customer_id"] == cid) & (demo["event_timestamp"] == demo["event_timestamp"].max())]
        assert p.tenure_months == int(t["demo_tenure_months"].iloc[0])
    assert any(h.kind == "loan" for cid in picks[1:] for h in customer_profile(rec, cid).holdings) or with_loans.empty


@integration
def test_contacts_are_the_customers_newest_first(rec: Recommender) -> None:
    c = rec.contacts
    counts = c["customer_id"].value_counts()
    cid = str(counts.index[0])  # the most contacted customer
    p = customer_profile(rec, cid)
    mine = c[c["customer_id"] == cid]
    days = [r.contact_date for r in p.contacts]
    assert len(days) == min(len(mine), 10) and days == sorted(days, reverse=True)
    newest = sorted(pd.to_datetime(mine["contact_date"]).dt.date.astype(str), reverse=True)[: len(days)]
    assert days == newest
    assert all(r.product_name and (r.outcome is None or r.outcome_name) for r in p.contacts)


@integration
def test_products_are_the_hints(rec: Recommender, built: Built) -> None:
    p = customer_profile(rec, built.customer)
    h = rec.hints(built.customer)
    assert [r.model_dump() for r in p.products] == [r.model_dump() for r in h.products]
    assert p.branch_id == built.branch and p.products_problem is None


@integration
def test_without_a_tier_table_the_profile_says_so_and_still_answers(
    rec: Recommender, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*a: Any, **k: Any) -> pd.DataFrame:
        raise FileNotFoundError("tier table missing")

    monkeypatch.setattr(tiers, "read", missing)
    p = customer_profile(copy.copy(rec), built.customer)  # a recommender that has read no tier table yet
    assert p.tier is None and p.tier_history == [] and p.months == [] and p.tier_trend is None
    assert any("nbp features" in n for n in p.notes)
    assert p.products and p.holdings  # the other parts still show


@integration
def test_missing_fields_are_the_applicable_unknown_ones(rec: Recommender, built: Built) -> None:
    cust = pd.read_parquet(built.ws.table("customers"))
    upd = pd.read_parquet(built.ws.table("profile_updates"))
    told = set(upd.loc[upd["field"] == "marital_status", "customer_id"])
    gaps = cust[
        (cust["customer_type"] == "individual") & cust["marital_status"].isna() & ~cust["customer_id"].isin(told)
    ]
    cid = str(gaps["customer_id"].iloc[0])
    p = customer_profile(rec, cid)
    assert "婚姻状况" in {f.name for f in p.missing_fields} and "行业门类" not in {f.name for f in p.missing_fields}
    for c in (cid, built.customer):
        known = customer_completeness(built.ws, built.cfg, rec.ref_date, [c]).iloc[0]
        want = [f for f in built.cfg.quality.fields if pd.notna(known[KNOWN + f]) and not known[KNOWN + f]]
        got = customer_profile(rec, c)
        assert [f.field for f in got.missing_fields] == want
        assert [f.name for f in got.missing_fields] == [FIELD_RULES[f].zh for f in want]


@integration
def test_without_a_servable_product_the_profile_still_answers(rec: Recommender, built: Built) -> None:
    down = copy.copy(rec)
    down.products = {k: dataclasses.replace(st, problem="no champion") for k, st in rec.products.items()}
    p = customer_profile(down, built.customer)
    assert p.products == [] and p.products_problem == "暂无可推荐的产品：模型或特征暂不可用"
    assert p.tier is not None and p.holdings  # the rest of the profile as usual
    en = customer_profile(down, built.customer, "en")
    assert "no champion" in en.products_problem


# ------------------------------------------------------------------------- the route
def _profile(client: Any, customer: str, role: str = "marketing", **kw: Any) -> Any:
    return client.post("/profile", json={"customer_id": customer, **kw}, headers=bearer(role))


@integration
def test_profile_is_scoped_like_hints_and_audited(client: Any, built: Built) -> None:
    r = _profile(client, built.customer, "branch")
    assert r.status_code == 200
    body = r.json()
    assert body["customer_id"] == built.customer and body["branch_id"] == built.branch
    assert body["tier"]["tier"] in {lv.zh for lv in built.cfg.tiers.levels}
    r = _profile(client, built.other_customer, "branch")
    assert r.status_code == 403 and built.branch in r.json()["error"]
    other_branch = client.post("/hints", json={"customer_id": built.other_customer}, headers=bearer("marketing"))
    assert other_branch.json()["products"][0]["branch_id"] not in r.text  # the refusal names no other branch
    assert _profile(client, built.other_customer, "marketing").status_code == 200
    assert _profile(client, "NO-SUCH-CUSTOMER").status_code == 404
    assert _profile(client, built.customer, bank_code="ELSEWHERE").status_code == 403
    assert client.post("/profile", json={"customer_id": built.customer}).status_code == 401
    assert _profile(client, built.customer, lang="fr").status_code == 422
    records = [r for r in read_audit(built.ws.audit_log) if r["endpoint"] == "/profile"]
    assert [r["status"] for r in records[-7:]] == [200, 403, 200, 404, 403, 401, 422]
    assert all(TOKENS["branch"] not in str(r) for r in records)


@integration
def test_other_routes_answer_as_before(client: Any, built: Built) -> None:
    h = client.post("/hints", json={"customer_id": built.customer}, headers=bearer("marketing")).json()
    assert {"customer_id", "products"} <= set(h) and not {"holdings", "contacts", "months"} & set(h)
    spec = client.get("/docs.json").json()
    post = spec["paths"]["/profile"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ProfileRequest")
    assert np.isin(["401", "403", "404", "422", "503"], list(post["responses"])).all()
