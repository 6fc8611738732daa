"""Ingested tables → feature tables (Parquet), one folder per family, all as-ofs at once.

Reads only ``$NBP_HOME/data/ingested/<table>.parquet`` and ``_meta.json``; writes
``$NBP_HOME/data/features/<family>/`` (:mod:`features.tables`) with columns ``customer_id``,
``event_timestamp`` (= the as-of T, naive, read by Feast as UTC) and the family's
features (Int64 / Float64), plus ``_build.json`` describing the build.

Every family is one DuckDB query over all as-of dates. Transactions and balances
are first aggregated per customer × month in DuckDB; the window aggregates over
whole months that the monthly families name (``_sql.win``) are computed in numpy
(:mod:`features.windows`) and handed back to DuckDB as the relation ``win``.
Rebuilding some as-of dates writes only those dates' rows, into one new file of the family's
folder, and rewrites only the files that held them; without dates a build is
incremental (:mod:`features.fingerprint`): only the as-of dates whose inputs changed are rebuilt.

With ``compute.engine: spark`` the same SQL runs on Spark (:mod:`features.spark_build`):
the relations and every family's query are transpiled (``nbp.dialect.to_spark``), the
windows are the same numpy code run per partition of customers, and the rows Spark writes
are written into the family's folder by the same DuckDB writer as here.

In a federation workspace (``docs/decisions/016-federation-workspace.md``) a member bank's
build reads and writes only ``banks/<code>/`` and its tables carry a first column
``bank_code`` (the same constant as the bank's ingested tables), so a feature row always
says whose customer it is; :func:`build_banks` builds member banks one after the other.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bankexport.spec import ALL_TABLES, BANK_COLUMN, REQUIRED_TABLES
from features import fingerprint, tiers
from features import tables as feature_tables
from features.catalog import CATALOG, MODULES, family_features, modules
from features.families.monthly import bal_month_sql, month_index, txn_month_sql
from features.schema import AS_OF, EVENT_TS, JOIN_KEY, Feature
from features.windows import MonthlySeries, Spine, Window, referenced, window_table
from nbp import jobs
from nbp.config import Config, load_config
from nbp.errors import FeatureStoreError
from nbp.sqltext import ident, lit, timestamp
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

LOOKBACK_MONTHS = 13  # longest window (12 months) plus the same month last year
DUCKDB_MEMORY_LIMIT = os.environ.get("NBP_DUCKDB_MEMORY", "8GB")
LOAN_MODES = ("end_date", "term")
# No Parquet dictionaries: feature columns are mostly distinct doubles, which a dictionary
# barely shrinks for a real cost in write time (docs/decisions/009c-feature-parquet-without-dictionaries.md).
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 500000, DICTIONARY_SIZE_LIMIT 1"


@dataclass
class BuildSummary:
    """What one build wrote: ``as_of`` every as-of date the build covers, ``built`` the dates each
    family's table was (re)written for (an incremental build leaves the others as they were)."""

    as_of: list[date]
    rows: dict[str, int] = field(default_factory=dict)
    skipped_families: list[str] = field(default_factory=list)
    loan_mode: str = "end_date"
    seconds: float = 0.0
    built: dict[str, list[date]] = field(default_factory=dict)

    @property
    def built_dates(self) -> list[date]:
        """Every as-of date some family's table was written for."""
        return sorted({d for ds in self.built.values() for d in ds})

    def describe(self) -> str:
        n = max(self.rows.values()) if self.rows else 0
        skipped = f"; null families (table absent): {', '.join(self.skipped_families)}" if self.skipped_families else ""
        span = f"{len(self.as_of)} as-of dates ({self.as_of[0]} … {self.as_of[-1]})" if self.as_of else "no as-of date"
        if self.built and all(len(ds) == len(self.as_of) for ds in self.built.values()):
            return f"features: {span}, {n:,} (customer, as-of) rows per family, {self.seconds:.1f} s{skipped}"
        if not any(self.built.values()):
            return f"features: {span}, inputs unchanged since the last build: nothing rebuilt, {self.seconds:.1f} s"
        by_dates: dict[tuple[date, ...], list[str]] = {}
        for fam, ds in self.built.items():
            by_dates.setdefault(tuple(ds), []).append(fam)
        parts = [
            f"{', '.join(fams)} {len(ds)} ({ds[0]}{' … ' + str(ds[-1]) if len(ds) > 1 else ''})"
            if ds
            else f"{', '.join(fams)} none"
            for ds, fams in sorted(by_dates.items(), key=lambda kv: (len(kv[0]), kv[0]))
        ]
        rebuilt = "; ".join(parts)
        return f"features: {span}; rebuilt (new or changed inputs): {rebuilt}; {self.seconds:.1f} s{skipped}"


