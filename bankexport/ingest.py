"""Validated ingest of a bank export (``nbp ingest DIR``).

Reads one export folder (spec: ``../shared/spec/bank-export.md``, as code in
:mod:`bankexport.spec`), checks every row and cell against the spec's "Bad input"
rules, and stores the typed tables under ``ws.ingested_dir`` (Parquet, dtypes as
in :mod:`bankexport.spec`) plus ``_meta.json`` with the export date. Rows set aside
and cells reported go to ``ws.ingest_dir/rejects|cells/<table>.csv`` and are counted
in ``ws.ingest_dir/report.json``. Rules are documented in ``docs/ingest-rules.md``.

All validation is vectorised SQL in DuckDB (every cell read as VARCHAR, then
``TRY_CAST`` + regular expressions, aggregates for duplicate keys, anti-joins for
references, in dependency order so that a row pointing at a set-aside row is set
aside too). The new store and report are built in temporary sibling folders and
renamed into place at the end, so a failed run leaves the previous ones intact.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bankexport import ingest_sql as q
from bankexport.ingest_lines import Located, read_spans, record_lines, transcode_to_utf8
from bankexport.spec import ALL_TABLES, REQUIRED_TABLES, TABLES, Table
from nbp.config import IngestConfig
from nbp.errors import DataContractError
from nbp.sheets import write_csv_batches
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}
# Columns whose date says when something happened (spec "Point in time"): the
# latest of them is the export date when manifest.json does not give one.
EVENT_COLUMNS = ("txn_time", "open_date", "application_date", "grant_date", "end_date", "close_date",
                 "published_date", "contact_date", "start_date")
REPORT_PREFIX = ["source_file", "source_line", "rule", "column", "value"]
# Distinct values of a column in one Parquet row group (122,880 rows) beyond which DuckDB gives up
# its dictionary (and bloom filter) for that column chunk. Below DuckDB's default, so that ids that
# are nearly unique per row group (transactions, accounts, customers) are written plain without a
# long attempt at a dictionary first (-0.6 CPU-s per 5M transactions); codes, branches, enums keep one.
DICTIONARY_SIZE_LIMIT = 2048
# (pandas_type, numpy_type) of the pandas metadata written into each Parquet file, so that
# pandas.read_parquet gives the spec dtypes (string, datetime64[us], float64, Int64) without
# importing pandas here (as pyarrow.Schema.from_pandas would write them).
_PANDAS_TYPES = {"string": ("unicode", "string"), "enum": ("unicode", "string"),
                 "date": ("datetime", "datetime64[us]"), "timestamp": ("datetime", "datetime64[us]"),
                 "month": ("datetime", "datetime64[us]"), "money": ("float64", "float64"),
                 "int": ("int64", "Int64")}


@dataclass
class TableReport:
    """Counts of one table: rows read and kept, rows set aside and cells reported per rule."""

    rows_read: int = 0
    rows_kept: int = 0
    set_aside: dict[str, int] = field(default_factory=dict)
    cells_reported: dict[str, int] = field(default_factory=dict)
    file: str | None = None  # None: table absent from the export
    unknown_columns: list[str] = field(default_factory=list)
    absent_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class IngestReport:
    """What one ingest did; ``report.json`` is :meth:`to_json`."""

    source: str
    export_date: str
    export_date_from: str  # "manifest" | "data"
    run_id: str
    tables: dict[str, TableReport]
    finished_at: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report; key ``tables`` is shaped
        ``{TABLE: {"rows_read", "rows_kept", "set_aside": {RULE: n}, "cells_reported": {RULE: n}}}``."""
        return {
            "tables": {
                name: {"rows_read": t.rows_read, "rows_kept": t.rows_kept,
                       "set_aside": dict(t.set_aside), "cells_reported": dict(t.cells_reported)}
                for name, t in self.tables.items()
            },
            "files": {
                name: {"file": t.file, "present": t.file is not None, "unknown_columns": t.unknown_columns,
                       "absent_columns": t.absent_columns, "seconds": round(t.seconds, 3)}
                for name, t in self.tables.items()
            },
            "source": self.source,
            "export_date": self.export_date,
            "export_date_from": self.export_date_from,
            "run_id": self.run_id,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
        }

    def summary_table(self) -> str:
        """A table for the terminal: one line per table, then notes on columns."""
        head = ("table", "read", "kept", "set aside", "cells reported", "top rules")
        rows = []
        for name, t in self.tables.items():
            if t.file is None:
                rows.append((name, "-", "-", "-", "-", "absent (optional)"))
                continue
            rules = sorted({**{f"{k}": v for k, v in t.set_aside.items()},
                            **{f"{k} (cells)": v for k, v in t.cells_reported.items()}}.items(),
                           key=lambda kv: -kv[1])
            top = ", ".join(f"{k} {v:,}" for k, v in rules[:3])
            rows.append((name, f"{t.rows_read:,}", f"{t.rows_kept:,}", f"{sum(t.set_aside.values()):,}",
                         f"{sum(t.cells_reported.values()):,}", top))
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        right = {1, 2, 3, 4}

        def fmt(r: tuple) -> str:
            return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip()

        lines = [fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in rows)]
        for name, t in self.tables.items():
            if t.unknown_columns:
                lines.append(f"note: {t.file}: unknown columns not stored: {', '.join(t.unknown_columns)}")
            if t.absent_columns:
                lines.append(f"note: {t.file}: optional columns absent (stored as unknown): "
                             f"{', '.join(t.absent_columns)}")
        lines.append(f"export date {self.export_date} (from {self.export_date_from}); "
                     f"details in report.json, rejects/ and cells/")
        return "\n".join(lines)


