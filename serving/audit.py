"""Append-only audit trail of every request, one JSON object a line.

Each line of ``$NBP_HOME/audit/audit.jsonl`` records::

    ts           ISO 8601 time of the request, UTC, e.g. "2026-10-01T08:30:00.123+00:00"
    bank_code    the bank whose data the request was about (a federation's member bank, or
                 the single bank's recorded code); null when the workspace records none or
                 the token was refused before a bank was known
    role         the token's role, or null when the request was not authenticated
    branch_id    the token's branch (branch role), else null
    token_fp     keyed fingerprint of the presented token (serving.auth.fingerprint:
                 HMAC-SHA256 under the server's secret; never the token), or null
    endpoint     e.g. "/hints"
    params       the key parameters (scalars only, strings cut to 64 characters;
                 anything named like a token or header is dropped)
    rows         how many rows the answer held
    status       HTTP status answered

Lines are appended with a single ``write`` on a file opened with ``O_APPEND``,
under an exclusive ``flock`` and a process-local lock, so concurrent workers
never interleave. Nothing here rewrites or truncates the file. Each write goes
to the kernel at once (no buffering in the process: a crash loses no record);
there is no ``fsync`` per record, so a power failure can lose the last lines the
operating system had not yet flushed. The file stays open between records and is
opened again when the path no longer names it (moved or deleted, e.g. by log
rotation), so records always land in the file at ``path``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.auth import Principal

try:  # POSIX; the lock is only a second guard on top of O_APPEND
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MAX_PARAM_CHARS = 64
_SECRET_WORDS = ("token", "authorization", "password", "secret")


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if any(w in key.lower() for w in _SECRET_WORDS):
            continue
        if value is None or isinstance(value, (bool, int, float)):
            out[key] = value
        else:
            out[key] = str(value)[:MAX_PARAM_CHARS]
    return out


class AuditLog:
    """The append-only audit file of one workspace.

    Args:
        path: the JSON-lines file (``Workspace.audit_log``); its folder is
            created on the first record.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None  # (device, inode) of the open file
        self._pid = 0  # the process that opened it: a forked child opens its own (its own flock)

    def _open_fd(self) -> int:
        """The open file descriptor of ``path``, (re)opened when ``path`` names another file or none."""
        try:
            st = os.stat(self.path)
            current = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd is not None and current == self._ino and self._pid == os.getpid():
            return self._fd
        if self._pid != os.getpid():
            self._fd = None  # the parent's descriptor: left to the parent
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        st = os.fstat(fd)
        self._fd, self._ino, self._pid = fd, (st.st_dev, st.st_ino), os.getpid()
        return fd

    def close(self) -> None:
        """Close the file (the next record opens it again)."""
        if self._fd is not None:
            fd, self._fd, self._ino = self._fd, None, None
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass

    def record(
        self,
        *,
        endpoint: str,
        status: int,
        principal: Principal | None = None,
        token_fp: str | None = None,
        params: Mapping[str, Any] | None = None,
        rows: int = 0,
        when: datetime | None = None,
        bank_code: str | None = None,
    ) -> dict[str, Any]:
        """Append one request to the trail.

        Args:
            endpoint: the path called, e.g. ``"/targets"``.
            status: the HTTP status answered.
            principal: who called, if the token was valid.
            token_fp: keyed fingerprint of a presented but rejected token (ignored
                when ``principal`` is given, which carries its own).
            params: the key request parameters; cleaned as the module says.
            rows: number of rows answered.
            when: time of the request (default: now, UTC).
            bank_code: the bank the request was about (None: not known).

        Returns:
            The record as written.
        """
        ts = (when or datetime.now(UTC)).isoformat(timespec="milliseconds")
        entry = {
            "ts": ts,
            "bank_code": bank_code,
            "role": principal.role if principal else None,
            "branch_id": principal.branch_id if principal else None,
            "token_fp": principal.fingerprint if principal else token_fp,
            "endpoint": endpoint,
            "params": _clean_params(params or {}),
            "rows": int(rows),
            "status": int(status),
        }
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            fd = self._open_fd()
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                written = os.write(fd, line)
                if written != len(line):  # pragma: no cover - disk full
                    log.error("audit: short write to %s (%d of %d bytes)", self.path, written, len(line))
            except OSError:
                self.close()  # a broken descriptor is not kept
                raise
            finally:
                if fcntl is not None and self._fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        return entry


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Read an audit trail back (for reports and tests).

    Args:
        path: the JSON-lines file.

    Returns:
        The records in file order; an empty list if the file does not exist.
    """
    if not Path(path).exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


TAIL_BLOCK = 64 * 1024  # bytes read at a time from the end of the trail


def tail_audit(path: Path, limit: int, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The last ``limit`` records of a trail that ``keep`` accepts, in file order.

    Reads the file backwards a block at a time and stops as soon as it has ``limit``
    records, so a long trail costs only what the answer needs (a rare bank's records can
    still mean reading it all). A line cut by a write in progress is skipped.

    Args:
        path: the JSON-lines file.
        limit: at most this many records.
        keep: which records count (default: all).
    """
    if limit <= 0 or not Path(path).exists():
        return []
    found: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        rest = b""  # the start of a line whose beginning lies in an earlier block
        while pos > 0 and len(found) < limit:
            step = min(TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            lines = (f.read(step) + rest).split(b"\n")
            rest = lines.pop(0) if pos > 0 else b""
            for raw in reversed(lines):
                entry = _parse(raw)
                if entry is not None and (keep is None or keep(entry)):
                    found.append(entry)
                    if len(found) == limit:
                        break
    return found[::-1]


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
