"""``POST /profile`` in a federation workspace: each token's own bank only, as ``/hints``."""

from __future__ import annotations

import pytest
from test_tenancy import FED_BANKS, Fed, _post, _tokens, fed  # noqa: F401 - fed: the module's fixture

from features import tiers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = FED_BANKS


def test_another_banks_customer_is_404_exactly_like_an_unknown_one(fed: Fed) -> None:  # noqa: F811
    for role, tok in _tokens(B):
        other = _post(fed, "/profile", tok, customer_id=fed.only_a)
        unknown = _post(fed, "/profile", tok, customer_id="C-NO-SUCH-ONE")
        assert other.status_code == unknown.status_code == 404, role
        assert other.content == unknown.content.replace(b"C-NO-SUCH-ONE", fed.only_a.encode()), role
    for role, tok in _tokens(A):
        assert _post(fed, "/profile", tok, customer_id=fed.only_a).status_code == 200, role


def test_each_bank_profiles_its_own_customer_from_its_own_tables(fed: Fed) -> None:  # noqa: F811
    for bank, other in ((A, B), (B, A)):
        want = tiers.read(fed.ws.for_bank(bank), customer_ids=[fed.shared])
        for role, tok in _tokens(bank):
            body = _post(fed, "/profile", tok, customer_id=fed.shared).json()
            assert body["bank_code"] == bank and body["branch_id"] == fed.branch[bank], role
            assert body["as_of"] == want["as_of"].max().isoformat()[:10]
            assert [t["level"] for t in body["tier_history"]] == want["tier_level"].tail(12).astype(int).tolist()
            r = _post(fed, "/profile", tok, customer_id=fed.shared, bank_code=other)
            assert r.status_code == 403 and other not in r.json()["error"], role
