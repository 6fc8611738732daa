"""What a job leaves in the workspace while it runs, and cleaning up after one that died.

Every temporary file or folder a job (``nbp features``, ``train``, ``score``,
``retrain``) writes under ``$NBP_HOME`` carries the job's tag ``<host>-<pid>``:
``.tmp/<tag>/`` (the job's scratch folder: DuckDB spill files, MLflow's temporary
model folder) and ``.<name>.tmp-<tag>`` beside a file that is replaced atomically.
A job that ends normally removes its own; a job killed with SIGKILL cannot, so the
next job removes every one whose process is gone (:func:`clean_stale`). Tags of
another host are never touched: their process cannot be checked from here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nbp.workspace import Workspace

log = logging.getLogger(__name__)

_TAG = re.compile(r"^(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)$")


def host() -> str:
    """This machine's name as used in tags (letters, digits, ``_`` and ``.`` only)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def tag(pid: int | None = None) -> str:
    """``<host>-<pid>`` of this process (or of ``pid`` on this host)."""
    return f"{host()}-{os.getpid() if pid is None else pid}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dead(tag_text: str) -> bool:
    """Whether ``<host>-<pid>`` names a process of this host that no longer runs."""
    m = _TAG.match(tag_text)
    return bool(m) and m["host"] == host() and not pid_alive(int(m["pid"]))


def scratch(ws: Workspace, sub: str = "") -> Path:
    """This job's scratch folder ``$NBP_HOME/.tmp/<tag>/<sub>`` (created)."""
    path = ws.job_scratch(tag()) / sub
    path.mkdir(parents=True, exist_ok=True)
    return path


def release(ws: Workspace, sub: str) -> None:
    """Remove ``sub`` of this job's scratch folder, and the folder itself once empty."""
    shutil.rmtree(ws.job_scratch(tag()) / sub, ignore_errors=True)
    for p in (ws.job_scratch(tag()), ws.scratch_root):
        with contextlib.suppress(OSError):
            p.rmdir()  # only when empty


def temp_sibling(path: Path) -> Path:
    """Where to write ``path``'s new content before renaming it onto ``path``: ``.<name>.tmp-<tag>``."""
    return path.with_name(f".{path.name}.tmp-{tag()}")


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` (:func:`temp_sibling`) to write to, renamed onto ``path``
    when the block succeeds and removed when it fails; a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _siblings(ws: Workspace) -> Iterator[tuple[Path, str]]:
    """Temporary siblings (``.<name>.tmp-<tag>``) anywhere a job replaces files, member banks' folders included."""
    banks = [ws.for_bank(code) for code in ws.banks()]
    roots = dict.fromkeys(
        [ws.features_dir, ws.feast_dir, ws.outputs_dir, *(d for b in banks for d in (b.features_dir, b.outputs_dir))]
    )
    for root in roots:
        if root.exists():
            for p in root.rglob(".*.tmp-*"):
                yield p, p.name.rsplit(".tmp-", 1)[1]


def leftovers(ws: Workspace, mine: bool = False) -> list[Path]:
    """Temporary files and folders of dead jobs of this host (``mine``: of this process too)."""
    own = tag()
    out = []
    base = ws.scratch_root
    items = [(p, p.name) for p in base.iterdir()] if base.exists() else []
    for p, t in [*items, *_siblings(ws)]:
        if dead(t) or (mine and t == own):
            out.append(p)
    return out


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


LEGACY = ("data/features/.duckdb_tmp", "feast/.duckdb_tmp")  # spill folders of nbp before the tags


def clean_stale(ws: Workspace) -> list[Path]:
    """Remove what jobs killed before they could clean up left behind; returns the paths removed."""
    gone = leftovers(ws) + [p for p in (ws.home / d for d in LEGACY) if p.exists()]
    for p in gone:
        _remove(p)
    if gone:
        log.warning(
            "removed %d temporary item(s) of job(s) that died: %s",
            len(gone),
            ", ".join(str(p.relative_to(ws.home)) for p in gone[:5]) + (" …" if len(gone) > 5 else ""),
        )
    base = ws.scratch_root
    if base.exists() and not any(base.iterdir()):
        base.rmdir()
    return gone


def clean_own(ws: Workspace) -> None:
    """Remove this process's scratch folder and temporary siblings (end of a job)."""
    for p in leftovers(ws, mine=True):
        if p.name == tag() or p.name.endswith(f".tmp-{tag()}"):
            _remove(p)
    base = ws.scratch_root
    with contextlib.suppress(OSError):
        base.rmdir()  # only when empty


@contextlib.contextmanager
def job(ws: Workspace) -> Iterator[Path]:
    """One job's lifetime: clean what dead jobs left, and remove this job's scratch folder at
    the end, whatever happens short of SIGKILL."""
    clean_stale(ws)
    try:
        yield ws.job_scratch(tag())
    finally:
        clean_own(ws)


@contextlib.contextmanager
def tempdir(ws: Workspace, sub: str) -> Iterator[Path]:
    """Point ``tempfile`` at ``<scratch>/<sub>`` for a library that writes its temporary files
    there (MLflow stages a model before copying it to the artifact store), then back and remove it.

    Only around a call in the job's main thread: ``tempfile.tempdir`` is process-wide, and a module
    imported meanwhile could keep a path that is removed here (Feast's metrics folder does).
    """
    before = tempfile.tempdir
    tempfile.tempdir = str(scratch(ws, sub))
    try:
        yield Path(tempfile.tempdir)
    finally:
        tempfile.tempdir = before
        release(ws, sub)


def release_memory() -> None:
    """Between member banks of one job: collect garbage and hand freed heap back to the system
    (glibc's ``malloc_trim``; elsewhere only the collection), so the next bank starts low
    (``docs/decisions/019-federation-memory.md``)."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc is None:
        return
    try:
        ctypes.CDLL(libc).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