def member_banks(ws: Workspace, bank: str | None = None, largest_first: bool = False) -> list[str]:
    """The member banks a federation build covers: every bank present, or just ``bank``.

    ``largest_first`` orders them by ingested customers, largest first (ties by code): a job
    that works bank after bank in one process then peaks at the largest bank's own memory, as
    the smaller banks reuse the heap it freed (``docs/decisions/019-federation-memory.md``);
    otherwise by code.

    Raises:
        FeatureStoreError: ``ws`` holds no member bank, or ``bank`` is not one of them.
    """
    present = ws.banks()
    if not present:
        raise FeatureStoreError(
            f"{ws.home}: not a federation workspace (no member bank ingested under {ws.banks_dir})"
            + (f"; --bank {bank} is only for a federation" if bank is not None else "")
        )
    if bank is None:
        return sorted(present, key=lambda c: (-customer_count(ws.for_bank(c)), c)) if largest_first else present
    if bank not in present:
        raise FeatureStoreError(
            f"--bank {bank}: no such member bank in {ws.banks_dir} (banks present: {', '.join(present)}); "
            f"import it first with `nbp ingest EXPORT_DIR --bank {bank}`"
        )
    return [bank]


def customer_count(ws: Workspace) -> int:
    """Rows of the bank's ingested customers table (from the Parquet footer; 0 without one)."""
    import pyarrow.parquet as pq

    path = ws.table("customers")
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _check_bank(ws: Workspace) -> None:
    """A member bank's ingested store must be that bank's: ``_meta.json`` names its ``bank_code``.

    Raises:
        FeatureStoreError: the store names another bank (or none), e.g. a folder copied by hand.
    """
    if ws.bank is None:
        return
    named = ws.recorded_bank()
    if named != ws.bank:
        raise FeatureStoreError(
            f"{ws.ingest_meta}: bank_code {named!r} in the folder of bank {ws.bank}; "
            f"a member bank's store must be its own: re-import it with `nbp ingest EXPORT_DIR --bank {ws.bank}`"
        )


def available_tables(ws: Workspace) -> frozenset[str]:
    """Ingested tables present in the workspace.

    Raises:
        FeatureStoreError: a required table is missing.
    """
    have = frozenset(t for t in ALL_TABLES if ws.table(t).exists())
    missing = [t for t in REQUIRED_TABLES if t not in have]
    if missing:
        raise FeatureStoreError(
            f"{ws.ingested_dir}: ingested table(s) {', '.join(missing)} missing; run `nbp ingest EXPORT_DIR` first"
        )
    return have


