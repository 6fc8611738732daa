"""A feature family's table on disk: a folder of Parquet files, each holding whole as-of dates.

A build writes the as-of dates it computed into one new file and takes those dates out of the
files that held them, so a build after one new month writes that month's rows only and leaves
the older files as they are (docs/decisions/031-feature-table-per-as-of-files.md). Every as-of
date is in exactly one file; a file is named by its first and last as-of date.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from bankexport.spec import BANK_COLUMN
from features.schema import EVENT_TS
from nbp import jobs
from nbp.errors import FeatureStoreError
from nbp.sqltext import ident, lit, timestamp

log = logging.getLogger(__name__)


def files(folder: Path) -> list[Path]:
    """The table's Parquet files, in name order (empty: not built)."""
    return sorted(folder.glob("*.parquet"))


def scan(paths: Sequence[Path], filename: bool = False) -> str:
    """DuckDB's ``read_parquet`` of exactly these files (``filename``: with each row's file)."""
    return f"read_parquet([{', '.join(lit(str(p)) for p in paths)}]{', filename = true' if filename else ''})"


def file_name(dates: Sequence[date]) -> str:
    """``<first>_<last>.parquet`` (``<day>.parquet`` for one date): files hold disjoint dates, so
    no two share a name."""
    lo, hi = min(dates), max(dates)
    return f"{lo:%Y-%m-%d}.parquet" if lo == hi else f"{lo:%Y-%m-%d}_{hi:%Y-%m-%d}.parquet"


def _dates_in(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> dict[str, list[date]]:
    """Each file's as-of dates (the timestamp column only is read)."""
    rows = con.execute(f"SELECT DISTINCT filename, CAST({EVENT_TS} AS DATE) FROM {scan(paths, True)}").fetchall()
    out: dict[str, list[date]] = {str(p): [] for p in paths}
    for name, d in rows:
        out[name].append(d)
    return out


def _check_bank(con: duckdb.DuckDBPyConnection, folder: Path, paths: Sequence[Path], bank: str | None) -> None:
    """The rows a rebuild keeps from a member bank's table must be that bank's own.

    Raises:
        FeatureStoreError: a file holds a row of another bank (a table copied between folders).
    """
    if bank is None or not paths:
        return
    other = con.execute(
        f"SELECT any_value({ident(BANK_COLUMN)}), count(*) FROM {scan(paths)} "
        f"WHERE {ident(BANK_COLUMN)} IS DISTINCT FROM {lit(bank)}"
    ).fetchall()[0]
    if other[1]:
        raise FeatureStoreError(
            f"{folder}: {other[1]:,} rows of bank_code {other[0]!r} in the folder of bank {bank}; "
            f"remove {folder.parent} and run `nbp features --bank {bank}` again"
        )


def replace_dates(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    query: str,
    dates: Sequence[date],
    columns: list[str],
    options: str,
    bank: str | None = None,
    check: Callable[[int], None] | None = None,
) -> tuple[int, bool]:
    """Write ``query``'s rows (those of ``dates``) as the table's rows of ``dates``.

    The new rows go to one file; files holding any of ``dates`` are rewritten without them (or
    removed); the others are not touched. The new file is renamed into place last, so a reader
    may miss a rebuilt date for a moment but never sees one twice. Files whose columns are not
    ``columns`` (the family's features changed) are removed: their dates are gone.

    Args:
        con: the DuckDB connection that runs ``query``.
        folder: the table's folder.
        query: the rows of ``dates``, with ``columns``.
        options: DuckDB's ``COPY`` options of the files.
        bank: a member bank's code: every kept row must carry it (``bank_code``).
        check: called with the new file's row count before any file of the table changes; it
            raises to leave the table as it was.

    Returns:
        ``(rows of the new file, whether older dates were dropped for a change of columns)``.

    Raises:
        FeatureStoreError: a kept file holds another bank's rows.
    """
    folder.mkdir(parents=True, exist_ok=True)
    old = files(folder)
    dropped = bool(old) and any(pq.read_schema(p).names != columns for p in old)
    if not dropped:
        _check_bank(con, folder, old, bank)
    tmp = jobs.temp_sibling(folder / file_name(dates))
    try:
        con.execute(f"COPY ({query}) TO {lit(str(tmp))} ({options})")
        rebuilt = set(dates)
        listed = ", ".join(timestamp(d.isoformat()) for d in sorted(rebuilt))
        n, stray = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {EVENT_TS} NOT IN ({listed})) FROM read_parquet({lit(str(tmp))})"
        ).fetchall()[0]
        if stray:
            raise FeatureStoreError(f"{folder.name}: {stray:,} rows of as-of dates not being built ({min(dates)}..)")
        if check is not None:
            check(n)
        if dropped:
            log.warning("%s: columns changed since the last build; older as-of dates are dropped", folder.name)
            for p in old:
                p.unlink()
            old = []
        held = _dates_in(con, old) if old else {}
        for name, have in held.items():
            path, gone = Path(name), rebuilt & set(have)
            if not gone:
                continue
            keep = sorted(set(have) - gone)
            if not keep:
                path.unlink()
                continue
            kept = ", ".join(timestamp(d.isoformat()) for d in keep)
            with jobs.atomic_write(path) as part:
                con.execute(
                    f"COPY (SELECT * FROM read_parquet({lit(str(path))}) WHERE {EVENT_TS} IN ({kept})) "
                    f"TO {lit(str(part))} ({options})"
                )
            if path.name != file_name(keep):
                os.replace(path, folder / file_name(keep))
        os.replace(tmp, folder / file_name(dates))
    finally:
        tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a failed first build leaves no empty folder
            folder.rmdir()
    return n, dropped


