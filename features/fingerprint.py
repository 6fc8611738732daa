"""Content fingerprints of the ingested tables, per month, and the as-of dates they leave stale.

An incremental ``nbp features`` rebuilds only the as-of dates whose inputs changed since the
last build (``docs/decisions/027-incremental-features.md``). A row can affect the features at T
only once it is known (``../shared/spec/bank-export.md``, Point in time), so each table is cut
into *parts*, each with the date from which its columns are known, and every part's rows are
fingerprinted per calendar month of that date (a count and an order-free sum of row hashes).
When a month's fingerprint differs from the last build's (rows added, removed or restated),
every as-of after that month's first day is stale for the families that read the part; the
as-of dates before it are not, whatever else changed.

Parts (the first names the row; the later ones hold the columns known only from a later date):

- ``customers``: the spine (``customer_id``, ``open_date``) and one part per other column, each
  by ``open_date`` (a customer is in no as-of before it), so an ECIF attribute change reaches
  only the families whose SQL names that column.
- ``accounts``: the row by ``open_date``; ``close_date`` by itself.
- ``loans``: the application by ``application_date``; grant, amount and term by ``grant_date``;
  ``end_date``, ``status`` and ``max_overdue_days`` by ``end_date`` or the term's end, whichever
  is earlier (status columns feed features only through these dates).
- ``services``: the row by ``start_date``; ``end_date`` by itself.
- one part by the table's own date: ``transactions`` (``txn_time``), ``balances`` (``month``),
  ``tax_records`` (``published_date``), ``contacts`` (``contact_date``), ``profile_updates``
  (``collected_date``).
- ``branches``, ``managers`` and a row whose first part has no date: one bucket ``*``, whose
  change makes every as-of stale. A later part whose date is still empty is not counted (below).

A customer is in no as-of on or before its ``open_date`` (the spine), so a row of the tables in
:data:`FROM_OPENING`, which feed only their own customer's features, counts from its own date or
its customer's ``open_date``, whichever is later: a customer who arrives with years of history (a
firm's published tax records, an earlier visit), or whose rows were set aside until the customer
file named it, then reaches only the as-of dates after its opening, like the customer itself.
The other tables keep their own date, never later, so never less safe: ``loans`` feed the bank
family's launch dates across customers, ``accounts`` the monthly balance cache's key (an
account's owner by its own opening), and ``transactions`` and ``balances`` follow an account's
opening anyway (joining 50 million rows would cost more than it saves).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from nbp.sqltext import ident, lit
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

RECORD_VERSION = 2  # 2: rows of FROM_OPENING counted from their customer's opening
TIMELESS = "*"  # the bucket of rows known at every as-of


@dataclass(frozen=True)
class Part:
    """Columns of one table known from one date: ``known`` is a DuckDB date expression (None: timeless).

    ``columns`` are hashed; ``ids`` (the row's key, also hashed) tie a later part to its row.
    ``columns`` None: every column of the table that no later part claims.
    """

    table: str
    name: str
    columns: tuple[str, ...] | None
    known: str | None
    ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.table if self.name == "" else f"{self.table}.{self.name}"


_LOAN_TERM_END = "CAST(grant_date + to_months(CAST(term_months AS INTEGER)) AS DATE)"
PARTS: dict[str, tuple[Part, ...]] = {
    "accounts": (
        Part("accounts", "", None, "open_date"),
        Part("accounts", "close", ("close_date",), "close_date", ("account_id",)),
    ),
    "loans": (
        Part("loans", "", None, "application_date"),
        Part("loans", "grant", ("grant_date", "amount", "term_months"), "grant_date", ("loan_id",)),
        Part(
            "loans",
            "end",
            ("end_date", "status", "max_overdue_days"),
            f"least(coalesce(end_date, {_LOAN_TERM_END}), coalesce({_LOAN_TERM_END}, end_date))",
            ("loan_id",),
        ),
    ),
    "services": (
        Part("services", "", None, "start_date"),
        Part("services", "end", ("end_date",), "end_date", ("customer_id", "service", "start_date")),
    ),
    "transactions": (Part("transactions", "", None, "txn_time"),),
    "balances": (Part("balances", "", None, "month"),),
    "tax_records": (Part("tax_records", "", None, "published_date"),),
    "contacts": (Part("contacts", "", None, "contact_date"),),
    "profile_updates": (Part("profile_updates", "", None, "collected_date"),),
}
SPINE = ("customer_id", "open_date")
FROM_OPENING = frozenset({"services", "tax_records", "contacts", "profile_updates"})

Fingerprints = dict[str, dict[str, str]]
"""Part key -> bucket (``YYYY-MM`` or ``*``) -> ``"<rows>:<hash sum>"``."""


def parts_of(table: str, columns: Sequence[str]) -> list[Part]:
    """The parts of an ingested table with these columns, each with the columns it hashes (ids first)."""
    if table == "customers":
        rest = [c for c in columns if c not in SPINE]
        return [Part("customers", "", SPINE, "open_date")] + [
            Part("customers", c, ("customer_id", c), "open_date") for c in rest
        ]
    parts = PARTS.get(table, (Part(table, "", None, None),))
    claimed = {c for p in parts[1:] for c in p.columns or ()}
    out = []
    for p in parts:
        own = [c for c in columns if c not in claimed] if p.columns is None else [*p.ids, *p.columns]
        out.append(Part(p.table, p.name, tuple(c for c in own if c in columns), p.known))
    return out


def compute(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> Fingerprints:
    """The fingerprints of every part of ``tables`` (views of ``con``), one query per table.

    A later part whose date is empty (an account still open, a loan not granted or not ended) is
    not counted: until that date exists its columns feed no feature, and once it does, the
    part's row appears in that date's month.
    """
    out: Fingerprints = {}
    tables = sorted(tables)
    openings = "customers" in tables and {"customer_id", "open_date"} <= set(_columns(con, "customers"))
    for table in tables:
        cols = _columns(con, table)
        parts = parts_of(table, cols)
        source = ident(table)
        opened = openings and table in FROM_OPENING and "customer_id" in cols
        if opened:
            source = (
                f"(SELECT t.*, o.{_OPEN} FROM {source} t LEFT JOIN (SELECT customer_id AS {_CID}, "
                f"min(CAST(open_date AS DATE)) AS {_OPEN} FROM customers GROUP BY 1) o ON t.customer_id = o.{_CID})"
            )
        selects = []
        for i, p in enumerate(parts):
            row = ", ".join(ident(c) for c in p.columns or ())
            if p.known is None:
                selects.append(f"SELECT {lit(p.key)} AS k, {lit(TIMELESS)} AS b, hash({row}) AS h FROM {source}")
                continue
            day = f"CAST({p.known} AS DATE)"
            if opened:  # a row of a customer opened after its own date counts from the opening
                day = f"CASE WHEN {day} IS NULL THEN NULL ELSE greatest({day}, coalesce({_OPEN}, {day})) END"
            month = f"strftime({day}, '%Y-%m')"
            bucket = f"coalesce({month}, {lit(TIMELESS)})" if i == 0 else month  # a row without its own date
            where = f" WHERE {p.known} IS NOT NULL" if i > 0 else ""
            selects.append(f"SELECT {lit(p.key)} AS k, {bucket} AS b, hash({row}) AS h FROM {source}{where}")
        query = (
            f"SELECT k, b, count(*) AS n, sum(CAST(h AS HUGEINT)) % 18446744073709551616 AS s "
            f"FROM ({' UNION ALL '.join(selects)}) GROUP BY k, b"
        )
        for k, b, n, s in con.execute(query).fetchall():
            out.setdefault(k, {})[b] = f"{n}:{int(s):x}"
        for p in parts:
            out.setdefault(p.key, {})
    return out


_CID, _OPEN = "_nbp_customer", "_nbp_opened"  # the opening joined to FROM_OPENING's rows


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [d[0] for d in con.execute(f"SELECT * FROM {ident(table)} LIMIT 0").description]


def first_stale_month(old: dict[str, str] | None, new: dict[str, str]) -> str | None:
    """The earliest bucket that differs between two fingerprints of a part (``*`` first); None if equal."""
    if old == new:
        return None
    old = old or {}
    changed = [b for b in set(old) | set(new) if old.get(b) != new.get(b)]
    return TIMELESS if TIMELESS in changed else min(changed)


def stale_dates(old: Fingerprints, new: Fingerprints, keys: Iterable[str], dates: Iterable[date]) -> set[date]:
    """The as-of dates among ``dates`` that a change of the parts ``keys`` between ``old`` and ``new`` reaches."""
    dates = set(dates)
    stale: set[date] = set()
    for k in keys:
        month = first_stale_month(old.get(k), new.get(k, {}))
        if month is None:
            continue
        if month == TIMELESS:
            return dates
        y, m = map(int, month.split("-"))
        stale |= {d for d in dates if d > date(y, m, 1)}
    return stale


_TABLE_WORD = re.compile(r"\b([a-z_]+)\b")


def dependencies(sql_texts: Iterable[str], fps: Fingerprints) -> list[str]:
    """The part keys a family reads: every part of each table its SQL names, the customers'
    spine always, and of the other customer columns only those its SQL names."""
    words = {w for text in sql_texts for w in _TABLE_WORD.findall(text)}
    keys = []
    for k in fps:
        table, _, col = k.partition(".")
        if table == "customers":
            if col == "" or col in words:
                keys.append(k)
        elif table in words:
            keys.append(k)
    return sorted(keys)


def code_hash(*texts: str) -> str:
    """A short hash of the code and settings a family's rows come from."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def source_text(*paths: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in paths)


@dataclass
class FamilyRecord:
    """What one family's table holds: the as-of dates built from the inputs ``inputs`` with code ``code``."""

    code: str
    inputs: Fingerprints
    dates: list[date]


def record_path(ws: Workspace) -> Path:
    return ws.features_dir / "_fingerprints.json"


def load(ws: Workspace) -> dict[str, FamilyRecord]:
    """The last build's record per family ({} when there is none or it cannot be read: a full build)."""
    path = record_path(ws)
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != RECORD_VERSION or raw.get("duckdb") != duckdb.__version__:
            log.info("%s: written by another version; every as-of date is rebuilt", path.name)
            return {}
        return {
            fam: FamilyRecord(r["code"], r["inputs"], [date.fromisoformat(d) for d in r["dates"]])
            for fam, r in raw["families"].items()
        }
    except (ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable (%s); every as-of date is rebuilt", path, e)
        return {}


def save(ws: Workspace, records: dict[str, FamilyRecord]) -> None:
    """Write the record (atomically: a killed build leaves the previous one)."""
    from nbp import jobs

    body = {
        "version": RECORD_VERSION,
        "duckdb": duckdb.__version__,
        "families": {
            fam: {"code": r.code, "dates": [d.isoformat() for d in sorted(r.dates)], "inputs": r.inputs}
            for fam, r in sorted(records.items())
        },
    }
    with jobs.atomic_write(record_path(ws)) as tmp:
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")


def plan(
    rec: FamilyRecord | None, code: str, inputs: Fingerprints, want: Sequence[date]
) -> tuple[list[date], set[date]]:
    """The as-of dates of ``want`` to build for one family, and the recorded dates that stay valid.

    Returns:
        ``(build, kept)``: dates of ``want`` not built yet or stale; recorded dates whose rows
        are still those a full build would write.
    """
    if rec is None or rec.code != code:
        return sorted(want), set()
    stale = stale_dates(rec.inputs, inputs, inputs.keys() | rec.inputs.keys(), rec.dates)
    kept = set(rec.dates) - stale
    return sorted(d for d in want if d not in kept), kept
