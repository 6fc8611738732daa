"""One service for a federation: every endpoint, every role, two member banks holding the same customer id.

The fixture builds the federation once (servingkit.build_federation, about 30 s) and starts
the service on it in process. Each bank has a marketing, a branch and an admin token, and
there is one federation_admin token. QINGSHAN is given one branch and manager of its own
(a row added to its managers table), since the simulated banks name their branches alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd
import pytest
from servingkit import FED_BANKS, TRAINED, build_federation

from nbp.workspace import Workspace
from serving.audit import read_audit

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = FED_BANKS  # A is the larger bank: it has customer ids B does not
ROLES = ("marketing", "branch", "admin")
FED_ADMIN = "fa-0123456789abcdef0123"
OWN_BRANCH, OWN_MANAGER = "B-QS-ONLY", "M-QS-ONLY"  # a branch and manager only bank A has


def _token(bank: str, role: str) -> str:
    return f"{role[:3]}-{bank.lower()}-0123456789abcdef"


@dataclass(frozen=True)
class Fed:
    client: Any
    ws: Workspace
    shared: str  # a customer id both banks hold
    only_a: str  # a customer id of bank A, in the same branch of A as `shared`, that B does not hold
    branch: dict[str, str]  # bank -> the branch of `shared` there (its branch token's branch)
    scored: dict[str, set[str]]  # bank -> customers of its consumer batch scores


def _bank_files(ws: Workspace) -> dict[str, str]:
    """Every file of the member banks except their campaign records (a list drawn is a list issued)."""
    return {
        str(p.relative_to(ws.banks_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in ws.banks_dir.rglob("*")
        if p.is_file() and "campaigns" not in p.relative_to(ws.banks_dir).parts
    }


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    from _bentoml_sdk.service import set_current_service
    from bentoml.exceptions import BentoMLException
    from starlette.testclient import TestClient

    from serving.service import NbpService

    ws, _ = build_federation(tmp_path_factory.mktemp("tenancy") / "home")
    managers = pd.read_parquet(ws.for_bank(A).table("managers"))
    extra = managers.iloc[:1].assign(manager_id=OWN_MANAGER, branch_id=OWN_BRANCH)
    pd.concat([managers, extra], ignore_index=True).to_parquet(ws.for_bank(A).table("managers"), index=False)

    cust = {
        b: pd.read_parquet(ws.for_bank(b).table("customers")).set_index("customer_id")["branch_id"] for b in FED_BANKS
    }
    scored = {
        b: set(pd.read_parquet(ws.for_bank(b).latest_scores).query("product == 'consumer'")["customer_id"])
        for b in FED_BANKS
    }
    shared = sorted(scored[A] & scored[B])[0]
    branch = {b: str(cust[b][shared]) for b in FED_BANKS}
    only_a = sorted((scored[A] & set(cust[A].index[cust[A] == branch[A]])) - set(cust[B].index))[0]
    tokens = [f"{_token(b, r)}:{r}:{b}" + (f":{branch[b]}" if r == "branch" else "") for b in FED_BANKS for r in ROLES]
    try:  # the session's single-bank service (conftest.client), if started: restored afterwards
        before = bentoml.get_current_service()
    except BentoMLException:
        before = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBP_HOME", str(ws.home))
        mp.setenv("NBP_TOKENS", ",".join([*tokens, f"{FED_ADMIN}:federation_admin"]))
        mp.setenv("BENTOML_HOME", str(ws.bentoml_home))
        mp.delenv("NBP_CONFIG", raising=False)
        try:
            with TestClient(NbpService.to_asgi(), raise_server_exceptions=False) as c:
                mp.undo()
                yield Fed(c, ws, shared, only_a, branch, scored)
        finally:
            set_current_service(before)


def _post(fed: Fed, path: str, token: str | None, **body: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return fed.client.post(path, json=body, headers=headers)


def _tokens(bank: str) -> list[tuple[str, str]]:
    return [(r, _token(bank, r)) for r in ROLES]


# ------------------------------------------------------------------------------------------ /hints
def test_hints_answer_each_bank_its_own_customer(fed: Fed) -> None:
    svc = bentoml.get_current_service()
    answers = {}
    for bank in FED_BANKS:
        for role, tok in _tokens(bank):
            r = _post(fed, "/hints", tok, customer_id=fed.shared)
            assert r.status_code == 200, (bank, role, r.text)
            body = r.json()
            assert body["bank_code"] == bank
            assert {p["branch_id"] for p in body["products"]} == {fed.branch[bank]}
            assert body == json.loads(svc.tenants[bank].hints(fed.shared).model_dump_json())
            answers[bank] = body
    consumer = {b: next(p for p in answers[b]["products"] if p["product"] == "consumer") for b in FED_BANKS}
    assert consumer[A]["propensity"] != consumer[B]["propensity"]  # two banks, two models, two rows of features


def test_another_banks_customer_is_404_exactly_like_an_unknown_one(fed: Fed) -> None:
    for role, tok in _tokens(B):
        other = _post(fed, "/hints", tok, customer_id=fed.only_a)
        unknown = _post(fed, "/hints", tok, customer_id="C-NO-SUCH-ONE")
        assert other.status_code == unknown.status_code == 404, role
        assert other.content == unknown.content.replace(b"C-NO-SUCH-ONE", fed.only_a.encode()), role
        assert other.headers["content-length"] == str(len(other.content))
    for role, tok in _tokens(A):  # bank A's own customer, in the branch token's branch
        assert _post(fed, "/hints", tok, customer_id=fed.only_a).status_code == 200, role


def test_hints_naming_another_bank_are_403_naming_only_the_own_bank(fed: Fed) -> None:
    for bank, other in ((A, B), (B, A)):
        for role, tok in _tokens(bank):
            r = _post(fed, "/hints", tok, customer_id=fed.shared, bank_code=other)
            assert r.status_code == 403, (bank, role)
            assert bank in r.json()["error"] and other not in r.json()["error"]
            assert _post(fed, "/hints", tok, customer_id=fed.shared, bank_code=bank).status_code == 200


def test_federation_admin_reads_hints_of_the_bank_it_names(fed: Fed) -> None:
    for bank in FED_BANKS:
        r = _post(fed, "/hints", FED_ADMIN, customer_id=fed.shared, bank_code=bank)
        assert r.status_code == 200 and r.json()["bank_code"] == bank
    r = _post(fed, "/hints", FED_ADMIN, customer_id=fed.shared)
    assert r.status_code == 422 and all(b in r.json()["error"] for b in FED_BANKS)
    assert _post(fed, "/hints", FED_ADMIN, customer_id=fed.shared, bank_code="NOPE").status_code == 404
    assert _post(fed, "/hints", FED_ADMIN, customer_id=fed.only_a, bank_code=B).status_code == 404


# ------------------------------------------------------------------------------------------ /targets
def test_each_bank_gets_its_own_list_carrying_the_bank(fed: Fed) -> None:
    for bank in FED_BANKS:
        for role, tok in [*_tokens(bank), ("federation_admin", FED_ADMIN)]:
            r = _post(fed, "/targets", tok, product="consumer", top=30, bank_code=bank)
            assert r.status_code == 200, (bank, role, r.text)
            body = r.json()
            assert body["bank_code"] == bank and body["rows"], (bank, role)
            assert {row["bank_code"] for row in body["rows"]} == {bank}
            assert {row["customer_id"] for row in body["rows"]} <= fed.scored[bank]
            if role == "branch":
                assert {row["branch_id"] for row in body["rows"]} == {fed.branch[bank]}
    lists = {b: _post(fed, "/targets", _token(b, "marketing"), product="consumer", top=30).json() for b in FED_BANKS}
    assert [r["customer_id"] for r in lists[A]["rows"]] != [r["customer_id"] for r in lists[B]["rows"]]


def test_another_banks_list_is_403(fed: Fed) -> None:
    for role, tok in _tokens(B):
        r = _post(fed, "/targets", tok, product="consumer", bank_code=A)
        assert r.status_code == 403 and A not in r.json()["error"], role
        for field, value in (("branch_id", OWN_BRANCH), ("manager_id", OWN_MANAGER)):
            r = _post(fed, "/targets", tok, product="consumer", **{field: value})
            assert r.status_code == 403, (role, field, r.text)
            assert OWN_BRANCH not in r.text and OWN_MANAGER not in r.text
    assert _post(fed, "/targets", _token(B, "marketing"), product="consumer", branch_id="B-NOWHERE").status_code == 404
    r = _post(fed, "/targets", _token(A, "marketing"), product="consumer", branch_id=OWN_BRANCH)
    assert r.status_code == 200 and r.json()["rows"] == []  # A's own branch, without customers
    assert _post(fed, "/targets", FED_ADMIN, product="consumer").status_code == 422


# ------------------------------------------------------------------------------------------ /readyz
def test_readyz_says_per_bank_what_is_ready(fed: Fed) -> None:
    public = fed.client.get("/readyz").json()
    assert set(public["banks"]) == set(FED_BANKS) and public["ready"] is True
    for bank in FED_BANKS:
        products = public["banks"][bank]["products"]
        assert all(products[p]["status"] == "ready" for p in TRAINED)
        assert "reference_date" not in public["banks"][bank]  # codes only without an admin token
    for bank in FED_BANKS:
        for role, tok in _tokens(bank):
            body = fed.client.get("/readyz", headers={"Authorization": f"Bearer {tok}"}).json()
            if role == "admin":
                assert list(body["banks"]) == [bank] and "reference_date" in body["banks"][bank]
                assert all(body["banks"][bank]["products"][p]["model_version"] for p in TRAINED)
            else:
                assert body == public
    full = fed.client.get("/readyz", headers={"Authorization": f"Bearer {FED_ADMIN}"}).json()
    assert set(full["banks"]) == set(FED_BANKS) and all("reference_date" in full["banks"][b] for b in FED_BANKS)


# ------------------------------------------------------------------------------------------ staff page
def test_staff_page_is_the_same_for_everyone_and_shows_the_answers_bank(fed: Fed) -> None:
    page = fed.client.get("/staff/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    script = fed.client.get("/staff/app.js").text
    assert "body.bank_code" in script  # the page titles a hint with its bank; its data is /hints, scoped above


# ------------------------------------------------------------------------------------------ /audit
def test_audit_is_for_admins_and_scoped_to_their_bank(fed: Fed) -> None:
    for bank in FED_BANKS:  # some traffic of each bank first
        for _ in range(5):
            assert _post(fed, "/hints", _token(bank, "marketing"), customer_id=fed.shared).status_code == 200
    for bank in FED_BANKS:
        for role in ("marketing", "branch"):
            assert _post(fed, "/audit", _token(bank, role)).status_code == 403
        r = _post(fed, "/audit", _token(bank, "admin"), limit=1000)
        assert r.status_code == 200 and r.json()["bank_code"] == bank
        records = r.json()["records"]
        assert records and {rec["bank_code"] for rec in records} == {bank}
        assert any(rec["endpoint"] == "/hints" and rec["role"] == "marketing" for rec in records)
        other = A if bank == B else B
        assert _post(fed, "/audit", _token(bank, "admin"), bank_code=other).status_code == 403
    everyone = _post(fed, "/audit", FED_ADMIN, limit=1000).json()
    assert everyone["bank_code"] is None and set(FED_BANKS) <= {r["bank_code"] for r in everyone["records"]}
    one = _post(fed, "/audit", FED_ADMIN, bank_code=B, limit=5).json()
    assert len(one["records"]) == 5 and {r["bank_code"] for r in one["records"]} == {B}
    assert _post(fed, "/audit", FED_ADMIN, limit=0).status_code == 422


def test_every_record_carries_the_bank_it_was_about(fed: Fed) -> None:
    _post(fed, "/hints", "not-a-token-at-all-0000", customer_id=fed.shared)
    _post(fed, "/hints", FED_ADMIN, customer_id=fed.shared, bank_code=B)
    records = read_audit(fed.ws.audit_log)
    assert records and all("bank_code" in r for r in records)
    tokens = {_token(b, r): b for b in FED_BANKS for r in ROLES}
    from serving.auth import fingerprint, fingerprint_key

    key = fingerprint_key(fed.ws, {})
    own = {fingerprint(t, key): b for t, b in tokens.items()}
    for r in records:
        if r["token_fp"] in own:  # a bank's token: its own bank, whatever the request named
            assert r["bank_code"] == own[r["token_fp"]], r
        elif r["role"] is None:
            assert r["bank_code"] is None
    assert records[-1]["role"] == "federation_admin" and records[-1]["bank_code"] == B


# ------------------------------------------------------------------------------------------ read only
def test_federation_admin_reads_but_writes_nothing(fed: Fed) -> None:
    from serving.auth import authorize_role
    from serving.errors import Forbidden

    before = _bank_files(fed.ws)
    for bank in FED_BANKS:
        assert _post(fed, "/hints", FED_ADMIN, customer_id=fed.shared, bank_code=bank).status_code == 200
        assert _post(fed, "/targets", FED_ADMIN, product="consumer", top=10, bank_code=bank).status_code == 200
    assert _post(fed, "/audit", FED_ADMIN).status_code == 200
    assert fed.client.get("/readyz", headers={"Authorization": f"Bearer {FED_ADMIN}"}).status_code == 200
    assert _bank_files(fed.ws) == before  # no bank's data, list or do-not-contact file changed
    principal = bentoml.get_current_service().tokens[FED_ADMIN]
    with pytest.raises(Forbidden):
        authorize_role(principal, "admin")  # what guards anything that would change a bank's state
    for path in ("/hints", "/targets", "/audit"):
        assert fed.client.put(path, json={}, headers={"Authorization": f"Bearer {FED_ADMIN}"}).status_code == 405


def test_a_token_of_a_bank_that_is_not_a_member_stops_the_start(fed: Fed, tmp_path: Path) -> None:
    from nbp.config import load_config
    from nbp.errors import ConfigError
    from serving.auth import Tenancy, load_tokens

    tenancy = Tenancy.of(fed.ws)
    assert tenancy.federation and set(tenancy.banks) == set(FED_BANKS)
    secret = "zz-0123456789abcdef0123"
    with pytest.raises(ConfigError) as err:
        load_tokens(load_config(), {"NBP_TOKENS": f"{secret}:marketing:HEISHAN"}, key=bytes(32), tenancy=tenancy)
    assert "entry 1" in str(err.value) and "HEISHAN" in str(err.value) and secret not in str(err.value)


# ------------------------------------------------------------------------------------------ nbp targets
def test_nbp_targets_of_a_bank_writes_its_list_with_the_bank(fed: Fed, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nbp.cli import main
    from serving.export import read_target_list

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBP_HOME", str(fed.ws.home))
        mp.chdir(tmp_path)
        res = CliRunner().invoke(
            main, ["targets", "--bank", B, "--product", "consumer", "--top", "20", "--out", "t.xlsx"]
        )
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1].startswith(f"bank {B}: ")
    back = read_target_list(tmp_path / "t.xlsx")
    assert set(back["bank_code"]) == {B} and set(back["customer_id"]) <= fed.scored[B]


# ------------------------------------------------------------------------------------------ a bank that cannot load
def test_a_bank_that_cannot_load_is_left_out_and_the_others_are_served(fed: Fed, tmp_path: Path) -> None:
    import dataclasses

    from nbp.config import load_config
    from nbp.errors import NbpError
    from serving.service import load_tenants

    home = tmp_path / "home"  # the federation's banks beside one whose import never ran
    home.mkdir()
    (home / "banks").symlink_to(fed.ws.banks_dir)
    ghost = Workspace(tmp_path / "ghost").for_bank("GHOST")
    ghost.ingested_dir.mkdir(parents=True)
    ghost.ingest_meta.write_text(json.dumps({"export_date": "2026-11-01", "bank_code": "GHOST"}), encoding="utf-8")
    tenants, unloaded = load_tenants(load_config(), Workspace(home), (A,))
    assert list(tenants) == [A] and not unloaded
    with pytest.raises(NbpError, match="no member bank can be served: GHOST: .*customers.parquet"):
        load_tenants(load_config(), ghost, ("GHOST",))

    svc = bentoml.get_current_service()  # the running service, told a third member failed to load
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svc, "tenancy", dataclasses.replace(svc.tenancy, banks=(*svc.tenancy.banks, "GHOST")))
        mp.setattr(svc, "unloaded", {"GHOST": "customers.parquet missing: run `nbp ingest` first"})
        r = _post(fed, "/hints", FED_ADMIN, customer_id=fed.shared, bank_code="GHOST")
        assert r.status_code == 503 and "GHOST" in r.json()["error"]
        assert _post(fed, "/hints", FED_ADMIN, customer_id=fed.shared, bank_code=A).status_code == 200
        public = fed.client.get("/readyz").json()
        assert public["banks"]["GHOST"] == {"ready": False, "status": "unavailable"} and public["ready"] is True
        full = fed.client.get("/readyz", headers={"Authorization": f"Bearer {FED_ADMIN}"}).json()
        assert "customers.parquet" in full["banks"]["GHOST"]["reason"]