def absent_sources(ws: Workspace, features: list[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Feature -> the tables it reads (its family's ``REQUIRES`` and its own ``needs``) that this
    workspace's import lacks (those features are null for every customer); features whose
    tables are all present are left out."""
    have = frozenset(t for t in ALL_TABLES if ws.table(t).exists())
    want = set(features) if features is not None else None
    out = {}
    for f in CATALOG:
        missing = tuple(t for t in (*MODULES[f.family].REQUIRES, *f.needs) if t not in have)
        if missing and (want is None or f.name in want):
            out[f.name] = missing
    return out


def _scratch(ws: Workspace) -> Path:
    return jobs.scratch(ws, "duckdb-build")


def connect(ws: Workspace, tables: frozenset[str]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per ingested table (spill files in the job's scratch folder)."""
    con = duckdb.connect(
        config={
            "memory_limit": DUCKDB_MEMORY_LIMIT,
            "temp_directory": str(_scratch(ws)),
            "preserve_insertion_order": False,
        }
    )
    con.execute("SET enable_progress_bar = false")
    for t in sorted(tables):
        con.execute(f"CREATE VIEW {ident(t)} AS SELECT * FROM read_parquet({lit(str(ws.table(t)))})")
    return con


def _close(ws: Workspace, con: duckdb.DuckDBPyConnection) -> None:
    """Close a :func:`connect` connection and remove its spill folder."""
    con.close()
    jobs.release(ws, "duckdb-build")


def _clock() -> tuple[float, float]:
    """Wall and CPU clocks now, for :func:`_log_since`."""
    return time.perf_counter(), time.process_time()


def _log_since(start: tuple[float, float], msg: str, *args: object) -> None:
    """Log ``msg % args`` with the wall and CPU seconds since ``start`` (a :func:`_clock`)."""
    log.info(msg + ", %.1f s (cpu %.1f s)", *args, time.perf_counter() - start[0], time.process_time() - start[1])


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _add_months(d: date, n: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return date(y, m + 1, 1)


def default_as_of(ws: Workspace) -> list[date]:
    """Every month start from the end of the first full month of data to the export date.

    The first as-of is the first month start that follows one whole month of
    transactions; the last is the latest month start on or before the day after the
    export date (T = export date + 1 day sees the whole export).

    Raises:
        FeatureStoreError: there are no transactions.
        DataContractError: ``_meta.json`` holds no valid export date.
    """
    tables = available_tables(ws)
    con = connect(ws, tables)
    try:
        lo, hi = con.execute("SELECT min(txn_time), max(txn_time) FROM transactions").fetchone()
    finally:
        _close(ws, con)
    if lo is None:
        raise FeatureStoreError("transactions: no rows; cannot choose as-of dates (pass --as-of)")
    first_full = (
        _month_start(lo.date())
        if (lo.day == 1 and lo.time() == datetime.min.time())
        else _add_months(_month_start(lo.date()), 1)
    )
    first = _add_months(first_full, 1)
    end = ws.export_date() or hi.date()
    last = _month_start(end + timedelta(days=1))
    out, d = [], first
    while d <= last:
        out.append(d)
        d = _add_months(d, 1)
    if not out:
        raise FeatureStoreError(f"transactions from {lo:%Y-%m-%d} to {end}: less than one full month of data")
    return out


def detect_loan_mode(engine: Engine) -> str:
    """``end_date`` when the bank fills ``loans.end_date`` (any granted loan has one), else ``term``."""
    n = engine.rows("SELECT count(*) FROM loans WHERE grant_date IS NOT NULL AND end_date IS NOT NULL")[0][0]
    return "end_date" if n else "term"


def grid(as_of: Sequence[date]) -> tuple[date, date]:
    """The first and last month of the monthly sources: ``LOOKBACK_MONTHS`` before the first
    as-of's month, up to the last as-of's month (whose records no window reads)."""
    return _add_months(_month_start(min(as_of)), -LOOKBACK_MONTHS), _month_start(max(as_of))


# The monthly sources: name -> (the ingested table it reads, its SQL over the grid, a month without a row).
SOURCES = {
    "txn": ("transactions", txn_month_sql, 0.0),
    "bal": ("balances", bal_month_sql, float("nan")),
}


def source_sql(source: str, as_of: Sequence[date]) -> str:
    """The DuckDB SQL of one monthly source over the grid of ``as_of`` (:func:`grid`)."""
    first, last = grid(as_of)
    return SOURCES[source][1](timestamp(str(first)), timestamp(str(last)))


def route(family: str, windows: list[Window], tables: frozenset[str]) -> dict[str, list[Window]]:
    """Windows grouped by the monthly source that has their column.

    Raises:
        FeatureStoreError: a window names a column no source has, or its source's table was not ingested.
    """
    from features.families.monthly import BAL_MEASURES, MEASURES

    cols = {"txn": set(MEASURES), "bal": set(BAL_MEASURES)}
    out: dict[str, list[Window]] = {}
    for w in windows:
        src = [s for s, c in cols.items() if w.col in c]
        if not src:
            raise FeatureStoreError(
                f"features/families/{family}.py: window {w.name} reads {w.col!r}, "
                f"which is not a monthly column (features/families/monthly.py)"
            )
        out.setdefault(src[0], []).append(w)
    for src in out:
        if SOURCES[src][0] not in tables:
            raise FeatureStoreError(f"monthly source {src}: table {SOURCES[src][0]} was not ingested")
    return out


class Engine(Protocol):
    """Where a build's SQL runs: DuckDB (:class:`DuckDBEngine`) or Spark
    (:class:`features.spark_build.SparkEngine`). Every statement is DuckDB SQL; the family
    SQL, the relations of :func:`_setup` and the rows written are the same for both."""

    def rows(self, sql: str) -> list[tuple]:
        """The (few) rows of a query."""

    def create(self, name: str, select: str) -> None:
        """Create the relation ``name`` of the build from a query."""

    def columns(self, select: str) -> list[str]:
        """The column names of a query."""

    def register_windows(self, routed: dict[str, list[Window]]) -> None:
        """Compute the windows (by source) and provide them as the relation ``win`` (spine rows)."""

    def drop_windows(self) -> None:
        """Drop ``win`` and free what computing it held."""

    def materialize(self, family: str, query: str) -> str:
        """A query the build's DuckDB writer runs to read ``query``'s rows."""

    def close(self) -> None:
        """Release everything the engine holds for this build."""


class DuckDBEngine:
    """Every statement on the build's own DuckDB connection, windows from :class:`MonthlySources`."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, as_of: Sequence[date], cache: MonthlyCache | None = None
    ) -> None:
        self.con = con
        self.sources = MonthlySources(con, as_of, cache)

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def create(self, name: str, select: str) -> None:
        self.con.execute(f"CREATE TEMP TABLE {ident(name)} AS {select}")

    def columns(self, select: str) -> list[str]:
        return [d[0] for d in self.con.execute(f"SELECT * FROM ({select}) LIMIT 0").description]

    def register_windows(self, routed: dict[str, list[Window]]) -> None:
        series = {src: self.sources.get(src) for src in routed}
        self.con.register("win", window_table(self.sources.spine(), series, routed))

    def drop_windows(self) -> None:
        self.con.unregister("win")
        self.sources.release()

    def materialize(self, family: str, query: str) -> str:
        return query

    def close(self) -> None:
        pass


class MonthlySources:
    """The monthly sources (:data:`SOURCES`) of one build, read on first use: from the
    :class:`MonthlyCache` when there is one, else by one DuckDB query over the grid."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, as_of: Sequence[date], cache: MonthlyCache | None = None
    ) -> None:
        self._con, self._as_of = con, list(as_of)
        first, _ = grid(as_of)
        self._first_mi = first.year * 12 + first.month
        self._spine: Spine | None = None
        self._loaded: dict[str, MonthlySeries] = {}
        self._cache = cache

    def get(self, source: str) -> MonthlySeries:
        if source not in self._loaded:
            start = _clock()
            fill = SOURCES[source][2]
            if self._cache is not None:
                tbl = self._cache.table(self._con, source, self._as_of)
            else:
                tbl = self._con.sql(source_sql(source, self._as_of)).to_arrow_table()
            self._loaded[source] = MonthlySeries(tbl, self.spine(), fill)
            _log_since(start, "%s: customer × month aggregate, %s customers", source, f"{len(self._loaded[source]):,}")
        return self._loaded[source]

    def spine(self) -> Spine:
        """The spine's customers and as-ofs as numpy (rows of the window relation)."""
        if self._spine is None:
            self._spine = Spine.from_sql(
                self._con, "SELECT customer_id, open_date FROM customers", self._as_of, self._first_mi
            )
        return self._spine

    def release(self) -> None:
        for s in self._loaded.values():
            s.drop_dense()


class MonthlyCache:
    """The monthly sources' rows kept per calendar month between builds, so that a build after one
    new month aggregates that month's transactions only.

    ``data/features/_monthly/<source>/<YYYY-MM>.parquet`` holds one month's rows of the source's
    query; ``_index.json`` the key each was computed under: the source's SQL and DuckDB's version,
    and the content fingerprints (:mod:`features.fingerprint`) of the rows the month reads (its
    month of ``transactions``; its month of ``balances`` and the ``accounts`` opened by its end). A month
    whose key differs, or ``refresh``, is aggregated again.
    """

    def __init__(self, ws: Workspace, fps: fingerprint.Fingerprints, refresh: bool = False) -> None:
        self.root = ws.features_dir / "_monthly"
        self.fps, self.refresh = fps, refresh

    def _key(self, source: str, month: str) -> str:
        if SOURCES[source][0] == "transactions":
            inputs = [f"transactions@{month}={self.fps.get('transactions', {}).get(month)}"]
        else:  # a month's balances, and the accounts (owner, type) opened by then
            known = {b: fp for b, fp in self.fps.get("accounts", {}).items() if b <= month or b == fingerprint.TIMELESS}
            inputs = [f"balances@{month}={self.fps.get('balances', {}).get(month)}", json.dumps(known, sort_keys=True)]
        sql = SOURCES[source][1]("TIMESTAMP '2000-01-01'", "TIMESTAMP '2000-01-01'")
        return fingerprint.code_hash(sql, duckdb.__version__, *inputs)

    def table(
        self, con: duckdb.DuckDBPyConnection, source: str, as_of: Sequence[date], columns: Sequence[str] | None = None
    ) -> pa.Table:
        """The source's rows of the grid of ``as_of`` (:func:`grid`), aggregating only the months
        whose cached rows are missing or stale (one query from the first to the last of them);
        ``columns``: only these measures (besides ``customer_id`` and ``mi``)."""
        keep = None if columns is None else [JOIN_KEY, "mi", *columns]
        first, last = grid(as_of)
        months = [_add_months(first, i) for i in range(month_index_of(last) - month_index_of(first))]
        folder = self.root / source
        index_path = folder / "_index.json"
        index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.exists() else {}
        keys = {m: self._key(source, f"{m:%Y-%m}") for m in months}
        stale = [
            m
            for m in months
            if self.refresh or index.get(f"{m:%Y-%m}") != keys[m] or not (folder / f"{m:%Y-%m}.parquet").exists()
        ]
        tables = []
        if stale:
            lo, hi = min(stale), _add_months(max(stale), 1)
            fresh = con.sql(SOURCES[source][1](timestamp(str(lo)), timestamp(str(hi)))).to_arrow_table()
            folder.mkdir(parents=True, exist_ok=True)
            mi = fresh.column("mi").to_numpy(zero_copy_only=False)
            for m in months:
                if lo <= m < hi:
                    with jobs.atomic_write(folder / f"{m:%Y-%m}.parquet") as tmp:
                        pq.write_table(fresh.filter(pa.array(mi == month_index_of(m))), tmp)
                    index[f"{m:%Y-%m}"] = keys[m]
            with jobs.atomic_write(index_path) as tmp:
                tmp.write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
            tables.append(fresh if keep is None else fresh.select(keep))
            del fresh
        for m in months:
            if not (stale and lo <= m < hi):
                tables.append(pq.read_table(folder / f"{m:%Y-%m}.parquet", columns=keep))
        log.info("%s: %d of %d months aggregated, the others from the cache", source, len(stale), len(months))
        return pa.concat_tables(tables, promote_options="default")


def _values(ts: Sequence[date]) -> str:
    """``(VALUES (TIMESTAMP ...), ...) v(t)``: one timestamp per row, column ``t``."""
    return "(VALUES " + ", ".join(f"({timestamp(d.isoformat())})" for d in ts) + ") v(t)"


def _setup(engine: Engine, as_of: Sequence[date], loan_mode: str) -> None:
    """The shared relations every family may read (:mod:`features.schema`)."""
    engine.create(
        "asofs",
        f"""SELECT t AS {AS_OF}, CAST(date_trunc('month', t) AS TIMESTAMP) AS m,
               {month_index("t")} AS mi FROM {_values(as_of)}""",
    )
    first, last = grid(as_of)
    months = [_add_months(first, i) for i in range(month_index_of(last) - month_index_of(first) + 1)]
    engine.create("months", f"SELECT CAST(t AS TIMESTAMP) AS m FROM {_values(months)}")
    engine.create(
        "spine",
        f"SELECT c.customer_id, a.{AS_OF}, a.m FROM customers c JOIN asofs a ON c.open_date < a.{AS_OF}",
    )
    engine.create("loan_mode", f"SELECT {lit(loan_mode)} AS mode")


def month_index_of(d: date) -> int:
    """``year * 12 + month`` of a date (consecutive months differ by 1)."""
    return d.year * 12 + d.month


def key_columns(bank: str | None) -> list[str]:
    """The leading columns of a feature table: ``bank_code`` (a member bank's only), customer, as-of."""
    return ([BANK_COLUMN] if bank is not None else []) + [JOIN_KEY, EVENT_TS]


def _final_select(
    feats: list[Feature], inner: str | None, tables: frozenset[str], spine_rows: bool = False, bank: str | None = None
) -> str:
    """The family's rows in their final types, one per spine row.

    A feature is null when ``inner`` is None (a table the family requires is absent) or
    one of its own optional tables is (:attr:`Feature.needs`: ``inner`` leaves it out).
    ``spine_rows``: ``inner`` already has exactly one row per spine row (the family
    says so with ``SPINE_ROWS = True``; the build checks the row count), so it is
    read directly instead of being joined to the spine. ``bank``: a member bank's code,
    written as the constant first column ``bank_code``.
    """
    head = f"CAST({lit(bank)} AS VARCHAR) AS {ident(BANK_COLUMN)}, " if bank is not None else ""
    cols = []
    for f in feats:
        if inner is None or not f.computed(tables):
            cols.append(f"CAST(NULL AS {f.sql_type}) AS {f.name}")
        elif f.zero_if_none:
            cols.append(f"CAST(coalesce(f.{f.name}, 0) AS {f.sql_type}) AS {f.name}")
        else:
            cols.append(f"CAST(f.{f.name} AS {f.sql_type}) AS {f.name}")
    if inner is not None and spine_rows:
        return (
            f"SELECT {head}f.{JOIN_KEY}, f.{AS_OF} AS {EVENT_TS},\n    " + ",\n    ".join(cols) + f"\nFROM ({inner}) f"
        )
    join = (
        f"LEFT JOIN ({inner}) f ON f.{JOIN_KEY} = s.{JOIN_KEY} AND f.{AS_OF} = s.{AS_OF}" if inner is not None else ""
    )
    return (
        f"SELECT {head}s.{JOIN_KEY}, s.{AS_OF} AS {EVENT_TS},\n    " + ",\n    ".join(cols) + f"\nFROM spine s {join}"
    )


def _check_columns(engine: Engine, family: str, inner: str, feats: list[Feature], tables: frozenset[str]) -> None:
    got = engine.columns(inner)
    want = [JOIN_KEY, AS_OF] + [f.name for f in feats if f.computed(tables)]
    if sorted(got) != sorted(want):
        raise FeatureStoreError(
            f"features/families/{family}.py: SQL columns differ from its FEATURES "
            f"(extra {sorted(set(got) - set(want))}, missing {sorted(set(want) - set(got))})"
        )


def _register_windows(engine: Engine, family: str, inner: str, tables: frozenset[str]) -> bool:
    """Compute the windows ``inner`` names and register them as the relation ``win`` (spine rows)."""
    routed = route(family, referenced(inner), tables)
    if not routed:
        return False
    start = _clock()
    engine.register_windows(routed)
    _log_since(start, "family %s: %d windows", family, sum(map(len, routed.values())))
    return True


@dataclass
class _Run:
    """One bank's build: its DuckDB writer ``con``, the engine its SQL runs on, its inputs."""

    con: duckdb.DuckDBPyConnection
    engine: Engine
    ws: Workspace
    tables: frozenset[str]
    as_of: Sequence[date]

    @cached_property
    def spine_count(self) -> int:
        return self.engine.rows("SELECT count(*) FROM spine")[0][0]


def _write_family(run: _Run, family: str) -> int:
    mod = modules(True)[family]
    feats = family_features(family)
    inner = mod.sql(run.tables) if set(mod.REQUIRES) <= run.tables else None
    registered = _register_windows(run.engine, family, inner, run.tables) if inner is not None else False
    try:
        return _write_query(run, family, inner, feats, getattr(mod, "SPINE_ROWS", False))
    finally:
        if registered:
            run.engine.drop_windows()


def _write_query(run: _Run, family: str, inner: str | None, feats: list[Feature], spine_rows: bool) -> int:
    """Write the engine's rows of the as-ofs built into the family's table with ``run.con``
    (``features/tables.py``: the other as-ofs' files are kept)."""
    con, ws, tables = run.con, run.ws, run.tables
    if inner is not None:
        _check_columns(run.engine, family, inner, feats, tables)
    query = run.engine.materialize(family, _final_select(feats, inner, tables, spine_rows, ws.bank))
    columns = key_columns(ws.bank) + [f.name for f in feats]

    def one_per_spine_row(n: int) -> None:
        if n != run.spine_count:
            raise FeatureStoreError(
                f"features/families/{family}.py: {n:,} rows for {run.spine_count:,} (customer, as-of) "
                f"rows of the spine; SPINE_ROWS = True needs exactly one row per spine row"
            )

    n, dropped = feature_tables.replace_dates(
        con, ws.feature_table(family), query, run.as_of, columns, PARQUET_OPTIONS, ws.bank, one_per_spine_row
    )
    if dropped:
        ws.features_build_meta.unlink(missing_ok=True)
    return n


def build(
    ws: Workspace,
    as_of: Sequence[date] | None = None,
    *,
    loan_mode: str | None = None,
    families: Sequence[str] | None = None,
    cfg: Config | None = None,
    full: bool = False,
) -> BuildSummary:
    """Build the feature tables of ``as_of`` (default: :func:`default_as_of`, incrementally).

    Without ``as_of`` (and without ``full``) the build is incremental: each family's table is
    rewritten only for the as-of dates that are new or whose inputs changed since the last build,
    by the content fingerprints of :mod:`features.fingerprint`; the result is the same as a full
    rebuild. Given ``as_of``, exactly those dates are rebuilt.

    Args:
        ws: the workspace (reads its ingested tables, writes its features_dir); a member
            bank's (``Workspace.for_bank``) writes tables whose first column is ``bank_code``.
        as_of: as-of dates T; features at T use records dated strictly before T.
        loan_mode: ``end_date`` or ``term`` (how a loan's end is known, see
            :func:`detect_loan_mode`); None detects it from the loans table.
        families: build only these families (default all).
        cfg: the engine (``compute.engine``) and the Spark session's settings; None builds on DuckDB.
        full: rebuild every as-of date of every family.

    Returns:
        A :class:`BuildSummary`.

    Raises:
        FeatureStoreError: a required ingested table is missing, a family's SQL
            does not match its catalogue entries, or a member bank's store names another bank.
    """
    t0 = time.perf_counter()
    tables = available_tables(ws)
    _check_bank(ws)
    want = sorted(set(as_of)) if as_of else default_as_of(ws)
    ws.features_dir.mkdir(parents=True, exist_ok=True)
    cfg_ = cfg or load_config()
    built = modules(ws.bank is not None)  # a member bank also gets the bank family
    names = list(families or built)
    con = connect(ws, tables)
    try:
        mode = loan_mode or detect_loan_mode(DuckDBEngine(con, want))
        if mode not in LOAN_MODES:
            raise FeatureStoreError(f"loan_mode {mode!r}: must be one of {LOAN_MODES}")
        start = _clock()
        fps = fingerprint.compute(con, tables)
        _log_since(start, "fingerprints of %d ingested tables", len(tables))
    finally:
        _close(ws, con)
    legacy = feature_tables.drop_legacy(ws.features_dir)
    if legacy:
        ws.features_build_meta.unlink(missing_ok=True)
    records = {} if legacy else fingerprint.load(ws)
    for fam in [*names, tiers.FAMILY]:
        if not ws.feature_files(fam):  # a table removed by hand: its recorded dates are gone
            records.pop(fam, None)
    pending = dict(records)  # what the tables hold while this build runs (:func:`_forget`)
    plans: dict[str, list[date]] = {}
    for fam in names:
        code, deps = _family_inputs(fam, built[fam], tables, fps, mode, ws.bank)
        plans[fam] = _plan(records, fam, code, {k: fps[k] for k in deps}, want, bool(as_of) or full)
    _forget(ws, pending, plans)
    summary = BuildSummary(as_of=want, loan_mode=mode)
    cache = MonthlyCache(ws, fps, refresh=full)
    summary.skipped_families = [f for f in names if not set(built[f].REQUIRES) <= tables]
    groups: dict[tuple[date, ...], list[str]] = {}
    for fam in names:
        groups.setdefault(tuple(plans[fam]), []).append(fam)
    for dates, fams in groups.items():
        summary.built.update(dict.fromkeys(fams, list(dates)))
        if dates:
            _build_group(ws, cfg, tables, list(dates), mode, fams, summary, cache)
    if families is None or tiers.FAMILY in families:
        code, deps = _tier_inputs(cfg_, tables, fps, mode, ws.bank)
        dates = _plan(records, tiers.FAMILY, code, {k: fps[k] for k in deps}, want, bool(as_of) or full)
        dates = sorted(set(dates) | {d for f in tiers.REQUIRES for d in summary.built.get(f, ())})
        records[tiers.FAMILY].dates = sorted(set(records[tiers.FAMILY].dates) | set(dates))
        summary.built[tiers.FAMILY] = dates
        if dates:
            _forget(ws, pending, {tiers.FAMILY: dates})
            start = _clock()
            summary.rows[tiers.FAMILY] = _write_tiers(ws, cfg, tables, dates, mode, cache)
            _log_since(start, "tiers: %s rows", f"{summary.rows[tiers.FAMILY]:,}")
    _merge_tables(ws, tables, [*names, tiers.FAMILY], cfg_.features.max_table_files, pending)
    fingerprint.save(ws, records)
    summary.seconds = time.perf_counter() - t0
    _write_build_file(ws, summary)
    log.info(summary.describe())
    return summary


def _merge_tables(
    ws: Workspace,
    tables: frozenset[str],
    families: Sequence[str],
    limit: int,
    pending: dict[str, fingerprint.FamilyRecord],
) -> None:
    """Merge each table holding more than ``limit`` files into one (``features/tables.py: merge``),
    the record first told that its dates may go missing (:func:`_forget`)."""
    over = [fam for fam in families if len(ws.feature_files(fam)) > limit]
    if not over:
        return
    con = connect(ws, tables)
    try:
        for fam in over:
            start = _clock()
            n = feature_tables.merge(
                con, ws.feature_table(fam), PARQUET_OPTIONS, lambda dates, fam=fam: _forget(ws, pending, {fam: dates})
            )
            _log_since(start, "family %s: %d files merged into one (features.max_table_files %d)", fam, n, limit)
    finally:
        _close(ws, con)


def _forget(ws: Workspace, pending: dict[str, fingerprint.FamilyRecord], plans: dict[str, list[date]]) -> None:
    """Record, before any table changes, that the dates about to be rebuilt are not held.

    A table loses a rebuilt date for a moment (``features/tables.py``); were the build killed
    then, the previous record would still list it and the next incremental build would not
    write it again. ``pending`` is updated in place and saved.
    """
    changed = False
    for fam, dates in plans.items():
        rec = pending.get(fam)
        if rec is not None and dates and set(rec.dates) & set(dates):
            pending[fam] = fingerprint.FamilyRecord(rec.code, rec.inputs, sorted(set(rec.dates) - set(dates)))
            changed = True
    if changed:
        fingerprint.save(ws, pending)


def _plan(
    records: dict[str, fingerprint.FamilyRecord],
    fam: str,
    code: str,
    inputs: fingerprint.Fingerprints,
    want: list[date],
    every: bool,
) -> list[date]:
    """The dates of ``want`` to build for ``fam`` (all of them when ``every``), and its record
    updated in ``records`` to what its table will hold once they are built."""
    todo, kept = fingerprint.plan(records.get(fam), code, inputs, want)
    if every:
        todo, kept = list(want), kept - set(want)
    records[fam] = fingerprint.FamilyRecord(code, inputs, sorted(kept | set(todo)))
    return todo


_HERE = Path(__file__).parent
_COMMON_CODE = (
    _HERE / "build.py",
    _HERE / "windows.py",
    _HERE / "schema.py",
    _HERE / "families" / "_sql.py",
    _HERE / "families" / "monthly.py",
)


def _family_inputs(
    fam: str, mod: object, tables: frozenset[str], fps: fingerprint.Fingerprints, mode: str, bank: str | None
) -> tuple[str, list[str]]:
    """A family's code hash (its SQL, catalogue entries, the build's code, loan mode, bank) and the
    input parts it reads (the tables its SQL and its windows' monthly sources name)."""
    inner = mod.sql(tables) if set(mod.REQUIRES) <= tables else None
    texts = [inner or ""]
    if inner is not None:
        for src in route(fam, referenced(inner), tables):
            texts.append(SOURCES[src][1]("TIMESTAMP '2000-01-01'", "TIMESTAMP '2000-01-01'"))
    code = fingerprint.code_hash(
        *texts,
        repr(family_features(fam)),
        fingerprint.source_text(Path(mod.__file__), *_COMMON_CODE),
        mode,
        bank or "",
        ",".join(sorted(tables)),
    )
    return code, fingerprint.dependencies(texts, fps)


def _tier_inputs(
    cfg: Config, tables: frozenset[str], fps: fingerprint.Fingerprints, mode: str, bank: str | None
) -> tuple[str, list[str]]:
    """As :func:`_family_inputs` for the tier table: its module's SQL and ``configs/tiers.yaml``."""
    text = fingerprint.source_text(Path(tiers.__file__))
    code = fingerprint.code_hash(
        text,
        cfg.tiers.model_dump_json(),
        fingerprint.source_text(*_COMMON_CODE),
        mode,
        bank or "",
        ",".join(sorted(tables)),
    )
    return code, fingerprint.dependencies([text], fps)


def _build_group(
    ws: Workspace,
    cfg: Config | None,
    tables: frozenset[str],
    dates: list[date],
    mode: str,
    fams: list[str],
    summary: BuildSummary,
    cache: MonthlyCache | None = None,
) -> None:
    """Write the tables of ``fams`` for the as-of dates ``dates`` (one engine and spine for them;
    on DuckDB the monthly sources come through ``cache``)."""
    spark = cfg is not None and cfg.compute.engine == "spark"
    con = connect(ws, frozenset() if spark else tables)  # on Spark: only the writer of the final files
    engine: Engine | None = None
    try:
        if spark:
            from features.spark_build import SparkEngine

            engine = SparkEngine(cfg, ws, tables, dates)
        else:
            engine = DuckDBEngine(con, dates, cache)
        _setup(engine, dates, mode)
        run = _Run(con, engine, ws, tables, dates)
        for fam in fams:
            start = _clock()
            summary.rows[fam] = _write_family(run, fam)
            _log_since(start, "family %s: %s rows (%d as-of dates)", fam, f"{summary.rows[fam]:,}", len(dates))
    finally:
        if engine is not None:
            engine.close()
        _close(ws, con)


def _write_tiers(
    ws: Workspace, cfg: Config | None, tables: frozenset[str], dates: list[date], mode: str, cache: MonthlyCache
) -> int:
    """The tier table (``features/tiers.py``), on DuckDB over the family tables just written and
    the monthly sources (from ``cache``)."""
    con = connect(ws, tables)
    try:
        cfg = cfg or load_config()
        monthly = partial(cache.table, con)
        return tiers.build(con, ws, cfg, tables, dates, mode, key_columns(ws.bank), PARQUET_OPTIONS, monthly)
    finally:
        _close(ws, con)


def build_banks(
    ws: Workspace, banks: Sequence[str], as_of: Sequence[date] | None = None, cfg: Config | None = None
) -> Iterator[tuple[str, BuildSummary]]:
    """Build member banks' feature tables one bank after the other, each into its own folder.

    One bank's build is done (its DuckDB connection closed, its arrays or Spark caches
    released) before the next starts, so memory is bounded by the largest bank, not the sum.
    On Spark every bank runs in the one session of the process (``nbp.spark.session``).

    Args:
        ws: the federation workspace (``ws.bank`` is None).
        banks: member bank codes (:func:`member_banks`).
        as_of: as-of dates for every bank (default: each bank's own :func:`default_as_of`).
        cfg: as for :func:`build`.

    Yields:
        ``(bank_code, summary)`` as each bank finishes.
    """
    for code in banks:
        log.info("bank %s: building features", code)
        yield code, build(ws.for_bank(code), as_of, cfg=cfg)


def _write_build_file(ws: Workspace, summary: BuildSummary) -> None:
    path = ws.features_build_meta
    prev = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    all_dates = sorted(set(prev.get("as_of", [])) | {d.isoformat() for d in summary.built_dates})
    path.write_text(
        json.dumps(
            {
                "as_of": all_dates,
                "last_build": [d.isoformat() for d in summary.built_dates],
                "loan_mode": summary.loan_mode,
                "rows": summary.rows,
                "null_families": summary.skipped_families,
                **({BANK_COLUMN: ws.bank} if ws.bank is not None else {}),
            },
            indent=2,
        ),
        encoding="utf-8",
    )


def built_as_of(ws: Workspace) -> list[date]:
    """Every as-of date present in the feature tables (from ``_build.json``).

    Raises:
        FeatureStoreError: no feature tables were built.
    """
    path = ws.features_build_meta
    if not path.exists():
        raise FeatureStoreError(f"{ws.features_dir}: no feature tables; run `nbp features` first")
    return [date.fromisoformat(d) for d in json.loads(path.read_text(encoding="utf-8"))["as_of"]]
