"""The service refuses before it reads, over HTTP on the service's ASGI app."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from servingkit import TOKENS, Built, asgi_post, bearer

from serving.audit import read_audit

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024


def _last_audit(built: Built, n: int = 1) -> list[dict]:
    return read_audit(built.ws.audit_log)[-n:]


def _auth(role: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {TOKENS[role]}".encode())


# ------------------------------------------------------------------------- body limit
def test_a_declared_body_over_the_limit_is_413_before_a_byte_is_read(client: Any, built: Built) -> None:
    def never() -> Any:
        raise AssertionError("body read")
        yield b""  # pragma: no cover

    for path in ("/hints", "/targets", "/staff/"):
        headers = [_auth("marketing"), (b"content-type", b"application/json"), (b"content-length", b"1000000000")]
        status, body, asked = client.portal.call(asgi_post, client.app, path, headers, never())
        assert (status, asked) == (413, 0), (path, status, body)
        assert b"65,536" in body
    assert _last_audit(built)[0]["status"] == 413 and _last_audit(built)[0]["endpoint"] == "/targets"
    for bad in (b"12x", "²".encode("latin-1"), b"-1"):
        headers = [_auth("marketing"), (b"content-length", bad)]
        status, body, asked = client.portal.call(asgi_post, client.app, "/hints", headers, never())
        assert (status, asked) == (400, 0) and b"Content-Length" in body


def test_a_chunked_body_is_counted_and_cut_at_the_limit(client: Any) -> None:
    chunks = iter([b"x" * 1024] * 10_000)  # 10 MB announced by nothing
    status, _, asked = client.portal.call(asgi_post, client.app, "/hints", [_auth("marketing")], chunks)
    assert status == 413 and asked <= LIMIT // 1024 + 1  # stopped as soon as the limit was passed
    r = client.post("/targets", content=(b"x" * 4096 for _ in range(100)), headers=bearer("marketing"))
    assert r.status_code == 413 and r.json()["status"] == 413
    r = client.post(
        "/targets",
        content=(
            b'{"product": "consumer", ' if i == 0 else b"  " * 1000 if i < 30 else b'"top": 3}' for i in range(31)
        ),
        headers=bearer("marketing"),
    )
    assert r.status_code == 200  # a chunked body under the limit goes through whole


# ------------------------------------------------------------------------- the token first
def test_an_unauthenticated_malformed_body_is_401_and_logs_no_traceback(
    client: Any, built: Built, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for path in ("/hints", "/targets"):
            for body in (b"{oops", b'{"customer_id": 17}', b"[]", b"\xff\xfe"):
                r = client.post(path, content=body, headers={"Content-Type": "application/json"})
                assert r.status_code == 401, (path, body, r.text)
                assert "Traceback" not in r.text
    assert not [x for x in caplog.records if x.levelno >= logging.ERROR or x.exc_info]
    assert [x["status"] for x in _last_audit(built, 8)] == [401] * 8


def test_malformed_bodies_are_400_and_audited(client: Any, built: Built, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        r = client.post("/hints", content=b"{oops", headers={**bearer("branch"), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"error": "the body is not valid JSON", "status": 400}
    rec = _last_audit(built)[0]
    assert (rec["endpoint"], rec["status"], rec["role"], rec["branch_id"]) == ("/hints", 400, "branch", built.branch)
    assert not [x for x in caplog.records if x.levelno >= logging.ERROR or x.exc_info]


def test_two_authorization_headers_are_400(client: Any, built: Built) -> None:
    both = [("Authorization", f"Bearer {TOKENS['branch']}"), ("Authorization", f"Bearer {TOKENS['marketing']}")]
    r = client.post("/hints", json={"customer_id": built.other_customer}, headers=both)
    assert r.status_code == 400 and "one Authorization header" in r.json()["error"]
    assert _last_audit(built)[0]["status"] == 400


def test_a_body_not_sent_as_json_is_415(client: Any, built: Built) -> None:
    r = client.post(
        "/hints",
        content=f'{{"customer_id": "{built.customer}"}}',
        headers={**bearer("marketing"), "Content-Type": "text/plain"},
    )
    assert r.status_code == 415 and _last_audit(built)[0]["status"] == 415


# ------------------------------------------------------------------------- what a request may say
@pytest.mark.parametrize("top", ["10", True, 10.0])
def test_top_must_be_a_json_integer(client: Any, top: Any) -> None:
    r = client.post("/targets", json={"product": "consumer", "top": top}, headers=bearer("marketing"))
    assert r.status_code == 422 and "top" in r.json()["error"]


def test_long_ids_are_422_and_never_echoed_in_full(client: Any, built: Built) -> None:
    long_id = "=HYPERLINK(" + "X" * 5_000
    for path, body in (
        ("/hints", {"customer_id": long_id}),
        ("/targets", {"product": "consumer", "branch_id": long_id}),
        ("/targets", {"product": long_id}),
        ("/targets", {"product": "consumer", "manager_id": long_id}),
        ("/targets", {"product": "consumer", "campaign_id": long_id}),
    ):
        r = client.post(path, json=body, headers=bearer("marketing"))
        assert r.status_code == 422, (path, r.text[:200])
        assert "X" * 40 not in r.text
    assert "X" * 65 not in built.ws.audit_log.read_text(encoding="utf-8")
    r = client.post("/hints", json={"customer_id": "N" * 64}, headers=bearer("marketing"))  # valid length, unknown
    assert r.status_code == 404 and "N" * 33 not in r.text


def test_an_unknown_branch_or_manager_is_404_not_an_empty_list(client: Any, built: Built) -> None:
    h = bearer("marketing")
    r = client.post("/targets", json={"product": "consumer", "branch_id": "NO-SUCH-BRANCH"}, headers=h)
    assert r.status_code == 404 and "NO-SUCH-BRANCH" in r.json()["error"]
    r = client.post("/targets", json={"product": "consumer", "manager_id": "NO-SUCH-MANAGER"}, headers=h)
    assert r.status_code == 404
    r = client.post("/targets", json={"product": "consumer", "manager_id": "NO-SUCH-MANAGER"}, headers=bearer("branch"))
    assert r.status_code == 404
    r = client.post("/targets", json={"product": "consumer", "branch_id": built.branch, "top": 5}, headers=h)
    assert r.status_code == 200 and r.json()["rows"]


def test_a_403_never_names_another_branch(client: Any, built: Built) -> None:
    import bentoml

    rec = bentoml.get_current_service().recommender
    other = rec.branch_of(built.other_customer)
    r = client.post("/hints", json={"customer_id": built.other_customer}, headers=bearer("branch"))
    assert r.status_code == 403 and other not in r.json()["error"]
    r = client.post("/targets", json={"product": "consumer", "branch_id": other}, headers=bearer("branch"))
    assert r.status_code == 403 and other not in r.json()["error"]
    mgr = next(m for b, m in sorted(rec._manager_branches) if b == other)
    r = client.post("/targets", json={"product": "consumer", "manager_id": mgr}, headers=bearer("branch"))
    assert r.status_code in (403, 404) and other not in r.json()["error"]


# ------------------------------------------------------------------------- staff page, probes, fingerprints
def test_the_staff_page_sends_a_csp_and_nosniff_and_has_no_inline_code(client: Any) -> None:
    r = client.get("/staff/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    page = r.text
    assert '<script src="app.js"' in page and "<script>" not in page and "<style" not in page and " on" not in page
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        a = client.get(f"/staff/{name}")
        assert a.status_code == 200 and a.headers["content-type"].startswith(kind)
        assert a.headers["x-content-type-options"] == "nosniff"
    assert client.get("/staff/../serving/service.py").status_code == 404
    assert client.get("/staff/secret.txt").status_code == 404


def test_readyz_without_a_token_shows_no_paths_or_error_text(client: Any, built: Built) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True
    assert str(built.ws.home) not in r.text and "/" not in r.text
    assert r.json()["products"]["tax_linked"] == {"ready": False, "target_lists": False, "status": "no_model"}
    detail = client.get("/readyz", headers=bearer("admin")).json()
    assert "champion" in detail["products"]["tax_linked"]["problem"]
    assert "problem" not in client.get("/readyz", headers=bearer("branch")).json()["products"]["tax_linked"]


def test_audit_fingerprints_are_keyed_with_the_server_secret(client: Any, built: Built) -> None:
    client.post("/hints", json={"customer_id": built.customer}, headers={"Authorization": "Bearer guessed-token-123"})
    fp = _last_audit(built)[0]["token_fp"]
    path = built.ws.fingerprint_key
    key = bytes.fromhex(path.read_text().strip()) if path.exists() else b""
    assert fp == hmac.new(key, b"guessed-token-123", hashlib.sha256).hexdigest()[:12]
    assert fp != hashlib.sha256(b"guessed-token-123").hexdigest()[:12]


# ------------------------------------------------------------------------- nbp serve
def test_nbp_serve_on_a_port_in_use_prints_one_line_and_exits_1(built: Built) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "NBP_HOME": str(built.ws.home),
            "NBP_TOKENS": built.tokens_env,
            "BENTOML_DO_NOT_TRACK": "True",
            "DO_NOT_TRACK": "true",
        }
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "nbp.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    out = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert res.returncode == 1, out
    assert len(out) == 1 and f"port {port}" in out[0] and "in use" in out[0]
