"""A product that is not offered shows why, never reasons to offer it (serving/engine.py hints)."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from servingkit import TRAINED, Built

from serving.engine import Recommender
from serving.reasons import not_offered_reason

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rec(built: Built) -> Recommender:
    return Recommender.load(built.cfg, built.ws)


def _kind(why: str | None) -> str | None:
    for kind in ("held", "do_not_contact", "not_eligible", "contacted_recently", "model_unavailable"):
        if why is not None and why.startswith(not_offered_reason(kind)):
            return kind
    return None if why is None else "other"


def test_not_offered_products_carry_why_and_no_reasons(rec: Recommender, built: Built) -> None:
    ids = pd.read_parquet(built.ws.table("customers"), columns=["customer_id"])["customer_id"].astype(str)
    held = {c for k in TRAINED for c in rec.products[k].holders}
    recent = {c for c, _ in rec._recent}
    sample = sorted(held)[:15] + sorted(recent)[:15] + ids.sort_values().tolist()[:60]
    seen: Counter[str | None] = Counter()
    for cid in dict.fromkeys(sample):
        for row in rec.hints(cid).products:
            kind = _kind(row.reason_not_offered)
            seen[kind] += 1
            assert kind != "other", row.reason_not_offered
            assert row.eligible == (kind is None)
            if kind is not None:
                assert row.reasons == [], (cid, row.product, row.reason_not_offered, row.reasons)
    # the sample covers offered products with reasons and three ways of not being offered
    assert (
        seen[None] and seen["held"] and seen["model_unavailable"] and seen["contacted_recently"] + seen["not_eligible"]
    )
    offered = [r for cid in ids.sort_values().tolist()[:60] for r in rec.hints(cid).products if r.eligible]
    assert any(r.reasons for r in offered)


def test_a_customer_on_the_do_not_contact_list_is_offered_nothing(
    rec: Recommender, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = rec.hints(built.customer).products
    assert any(r.eligible for r in before)
    monkeypatch.setattr(rec, "do_not_contact", frozenset({built.customer}))
    after = rec.hints(built.customer).products
    assert not any(r.eligible for r in after)
    for r in after:
        assert r.reasons == []
        if r.product in TRAINED and built.customer not in rec.products[r.product].holders:
            assert r.reason_not_offered == not_offered_reason("do_not_contact")