def merge(con: duckdb.DuckDBPyConnection, folder: Path, options: str, forget: Callable[[list[date]], None]) -> int:
    """Merge the table's files into one (its rows as they are, files in order of their first date).

    ``forget(dates)`` is called with every date of the table after the merged file is written and
    before any file is removed: the build's record must stop vouching for them, since a job killed
    between the removals and the rename leaves them missing (the next build writes them again).
    Readers meanwhile may miss dates, never see one twice, as in :func:`replace_dates`.

    Returns:
        The number of files merged (0: fewer than two files).

    Raises:
        FeatureStoreError: the merged file's row count differs from the files' (nothing changed).
    """
    old = files(folder)
    if len(old) < 2:
        return 0
    held = _dates_in(con, old)
    dates = sorted({d for have in held.values() for d in have})
    if not dates:
        return 0
    ordered = sorted(old, key=lambda p: min(held[str(p)], default=date.max))
    want = sum(pq.ParquetFile(p).metadata.num_rows for p in old)
    target = folder / file_name(dates)
    tmp = jobs.temp_sibling(target)
    try:
        keep_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
        con.execute("SET preserve_insertion_order = true")  # the latest month last: its row groups skip by date
        try:
            con.execute(f"COPY (SELECT * FROM {scan(ordered)}) TO {lit(str(tmp))} ({options})")
        finally:
            con.execute(f"SET preserve_insertion_order = {str(bool(keep_order)).lower()}")
        n = pq.ParquetFile(tmp).metadata.num_rows
        if n != want:
            raise FeatureStoreError(f"{folder}: merging {len(old)} files wrote {n:,} rows of {want:,}")
        forget(dates)
        for p in old:
            p.unlink()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return len(old)


def drop_legacy(features_dir: Path) -> list[Path]:
    """Remove feature tables of the one-file-per-family layout (``<family>.parquet``) that a
    workspace built before the per-date files holds; returns what was removed."""
    old = sorted(p for p in features_dir.glob("*.parquet") if p.is_file())
    for p in old:
        p.unlink()
    if old:
        log.info(
            "%s: %d feature tables of the one-file layout removed; every as-of date is rebuilt", features_dir, len(old)
        )
    return old
