"""Tokens, roles and branch scope (serving/auth.py) and the HTTP errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from bentoml.exceptions import BentoMLException

from nbp.config import Config
from nbp.errors import ConfigError, ModelUnavailable, NbpError
from serving.auth import (
    Tenancy,
    authenticate,
    authorize_branch,
    authorize_role,
    bank_scope,
    branch_scope,
    fingerprint,
    fingerprint_key,
    load_tokens,
    parse_tokens,
)
from serving.errors import Forbidden, NotFound, Unauthorized, Unavailable, Unprocessable, to_http_error

MKT = "mkt-0123456789abcdef"
BR = "br01-0123456789abcdef"
ADM = "adm-0123456789abcdef"
TOKENS_TEXT = f"{MKT}:marketing, {BR}:branch:B01 ,{ADM}:admin"
KEY = bytes(range(32))


def _cfg(tokens_file: Path | None = None) -> Config:
    return Config.model_validate({"serving": {"tokens_file": str(tokens_file) if tokens_file else None}})


def test_parse_tokens_roles_and_branch() -> None:
    tokens = parse_tokens(TOKENS_TEXT, key=KEY)
    assert {t: (p.role, p.branch_id) for t, p in tokens.items()} == {
        MKT: ("marketing", None),
        BR: ("branch", "B01"),
        ADM: ("admin", None),
    }
    assert tokens[BR].fingerprint == fingerprint(BR, KEY) and BR not in tokens[BR].fingerprint


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("abcdefghijklmnopqrst:boss", "unknown role 'boss'"),
        ("abcdefghijklmnopqrst:branch", "needs a branch"),
        ("abcdefghijklmnopqrst:marketing:B01", "covers every branch"),
        ("abcdefghijklmnopqrst", "expected TOKEN:ROLE"),
        ("abcdefghijklmnopqrst:admin,abcdefghijklmnopqrst:admin", "listed twice"),
    ],
)
def test_parse_tokens_names_the_bad_entry_without_the_token(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_tokens(text, key=KEY)
    msg = str(err.value)
    assert needle in msg and "NBP_TOKENS entry" in msg
    assert "abcdefghijklmnopqrst" not in msg


def test_parse_tokens_file_format_with_comments() -> None:
    text = f"# staff tokens\n{MKT}:marketing   # head office\n\n{BR}:branch:B01\n"
    assert set(parse_tokens(text, "tokens.txt", key=KEY)) == {MKT, BR}


def test_load_tokens_env_wins_over_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens.txt"
    f.write_text(f"{ADM}:admin\n", encoding="utf-8")
    assert set(load_tokens(_cfg(f), {"NBP_TOKENS": f"{MKT}:marketing"}, key=KEY)) == {MKT}
    assert set(load_tokens(_cfg(f), {}, key=KEY)) == {ADM}


def test_load_tokens_refuses_no_source_missing_file_and_checkout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no API tokens"):
        load_tokens(_cfg(), {}, key=KEY)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokens(_cfg(tmp_path / "absent.txt"), {}, key=KEY)
    with pytest.raises(ConfigError, match="inside the checkout"):
        load_tokens(_cfg(Path(__file__)), {}, key=KEY)


def test_authenticate() -> None:
    tokens = parse_tokens(TOKENS_TEXT, key=KEY)
    assert authenticate(f"Bearer {BR}", tokens, KEY).branch_id == "B01"
    assert authenticate(f"bearer  {MKT} ", tokens, KEY).role == "marketing"
    for header in (None, "", "Bearer", f"Basic {MKT}", f"Bearer {MKT}x", "Bearer 令牌"):
        with pytest.raises(Unauthorized):
            authenticate(header, tokens, KEY)


def test_wrong_token_message_has_fingerprint_not_token() -> None:
    with pytest.raises(Unauthorized) as err:
        authenticate("Bearer not-a-real-token-123", parse_tokens(TOKENS_TEXT, key=KEY), KEY)
    assert "not-a-real-token-123" not in str(err.value)
    assert fingerprint("not-a-real-token-123", KEY) in str(err.value)


def test_fingerprints_are_keyed_not_a_bare_hash() -> None:
    import hashlib
    import hmac

    fp = fingerprint(MKT, KEY)
    assert fp == hmac.new(KEY, MKT.encode(), hashlib.sha256).hexdigest()[:12]
    assert fp != hashlib.sha256(MKT.encode()).hexdigest()[:12]  # not computable without the key
    assert fp != fingerprint(MKT, bytes(32))


def test_fingerprint_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    import stat

    from nbp.workspace import Workspace

    ws = Workspace(tmp_path)
    key = fingerprint_key(ws, {})
    path = ws.fingerprint_key
    assert len(key) == 32 and path.is_relative_to(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert fingerprint_key(ws, {}) == key  # the same on every start: fingerprints stay comparable
    assert fingerprint_key(ws, {"NBP_FINGERPRINT_KEY": "ab" * 16}) == bytes.fromhex("ab" * 16)
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        fingerprint_key(ws, {"NBP_FINGERPRINT_KEY": "abcd"})
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match="fingerprint key"):
        fingerprint_key(ws, {})


def test_branch_scope_and_roles() -> None:
    tokens = parse_tokens(TOKENS_TEXT, key=KEY)
    branch, mkt, adm = tokens[BR], tokens[MKT], tokens[ADM]
    authorize_branch(branch, "B01")
    authorize_branch(mkt, "B02")
    authorize_branch(adm, None)
    with pytest.raises(Forbidden) as err:
        authorize_branch(branch, "B02")
    assert "B02" not in str(err.value) and "B01" in str(err.value)  # a refusal never names another branch
    with pytest.raises(Forbidden):
        authorize_branch(branch, None)
    assert branch_scope(branch, None) == "B01"
    assert branch_scope(mkt, None) is None
    with pytest.raises(Forbidden):
        branch_scope(branch, "B02")
    authorize_role(adm, "admin")
    with pytest.raises(Forbidden):
        authorize_role(mkt, "admin")


def test_errors_carry_http_status_for_bentoml() -> None:
    for cls, status in ((Unauthorized, 401), (Forbidden, 403), (Unprocessable, 422), (Unavailable, 503)):
        e = cls("x")
        assert isinstance(e, NbpError) and isinstance(e, BentoMLException)
        assert e.status == status and e.error_code.value == status and str(e) == "x"
    mapped = to_http_error(ModelUnavailable("no champion for consumer"))
    assert isinstance(mapped, Unavailable) and mapped.status == 503
    assert isinstance(mapped.__cause__, ModelUnavailable)


def test_serving_errors_leave_bentoml_error_mapping_alone() -> None:
    assert all(not c.__module__.startswith("serving") for c in BentoMLException.error_mapping.values())


FED = Tenancy(federation=True, banks=("BAISHA", "QINGSHAN"))


def test_federation_tokens_name_their_bank() -> None:
    text = (
        f"{MKT}:marketing:QINGSHAN, {BR}:branch:BAISHA:B01, {ADM}:admin:BAISHA, fed-0123456789abcdef:federation_admin"
    )
    tokens = parse_tokens(text, key=KEY, tenancy=FED)
    assert {t: (p.role, p.bank, p.branch_id) for t, p in tokens.items()} == {
        MKT: ("marketing", "QINGSHAN", None),
        BR: ("branch", "BAISHA", "B01"),
        ADM: ("admin", "BAISHA", None),
        "fed-0123456789abcdef": ("federation_admin", None, None),
    }


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("abcdefghijklmnopqrst:marketing", "names its bank, as TOKEN:marketing:BANK"),
        ("abcdefghijklmnopqrst:branch:B01", "bank 'B01' is not served here"),
        ("abcdefghijklmnopqrst:branch:BAISHA", "TOKEN:branch:BANK:BRANCH"),
        ("abcdefghijklmnopqrst:admin:HEISHAN", "bank 'HEISHAN' is not served here (member banks: BAISHA, QINGSHAN)"),
        ("abcdefghijklmnopqrst:admin:../x", "is not a bank code"),
        ("abcdefghijklmnopqrst:marketing:BAISHA:B01", "covers every branch"),
        ("abcdefghijklmnopqrst:federation_admin:BAISHA", "covers every bank"),
    ],
)
def test_a_federation_refuses_a_token_without_a_member_bank_naming_the_entry(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_tokens(f"{MKT}:marketing:QINGSHAN,{text}", key=KEY, tenancy=FED)
    msg = str(err.value)
    assert needle in msg and "NBP_TOKENS entry 2" in msg and "abcdefghijklmnopqrst" not in msg


def test_a_single_bank_reads_a_bank_only_when_it_is_the_recorded_one() -> None:
    own = Tenancy(federation=False, banks=("QINGSHAN",))
    tokens = parse_tokens(f"{BR}:branch:QINGSHAN:B01,{MKT}:marketing:QINGSHAN:,{ADM}:branch:B02", key=KEY, tenancy=own)
    assert (tokens[BR].bank, tokens[BR].branch_id) == ("QINGSHAN", "B01")
    assert (tokens[MKT].role, tokens[MKT].bank, tokens[MKT].branch_id) == ("marketing", "QINGSHAN", None)
    assert (tokens[ADM].bank, tokens[ADM].branch_id) == (None, "B02")  # three fields: today's TOKEN:ROLE:BRANCH
    for tenancy, needle in ((own, "this single-bank workspace holds: QINGSHAN"), (Tenancy(), "no bank code recorded")):
        with pytest.raises(ConfigError, match=needle):
            parse_tokens(f"{BR}:branch:BAISHA:B01", key=KEY, tenancy=tenancy)
    with pytest.raises(ConfigError, match="needs a federation workspace"):
        parse_tokens(f"{ADM}:federation_admin", key=KEY, tenancy=own)


def test_bank_scope() -> None:
    tokens = parse_tokens(f"{MKT}:marketing:QINGSHAN,{ADM}:federation_admin", key=KEY, tenancy=FED)
    mkt, fed = tokens[MKT], tokens[ADM]
    assert bank_scope(mkt, None, FED.banks) == "QINGSHAN" == bank_scope(mkt, "QINGSHAN", FED.banks)
    with pytest.raises(Forbidden) as err:
        bank_scope(mkt, "BAISHA", FED.banks)
    assert "BAISHA" not in str(err.value)
    assert bank_scope(fed, "BAISHA", FED.banks) == "BAISHA"
    with pytest.raises(Unprocessable, match="BAISHA, QINGSHAN"):
        bank_scope(fed, None, FED.banks)
    with pytest.raises(NotFound):
        bank_scope(fed, "HEISHAN", FED.banks)
    with pytest.raises(Forbidden):
        authorize_role(fed, "admin")  # read only: never passes for an admin action
