"""Appending a re-delivered export's new months to the ingested store (``nbp ingest``).

A bank delivers its whole history again each month, one month longer. For the two tables
that grow by month (``APPENDABLE``: transactions, balances), ingest fingerprints the raw
rows of the export per calendar month and compares them with the previous import's record
(``Workspace.ingest_append_dir``). The rows of unchanged months that open the file (a
prefix of its records, at the same positions as before) keep the previous import's verdicts:
the kept ones are copied from the stored table, the ones set aside (and the cells reported)
from the record; only the later rows are read, checked, related and reported. The result is
the table a full ingest would store (``docs/decisions/028-ingest-append.md``).

Why a reused row's verdict cannot change:
    - its own cells are the same (fingerprint), checked by the same code (``code_hash``);
    - no row of a reused month is after either export date (a reused month ends on or before
      both), so ``future_date`` gives the same verdict;
    - a repeated key keeps its first copy, and every reused row comes before every later row
      in the file, so later rows never change a reused row's duplicate verdict;
    - its references point at accounts (and through them at customers); when the kept
      ``(account_id, customer_id)`` pairs differ from the previous import's for an account a
      reused row names, the table is checked in full (:func:`affected_sql`).

Anything else falls back to the full check of the table, with one log line saying why.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from bankexport.spec import FORMAT, TABLES
from nbp.sqltext import lit
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

# Tables whose rows are appended by month: table -> the date column that names a row's month.
# Their only other table dependency is the kept accounts (transactions also check the
# account's owner); neither has another date column that future_date could touch.
APPENDABLE = {"transactions": "txn_time", "balances": "month"}
STATE_VERSION = 1
STATE_FILE = "state.json"
# The sources of the checks: a change to any of them re-checks everything.
_CODE_FILES = ("ingest.py", "ingest_sql.py", "ingest_lines.py", "ingest_append.py", "spec.py")
# The previous import's reused problem rows, loaded beside the checked table ``chk``.
REUSED = "chk_reused"
_MOD = 18446744073709551616  # 2**64: sums of 64-bit hashes kept as 64-bit numbers


def code_hash() -> str:
    """A short hash of the ingest checks' source, the spec version and DuckDB's version (its
    ``hash()`` may differ between versions)."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
        h.update(b"\0")
    h.update(f"{FORMAT}\0{duckdb.__version__}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Month:
    """The raw rows of one month of a table's file: count, order-free sum of row hashes, sum of
    hashes of (row, position), first and last record position."""

    n: int
    rows: int
    placed: int
    lo: int
    hi: int

    def as_list(self) -> list[int]:
        return [self.n, self.rows, self.placed, self.lo, self.hi]


@dataclass
class TableRecord:
    """What the next import needs of one appendable table: how its file was read, its months'
    fingerprints, and how many records it had and kept."""

    kind: str
    header: list[str]
    native: dict[str, str]
    months: dict[str, Month]  # "YYYY-MM" -> fingerprint; "" for rows without a readable month
    records: int  # records the reader accepted
    kept: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "header": self.header,
            "native": self.native,
            "months": {m: f.as_list() for m, f in self.months.items()},
            "records": self.records,
            "kept": self.kept,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TableRecord:
        return cls(
            d["kind"],
            list(d["header"]),
            dict(d["native"]),
            {m: Month(*v) for m, v in d["months"].items()},
            int(d["records"]),
            int(d["kept"]),
        )


@dataclass
class Record:
    """The previous import's record (``state.json`` in ``Workspace.ingest_append_dir``)."""

    code: str
    bank: str | None
    export_date: str
    tables: dict[str, TableRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "code": self.code,
            "bank": self.bank,
            "export_date": self.export_date,
            "tables": {t: r.to_json() for t, r in self.tables.items()},
        }


def read_record(ws: Workspace) -> tuple[Record | None, str]:
    """The previous import's record, or None and why there is none to use."""
    f = ws.ingest_append_dir / STATE_FILE
    if not f.exists():
        return None, "no record of the previous import"
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
        if d.get("version") != STATE_VERSION:
            return None, f"the previous import's record is of version {d.get('version')}"
        rec = Record(
            d["code"], d["bank"], d["export_date"], {t: TableRecord.from_json(r) for t, r in d["tables"].items()}
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"the previous import's record is unreadable ({e})"
    return rec, ""


def write_record(rec: Record, folder: Path) -> None:
    """Write ``state.json`` into ``folder`` (the staged ``_append`` folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_FILE).write_text(json.dumps(rec.to_json(), indent=1), encoding="utf-8")


def problems_file(folder: Path, table: str) -> Path:
    """The rows of ``table`` set aside or holding a reported cell, as checked (with ``_pos``)."""
    return folder / f"{table}.problems.parquet"


def month_key_sql(value: str, native_type: str | None) -> str:
    """``YYYY-MM`` of a raw cell of a table's month column, NULL when it has none.

    Any rule that reads the row's own date parses the same text, so a row whose date parses
    is in the month named by its first seven characters (a typed value: its month).
    """
    if native_type is not None:
        return f"strftime(CAST({value} AS TIMESTAMP), '%Y-%m')"
    v = f"CAST({value} AS VARCHAR)"
    return f"CASE WHEN regexp_matches({v}, '^ *\\d{{4}}-\\d{{2}}') THEN substr(ltrim({v}, ' '), 1, 7) END"


def fingerprint_sql(rows: str, pos: str) -> str:
    """SELECT ``m, n, s, p, lo, hi`` per month over ``rows`` (columns ``m``, ``h``) with positions ``pos``."""
    return (
        f"SELECT coalesce(m, '') AS m, count(*) AS n, "
        f"CAST(sum(CAST(h AS HUGEINT)) % {_MOD} AS UBIGINT) AS s, "
        f"CAST(sum(CAST(hash(h, {pos}) AS HUGEINT)) % {_MOD} AS UBIGINT) AS p, "
        f"min({pos}) AS lo, max({pos}) AS hi FROM {rows} GROUP BY ALL"
    )


def fingerprint_columns(n_header: int, key_pos: int, native: str | None) -> str:
    """The columns ``_m`` (the row's month) and ``_h`` (the hash of its raw cells) over a reader's
    columns ``r0`` .. ``r<n-1>``, ``key_pos`` being the month column (of DuckDB type ``native``
    when a Parquet file has it typed)."""
    cols = ", ".join(f"r{i}" for i in range(n_header))
    return f"{month_key_sql(f'r{key_pos}', native)} AS _m, hash({cols}) AS _h"


def fingerprints(con: duckdb.DuckDBPyConnection, rows: str) -> tuple[dict[str, Month], int]:
    """Each month's fingerprint of a table's raw records and the number of records, from ``rows``
    (a table expression with ``_m``, ``_h`` and the record position ``pos``)."""
    out = con.execute(fingerprint_sql(f"(SELECT _m AS m, _h AS h, pos FROM {rows})", "pos")).fetchall()
    months = {str(m): Month(int(n), int(s), int(p), int(lo), int(hi)) for m, n, s, p, lo, hi in out}
    return months, sum(f.n for f in months.values())


def month_end(key: str) -> date | None:
    """The last day of month ``YYYY-MM``, None when the key names no month."""
    try:
        first = date.fromisoformat(key + "-01")
    except ValueError:
        return None
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


def reusable_prefix(
    old: dict[str, Month], new: dict[str, Month], old_export: str, new_export: str
) -> tuple[list[str], int, str]:
    """The months whose rows open the file unchanged, how many records they are, and what ends them.

    A month is reused when its fingerprint (rows and their positions) equals the previous
    import's and it ends on or before both export dates; the reused months are the longest run
    of such months that fills the file's first records with no other record among them.
    """
    limit = min(date.fromisoformat(old_export), date.fromisoformat(new_export))
    taken: list[str] = []
    k = 0
    stop = "every month is reused"
    for m, f in sorted(new.items(), key=lambda kv: kv[1].lo):
        end = month_end(m)
        if f.lo != k or f.hi - f.lo + 1 != f.n:
            stop = f"the rows of {m or 'no month'} are not contiguous after the reused ones"
        elif end is None:
            stop = "rows without a readable month"
        elif end > limit:
            stop = f"{m} ends after the export date {limit.isoformat()}"
        elif old.get(m) != f:
            stop = f"{m} changed" if m in old else f"{m} is new"
        else:
            taken.append(m)
            k += f.n
            continue
        break
    return taken, k, stop


def changed_accounts_sql(old_accounts: Path) -> str:
    """SELECT ``account_id`` of the accounts whose kept (account, owner) pair is not the same in the
    stored table ``old_accounts`` and in this import's ``keys_accounts``."""
    old = f"(SELECT account_id, customer_id FROM read_parquet({lit(str(old_accounts))}))"
    return (
        f"SELECT DISTINCT account_id FROM (({old} EXCEPT SELECT account_id, customer_id FROM keys_accounts) "
        f"UNION ALL (SELECT account_id, customer_id FROM keys_accounts EXCEPT {old}))"
    )


def affected_sql(stored: Path, kept: int, problems: Path, records: int) -> str:
    """SELECT the number of reused rows naming an account of table ``changed``: the first ``kept``
    rows of the ``stored`` table and the ``problems`` rows among the first ``records`` records."""
    return (
        f"SELECT (SELECT count(*) FROM read_parquet({lit(str(stored))}, file_row_number = true) "
        f"WHERE file_row_number < {int(kept)} AND account_id IN (SELECT account_id FROM changed)) + "
        f"(SELECT count(*) FROM read_parquet({lit(str(problems))}) WHERE _pos < {int(records)} "
        f"AND p_account_id IN (SELECT account_id FROM changed))"
    )


@dataclass
class Plan:
    """How one appendable table is ingested: ``reused`` records (0: in full) of ``months``."""

    table: str
    reused: int = 0
    kept: int = 0  # rows of the reused records stored by the previous import
    months: list[str] = field(default_factory=list)
    why: str = ""  # why not more is reused
    record: TableRecord | None = None  # this import's, written with the store

    def to_json(self) -> dict[str, Any]:
        return {
            "reused_rows": self.reused,
            "reused_months": [self.months[0], self.months[-1]] if self.months else [],
            "checked_in_full": not self.reused,
            "why": self.why,
        }


def describe(plan: Plan, total: int) -> str:
    """One log line on how a table is ingested."""
    if not plan.reused:
        return f"{plan.table}: checked in full ({plan.why})"
    return (
        f"{plan.table}: {plan.reused:,} rows of {len(plan.months)} unchanged months "
        f"({plan.months[0]} to {plan.months[-1]}) kept from the previous import; checking the "
        f"{total - plan.reused:,} later rows ({plan.why})"
    )


def check_table_names() -> None:
    """Fail loudly if the spec gives an appendable table a dependency this module does not handle."""
    for name, col in APPENDABLE.items():
        t = TABLES[name]
        refs = {c.ref.split(".")[0] for c in t.columns if c.ref}
        dates = [c.name for c in t.columns if c.type in ("date", "timestamp", "month")]
        if not refs <= {"accounts", "customers"} or dates != [col]:
            raise AssertionError(f"{name}: references {refs} or dates {dates} not handled by ingest_append")
