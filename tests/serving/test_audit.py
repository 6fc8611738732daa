"""The append-only audit trail (serving/audit.py)."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nbp.workspace import Workspace
from serving.audit import AuditLog, read_audit
from serving.auth import parse_tokens

TOKEN = "br01-0123456789abcdef"


def _append_many(path: str, worker: int, n: int) -> None:
    log = AuditLog(Path(path))
    for i in range(n):
        log.record(endpoint="/hints", status=200, params={"customer_id": f"C{worker}-{i}", "pad": "x" * 500}, rows=3)


def test_record_fields_and_no_token(tmp_path: Path) -> None:
    path = Workspace(tmp_path).audit_log
    principal = parse_tokens(f"{TOKEN}:branch:B01", key=bytes(32))[TOKEN]
    log = AuditLog(path)
    when = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
    log.record(
        endpoint="/targets",
        status=200,
        principal=principal,
        params={"product": "consumer", "top": 50, "authorization": f"Bearer {TOKEN}", "note": "长" * 100},
        rows=50,
        when=when,
        bank_code="QINGSHAN",
    )
    log.record(endpoint="/hints", status=401, token_fp="abc123", params={"customer_id": "C9"})
    first, second = read_audit(path)
    assert first == {
        "ts": "2026-10-01T08:30:00.000+00:00",
        "bank_code": "QINGSHAN",
        "role": "branch",
        "branch_id": "B01",
        "token_fp": principal.fingerprint,
        "endpoint": "/targets",
        "params": {"product": "consumer", "top": 50, "note": "长" * 64},
        "rows": 50,
        "status": 200,
    }
    assert second["role"] is None and second["token_fp"] == "abc123" and second["status"] == 401
    assert second["bank_code"] is None  # the key is on every record, null when no bank is known
    assert TOKEN not in path.read_text(encoding="utf-8")


def test_appends_never_truncate(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditLog(path).record(endpoint="/hints", status=200)
    AuditLog(path).record(endpoint="/hints", status=404)
    assert [r["status"] for r in read_audit(path)] == [200, 404]


def test_concurrent_appends_from_processes_and_threads_stay_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 150)) for w in range(3)]
    threads = [threading.Thread(target=_append_many, args=(str(path), 10 + w, 150)) for w in range(2)]
    for t in (*procs, *threads):
        t.start()
    for t in (*procs, *threads):
        t.join()
    assert all(p.exitcode == 0 for p in procs)
    records = read_audit(path)  # json.loads fails on any interleaved line
    assert len(records) == 5 * 150
    assert len({r["params"]["customer_id"] for r in records}) == 5 * 150


def test_read_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_audit(tmp_path / "none.jsonl") == []


def test_the_file_stays_open_but_follows_the_path(tmp_path: Path) -> None:
    """One open per file, not per record; a moved or deleted file is opened again at the path."""
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog(path)
    log.record(endpoint="/hints", status=200)
    fd = log._fd
    log.record(endpoint="/hints", status=404)
    assert log._fd == fd is not None  # kept open between records
    rotated = tmp_path / "audit" / "audit.jsonl.1"
    path.rename(rotated)  # log rotation
    log.record(endpoint="/hints", status=401)
    assert [r["status"] for r in read_audit(rotated)] == [200, 404]
    assert [r["status"] for r in read_audit(path)] == [401]
    path.unlink()
    log.record(endpoint="/targets", status=200)
    assert [r["endpoint"] for r in read_audit(path)] == ["/targets"]
    log.close()
    log.record(endpoint="/hints", status=503)  # closing is not final either
    assert [r["status"] for r in read_audit(path)] == [200, 503]
    log.close()


def test_a_forked_child_opens_its_own_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.record(endpoint="/hints", status=200)
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_records, args=(log,))
    child.start()
    child.join()
    assert child.exitcode == 0
    log.record(endpoint="/hints", status=201)  # the parent's descriptor still works
    assert [r["status"] for r in read_audit(path)] == [200, 202, 201]


def _child_records(log: AuditLog) -> None:
    parent_fd = log._fd
    log.record(endpoint="/hints", status=202)
    assert log._fd not in (None, parent_fd)  # its own open file (and so its own flock)


def test_tail_reads_the_latest_records_a_filter_keeps_from_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.audit as audit

    monkeypatch.setattr(audit, "TAIL_BLOCK", 100)  # many blocks, lines cut across them
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(60):
        log.record(endpoint="/hints", status=200, params={"customer_id": f"C{i}"}, bank_code="A" if i % 3 else "B")
    with open(path, "ab") as f:
        f.write(b'{"ts": "cut in the mid')  # a record still being written
    got = audit.tail_audit(path, 4, lambda r: r["bank_code"] == "B")
    assert [r["params"]["customer_id"] for r in got] == ["C48", "C51", "C54", "C57"]  # bank B: every third
    assert [r["params"]["customer_id"] for r in audit.tail_audit(path, 3)] == ["C57", "C58", "C59"]
    assert len(audit.tail_audit(path, 1000)) == 60
    assert audit.tail_audit(tmp_path / "none.jsonl", 5) == [] and audit.tail_audit(path, 0) == []
