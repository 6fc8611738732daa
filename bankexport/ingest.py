"""Validated ingest of a bank export (``nbp ingest DIR``).

Reads one export folder (spec: ``../shared/spec/bank-export.md``, as code in
:mod:`bankexport.spec`), checks every row and cell against the spec's "Bad input"
rules, and stores the typed tables under ``ws.ingested_dir`` (Parquet, dtypes as
in :mod:`bankexport.spec`) plus ``ws.ingest_meta`` (``_meta.json``) with the export date.
Rows set aside and cells reported go to ``ws.ingest_dir/rejects|cells/<table>.csv`` and
are counted in ``ws.ingest_report``. Rules are documented in ``docs/ingest-rules.md``.

All validation is vectorised SQL in DuckDB (every cell read as VARCHAR, then
``TRY_CAST`` + regular expressions, aggregates for duplicate keys, anti-joins for
references, in dependency order so that a row pointing at a set-aside row is set
aside too). The new store and report are built in temporary sibling folders and
renamed into place at the end, so a failed run leaves the previous ones intact.

An import that would lose the bank stops before that swap (exit 2): an empty file or
required table, a file cut short, a file in another encoding than declared, too large a
share of a table set aside, or a table much smaller than in the previous import. Nothing
is dated after the export date (manifest, or inferred: :func:`infer_export_date`).
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
from typing import Any, NoReturn

import duckdb
import numpy as np
import pyarrow as pa
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bankexport import ingest_append as ia
from bankexport import ingest_sql as q
from bankexport import quality
from bankexport.ingest_lines import (
    Located,
    count_byte,
    other_encoding,
    read_spans,
    record_lines,
    transcode_to_utf8,
)
from bankexport.spec import ALL_TABLES, BANK_COLUMN, REQUIRED_TABLES, TABLES, Column, Table
from nbp.config import IngestConfig
from nbp.errors import ConfigError, DataContractError
from nbp.jobs import pid_alive
from nbp.sheets import write_csv_batches
from nbp.sqltext import ident, lit
from nbp.workspace import BANK_CODE_RULE, Workspace, is_bank_code

log = logging.getLogger(__name__)

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}
# Without export_date in the manifest, the export date is inferred from this column: the
# densest dated column of the export (every bank has transactions every day), see infer_export_date.
INFER_FROM = ("transactions", "txn_time")
# Distinct values of a column in one Parquet row group (122,880 rows) beyond which DuckDB gives up
# its dictionary (and bloom filter) for that column chunk. Below DuckDB's default, so that ids that
# are nearly unique per row group (transactions, accounts, customers) are written plain without a
# long attempt at a dictionary first; codes, branches, enums keep one (docs/decisions/010-ingest-line-scanning.md).
DICTIONARY_SIZE_LIMIT = 2048
# (pandas_type, numpy_type) of the pandas metadata written into each Parquet file, so that
# pandas.read_parquet gives the spec dtypes (string, datetime64[us], float64, Int64) without
# importing pandas here (as pyarrow.Schema.from_pandas would write them).
_PANDAS_TYPES = {
    "string": ("unicode", "string"),
    "enum": ("unicode", "string"),
    "date": ("datetime", "datetime64[us]"),
    "timestamp": ("datetime", "datetime64[us]"),
    "month": ("datetime", "datetime64[us]"),
    "money": ("float64", "float64"),
    "int": ("int64", "Int64"),
}


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
    warnings: list[str] = field(default_factory=list)


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
    bank_code: str | None = None
    inference: dict[str, Any] | None = None  # how the export date was inferred (None: from the manifest)
    checks: dict[str, Any] = field(default_factory=dict)  # the share limits, what exceeded them, overrides
    warnings: list[str] = field(default_factory=list)  # about the export folder (tables have their own)
    append: dict[str, Any] = field(default_factory=dict)  # per appendable table: rows reused, or why none

    def all_warnings(self) -> list[str]:
        """The export folder's warnings, then each table's."""
        return [*self.warnings, *(w for t in self.tables.values() for w in t.warnings)]

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report; key ``tables`` is shaped
        ``{TABLE: {"rows_read", "rows_kept", "set_aside": {RULE: n}, "cells_reported": {RULE: n}}}``."""
        return {
            "tables": {
                name: {
                    "rows_read": t.rows_read,
                    "rows_kept": t.rows_kept,
                    "set_aside": dict(t.set_aside),
                    "cells_reported": dict(t.cells_reported),
                }
                for name, t in self.tables.items()
            },
            "files": {
                name: {
                    "file": t.file,
                    "present": t.file is not None,
                    "unknown_columns": t.unknown_columns,
                    "absent_columns": t.absent_columns,
                    "warnings": t.warnings,
                    "seconds": round(t.seconds, 3),
                }
                for name, t in self.tables.items()
            },
            "source": self.source,
            "bank_code": self.bank_code,
            "export_date": self.export_date,
            "export_date_from": self.export_date_from,
            "export_date_inference": self.inference,
            "checks": self.checks,
            "append": self.append,
            "warnings": self.all_warnings(),
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
                rows.append((name, "-", "-", "-", "-", "absent (optional)" + (", see warning" if t.warnings else "")))
                continue
            rules = sorted(
                {
                    **{f"{k}": v for k, v in t.set_aside.items()},
                    **{f"{k} (cells)": v for k, v in t.cells_reported.items()},
                }.items(),
                key=lambda kv: -kv[1],
            )
            top = ", ".join(f"{k} {v:,}" for k, v in rules[:3])
            rows.append(
                (
                    name,
                    f"{t.rows_read:,}",
                    f"{t.rows_kept:,}",
                    f"{sum(t.set_aside.values()):,}",
                    f"{sum(t.cells_reported.values()):,}",
                    top,
                )
            )
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        right = {1, 2, 3, 4}

        def fmt(r: tuple) -> str:
            return "  ".join(
                str(c).rjust(w) if i in right else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()

        lines = [fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in rows)]
        for t in self.tables.values():
            if t.unknown_columns:
                lines.append(f"note: {t.file}: unknown columns not stored: {', '.join(t.unknown_columns)}")
            if t.absent_columns:
                lines.append(
                    f"note: {t.file}: optional columns absent (stored as unknown): {', '.join(t.absent_columns)}"
                )
        lines += [f"warning: {w}" for w in self.all_warnings()]
        for what in ("set_aside", "shrink"):
            c = self.checks.get(what) or {}
            if c.get("exceeded"):
                lines.append(f"note: {c['note']}")
        for name, a in self.append.items():
            if a["reused_rows"]:
                lines.append(
                    f"note: {name}: {a['reused_rows']:,} rows of the months {a['reused_months'][0]} to "
                    f"{a['reused_months'][1]} unchanged since the previous import, not checked again"
                )
        source = f"inferred {self.inference['note']}" if self.inference else f"(from {self.export_date_from})"
        bank = f"bank {self.bank_code}: " if self.bank_code else ""
        lines.append(f"{bank}export date {self.export_date} {source}; details in report.json, rejects/ and cells/")
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
        raise DataContractError(
            f"manifest.json: encoding '{enc}' not supported, use utf-8 or gbk (rule {q.BAD_MANIFEST})"
        )
    if m.get("export_date") is not None:
        try:
            date.fromisoformat(str(m["export_date"]))
            if len(str(m["export_date"])) != 10:
                raise ValueError
        except ValueError:
            raise DataContractError(
                f"manifest.json: export_date '{m['export_date']}' is not YYYY-MM-DD (rule {q.BAD_MANIFEST})"
            ) from None
    if m.get("bank_code") is not None and not is_bank_code(m["bank_code"]):
        raise DataContractError(
            f"manifest.json: bank_code {json.dumps(m['bank_code'], ensure_ascii=False)} is not a bank code: "
            f"{BANK_CODE_RULE} (rule {q.BAD_MANIFEST})"
        )
    return m


def _header_of_csv(path: Path, encoding: str) -> list[str]:
    with path.open("rb") as f:
        raw = f.readline()
    text = raw.decode(encoding, errors="replace").lstrip("\ufeff")
    return next(csv.reader(io.StringIO(text)), [])


def one_line(e: BaseException) -> str:
    """The first line of an error's text (DuckDB appends the statement and a caret line)."""
    lines = str(e).strip().splitlines()
    return lines[0].strip() if lines else type(e).__name__


def _parquet_error(path: Path, e: BaseException) -> DataContractError:
    """A one-line stop for a Parquet file DuckDB cannot read; a file without its footer was cut short."""
    with path.open("rb") as f:
        f.seek(max(path.stat().st_size - 4, 0))
        tail = f.read(4)
    if tail != b"PAR1":  # every complete Parquet file ends with its footer's magic bytes
        return DataContractError(
            f"{path.name}: the file is incomplete ({path.stat().st_size:,} bytes, no Parquet "
            f"footer at its end): it was cut short in transfer; copy or export it again "
            f"(rule {q.TRUNCATED_FILE})"
        )
    return DataContractError(f"{path.name}: cannot read Parquet file: {one_line(e)} (rule {q.UNREADABLE_FILE})")


def _header_of_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[list[str], list[str]]:
    """Column names and DuckDB types of a Parquet file."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall()
    except duckdb.Error as e:
        raise _parquet_error(path, e) from e
    return [r[0] for r in rows], [r[1] for r in rows]


def _is_empty(path: Path, kind: str, encoding: str) -> bool:
    """Whether a file holds nothing: 0 bytes, or (CSV) no header, only a BOM or blank lines."""
    size = path.stat().st_size
    if size == 0:
        return True
    if kind != "csv" or size > 4096:
        return False
    return not path.read_bytes().decode(encoding, errors="replace").lstrip("\ufeff").strip()


def _locate(src: Path, encoding: str) -> tuple[dict[str, _Source | None], dict[str, str]]:
    """Find each table's file and check its header. Raises DataContractError on a stop rule.

    Returns the sources (None: absent) and the warnings of optional tables whose file is
    empty, which count as absent.
    """
    found: dict[str, _Source | None] = {}
    describe: duckdb.DuckDBPyConnection | None = None  # one database reads every Parquet header (decision 010)
    empty: dict[str, str] = {}
    for name in ALL_TABLES:
        t = TABLES[name]
        cands = [p for p in (src / f"{name}.csv", src / f"{name}.parquet") if p.exists()]
        if not cands:
            if name in REQUIRED_TABLES:
                raise DataContractError(
                    f"{name}.csv: required table '{name}' missing in {src} "
                    f"(neither {name}.csv nor {name}.parquet; rule {q.MISSING_TABLE})"
                )
            found[name] = None
            continue
        if len(cands) > 1:
            raise DataContractError(
                f"{name}: both {name}.csv and {name}.parquet in {src}; keep one (rule {q.AMBIGUOUS_TABLE})"
            )
        path = cands[0]
        kind = path.suffix[1:]
        if _is_empty(path, kind, encoding):
            if name in REQUIRED_TABLES:
                raise DataContractError(
                    f"{path.name}: the file is empty ({path.stat().st_size} bytes, no header): "
                    f"required table '{name}' has no data; export it again "
                    f"(rule {q.EMPTY_FILE})"
                )
            empty[name] = (
                f"{path.name}: the file is empty ({path.stat().st_size} bytes); optional table "
                f"'{name}' counts as absent (rule {q.EMPTY_FILE})"
            )
            log.warning("%s", empty[name])
            found[name] = None
            continue
        if kind == "csv":
            header, types = _header_of_csv(path, encoding), []
        else:
            describe = describe or duckdb.connect()
            header, types = _header_of_parquet(describe, path)
        norm = [h.strip().lower() for h in header]
        present: dict[str, int] = {}
        for i, h in enumerate(norm):
            if h in t.column_names:
                if h in present:
                    raise DataContractError(
                        f"{path.name}: column '{h}' appears twice in the header (rule {q.DUPLICATE_COLUMN})"
                    )
                present[h] = i
        for c in t.required_columns:
            if c not in present:
                raise DataContractError(f"{path.name}: required column '{c}' missing (rule {q.MISSING_COLUMN})")
        native = {c: types[i] for c, i in present.items() if types and q.native_ok(t.column(c), types[i])}
        found[name] = _Source(t, path, kind, tuple(header), present, native)
    return found, empty


def _unread_files(src: Path) -> list[str]:
    """Warnings for files of the export folder that are not read: a table under another name
    (``Balances.csv``, ``balances.csv.gz``) would otherwise be absent without a word."""
    known = {f"{n}.{k}" for n in ALL_TABLES for k in ("csv", "parquet")} | {"manifest.json"}
    out = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name in known or p.name.startswith("."):
            continue
        stem = p.name.split(".")[0].lower()
        why = (
            f"table '{stem}' is read only from {stem}.csv or {stem}.parquet (lower case, uncompressed)"
            if stem in ALL_TABLES
            else f"not a table nbp reads ({', '.join(ALL_TABLES)})"
        )
        out.append(f"{p.name}: not read: {why}")
    for w in out:
        log.warning("%s", w)
    return out


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
        cols = ", ".join(
            f"{ident(h)} AS r{i}" if i in typed else f"CAST({ident(h)} AS VARCHAR) AS r{i}"
            for i, h in enumerate(s.header)
        )
        con.execute("CREATE TABLE rej (line_byte_position UBIGINT, csv_line VARCHAR)")
        return (
            f"(SELECT {cols}, file_row_number + 1 AS _line "
            f"FROM read_parquet({lit(str(s.path))}, file_row_number = true))"
        ), None
    path = s.path
    if encoding != "utf-8":
        path = transcode_to_utf8(s.path, work / f"{s.table.name}.utf8.csv", encoding)
        # UTF-8 Chinese text mostly decodes as GBK too, into other characters: a declared GBK file
        # with non-ASCII text that is all valid UTF-8 is UTF-8 (a GBK one fails at its first characters)
        if path != s.path and other_encoding(s.path, encoding) == "utf-8":
            raise DataContractError(
                f"{s.path.name}: manifest.json declares encoding {encoding.upper()}, but the file is UTF-8 (read "
                f'as {encoding.upper()} its Chinese text would become other characters); set "encoding": '
                f'"utf-8" in manifest.json (rule {q.WRONG_ENCODING})'
            )
    return _read_csv_sql(path, len(s.header), "rej"), path


def _read_csv_sql(path: Path, n_columns: int, rejects: str) -> str:
    """``read_csv`` of a UTF-8 file as VARCHAR columns ``r0`` .. ``r<n-1>``; records it cannot
    split into ``n_columns`` go to table ``rejects`` (and ``<rejects>_scan``)."""
    columns = "{" + ", ".join(f"{lit(f'r{i}')}: 'VARCHAR'" for i in range(n_columns)) + "}"
    return (
        f"read_csv({lit(str(path))}, columns = {columns}, header = true, auto_detect = false, "
        f"delim = ',', quote = '\"', escape = '\"', strict_mode = true, store_rejects = true, "
        f"rejects_table = {lit(rejects)}, rejects_scan = {lit(rejects + '_scan')}, "
        f"max_line_size = 10000000)"
    )


@dataclass(frozen=True)
class _Reused:
    """The first ``records`` records of a table's file, unchanged since the previous import: their
    ``kept`` rows open the ``stored`` table, their problem rows are table ``chk_reused``."""

    stored: Path
    records: int
    kept: int


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


def _read_check(con: duckdb.DuckDBPyConnection, s: _Source, src_sql: str, fingerprint: bool = False) -> None:
    """Build table ``chk`` (file order, rowid = record position): parsed values, broken cells, ``_why``
    of the rules a row breaks on its own; with ``fingerprint``, also each row's month and raw-cell
    hash (``_m``, ``_h``: :func:`bankexport.ingest_append.fingerprint_columns`), in the same pass."""
    t = s.table
    extra = ", _line" if s.kind == "parquet" else ""
    if fingerprint:
        col = ia.APPENDABLE[t.name]
        fp = ia.fingerprint_columns(len(s.header), s.present[col], s.native.get(col))
        src_sql = f"(SELECT *, {fp} FROM {src_sql})"
        extra += ", _m, _h"
    con.execute("DROP TABLE IF EXISTS chk")
    with _step(t.name, "read+check"):
        try:
            sql = q.check_sql(t, s.present, len(s.header), src_sql, extra, s.native, raw=s.kind == "parquet")
            con.execute(f"CREATE TABLE chk AS {sql}")
        except duckdb.Error as e:
            if s.kind == "parquet":
                raise _parquet_error(s.path, e) from e
            raise DataContractError(f"{s.path.name}: cannot read: {one_line(e)} (rule {q.UNREADABLE_FILE})") from e


def _check_structure(con: duckdb.DuckDBPyConnection, s: _Source, csv_path: Path, encoding: str) -> None:
    """Stop on a CSV that ends in the middle of a record (cut short in transfer) or that is not
    in its declared encoding but valid in the other one. Looks only at the records the
    reader could not split (table ``rej``), so a clean file costs nothing."""
    last = con.execute(
        "SELECT line_byte_position, any_value(csv_line), "
        "bool_or(error_message ILIKE '%unterminated quote%'), "
        "bool_or(error_type = 'TOO MANY COLUMNS') FROM rej "
        "GROUP BY 1 ORDER BY 1 DESC LIMIT 1"
    ).fetchone()
    if last is None:
        return
    pos, text, open_quote, too_many = last
    start, size = int(pos) - 1, csv_path.stat().st_size
    cut = False
    if open_quote:  # the record's quote is never closed when an odd number of quotes follow its start
        cut = count_byte(csv_path, b'"', start) % 2 == 1
    elif not too_many and 0 <= start and size - start <= 16 * 1024 * 1024:  # a cut never adds fields
        with csv_path.open("rb") as f:
            f.seek(start)
            tail = f.read()
        rec = tail.strip(b"\r\n")
        # the last record stops short of its fields (or inside a character) and of its line end
        cut = not tail.endswith(b"\n") and (
            b"\n" not in rec or rec == (text or "").encode("utf-8", "replace").strip(b"\r\n")
        )
    if cut:
        with csv_path.open("rb") as f:  # the reader's position may be that of blank lines before the record
            f.seek(start)
            head = f.read(4096)
        line = count_byte(csv_path, b"\n", 0, start + len(head) - len(head.lstrip(b"\r\n"))) + 1
        what = (
            f"inside a quoted cell opened on line {line} (a quote that is never closed)"
            if open_quote
            else f"in the middle of its last record (line {line}: no line end, and it does not split into "
            f"the header's fields)"
        )
        raise DataContractError(
            f"{s.path.name}: the file ends {what}: it was cut short in transfer, or the "
            f"record is broken; export the file again (rule {q.TRUNCATED_FILE})"
        )
    bad = con.execute(
        "SELECT count(DISTINCT line_byte_position) FROM rej WHERE error_type = 'INVALID ENCODING'"
    ).fetchone()[0]
    if bad and (other := other_encoding(s.path, encoding)) is not None:
        raise DataContractError(
            f"{s.path.name}: {bad:,} records are not valid {encoding.upper()} (the encoding of manifest.json, UTF-8 "
            f'when it names none); the file looks like {other.upper()}: set "encoding": "{other}" in '
            f"manifest.json (rule {q.WRONG_ENCODING})"
        )


def _relate(con: duckdb.DuckDBPyConnection, t: Table, export_date: str, reused: _Reused | None = None) -> None:
    """Rules on ``chk`` that need more than the row itself: dated after the export date,
    references (to tables already stored), duplicate keys (also against the ``reused`` rows
    kept before ``chk``'s first row)."""
    with _step(t.name, "future dates"):
        for sql in q.future_sql(t, "chk", export_date):
            con.execute(sql)
    ref = q.reference_sql(t, "chk")
    if ref:
        with _step(t.name, "references"):
            con.execute(f"UPDATE chk SET _why = b._why FROM ({ref}) b WHERE chk.rowid = b._ord")
    with _step(t.name, "duplicates"):
        if reused is not None and reused.kept:
            _repeats_reused(con, t, reused)
        # repeated keys: first their hashes, sorted in numpy (cheaper than an aggregate over millions
        # of distinct keys in DuckDB: decision 010), then the few rows holding such a hash compared by key
        h = con.execute(q.key_hash_sql(t, "chk")).fetchnumpy()["h"]
        h.sort()
        repeated = np.unique(h[1:][h[1:] == h[:-1]])
        if len(repeated):
            con.register("dup_h", {"h": repeated})
            con.execute(
                f"UPDATE chk SET _why = b._why FROM ({q.duplicate_sql(t, 'chk', 'dup_h')}) b WHERE chk.rowid = b._ord"
            )
            con.unregister("dup_h")


def _repeats_reused(con: duckdb.DuckDBPyConnection, t: Table, reused: _Reused) -> None:
    """Set aside the rows of ``chk`` whose key is the key of a reused kept row (all of which come
    before them in the file): the hashes of ``chk``'s keys first, then the few stored rows with
    such a hash compared by key."""
    keys = q.key_columns(t)
    new = [f"CAST({ident('p_' + k)} AS {q.DUCK_TYPES[t.column(k).type]})" for k in keys]
    old = [f"CAST({ident(k)} AS {q.DUCK_TYPES[t.column(k).type]})" for k in keys]
    h = np.unique(con.execute(f"SELECT hash({', '.join(new)}) AS h FROM chk WHERE _why IS NULL").fetchnumpy()["h"])
    if not len(h):
        return
    con.register("new_h", {"h": h})
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE dup_old AS SELECT DISTINCT "
        f"{', '.join(f'{o} AS k{i}' for i, o in enumerate(old))} FROM read_parquet({lit(str(reused.stored))}, "
        f"file_row_number = true) WHERE file_row_number < {reused.kept} AND hash({', '.join(old)}) IN "
        f"(SELECT h FROM new_h)"
    )
    con.unregister("new_h")
    on = " AND ".join(f"{n} IS NOT DISTINCT FROM o.k{i}" for i, n in enumerate(new))
    label = lit(f"{q.DUPLICATE_KEY}:{'+'.join(keys)}")
    con.execute(f"UPDATE chk SET _why = {label} FROM dup_old o WHERE chk._why IS NULL AND {on}")
    con.execute("DROP TABLE dup_old")


def _problem_table(con: duckdb.DuckDBPyConnection, t: Table, reused: _Reused | None) -> None:
    """Table ``probs``: the rows of ``chk`` set aside or holding a reported cell, led by their record
    position ``_pos``, and the ``reused`` ones of the previous import (table ``chk_reused``)."""
    cond_cells = " OR ".join(f"{ident('b_' + c.name)} IS NOT NULL" for c in _reportable(t)) or "false"
    offset = reused.records if reused is not None else 0
    sql = f"SELECT rowid + {offset} AS _pos, * FROM chk WHERE _why IS NOT NULL OR ({cond_cells})"
    if reused is not None:
        sql += f" UNION ALL SELECT * FROM {ia.REUSED}"
    con.execute(f"CREATE OR REPLACE TABLE probs AS {sql}")


def _reportable(t: Table) -> list[Column]:
    """The optional columns whose cells can break a rule (then nulled and reported in cells/)."""
    return [c for c in t.columns if not c.required and q.can_break(c)]


def _counts(con: duckdb.DuckDBPyConnection, t: Table, reused: _Reused | None = None) -> _Checked:
    """Rows read and kept, set aside and cells reported per rule, of ``chk`` and the ``reused`` rows."""
    n_raw = con.execute("SELECT count(*) FROM chk").fetchone()[0]
    rows = "chk"
    if reused is not None:
        n_raw += reused.records
        rows = f"(SELECT * FROM chk UNION ALL SELECT * EXCLUDE (_pos) FROM {ia.REUSED})"
    n_rej = con.execute("SELECT count(DISTINCT line_byte_position) FROM rej").fetchone()[0]
    aside = dict(
        con.execute(
            f"SELECT split_part(_why, ':', 1) r, count(*) FROM {rows} WHERE _why IS NOT NULL GROUP BY r ORDER BY r"
        ).fetchall()
    )
    if n_rej:
        aside[q.MALFORMED_ROW] = n_rej
    opt = _reportable(t)
    cells: dict[str, int] = {}
    if opt:
        fut = [
            f"count({ident('b_' + c.name)}) FILTER (WHERE {ident('b_' + c.name)} = {lit(q.FUTURE_DATE)})"
            for c in opt
            if c.type in q.DATE_TYPES
        ]
        n, n_fut = con.execute(
            "SELECT "
            + " + ".join(f"count({ident('b_' + c.name)})" for c in opt)
            + ", "
            + (" + ".join(fut) or "0")
            + f" FROM {rows} WHERE _why IS NULL"
        ).fetchone()
        if n - n_fut:
            cells[q.MALFORMED_OPTIONAL] = n - n_fut
        if n_fut:
            cells[q.FUTURE_DATE] = n_fut
    kept = n_raw - sum(v for k, v in aside.items() if k != q.MALFORMED_ROW)
    return _Checked(n_raw + n_rej, kept, aside, cells)


def write_table(
    con: duckdb.DuckDBPyConnection, t: Table, path: Path, bank: str | None = None, reused: _Reused | None = None
) -> None:
    """Write the kept rows of ``chk`` as ``path`` (Parquet, spec dtypes, pandas metadata); with
    ``bank``, a last column ``bank_code`` holds the member bank on every row. With ``reused``,
    the first ``reused.kept`` rows of the stored table come first, in their order."""
    typed = [(c.name, c.type) for c in t.columns] + ([(BANK_COLUMN, "string")] if bank is not None else [])
    meta = json.dumps(
        {
            "index_columns": [],
            "column_indexes": [],
            "columns": [
                {
                    "name": name,
                    "field_name": name,
                    "pandas_type": _PANDAS_TYPES[kind][0],
                    "numpy_type": _PANDAS_TYPES[kind][1],
                    "metadata": None,
                }
                for name, kind in typed
            ],
            "attributes": {},
            "creator": {"library": "pyarrow", "version": pa.__version__},
        }
    )
    sql = q.stored_select(t, "chk", bank)
    if reused is not None and reused.kept:
        cols = ", ".join(ident(name) for name, _ in typed)
        sql = (
            f"SELECT {cols} FROM read_parquet({lit(str(reused.stored))}, file_row_number = true) "
            f"WHERE file_row_number < {reused.kept} UNION ALL {sql}"
        )
    con.execute(
        f"COPY ({sql}) TO {lit(str(path))} (FORMAT parquet, COMPRESSION snappy, "
        f"DICTIONARY_SIZE_LIMIT {DICTIONARY_SIZE_LIMIT}, KV_METADATA {{pandas: {lit(meta)}}})"
    )


def _write_report_csv(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    """Write a query's result as CSV in UTF-8 with BOM (Excel opens Chinese correctly); the bank's
    cells are text, neutralised against formulas (nbp.sheets)."""
    write_csv_batches(con.sql(sql).to_arrow_reader(200_000), path)


def _write_problem_rows(
    con: duckdb.DuckDBPyConnection,
    s: _Source,
    csv_path: Path | None,
    chk: _Checked,
    work: Path,
    *,
    rejects: Path,
    cells: Path,
) -> None:
    """Write the table's rows set aside to ``rejects`` and its reported cells to ``cells`` (when any).

    A CSV row's cells are read again from the file by the row's byte span (table ``lines``,
    columns ``r<i>``), exactly as DuckDB read them: ``chk`` carries no raw text. The rows are
    those of table ``probs`` (:func:`_problem_table`).
    """
    n_aside, n_cells = sum(chk.set_aside.values()), sum(chk.cells.values())
    if not n_aside and not n_cells:
        return
    rej, rej_lines = _problem_lines(con, s, csv_path, chk, work)
    cell = _cell_exprs(s)
    if n_aside:
        _write_rejects(con, s, cell, rej, rej_lines, rejects)
    if n_cells:
        _write_cells(con, s, cell, cells)


def _problem_lines(
    con: duckdb.DuckDBPyConnection, s: _Source, csv_path: Path | None, chk: _Checked, work: Path
) -> tuple[list[tuple[int, str]], np.ndarray]:
    """Table ``lines`` (``_ord``, ``line``; a CSV's also ``r<i>``) of the rows of ``probs`` (set aside
    or holding a reported cell, by record position ``_pos``); returns the records the CSV reader
    rejected (byte position, text) and their lines."""
    con.execute("DROP TABLE IF EXISTS lines")
    if s.kind == "parquet":
        con.execute("CREATE TABLE lines AS SELECT _pos AS _ord, _line AS line FROM probs")
        return [], np.zeros(0, np.int64)
    ords = con.execute("SELECT _pos AS _ord FROM probs ORDER BY 1").fetchnumpy()["_ord"]
    rej = con.execute(
        "SELECT line_byte_position, any_value(csv_line) AS csv_line FROM rej GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert csv_path is not None
    found = record_lines(csv_path, ords, np.array([r[0] for r in rej], np.int64), n_accepted=chk.read - len(rej))
    _reread_cells(con, csv_path, np.asarray(ords, np.int64), found, len(s.header), work / f"{s.table.name}.rows.csv")
    return rej, found.rej_lines


def _cell_exprs(s: _Source) -> dict[int, str]:
    """The SQL of each file column's cell as the file has it, over ``chk c`` joined to ``lines l``: a
    CSV's from the bytes read again, a Parquet file's from the raw column, or the enum / parsed value
    where no raw column is kept (its text is the file's)."""
    kept_raw = set(q.raw_kept(s.table, s.present, len(s.header)))
    by_pos = {i: n for n, i in s.present.items()}
    enum_raw = q.enum_kept(s.table, s.present)
    return {
        i: f"l.r{i}"
        if s.kind == "csv"
        else f"CAST(c.r{i} AS VARCHAR)"
        if i in kept_raw
        else f"COALESCE(CAST(c.{ident('p_' + by_pos[i])} AS VARCHAR), c.r{i})"
        if i in enum_raw
        else f"c.{ident('p_' + by_pos[i])}"
        for i in range(len(s.header))
    }


def _write_rejects(
    con: duckdb.DuckDBPyConnection,
    s: _Source,
    cell: dict[int, str],
    rej: list[tuple[int, str]],
    rej_lines: np.ndarray,
    path: Path,
) -> None:
    """rejects/<table>.csv: each row set aside with its line, rule, column and that column's value,
    then its cells; a record the reader rejected shows its whole text as the value."""
    raw_cols = ", ".join(f"{cell[i]} AS {ident(h)}" for i, h in enumerate(s.header))
    src = lit(s.path.name)
    why_col = "split_part(c._why, ':', 2)"
    whens = " ".join(f"WHEN {lit(n)} THEN {cell[i]}" for n, i in s.present.items())
    value = f"CASE {why_col} {whens} END" if whens else "NULL"
    sql = (
        f"SELECT {src} AS source_file, l.line AS source_line, split_part(c._why, ':', 1) AS rule, "
        f'{why_col} AS "column", {value} AS value, '
        f"{raw_cols} FROM probs c JOIN lines l ON l._ord = c._pos WHERE c._why IS NOT NULL"
    )
    if len(rej):
        con.register(
            "rej_np",
            {
                "line": np.asarray(rej_lines, np.int64),
                "csv_line": np.array([r[1].strip("\r\n") for r in rej], dtype=object),
            },
        )
        nulls = ", ".join(f"CAST(NULL AS VARCHAR) AS {ident(h)}" for h in s.header)
        sql += f" UNION ALL SELECT {src}, line, {lit(q.MALFORMED_ROW)}, NULL, csv_line, {nulls} FROM rej_np"
    path.parent.mkdir(exist_ok=True)
    _write_report_csv(con, f"SELECT * FROM ({sql}) ORDER BY source_line", path)
    if len(rej):
        con.unregister("rej_np")


def _write_cells(con: duckdb.DuckDBPyConnection, s: _Source, cell: dict[int, str], path: Path) -> None:
    """cells/<table>.csv: each optional cell reported (rule, column, value) in a kept row, then the row's cells."""
    raw_cols = ", ".join(f"{cell[i]} AS {ident(h)}" for i, h in enumerate(s.header))
    src = lit(s.path.name)
    opt = _reportable(s.table)
    parts = [
        f"SELECT {src} AS source_file, l.line AS source_line, c.{ident('b_' + o.name)} AS rule, "
        f'{lit(o.name)} AS "column", {cell[s.present[o.name]]} AS value, {raw_cols} '
        f"FROM probs c JOIN lines l ON l._ord = c._pos WHERE c._why IS NULL AND "
        f"{ident('b_' + o.name)} IS NOT NULL"
        for o in opt
        if o.name in s.present
    ]
    sql = " UNION ALL ".join(parts)
    path.parent.mkdir(exist_ok=True)
    _write_report_csv(con, f'SELECT * FROM ({sql}) ORDER BY source_line, "column"', path)


def _reread_cells(
    con: duckdb.DuckDBPyConnection, csv_path: Path, ords: np.ndarray, found: Located, n_columns: int, tmp: Path
) -> None:
    """Table ``lines`` (``_ord``, ``line``, ``r0`` .. ``r<n-1>``): the source line and the cells of
    the accepted records ``ords``, read again by DuckDB from a small file of just their bytes
    (same reader settings, so the same cells: quotes, doubled quotes, newlines, CRLF)."""
    # a dict of numpy arrays, not an Arrow table: registering Arrow costs DuckDB imports (decision 010)
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
            log.warning(
                "%s: the cells of %d reported rows could not be read again; reported empty", csv_path.name, len(ords)
            )
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
    sel = ", ".join(f"{ident('p_' + c)} AS {ident(c)}" for c in cols)
    con.execute(f"CREATE OR REPLACE TABLE keys_{t.name} AS SELECT {sel} FROM chk WHERE _why IS NULL")


def infer_export_date(days: list[date], counts: np.ndarray, tail_days: float) -> tuple[date, dict[str, Any]]:
    """The export date of data whose manifest does not give one.

    Every row of an export happened on or before its export date, and a bank books
    transactions every working day, so the export date is where the daily flow of rows
    ends. A few rows dated later (a wrong clock, a typed year, a sentinel such as
    2099-01-01) must not move it: the export date is the earliest day after which at
    most ``tail_days`` median days of rows remain. With clean data that is the latest
    day, unless that day holds less than ``tail_days`` of a median day (a day only just
    begun); rows after the returned day are set aside as ``future_date`` by the caller.

    Args:
        days: the distinct days of the rows, ascending.
        counts: rows per day, aligned with ``days``.
        tail_days: the rows allowed after the export date, in median days (``ingest.export_date_tail_days``).

    Returns:
        The export date and the figures of the inference (for report.json and the log).
    """
    counts = np.asarray(counts, np.int64)
    median = float(np.median(counts))
    after = int(counts.sum()) - np.cumsum(counts)  # rows dated after each day
    i = int(np.argmax(after <= tail_days * median))  # the last day always qualifies (nothing after it)
    return days[i], {
        "median_daily_rows": median,
        "rows_after": int(after[i]),
        "days_after": len(days) - 1 - i,
        "latest_day": days[-1].isoformat(),
    }


def _infer(con: duckdb.DuckDBPyConnection, s: _Source, tail_days: float) -> tuple[str, dict[str, Any]]:
    """Export date from the rows of ``chk`` (table ``INFER_FROM``) that passed their own cell rules."""
    col = INFER_FROM[1]
    rows = con.execute(q.daily_counts_sql("chk", col)).fetchall()
    if not rows:
        raise DataContractError(
            f"{s.path.name}: no row with a valid {col}, so the export date cannot be "
            f'inferred; give "export_date" in manifest.json (rule {q.BAD_MANIFEST})'
        )
    day, info = infer_export_date([r[0] for r in rows], np.array([r[1] for r in rows]), tail_days)
    info["column"] = f"{s.table.name}.{col}"
    days = f"{info['days_after']:,} later day" + ("s" if info["days_after"] > 1 else "")
    later = (
        f"; {info['rows_after']:,} rows on {days} (latest {info['latest_day']}) are set aside as {q.FUTURE_DATE}"
        if info["rows_after"]
        else ""
    )
    info["note"] = (
        f"from {info['column']}: the earliest day after which at most {tail_days:g} median "
        f"days of rows remain (median {info['median_daily_rows']:,.0f} rows a day){later}; "
        f"give export_date in manifest.json to set it"
    )
    log.info("export date inferred: %s %s", day.isoformat(), info["note"])
    return day.isoformat(), info


def _empty_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Reference targets for the case their table is absent (it cannot be: they are required)."""
    con.execute("CREATE TABLE keys_customers (customer_id VARCHAR)")
    con.execute("CREATE TABLE keys_accounts (account_id VARCHAR, customer_id VARCHAR)")


# ---------------------------------------------------------------- atomic swap


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
            if pid_alive(pid) and pid != os.getpid():
                continue
            if ".old-" in p.name and not target.exists():
                log.warning("restoring %s from %s (an earlier run died while swapping)", target, p.name)
                p.rename(target)
            else:
                shutil.rmtree(p, ignore_errors=True)
    for p in ws.bank_root.glob(".ingest-work-*"):
        try:
            pid = int(p.name.split("-")[2])
        except (ValueError, IndexError):
            continue
        if not pid_alive(pid) or pid == os.getpid():
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
    work = ws.bank_root / f".ingest-work-{tag}"
    for p in (data, rep, work):
        p.mkdir(parents=True)
    try:
        yield data, rep, work
    finally:
        for p in (data, rep, work):
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------- entry point


def _previous_import(ws: Workspace, bank_code: str | None) -> dict[str, Any] | None:
    """The report of the same bank's previous import in this workspace, or None."""
    f = ws.ingest_report
    if not f.exists():
        return None
    try:
        prev = json.loads(f.read_text(encoding="utf-8"))
        prev["tables"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable (%s); the table sizes are not compared with the previous import", f, e)
        return None
    if prev.get("bank_code") != bank_code:
        log.info(
            "the previous import is of bank %s, this one of %s: table sizes not compared",
            prev.get("bank_code"),
            bank_code,
        )
        return None
    return prev


_SET_ASIDE_HINTS = {
    q.FUTURE_DATE: "rows dated after the export date {export_date} ({export_from}): is it right? ",
    q.MALFORMED_ROW: "records that do not split into the header's columns: check delimiter, quotes and encoding; ",
    q.BROKEN_REFERENCE: "rows pointing at rows that are missing or were set aside themselves; ",
}


def _set_aside_problem(
    name: str, t: TableReport, cfg: IngestConfig, export_date: str, export_from: str, refused: Path
) -> dict[str, Any] | None:
    """The set-aside share of one table when it is above ``cfg.max_set_aside_share`` (tables of at
    least ``share_min_rows`` rows; a required table with no row kept always), else None. The
    message names the rejects file as it will be under ``refused`` if the import is refused."""
    n = sum(t.set_aside.values())
    if not n or not t.rows_read:
        return None
    share = n / t.rows_read
    whole = name in REQUIRED_TABLES and t.rows_kept == 0
    if not whole and (t.rows_read < cfg.share_min_rows or share <= cfg.max_set_aside_share):
        return None
    rule, k = max(t.set_aside.items(), key=lambda kv: kv[1])
    source = (
        "export_date of manifest.json" if export_from == "manifest" else "inferred; see ingest.export_date_tail_days"
    )
    hint = _SET_ASIDE_HINTS.get(rule, "").format(export_date=export_date, export_from=source)
    remedy = (
        "a required table with no row is no import, so --accept-set-aside does not apply"
        if whole
        else "or keep only the rows that pass with --accept-set-aside"
    )
    return {
        "table": name,
        "file": t.file,
        "rule": q.TOO_MANY_SET_ASIDE,
        "share": round(share, 4),
        "set_aside": n,
        "rows_read": t.rows_read,
        "top_rule": rule,
        "always": whole,
        "message": (
            f"{t.file}: {share:.1%} of its rows set aside ({n:,} of {t.rows_read:,}; most: {rule} {k:,}), "
            f"above the limit {cfg.max_set_aside_share:.0%} (ingest.max_set_aside_share); {hint}"
            f"rows listed in {refused / 'rejects' / name}.csv; fix the export, {remedy} "
            f"(rule {q.TOO_MANY_SET_ASIDE})"
        ),
    }


def _shrink_problems(
    reports: dict[str, TableReport], prev: dict[str, Any] | None, cfg: IngestConfig
) -> list[dict[str, Any]]:
    """Tables keeping more than ``cfg.max_shrink_share`` fewer rows than in the previous import
    (from ``share_min_rows`` previous rows; a table that had rows and is now absent or empty always)."""
    if prev is None:
        return []
    out = []
    since = f"the previous import (export date {prev.get('export_date')}, run {prev.get('run_id')})"
    for name, t in reports.items():
        before = int((prev["tables"].get(name) or {}).get("rows_kept") or 0)
        now = t.rows_kept if t.file is not None else 0
        if not before or now >= before:
            continue
        drop = 1 - now / before
        gone = t.file is None
        if not gone and (before < cfg.share_min_rows or drop <= cfg.max_shrink_share):
            continue
        what = (
            f"{name}: the table is absent or empty now, {before:,} rows kept in {since}"
            if gone
            else f"{t.file}: {now:,} rows kept against {before:,} in {since}, {drop:.0%} fewer"
        )
        out.append(
            {
                "table": name,
                "file": t.file,
                "rule": q.TABLE_SHRANK,
                "rows_kept": now,
                "previous_rows_kept": before,
                "share": round(drop, 4),
                "message": (
                    f"{what}, above the limit {cfg.max_shrink_share:.0%} (ingest.max_shrink_share): "
                    f"was the export cut short? If the bank really has fewer rows, re-run with "
                    f"--accept-shrink (rule {q.TABLE_SHRANK})"
                ),
            }
        )
    return out


def _share_check(
    what: str, limit: float, min_rows: int, problems: list[dict[str, Any]], accepted: bool, flag: str, **context: Any
) -> dict[str, Any]:
    """One share limit's entry under ``checks`` of report.json: the limit, the tables above it, and
    whether ``flag`` was given and let them through."""
    out = {
        "limit": limit,
        "min_rows": min_rows,
        **context,
        "exceeded": {p["table"]: p["share"] for p in problems},
        "accepted": accepted,
        "overridden": bool(problems) and accepted,
    }
    if problems:
        out["note"] = (
            f"{what} limit {limit:.0%} exceeded by "
            + ", ".join(f"{p['table']} ({p['share']:.1%})" for p in problems)
            + (f", accepted with {flag}" if accepted else "")
        )
    return out


class _Validation:
    """The checking of one export's tables on one DuckDB connection, in table order, into the
    staging folders: each table is read and checked on its own, then, once the export date is
    known (from the manifest, or inferred from ``INFER_FROM``), related to the tables before it,
    counted, stored and reported. Tables read before the export date is known wait as
    ``chk_<table>`` / ``rej_<table>``."""

    def __init__(
        self,
        cfg: IngestConfig,
        encoding: str,
        export_date: str | None,
        staging: tuple[Path, Path, Path],
        ws: Workspace,
        record: tuple[ia.Record | None, str] = (None, "--full"),
    ) -> None:
        self.ws = ws
        self.record, self.record_why = record  # the previous import's, or why there is none to use
        self.plans: dict[str, ia.Plan] = {}  # appendable tables: what is reused, this import's record
        self.reused: dict[str, _Reused] = {}
        self.cfg = cfg
        self.encoding = encoding
        self.export_date = export_date
        self.export_from = "manifest" if export_date else "data"
        self.inference: dict[str, Any] | None = None  # how the export date was inferred
        self.data_dir, self.rep_dir, self.work = staging
        self.reports: dict[str, TableReport] = {}
        self.aside_problems: list[dict[str, Any]] = []  # tables above the set-aside share
        self._waiting: list[tuple[_Source, Path | None, float]] = []
        self.con = duckdb.connect(":memory:")

    def run(self, sources: dict[str, _Source | None], empty: dict[str, str]) -> None:
        """Check and store every table (``empty``: warnings of optional tables that count as absent)."""
        try:
            self._configure()
            _empty_keys(self.con)
            for name in tqdm(ALL_TABLES, desc="ingest", unit="table", disable=None):
                s = sources[name]
                if s is None:
                    if name in empty:
                        self.reports[name] = TableReport(warnings=[empty[name]])
                    else:
                        log.info("%s: absent (optional table)", name)
                        self.reports[name] = TableReport()
                    continue
                self._read(s)
        finally:
            self.con.close()
        if self.export_date is None:  # every table read waits: the inference table was never reached
            raise DataContractError(
                f"no {INFER_FROM[0]} to infer the export date from, and manifest.json gives no "
                f"export_date (rule {q.BAD_MANIFEST})"
            )

    def _configure(self) -> None:
        con = self.con
        con.execute(f"SET memory_limit = {lit(self.cfg.memory_limit)}")
        con.execute(f"SET temp_directory = {lit(str(self.work / 'spill'))}")
        con.execute("SET preserve_insertion_order = true")  # chk.rowid = record position
        con.execute("SET enable_progress_bar = false")
        if self.cfg.threads > 0:
            con.execute(f"SET threads = {int(self.cfg.threads)}")

    def _read(self, s: _Source) -> None:
        """Read and check one table's file; store it (and the tables waiting) once the export date is known."""
        con, name = self.con, s.table.name
        t1 = time.perf_counter()
        src_sql, csv_path = _source_sql(con, s, self.encoding, self.work)
        if name in ia.APPENDABLE:
            src_sql = self._plan(s, src_sql, csv_path)
        in_check = name in self.plans and self.plans[name].record is None
        _read_check(con, s, src_sql, fingerprint=in_check)
        if in_check:
            self._fingerprint_checked(s)
        if name in self.reused:
            self._load_reused(s)
        if csv_path is not None:
            _check_structure(con, s, csv_path, self.encoding)
        if (
            name not in self.reused
            and not con.execute("SELECT (SELECT count(*) FROM chk) + (SELECT count(*) FROM rej)").fetchone()[0]
        ):
            if name in REQUIRED_TABLES:
                raise DataContractError(
                    f"{s.path.name}: a header but no rows: required table '{name}' is "
                    f"empty; export it again (rule {q.EMPTY_TABLE})"
                )
            msg = (
                f"{s.path.name}: a header but no rows; optional table '{name}' counts as absent (rule {q.EMPTY_TABLE})"
            )
            log.warning("%s", msg)
            self.reports[name] = TableReport(warnings=[msg])
            con.execute("DROP TABLE chk")
            return
        if self.export_date is None and name == INFER_FROM[0]:
            self.export_date, self.inference = _infer(con, s, self.cfg.export_date_tail_days)
        con.execute(f"ALTER TABLE chk RENAME TO chk_{name}; ALTER TABLE rej RENAME TO rej_{name}")
        self._waiting.append((s, csv_path, t1))
        if self.export_date is None:
            return
        for w_src, w_csv, w_t1 in self._waiting:  # in table order: references need their targets first
            wn = w_src.table.name
            con.execute(f"ALTER TABLE chk_{wn} RENAME TO chk; ALTER TABLE rej_{wn} RENAME TO rej")
            self._finish(w_src, w_csv, w_t1)
        self._waiting = []

    def _plan(self, s: _Source, src_sql: str, csv_path: Path | None) -> str:
        """Fingerprint an appendable table's file by month, decide which of its first records the
        previous import's verdicts still hold for (``self.reused``), and return the table
        expression of the records left to check."""
        con, name = self.con, s.table.name
        col = ia.APPENDABLE[name]
        plan = ia.Plan(name, why=self._why_full(s))
        self.plans[name] = plan
        if plan.why:  # no record to compare with: the fingerprints come with the check (_read)
            log.info("%s", ia.describe(plan, 0))
            return src_sql
        fp = ia.fingerprint_columns(len(s.header), s.present[col], s.native.get(col))
        with _step(name, "fingerprints"):
            try:
                if s.kind == "parquet":
                    months, records = ia.fingerprints(con, f"(SELECT {fp}, _line - 1 AS pos FROM {src_sql})")
                else:  # a CSV's record positions are kept only by a table's rowid
                    assert csv_path is not None
                    con.execute(
                        f"CREATE OR REPLACE TEMP TABLE fp_rows AS SELECT {fp} "
                        f"FROM {_read_csv_sql(csv_path, len(s.header), 'rej_fp')}"
                    )
                    months, records = ia.fingerprints(con, "(SELECT *, rowid AS pos FROM fp_rows)")
                    con.execute("DROP TABLE fp_rows; DROP TABLE IF EXISTS rej_fp; DROP TABLE IF EXISTS rej_fp_scan")
            except duckdb.Error as e:  # the file cannot be read: the same stop as the check's
                if s.kind == "parquet":
                    raise _parquet_error(s.path, e) from e
                raise DataContractError(f"{s.path.name}: cannot read: {one_line(e)} (rule {q.UNREADABLE_FILE})") from e
        plan.record = self._table_record(s, months, records)
        assert self.record is not None and self.export_date is not None
        prev = self.record.tables[name].months
        taken, k, stop = ia.reusable_prefix(prev, months, self.record.export_date, self.export_date)
        plan.why = stop if k else f"no unchanged month opens the file: {stop}"
        if k:
            self._reuse(s, plan, taken, k)
        log.info("%s", ia.describe(plan, records))
        if not plan.reused:
            return src_sql
        if s.kind == "parquet":
            return f"(SELECT * FROM {src_sql} WHERE _line > {plan.reused})"
        key = ia.month_key_sql(f"r{s.present[col]}", None)
        return f"(SELECT * FROM {src_sql} WHERE coalesce({key}, '') NOT IN ({', '.join(lit(m) for m in plan.months)}))"

    @staticmethod
    def _table_record(s: _Source, months: dict[str, ia.Month], records: int) -> ia.TableRecord:
        return ia.TableRecord(s.kind, list(s.header), dict(s.native), months, records, 0)

    def _fingerprint_checked(self, s: _Source) -> None:
        """Record the fingerprints of a table checked in full from its ``chk`` (columns ``_m``, ``_h``,
        then dropped)."""
        with _step(s.table.name, "fingerprints"):
            months, records = ia.fingerprints(self.con, "(SELECT _m, _h, rowid AS pos FROM chk)")
            self.con.execute("ALTER TABLE chk DROP COLUMN _m; ALTER TABLE chk DROP COLUMN _h")
        self.plans[s.table.name].record = self._table_record(s, months, records)

    def _why_full(self, s: _Source) -> str:
        """Why an appendable table is checked in full whatever its months ('' when it need not be)."""
        rec, name = self.record, s.table.name
        if rec is None:
            return self.record_why
        prev = rec.tables.get(name)
        why = ""
        if self.export_from != "manifest":
            why = "the export date is inferred from the data"
        elif rec.code != ia.code_hash():
            why = "the ingest checks, the spec or DuckDB changed since the previous import"
        elif rec.bank != self.ws.bank:
            why = f"the previous import is of bank {rec.bank}"
        elif prev is None:
            why = "the table is not in the previous import's record"
        elif (prev.kind, prev.header, prev.native) != (s.kind, list(s.header), dict(s.native)):
            why = "the file's format changed since the previous import (CSV or Parquet, its columns or their types)"
        elif s.kind == "csv" and self.encoding != "utf-8":
            why = f"a CSV in {self.encoding.upper()}, read through a UTF-8 copy"
        elif not self.ws.table(name).exists() or not ia.problems_file(self.ws.ingest_append_dir, name).exists():
            why = "the previous import's stored table is missing"
        return why

    def _reuse(self, s: _Source, plan: ia.Plan, months: list[str], k: int) -> None:
        """Reuse the first ``k`` records (the rows of ``months``) unless a reused row names an
        account whose kept row changed, or the stored table is not the one recorded."""
        con, name = self.con, s.table.name
        assert self.record is not None
        stored, problems = self.ws.table(name), ia.problems_file(self.ws.ingest_append_dir, name)
        aside = con.execute(
            f"SELECT count(*) FROM read_parquet({lit(str(problems))}) WHERE _pos < {k} AND _why IS NOT NULL"
        ).fetchone()[0]
        n_stored = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(stored))})").fetchone()[0]
        if n_stored != self.record.tables[name].kept:
            plan.why = "the stored table is not the one the previous import recorded"
            return
        with _step(name, "accounts changed"):
            if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'changed'").fetchone()[0]:
                con.execute(f"CREATE TEMP TABLE changed AS {ia.changed_accounts_sql(self.ws.table('accounts'))}")
            n_changed = con.execute("SELECT count(*) FROM changed").fetchone()[0]
            hit = con.execute(ia.affected_sql(stored, k - aside, problems, k)).fetchone()[0] if n_changed else 0
        if hit:
            plan.why = f"{hit:,} rows of unchanged months name accounts whose kept row changed"
            return
        plan.reused, plan.kept, plan.months = k, k - aside, months
        self.reused[name] = _Reused(stored, k, k - aside)

    def _load_reused(self, s: _Source) -> None:
        """Table ``chk_reused``: the reused problem rows, typed as ``chk``, led by ``_pos``; checks that
        ``chk`` holds exactly the records after the reused ones."""
        con, name = self.con, s.table.name
        r, plan = self.reused[name], self.plans[name]
        assert plan.record is not None
        n = con.execute("SELECT count(*) FROM chk").fetchone()[0]
        if n != plan.record.records - r.records:  # the filter and the positions disagree: a bug
            raise RuntimeError(f"{name}: {n:,} records left to check, expected {plan.record.records - r.records:,}")
        problems = ia.problems_file(self.ws.ingest_append_dir, name)
        con.execute(f"CREATE OR REPLACE TABLE {ia.REUSED} AS SELECT CAST(0 AS BIGINT) AS _pos, * FROM chk LIMIT 0")
        con.execute(
            f"INSERT INTO {ia.REUSED} BY NAME SELECT * FROM read_parquet({lit(str(problems))}) WHERE _pos < {r.records}"
        )

    def record_of(self) -> ia.Record:
        """This import's record of its appendable tables, for the next import."""
        assert self.export_date is not None
        tables = {n: p.record for n, p in self.plans.items() if p.record is not None and n in self.reports}
        return ia.Record(ia.code_hash(), self.ws.bank, self.export_date, tables)

    def _finish(self, s: _Source, csv_path: Path | None, t1: float) -> None:
        """Relate, count, store and report the table whose ``chk`` and ``rej`` are current."""
        con, name = self.con, s.table.name
        assert self.export_date is not None
        reused = self.reused.get(name)
        _relate(con, s.table, self.export_date, reused)
        with _step(name, "counts"):
            counts = _counts(con, s.table, reused)
        with _step(name, "write"):
            write_table(con, s.table, self.data_dir / self.ws.table(name).name, self.ws.bank, reused)
        _problem_table(con, s.table, reused)
        if (plan := self.plans.get(name)) is not None and plan.record is not None:
            plan.record.kept = counts.kept
            out = ia.problems_file(self.data_dir / self.ws.ingest_append_dir.name, name)
            out.parent.mkdir(exist_ok=True)
            con.execute(f"COPY probs TO {lit(str(out))} (FORMAT parquet)")
        with _step(name, "reports"):
            _write_problem_rows(
                con,
                s,
                csv_path,
                counts,
                self.work,
                rejects=self.ws.rejects(name, root=self.rep_dir),
                cells=self.ws.cells(name, root=self.rep_dir),
            )
        with _step(name, "keys"):
            _keep_keys(con, s.table)
        tr = _table_report(s, counts, time.perf_counter() - t1)
        self.reports[name] = tr
        problem = _set_aside_problem(name, tr, self.cfg, self.export_date, self.export_from, self.ws.ingest_refused_dir)
        if problem is not None:
            self.aside_problems.append(problem)
        con.execute(
            f"DROP TABLE IF EXISTS chk; DROP TABLE IF EXISTS lines; DROP TABLE IF EXISTS rej; "
            f"DROP TABLE IF EXISTS probs; DROP TABLE IF EXISTS {ia.REUSED}"
        )
        if csv_path is not None and csv_path != s.path:
            csv_path.unlink(missing_ok=True)
        log.info(
            "%s: %s rows read, %s kept, %s set aside, %s cells reported in %.2f s (%s)",
            name,
            f"{tr.rows_read:,}",
            f"{tr.rows_kept:,}",
            f"{sum(tr.set_aside.values()):,}",
            f"{sum(tr.cells_reported.values()):,}",
            tr.seconds,
            s.path.name,
        )
        for col in tr.unknown_columns:
            log.warning("%s: unknown column '%s' is not stored", s.path.name, col)


def _table_report(s: _Source, counts: _Checked, seconds: float) -> TableReport:
    """The report of a stored table: its counts and which of its file's columns the spec does not know
    or the file does not have."""
    norm = [h.strip().lower() for h in s.header]
    return TableReport(
        rows_read=counts.read,
        rows_kept=counts.kept,
        set_aside=counts.set_aside,
        cells_reported=counts.cells,
        file=s.path.name,
        unknown_columns=[h for h, n in zip(s.header, norm, strict=True) if n not in s.table.column_names],
        absent_columns=[c for c in s.table.column_names if c not in s.present],
        seconds=seconds,
    )


def _checks(
    v: _Validation, previous: dict[str, Any] | None, accept_set_aside: bool, accept_shrink: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The share limits' entries of report.json, and the problems that refuse the import (those not
    let through by their override; a required table with no row kept always)."""
    cfg = v.cfg
    shrink_problems = _shrink_problems(v.reports, previous, cfg)
    checks = {
        "set_aside": _share_check(
            "set-aside",
            cfg.max_set_aside_share,
            cfg.share_min_rows,
            v.aside_problems,
            accept_set_aside,
            "--accept-set-aside",
        ),
        "shrink": _share_check(
            "shrink",
            cfg.max_shrink_share,
            cfg.share_min_rows,
            shrink_problems,
            accept_shrink,
            "--accept-shrink",
            previous_run_id=previous.get("run_id") if previous else None,
            previous_export_date=previous.get("export_date") if previous else None,
        ),
    }
    refused = [
        *(p for p in v.aside_problems if p["always"] or not accept_set_aside),
        *(shrink_problems if not accept_shrink else []),
    ]
    return checks, refused


def _write_json(path: Path, body: dict[str, Any]) -> None:
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")


def _refuse(ws: Workspace, rep_dir: Path, report: IngestReport, refused: list[dict[str, Any]]) -> NoReturn:
    """Move the would-be report (with the reasons) to ``ws.ingest_refused_dir`` and stop; the store
    and the last report stay as they are."""
    where = ws.ingest_refused_dir
    body = report.to_json()
    body["refused"] = [p["message"] for p in refused]
    _write_json(rep_dir / ws.ingest_report.name, body)
    shutil.rmtree(where, ignore_errors=True)
    rep_dir.rename(where)
    more = f"; {len(refused) - 1} more in {where / ws.ingest_report.name}" if len(refused) > 1 else ""
    raise DataContractError(body["refused"][0] + more)


def _store(ws: Workspace, staging: tuple[Path, Path, Path], report: IngestReport, manifest: dict[str, Any]) -> None:
    """Write ``_meta.json`` (the one record of the export date, read through ``Workspace.export_date``)
    and ``report.json`` into the staged folders, then swap them in for the stored data and report."""
    data_dir, rep_dir, _ = staging
    meta = {
        "export_date": report.export_date,
        "export_date_from": report.export_date_from,
        "export_date_inference": report.inference,
        "source": report.source,
        "format": manifest.get("format"),
        "bank": manifest.get("bank"),
        "bank_code": report.bank_code,
        "run_id": report.run_id,
        "tables": [n for n, r in report.tables.items() if r.file is not None],
        "finished_at": report.finished_at,
    }
    _write_json(data_dir / ws.ingest_meta.name, meta)
    _write_json(rep_dir / ws.ingest_report.name, report.to_json())
    ws.ingested_dir.parent.mkdir(parents=True, exist_ok=True)
    _swap_in([(data_dir, ws.ingested_dir), (rep_dir, ws.ingest_dir)], report.run_id)


def _bank_of(ws: Workspace, bank: str | None, manifest: dict[str, Any]) -> str | None:
    """The member bank of an import: ``bank`` (``--bank``, or the bank ``ws`` is for), else the
    manifest's ``bank_code``, else None (a single-bank import). Stops when they disagree."""
    if bank is not None and ws.bank is not None and bank != ws.bank:
        raise ValueError(f"bank {bank!r} given for the workspace of bank {ws.bank!r}")
    given = bank if bank is not None else ws.bank
    if given is not None and not is_bank_code(given):
        raise ConfigError(
            f"--bank {json.dumps(given, ensure_ascii=False)}: not a bank code: {BANK_CODE_RULE} (spec, Federation)"
        )
    coded = manifest.get("bank_code")
    if given is not None and coded is not None and given != coded:
        raise DataContractError(
            f"--bank {given} but manifest.json says bank_code {coded}: is this the right export? "
            f"Give the bank of its manifest (rule {q.BANK_MISMATCH})"
        )
    return given if given is not None else coded


def _member_workspace(ws: Workspace, bank: str | None) -> Workspace:
    """Where the import of ``bank`` (None: a single bank) goes; stops when it would mix a
    single-bank store and member banks in one workspace (the stored data stays as it is)."""
    home = Workspace(ws.home)
    if bank is not None and home.ingested_dir.exists():
        raise DataContractError(
            f"bank {bank}: {ws.home} holds a single-bank store ({home.ingested_dir}), and a workspace is "
            f"either one bank or a federation of banks/<code>/: import member banks into another "
            f"NBP_HOME (rule {q.MIXED_WORKSPACE})"
        )
    if bank is None and (members := home.banks()):
        raise DataContractError(
            f"{ws.home} is a federation workspace (banks {', '.join(members)}), and this export names no "
            f"bank (no bank_code in manifest.json): give --bank CODE, or import a single bank into "
            f"another NBP_HOME (rule {q.MIXED_WORKSPACE})"
        )
    return home.for_bank(bank) if bank is not None else home


def ingest(
    src: Path,
    ws: Workspace,
    cfg: IngestConfig,
    *,
    bank: str | None = None,
    accept_set_aside: bool = False,
    accept_shrink: bool = False,
    full: bool = False,
) -> IngestReport:
    """Validate the bank export in ``src`` and store its typed tables in the workspace.

    Args:
        src: the export folder (``<table>.csv`` or ``<table>.parquet`` per table,
            optional ``manifest.json``).
        ws: the workspace; writes ``ws.ingested_dir/<table>.parquet`` (columns and
            dtypes of :mod:`bankexport.spec`: string/enum ``string``, date/timestamp/month
            ``datetime64[us]``, money ``float64``, int ``Int64``) and ``ws.ingest_meta``,
            and ``ws.ingest_report``, ``ws.ingest_dir/rejects/<table>.csv``, ``cells/<table>.csv``;
            for a member bank, those of ``ws.for_bank(code)``, each table with a last column
            ``bank_code``; then the import's data-quality record (``bankexport/quality.py``).
        cfg: ingest settings (DuckDB memory limit and threads, share limits).
        bank: the member bank (``--bank``); default the manifest's ``bank_code``; neither:
            a single-bank import. Given with a ``bank_code``, the two must agree.
        accept_set_aside: store the tables even where more rows than ``cfg.max_set_aside_share``
            are set aside (the report says so).
        accept_shrink: store the tables even where one keeps more than ``cfg.max_shrink_share``
            fewer rows than the same bank's previous import (the report says so).
        full: check every row; by default the rows of the months that open an appendable table's
            file unchanged since the previous import keep that import's verdicts
            (:mod:`bankexport.ingest_append`; the stored tables and reports are the same).

    Returns:
        The report (also written as ``report.json``).

    Raises:
        DataContractError: a required table or column is missing, a header repeats a
            column, a table is given twice, a file is empty, cut short, in another encoding
            or unreadable, a required table has no rows, the manifest is bad, ``bank`` and the
            manifest's ``bank_code`` disagree, the import would mix a single-bank store and
            member banks, or a share limit is exceeded without its override (then the would-be
            report goes to ``ingest.refused/``). The stored data is untouched.
    """
    t0 = time.perf_counter()
    src = Path(src).resolve()
    manifest = _read_manifest(src)
    encoding = ENCODINGS[str(manifest.get("encoding") or "utf-8").lower()]
    bank_code = _bank_of(ws, bank, manifest)
    ws = _member_workspace(ws, bank_code)
    sources, empty = _locate(src, encoding)
    unread = _unread_files(src)
    ws.bank_root.mkdir(parents=True, exist_ok=True)
    _clean_stale(ws)
    previous = _previous_import(ws, bank_code)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    export_date = str(manifest["export_date"]) if manifest.get("export_date") else None
    with _staging(ws, tag) as staging, logging_redirect_tqdm():
        record = (None, "--full") if full else ia.read_record(ws)
        v = _Validation(cfg, encoding, export_date, staging, ws, record)
        v.run(sources, empty)
        assert v.export_date is not None
        checks, refused = _checks(v, previous, accept_set_aside, accept_shrink)
        report = IngestReport(
            str(src),
            v.export_date,
            v.export_from,
            tag,
            v.reports,
            finished_at=datetime.now().isoformat(timespec="seconds"),
            seconds=time.perf_counter() - t0,
            bank_code=bank_code,
            inference=v.inference,
            checks=checks,
            warnings=unread,
            append={n: p.to_json() for n, p in v.plans.items()},
        )
        if refused:
            _refuse(ws, staging[1], report, refused)
        ia.write_record(v.record_of(), staging[0] / ws.ingest_append_dir.name)
        _store(ws, staging, report, manifest)
    shutil.rmtree(ws.ingest_refused_dir, ignore_errors=True)
    quality.write_snapshot(ws, report)  # this export date's data-quality figures, kept as history
    log.info(
        "ingest: %d tables, export date %s, %.1f s",
        sum(r.file is not None for r in report.tables.values()),
        report.export_date,
        report.seconds,
    )
    return report