# ---------------------------------------------------------------- input files


@dataclass(frozen=True)
class _Source:
    table: Table
    path: Path
    kind: str  # "csv" | "parquet"
    header: tuple[str, ...]  # column names as in the file
    present: dict[str, int]  # spec column -> position in header
    native: dict[str, str] = field(default_factory=dict)  # Parquet: spec column -> DuckDB type read as is


def _read_manifest(src: Path) -> dict[str, Any]:
    f = src / "manifest.json"
    if not f.exists():
        return {}
    try:
        m = json.loads(f.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataContractError(f"manifest.json: cannot read: {e} (rule {q.BAD_MANIFEST})") from e
    if not isinstance(m, dict):
        raise DataContractError(f"manifest.json: must be a JSON object (rule {q.BAD_MANIFEST})")
    enc = str(m.get("encoding") or "utf-8").lower()
    if enc not in ENCODINGS:
        raise DataContractError(f"manifest.json: encoding '{enc}' not supported, use utf-8 or gbk "
                                f"(rule {q.BAD_MANIFEST})")
    if m.get("export_date") is not None:
        try:
            date.fromisoformat(str(m["export_date"]))
            if len(str(m["export_date"])) != 10:
                raise ValueError
        except ValueError:
            raise DataContractError(f"manifest.json: export_date '{m['export_date']}' is not YYYY-MM-DD "
                                    f"(rule {q.BAD_MANIFEST})") from None
    return m


def _header_of_csv(path: Path, encoding: str) -> list[str]:
    with path.open("rb") as f:
        raw = f.readline()
    text = raw.decode(encoding, errors="replace").lstrip("\ufeff")
    return next(csv.reader(io.StringIO(text)), [])


def _header_of_parquet(path: Path) -> tuple[list[str], list[str]]:
    """Column names and DuckDB types of a Parquet file."""
    try:
        rows = duckdb.connect().execute(f"DESCRIBE SELECT * FROM read_parquet({q.lit(str(path))})").fetchall()
    except duckdb.Error as e:
        raise DataContractError(f"{path.name}: cannot read Parquet file: {e} (rule {q.UNREADABLE_FILE})") from e
    return [r[0] for r in rows], [r[1] for r in rows]


def _locate(src: Path, encoding: str) -> dict[str, _Source | None]:
    """Find each table's file and check its header. Raises DataContractError on a stop rule."""
    found: dict[str, _Source | None] = {}
    for name in ALL_TABLES:
        t = TABLES[name]
        cands = [p for p in (src / f"{name}.csv", src / f"{name}.parquet") if p.exists()]
        if not cands:
            if name in REQUIRED_TABLES:
                raise DataContractError(f"{name}.csv: required table '{name}' missing in {src} "
                                        f"(neither {name}.csv nor {name}.parquet; rule {q.MISSING_TABLE})")
            found[name] = None
            continue
        if len(cands) > 1:
            raise DataContractError(f"{name}: both {name}.csv and {name}.parquet in {src}; keep one "
                                    f"(rule {q.AMBIGUOUS_TABLE})")
        path = cands[0]
        kind = path.suffix[1:]
        if kind == "csv":
            header, types = _header_of_csv(path, encoding), []
        else:
            header, types = _header_of_parquet(path)
        norm = [h.strip().lower() for h in header]
        present: dict[str, int] = {}
        for i, h in enumerate(norm):
            if h in t.column_names:
                if h in present:
                    raise DataContractError(f"{path.name}: column '{h}' appears twice in the header "
                                            f"(rule {q.DUPLICATE_COLUMN})")
                present[h] = i
        for c in t.required_columns:
            if c not in present:
                raise DataContractError(f"{path.name}: required column '{c}' missing "
                                        f"(rule {q.MISSING_COLUMN})")
        native = {c: types[i] for c, i in present.items() if types and q.native_ok(t.column(c), types[i])}
        found[name] = _Source(t, path, kind, tuple(header), present, native)
    return found


# ---------------------------------------------------------------- DuckDB work


def _source_sql(con: duckdb.DuckDBPyConnection, s: _Source, encoding: str, work: Path) -> tuple[str, Path | None]:
    """Table expression reading the file as columns ``r<i>`` (Parquet: also ``_line``).

    Every ``r<i>`` is VARCHAR, except Parquet columns listed in ``s.native``, read typed.

    CSV records DuckDB cannot split into the header's columns go to table ``rej``.
    Returns the expression and the UTF-8 CSV file DuckDB reads (None for Parquet).
    """
    con.execute("DROP TABLE IF EXISTS rej; DROP TABLE IF EXISTS rej_scan")
    if s.kind == "parquet":
        typed = {s.present[c] for c in s.native}
        cols = ", ".join(f"{q.ident(h)} AS r{i}" if i in typed else f"CAST({q.ident(h)} AS VARCHAR) AS r{i}"
                         for i, h in enumerate(s.header))
        con.execute("CREATE TABLE rej (line_byte_position UBIGINT, csv_line VARCHAR)")
        return (f"(SELECT {cols}, file_row_number + 1 AS _line "
                f"FROM read_parquet({q.lit(str(s.path))}, file_row_number = true))"), None
    path = s.path
    if encoding != "utf-8":
        path = transcode_to_utf8(s.path, work / f"{s.table.name}.utf8.csv", encoding)
    return _read_csv_sql(path, len(s.header), "rej"), path


def _read_csv_sql(path: Path, n_columns: int, rejects: str) -> str:
    """``read_csv`` of a UTF-8 file as VARCHAR columns ``r0`` .. ``r<n-1>``; records it cannot
    split into ``n_columns`` go to table ``rejects`` (and ``<rejects>_scan``)."""
    columns = "{" + ", ".join(f"{q.lit(f'r{i}')}: 'VARCHAR'" for i in range(n_columns)) + "}"
    return (f"read_csv({q.lit(str(path))}, columns = {columns}, header = true, auto_detect = false, "
            f"delim = ',', quote = '\"', escape = '\"', strict_mode = true, store_rejects = true, "
            f"rejects_table = {q.lit(rejects)}, rejects_scan = {q.lit(rejects + '_scan')}, "
            f"max_line_size = 10000000)")


@dataclass
class _Checked:
    read: int
    kept: int
    set_aside: dict[str, int]
    cells: dict[str, int]


@contextmanager
def _step(table: str, what: str) -> Iterator[None]:
    """Log wall and process CPU seconds of one step (DEBUG)."""
    w0, c0 = time.perf_counter(), time.process_time()
    yield
    log.debug("%s: %s %.2f s (cpu %.2f s)", table, what, time.perf_counter() - w0, time.process_time() - c0)


def _validate(con: duckdb.DuckDBPyConnection, s: _Source, src_sql: str) -> None:
    """Build table ``chk`` (file order, rowid = record position): parsed values, broken cells, ``_why``."""
    t = s.table
    extra = ", _line" if s.kind == "parquet" else ""
    con.execute("DROP TABLE IF EXISTS chk")
    with _step(t.name, "read+check"):
        try:
            sql = q.check_sql(t, s.present, len(s.header), src_sql, extra, s.native, raw=s.kind == "parquet")
            con.execute(f"CREATE TABLE chk AS {sql}")
        except duckdb.Error as e:
            raise DataContractError(f"{s.path.name}: cannot read: {e} (rule {q.UNREADABLE_FILE})") from e
    ref = q.reference_sql(t, "chk")
    if ref:
        with _step(t.name, "references"):
            con.execute(f"UPDATE chk SET _why = b._why FROM ({ref}) b WHERE chk.rowid = b._ord")
    with _step(t.name, "duplicates"):
        # repeated keys: first their hashes, sorted in numpy (an aggregate over millions of
        # distinct keys costs DuckDB ~3x more), then the few rows holding such a hash compared by key
        h = con.execute(q.key_hash_sql(t, "chk")).fetchnumpy()["h"]
        h.sort()
        repeated = np.unique(h[1:][h[1:] == h[:-1]])
        if len(repeated):
            con.register("dup_h", {"h": repeated})
            con.execute(f"UPDATE chk SET _why = b._why FROM ({q.duplicate_sql(t, 'chk', 'dup_h')}) b "
                        "WHERE chk.rowid = b._ord")
            con.unregister("dup_h")


def _counts(con: duckdb.DuckDBPyConnection, t: Table) -> _Checked:
    n_raw = con.execute("SELECT count(*) FROM chk").fetchone()[0]
    n_rej = con.execute("SELECT count(DISTINCT line_byte_position) FROM rej").fetchone()[0]
    aside = dict(con.execute("SELECT split_part(_why, ':', 1) r, count(*) FROM chk WHERE _why IS NOT NULL "
                             "GROUP BY r ORDER BY r").fetchall())
    if n_rej:
        aside[q.MALFORMED_ROW] = n_rej
    opt = [c for c in t.columns if not c.required and q.can_break(c)]
    cells: dict[str, int] = {}
    if opt:
        n = con.execute("SELECT " + " + ".join(f"count({q.ident('b_' + c.name)})" for c in opt)
                        + " FROM chk WHERE _why IS NULL").fetchone()[0]
        if n:
            cells[q.MALFORMED_OPTIONAL] = n
    kept = n_raw - sum(v for k, v in aside.items() if k != q.MALFORMED_ROW)
    return _Checked(n_raw + n_rej, kept, aside, cells)


def write_table(con: duckdb.DuckDBPyConnection, t: Table, path: Path) -> None:
    """Write the kept rows of ``chk`` as ``path`` (Parquet, spec dtypes, pandas metadata)."""
    meta = json.dumps({
        "index_columns": [], "column_indexes": [],
        "columns": [{"name": c.name, "field_name": c.name, "pandas_type": _PANDAS_TYPES[c.type][0],
                     "numpy_type": _PANDAS_TYPES[c.type][1], "metadata": None} for c in t.columns],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
    })
    con.execute(f"COPY ({q.stored_select(t, 'chk')}) TO {q.lit(str(path))} (FORMAT parquet, COMPRESSION snappy, "
                f"DICTIONARY_SIZE_LIMIT {DICTIONARY_SIZE_LIMIT}, KV_METADATA {{pandas: {q.lit(meta)}}})")


def _write_report_csv(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    """Write a query's result as CSV in UTF-8 with BOM (Excel opens Chinese correctly); the bank's
    cells are text, neutralised against formulas (nbp.sheets)."""
    write_csv_batches(con.sql(sql).to_arrow_reader(200_000), path)


def _write_problem_rows(con: duckdb.DuckDBPyConnection, s: _Source, csv_path: Path | None,
                        out: Path, chk: _Checked, work: Path) -> None:
    """Write rejects/<table>.csv and cells/<table>.csv for this table (when non-empty).

    A CSV row's cells are read again from the file by the row's byte span (table ``lines``,
    columns ``r<i>``), exactly as DuckDB read them: ``chk`` carries no raw text.
    """
    t = s.table
    opt = [c for c in t.columns if not c.required and q.can_break(c)]
    n_aside, n_cells = sum(chk.set_aside.values()), sum(chk.cells.values())
    if not n_aside and not n_cells:
        return
    # Which rows need a source line: rows set aside or holding a reported cell.
    cond_cells = " OR ".join(f"{q.ident('b_' + c.name)} IS NOT NULL" for c in opt) or "false"
    con.execute("DROP TABLE IF EXISTS lines")
    if s.kind == "parquet":
        con.execute(f"CREATE TABLE lines AS SELECT rowid AS _ord, _line AS line FROM chk "
                    f"WHERE _why IS NOT NULL OR ({cond_cells})")
        rej_lines = np.zeros(0, np.int64)
        rej: list[tuple[int, str]] = []
    else:
        ords = con.execute(f"SELECT rowid AS _ord FROM chk WHERE _why IS NOT NULL OR ({cond_cells}) "
                           "ORDER BY 1").fetchnumpy()["_ord"]
        rej = con.execute("SELECT line_byte_position, any_value(csv_line) AS csv_line FROM rej "
                          "GROUP BY ALL ORDER BY 1").fetchall()
        assert csv_path is not None
        found = record_lines(csv_path, ords, np.array([r[0] for r in rej], np.int64),
                             n_accepted=chk.read - len(rej))
        rej_lines = found.rej_lines
        _reread_cells(con, csv_path, np.asarray(ords, np.int64), found, len(s.header), work / f"{t.name}.rows.csv")
    kept_raw = set(q.raw_kept(t, s.present, len(s.header)))
    by_pos = {i: n for n, i in s.present.items()}
    enum_raw = q.enum_kept(t, s.present)
    cell = {i: f"l.r{i}" if s.kind == "csv"
            else f"CAST(c.r{i} AS VARCHAR)" if i in kept_raw
            else f"COALESCE(CAST(c.{q.ident('p_' + by_pos[i])} AS VARCHAR), c.r{i})" if i in enum_raw
            else f"c.{q.ident('p_' + by_pos[i])}"
            for i in range(len(s.header))}
    raw_cols = ", ".join(f"{cell[i]} AS {q.ident(h)}" for i, h in enumerate(s.header))
    src = q.lit(s.path.name)

    def value_of(col_expr: str) -> str:
        whens = " ".join(f"WHEN {q.lit(n)} THEN {cell[i]}" for n, i in s.present.items())
        return f"CASE {col_expr} {whens} END" if whens else "NULL"

    if n_aside:
        why_col = "split_part(c._why, ':', 2)"
        sql = (f"SELECT {src} AS source_file, l.line AS source_line, split_part(c._why, ':', 1) AS rule, "
               f"{why_col} AS \"column\", {value_of(why_col)} AS value, "
               f"{raw_cols} FROM chk c JOIN lines l ON l._ord = c.rowid WHERE c._why IS NOT NULL")
        if len(rej):
            con.register("rej_np", {"line": np.asarray(rej_lines, np.int64),
                                    "csv_line": np.array([r[1].strip("\r\n") for r in rej], dtype=object)})
            nulls = ", ".join(f"CAST(NULL AS VARCHAR) AS {q.ident(h)}" for h in s.header)
            sql += (f" UNION ALL SELECT {src}, line, {q.lit(q.MALFORMED_ROW)}, NULL, csv_line, {nulls} "
                    f"FROM rej_np")
        (out / "rejects").mkdir(exist_ok=True)
        _write_report_csv(con, f"SELECT * FROM ({sql}) ORDER BY source_line", out / "rejects" / f"{t.name}.csv")
        if len(rej):
            con.unregister("rej_np")
    if n_cells:
        parts = [f"SELECT {src} AS source_file, l.line AS source_line, {q.lit(q.MALFORMED_OPTIONAL)} AS rule, "
                 f"{q.lit(o.name)} AS \"column\", {cell[s.present[o.name]]} AS value, {raw_cols} "
                 f"FROM chk c JOIN lines l ON l._ord = c.rowid WHERE c._why IS NULL AND "
                 f"{q.ident('b_' + o.name)} IS NOT NULL" for o in opt if o.name in s.present]
        sql = " UNION ALL ".join(parts)
        (out / "cells").mkdir(exist_ok=True)
        _write_report_csv(con, f"SELECT * FROM ({sql}) ORDER BY source_line, \"column\"",
                          out / "cells" / f"{t.name}.csv")


def _reread_cells(con: duckdb.DuckDBPyConnection, csv_path: Path, ords: np.ndarray, found: Located,
                  n_columns: int, tmp: Path) -> None:
    """Table ``lines`` (``_ord``, ``line``, ``r0`` .. ``r<n-1>``): the source line and the cells of
    the accepted records ``ords``, read again by DuckDB from a small file of just their bytes
    (same reader settings, so the same cells: quotes, doubled quotes, newlines, CRLF)."""
    # a dict of numpy arrays: registering an Arrow table costs DuckDB ~0.5 CPU-s of imports
    con.register("lines_np", {"_ord": ords, "line": np.asarray(found.lines, np.int64)})
    ok = len(ords) > 0 and read_spans(csv_path, found.starts, found.ends, n_columns, tmp)
    if ok:
        con.execute("DROP TABLE IF EXISTS rej_again; DROP TABLE IF EXISTS rej_again_scan")
        con.execute(f"CREATE TABLE again AS SELECT * FROM {_read_csv_sql(tmp, n_columns, 'rej_again')}")
        n, bad = con.execute("SELECT (SELECT count(*) FROM again), (SELECT count(*) FROM rej_again)").fetchone()
        ok = n == len(ords) and not bad
    if ok:
        con.execute("CREATE TABLE lines AS SELECT * FROM lines_np POSITIONAL JOIN again")
    else:
        if len(ords):
            log.warning("%s: the cells of %d reported rows could not be read again; reported empty",
                        csv_path.name, len(ords))
        nulls = ", ".join(f"CAST(NULL AS VARCHAR) AS r{i}" for i in range(n_columns))
        con.execute(f"CREATE TABLE lines AS SELECT *, {nulls} FROM lines_np")
    con.unregister("lines_np")
    con.execute("DROP TABLE IF EXISTS again")
    tmp.unlink(missing_ok=True)


def _keep_keys(con: duckdb.DuckDBPyConnection, t: Table) -> None:
    """Remember the kept keys of a table other tables point at (``keys_<table>``)."""
    targets = {c.ref.split(".")[0] for tt in TABLES.values() for c in tt.columns if c.ref}
    if t.name not in targets:
        return
    cols = [*(t.key or ())]
    if t.name == "accounts":
        cols.append("customer_id")
    sel = ", ".join(f"{q.ident('p_' + c)} AS {q.ident(c)}" for c in cols)
    con.execute(f"CREATE OR REPLACE TABLE keys_{t.name} AS SELECT {sel} FROM chk WHERE _why IS NULL")


def _latest_event(con: duckdb.DuckDBPyConnection, t: Table) -> date | None:
    cols = [c.name for c in t.columns if c.name in EVENT_COLUMNS]
    if not cols:
        return None
    v = con.execute("SELECT greatest(" + ", ".join(f"max({q.ident('p_' + c)})" for c in cols)
                    + ") FROM chk WHERE _why IS NULL").fetchone()[0]
    return v.date() if v is not None else None


def _empty_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Reference targets for the case their table is absent (it cannot be: they are required)."""
    con.execute("CREATE TABLE keys_customers (customer_id VARCHAR)")
    con.execute("CREATE TABLE keys_accounts (account_id VARCHAR, customer_id VARCHAR)")


# ---------------------------------------------------------------- atomic swap


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(ws: Workspace) -> None:
    """Remove temporary folders of earlier runs that died; restore a store lost mid-swap."""
    for target in (ws.ingested_dir, ws.ingest_dir):
        parent = target.parent
        if not parent.exists():
            continue
        for p in parent.glob(f".{target.name}.*-*"):
            try:
                pid = int(p.name.rsplit("-", 2)[-2])
            except ValueError:
                continue
            if _pid_alive(pid) and pid != os.getpid():
                continue
            if ".old-" in p.name and not target.exists():
                log.warning("restoring %s from %s (an earlier run died while swapping)", target, p.name)
                p.rename(target)
            else:
                shutil.rmtree(p, ignore_errors=True)
    for p in ws.home.glob(".ingest-work-*"):
        try:
            pid = int(p.name.split("-")[2])
        except (ValueError, IndexError):
            continue
        if not _pid_alive(pid) or pid == os.getpid():
            shutil.rmtree(p, ignore_errors=True)


def _swap_in(pairs: list[tuple[Path, Path]], tag: str) -> None:
    """Rename each staged folder onto its target; the old targets are removed after all moved."""
    olds: list[tuple[Path, Path]] = []
    try:
        for new, target in pairs:
            if target.exists():
                old = target.with_name(f".{target.name}.old-{tag}")
                target.rename(old)
                olds.append((old, target))
            new.rename(target)
    except OSError:
        for old, target in olds:  # put the previous ones back
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            old.rename(target)
        raise
    for old, _ in olds:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _staging(ws: Workspace, tag: str) -> Iterator[tuple[Path, Path, Path]]:
    """Temporary (data, report, work) folders, removed whatever happens."""
    data = ws.ingested_dir.parent / f".{ws.ingested_dir.name}.tmp-{tag}"
    rep = ws.ingest_dir.parent / f".{ws.ingest_dir.name}.tmp-{tag}"
    work = ws.home / f".ingest-work-{tag}"
    for p in (data, rep, work):
        p.mkdir(parents=True)
    try:
        yield data, rep, work
    finally:
        for p in (data, rep, work):
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------- entry point


def ingest(src: Path, ws: Workspace, cfg: IngestConfig) -> IngestReport:
    """Validate the bank export in ``src`` and store its typed tables in the workspace.

    Args:
        src: the export folder (``<table>.csv`` or ``<table>.parquet`` per table,
            optional ``manifest.json``).
        ws: the workspace; writes ``ws.ingested_dir/<table>.parquet`` (columns and
            dtypes of :mod:`bankexport.spec`: string/enum ``string``, date/timestamp/month
            ``datetime64[us]``, money ``float64``, int ``Int64``) and ``_meta.json``,
            and ``ws.ingest_dir/report.json``, ``rejects/<table>.csv``, ``cells/<table>.csv``.
        cfg: ingest settings (DuckDB memory limit and threads).

    Returns:
        The report (also written as ``report.json``).

    Raises:
        DataContractError: a required table or column is missing, a header repeats a
            column, a table is given twice, a file cannot be read or the manifest is bad.
    """
    t0 = time.perf_counter()
    src = Path(src).resolve()
    manifest = _read_manifest(src)
    encoding = ENCODINGS[str(manifest.get("encoding") or "utf-8").lower()]
    sources = _locate(src, encoding)
    ws.home.mkdir(parents=True, exist_ok=True)
    _clean_stale(ws)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    reports: dict[str, TableReport] = {}
    latest: list[date] = []
    with _staging(ws, tag) as (data_dir, rep_dir, work), logging_redirect_tqdm():
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET memory_limit = {q.lit(cfg.memory_limit)}")
            con.execute(f"SET temp_directory = {q.lit(str(work / 'spill'))}")
            con.execute("SET preserve_insertion_order = true")  # chk.rowid = record position
            con.execute("SET enable_progress_bar = false")
            if cfg.threads > 0:
                con.execute(f"SET threads = {int(cfg.threads)}")
            _empty_keys(con)
            for name in tqdm(ALL_TABLES, desc="ingest", unit="table", disable=None):
                s = sources[name]
                if s is None:
                    log.info("%s: absent (optional table)", name)
                    reports[name] = TableReport()
                    continue
                t1 = time.perf_counter()
                src_sql, csv_path = _source_sql(con, s, encoding, work)
                _validate(con, s, src_sql)
                with _step(name, "counts"):
                    counts = _counts(con, s.table)
                with _step(name, "write"):
                    write_table(con, s.table, data_dir / f"{name}.parquet")
                with _step(name, "reports"):
                    _write_problem_rows(con, s, csv_path, rep_dir, counts, work)
                with _step(name, "keys+dates"):
                    _keep_keys(con, s.table)
                    if (d := _latest_event(con, s.table)) is not None:
                        latest.append(d)
                norm = [h.strip().lower() for h in s.header]
                tr = TableReport(
                    rows_read=counts.read, rows_kept=counts.kept, set_aside=counts.set_aside,
                    cells_reported=counts.cells, file=s.path.name,
                    unknown_columns=[h for h, n in zip(s.header, norm) if n not in s.table.column_names],
                    absent_columns=[c for c in s.table.column_names if c not in s.present],
                    seconds=time.perf_counter() - t1,
                )
                reports[name] = tr
                con.execute("DROP TABLE IF EXISTS chk; DROP TABLE IF EXISTS lines")
                if csv_path is not None and csv_path != s.path:
                    csv_path.unlink(missing_ok=True)
                log.info("%s: %s rows read, %s kept, %s set aside, %s cells reported in %.2f s (%s)",
                         name, f"{tr.rows_read:,}", f"{tr.rows_kept:,}", f"{sum(tr.set_aside.values()):,}",
                         f"{sum(tr.cells_reported.values()):,}", tr.seconds, s.path.name)
                for col in tr.unknown_columns:
                    log.warning("%s: unknown column '%s' is not stored", s.path.name, col)
        finally:
            con.close()
        if manifest.get("export_date"):
            export_date, export_from = str(manifest["export_date"]), "manifest"
        elif latest:
            export_date, export_from = max(latest).isoformat(), "data"
        else:
            raise DataContractError("no dated row kept, and manifest.json gives no export_date "
                                    f"(rule {q.BAD_MANIFEST})")
        report = IngestReport(str(src), export_date, export_from, tag, reports,
                              finished_at=datetime.now().isoformat(timespec="seconds"),
                              seconds=time.perf_counter() - t0)
        meta = {"export_date": export_date, "export_date_from": export_from, "source": str(src),
                "format": manifest.get("format"), "bank": manifest.get("bank"), "run_id": tag,
                "tables": [n for n, r in reports.items() if r.file is not None],
                "finished_at": report.finished_at}
        (data_dir / "_meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        (rep_dir / "report.json").write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=2),
                                             encoding="utf-8")
        ws.ingested_dir.parent.mkdir(parents=True, exist_ok=True)
        _swap_in([(data_dir, ws.ingested_dir), (rep_dir, ws.ingest_dir)], tag)
    log.info("ingest: %d tables, export date %s, %.1f s", sum(r.file is not None for r in reports.values()),
             export_date, report.seconds)
    return report
