"""Data quality of the customer file: which fields are known per customer, per branch and manager.

A field counts as *known* at ``as_of`` when the ``customers`` column is filled, or when a stored
(valid) ``profile_updates`` row for that field was collected before ``as_of`` (spec "Point in
time"). Two figures exist only in ``profile_updates`` (``monthly_income``,
``business_turnover_monthly``); ``tax_credit_grade`` is known from a ``tax_records`` row with a
grade published before ``as_of``. Without those optional tables the fields they feed are
unknown (the bank has no such data), and the others count from ``customers`` alone.

A field that does not apply to a customer is neither known nor missing (:data:`FIELD_RULES`):
an individual has no industry, a business no marital status. Who is a business owner reads the
occupation known at ``as_of`` (the latest update before it over the ``customers`` value).

Every committed ingest writes one snapshot (:func:`write_snapshot`) to
``Workspace.quality_dir/<export_date>.parquet``: per branch × manager × field the customers the
field applies to and those it is known for, and the rows set aside per table and rule. A
re-import of the same export date replaces its file; others stay, so progress reads as a trend
(:func:`read_history`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from bankexport.spec import PROFILE_CUSTOMER_FIELDS, PROFILE_MONEY_FIELDS
from nbp.config import Config
from nbp.errors import ConfigError, DataContractError
from nbp.jobs import atomic_write
from nbp.sqltext import ident, lit
from nbp.workspace import Workspace

if TYPE_CHECKING:
    from bankexport.ingest import IngestReport, TableReport

log = logging.getLogger(__name__)

# Who a field applies to (the ``applies`` of a FieldRule).
ALL = "all"
INDIVIDUAL = "individual"  # customer_type individual
BUSINESS = "business"  # customer_type business, or occupation merchant / micro_business_owner
TAXPAYER = "taxpayer"  # customer_type business, or occupation merchant (files business tax)
BUSINESS_OCCUPATIONS = ("merchant", "micro_business_owner")
TAXPAYER_OCCUPATIONS = ("merchant",)

APPLIES_ZH = {
    ALL: "全部客户",
    INDIVIDUAL: "个人客户",
    BUSINESS: "对公客户、个体工商户和小微企业主",
    TAXPAYER: "对公客户和个体工商户",
}

# Where a field's value comes from.
CUSTOMERS = "customers"  # the customers column, or a profile_updates row of the field
PROFILE = "profile_updates"  # only a profile_updates row (visit-only figures)
TAX = "tax_records"  # a tax_records row with credit_grade


@dataclass(frozen=True)
class FieldRule:
    """One tracked field: its Chinese name, who it applies to, where it is read, and whether a
    model input is computed from it (the to-complete list weighs those)."""

    zh: str
    applies: str
    source: str
    model: bool = True


# The applicability table (docs/quality.md). Fields named in ``quality.fields`` must be keys here.
FIELD_RULES: dict[str, FieldRule] = {
    "occupation": FieldRule("职业", INDIVIDUAL, CUSTOMERS),
    "employer_type": FieldRule("单位性质", INDIVIDUAL, CUSTOMERS),
    "monthly_income": FieldRule("月收入", INDIVIDUAL, PROFILE),
    "birth_date": FieldRule("出生日期", INDIVIDUAL, CUSTOMERS),
    "gender": FieldRule("性别", INDIVIDUAL, CUSTOMERS),
    "marital_status": FieldRule("婚姻状况", INDIVIDUAL, CUSTOMERS),
    "education": FieldRule("学历", INDIVIDUAL, CUSTOMERS),
    "industry": FieldRule("行业门类", BUSINESS, CUSTOMERS),
    "established_date": FieldRule("成立日期", BUSINESS, CUSTOMERS),
    "business_turnover_monthly": FieldRule("月经营流水", BUSINESS, PROFILE),
    "tax_credit_grade": FieldRule("纳税信用等级", TAXPAYER, TAX),
    "residence": FieldRule("城乡居住地", ALL, CUSTOMERS),
    "risk_tolerance": FieldRule("风险承受等级", ALL, CUSTOMERS),
    "township_code": FieldRule("乡镇代码", ALL, CUSTOMERS, model=False),
    "manager_id": FieldRule("管户客户经理", ALL, CUSTOMERS, model=False),
}

ID_COLUMNS = ["customer_id", "branch_id", "manager_id", "customer_type"]
KNOWN = "known_"  # prefix of a field's column in customer_completeness (the field manager_id is tracked too)
# Columns of a snapshot file (kind "field": one branch × manager × field; kind "set_aside": one
# table × rule of the ingest report, rule null when the table set nothing aside).
SNAPSHOT_COLUMNS = [
    "kind",
    "export_date",
    "bank_code",
    "branch_id",
    "manager_id",
    "field",
    "applicable",
    "known",
    "completeness",
    "table",
    "rule",
    "rows",
    "rows_read",
]


def checked_fields(fields: Sequence[str]) -> list[str]:
    """``fields`` (``quality.fields``) in order, each once; a ConfigError names an unknown one."""
    unknown = [f for f in fields if f not in FIELD_RULES]
    if unknown:
        raise ConfigError(
            f"quality.fields: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELD_RULES)} "
            f"(bankexport/quality.py: FIELD_RULES)"
        )
    return list(dict.fromkeys(fields))


def default_as_of(ws: Workspace) -> date:
    """The day after the recorded export date: everything the export holds is known."""
    d = ws.export_date()
    if d is None:
        raise DataContractError(f"{ws.ingest_meta} missing: run `nbp ingest` before measuring data quality")
    return d + timedelta(days=1)


def _applies_sql(applies: str) -> str:
    occ = ", ".join(lit(o) for o in (BUSINESS_OCCUPATIONS if applies == BUSINESS else TAXPAYER_OCCUPATIONS))
    return {
        ALL: "TRUE",
        INDIVIDUAL: "c.customer_type = 'individual'",
        BUSINESS: f"(c.customer_type = 'business' OR c.occ IN ({occ}))",
        TAXPAYER: f"(c.customer_type = 'business' OR c.occ IN ({occ}))",
    }[applies]


def _known_sql(field: str, rule: FieldRule, has_updates: bool, has_tax: bool) -> str:
    updated = f"coalesce(u.{ident('k_' + field)}, FALSE)" if has_updates else "FALSE"
    if rule.source == CUSTOMERS:
        if has_updates and field in PROFILE_CUSTOMER_FIELDS:
            return f"(c.{ident(field)} IS NOT NULL OR {updated})"
        return f"(c.{ident(field)} IS NOT NULL)"
    if rule.source == PROFILE:
        return updated
    return "(t.customer_id IS NOT NULL)" if has_tax else "FALSE"


def _completeness_sql(ws: Workspace, fields: Sequence[str], as_of: date, with_ids: bool) -> str:
    has_updates = ws.table("profile_updates").exists()
    has_tax = ws.table("tax_records").exists()
    cut = f"DATE {lit(as_of.isoformat())}"
    profile_fields = [f for f in FIELD_RULES if f in PROFILE_CUSTOMER_FIELDS or f in PROFILE_MONEY_FIELDS]
    ctes = [
        f"cust AS (SELECT * FROM read_parquet({lit(str(ws.table('customers')))}) "
        f"WHERE open_date < {cut}{' AND customer_id IN (SELECT id FROM ids)' if with_ids else ''})"
    ]
    occ = "c0.occupation"
    joins = ""
    if has_updates:
        flags = ", ".join(f"bool_or(field = {lit(f)}) AS {ident('k_' + f)}" for f in profile_fields)
        ctes.append(
            f"upd AS (SELECT customer_id, {flags}, "
            f"arg_max(value, collected_date) FILTER (WHERE field = 'occupation') AS occ "
            f"FROM read_parquet({lit(str(ws.table('profile_updates')))}) "
            f"WHERE collected_date < {cut} AND value IS NOT NULL GROUP BY customer_id)"
        )
        occ = "coalesce(u0.occ, c0.occupation)"
        joins += " LEFT JOIN upd u USING (customer_id)"
    if has_tax:
        ctes.append(
            f"tx AS (SELECT DISTINCT customer_id FROM read_parquet({lit(str(ws.table('tax_records')))}) "
            f"WHERE published_date < {cut} AND credit_grade IS NOT NULL)"
        )
        joins += " LEFT JOIN tx t USING (customer_id)"
    upd0 = " LEFT JOIN upd u0 USING (customer_id)" if has_updates else ""
    ctes.append(f"c AS (SELECT c0.*, {occ} AS occ FROM cust c0{upd0})")
    cols = ", ".join(
        f"CASE WHEN {_applies_sql(FIELD_RULES[f].applies)} "
        f"THEN {_known_sql(f, FIELD_RULES[f], has_updates, has_tax)} END AS {ident(KNOWN + f)}"
        for f in fields
    )
    return (
        f"WITH {', '.join(ctes)} SELECT c.customer_id, c.branch_id, c.manager_id, c.customer_type, {cols} "
        f"FROM c{joins} ORDER BY c.customer_id"
    )


def customer_completeness(
    ws: Workspace,
    cfg: Config | Sequence[str],
    as_of: date | None = None,
    customer_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Which tracked fields are known, per customer of the ingested ``customers`` table.

    Args:
        ws: the (member bank's) workspace holding the ingested tables.
        cfg: the config (its ``quality.fields``), or the field names themselves.
        as_of: known means dated before this day; default the export date + 1 day.
        customer_ids: only these customers (default: all).

    Returns:
        One row per customer opened before ``as_of``, ordered by ``customer_id``: ``customer_id``,
        ``branch_id``, ``manager_id``, ``customer_type`` (string), then per field of ``quality.fields``
        a nullable ``boolean`` column ``known_<field>``: True known, False missing, NA the field does
        not apply to the customer.
    """
    fields = checked_fields(cfg.quality.fields if isinstance(cfg, Config) else cfg)
    if not ws.table("customers").exists():
        raise DataContractError(f"{ws.table('customers')} missing: run `nbp ingest` before measuring data quality")
    as_of = as_of or default_as_of(ws)
    with duckdb.connect() as con:
        if customer_ids is not None:
            con.execute("CREATE TEMP TABLE ids AS SELECT unnest(?::VARCHAR[]) AS id", [list(customer_ids)])
        df = con.execute(_completeness_sql(ws, fields, as_of, customer_ids is not None)).df()
    for c in ID_COLUMNS:
        df[c] = df[c].astype("string")
    for f in fields:
        df[KNOWN + f] = df[KNOWN + f].astype("boolean")
    return df


def missing_fields(
    ws: Workspace, cfg: Config | Sequence[str], customer_ids: Iterable[str], as_of: date | None = None
) -> dict[str, list[str]]:
    """The applicable fields not known at ``as_of``, per customer (``quality.fields`` order).

    Returns:
        customer id -> missing field names (``FIELD_RULES[f].zh`` is the Chinese name); an empty
        list when every applicable field is known; a customer not in ``customers`` is left out.
    """
    df = customer_completeness(ws, cfg, as_of, customer_ids)
    fields = completeness_fields(df)
    missing = df[[KNOWN + f for f in fields]].eq(False).fillna(False).to_numpy(dtype=bool)
    return {
        cid: [f for f, m in zip(fields, row, strict=True) if m]
        for cid, row in zip(df["customer_id"], missing, strict=True)
    }


def completeness_fields(completeness: pd.DataFrame) -> list[str]:
    """The fields of a :func:`customer_completeness` frame, in column order."""
    return [c.removeprefix(KNOWN) for c in completeness.columns if c.startswith(KNOWN)]


def by_manager(completeness: pd.DataFrame) -> pd.DataFrame:
    """Counts per branch × manager × field of a :func:`customer_completeness` frame.

    Returns:
        ``branch_id``, ``manager_id`` (null: no manager), ``field``, ``applicable`` (customers the
        field applies to), ``known``, ``completeness`` (known / applicable); groups where the
        field applies to nobody are left out.
    """
    fields = completeness_fields(completeness)
    k = completeness[[KNOWN + f for f in fields]]
    keys = ["branch_id", "manager_id"]
    # one pass over the customers: per group and field, how many it applies to and how many are known
    wide = pd.concat(
        [
            completeness[keys],
            k.notna().set_axis([f"a{i}" for i in range(len(fields))], axis=1),
            k.eq(True).fillna(False).astype(bool).set_axis([f"k{i}" for i in range(len(fields))], axis=1),
        ],
        axis=1,
    )
    sums = wide.groupby(keys, dropna=False, sort=True).sum()
    out = pd.DataFrame(
        {
            "branch_id": sums.index.get_level_values(0).repeat(len(fields)),
            "manager_id": sums.index.get_level_values(1).repeat(len(fields)),
            "field": fields * len(sums),
            "applicable": sums[[f"a{i}" for i in range(len(fields))]].to_numpy(dtype="int64").ravel(),
            "known": sums[[f"k{i}" for i in range(len(fields))]].to_numpy(dtype="int64").ravel(),
        }
    )
    out = out[out["applicable"] > 0].sort_values(["branch_id", "manager_id", "field"], kind="stable")
    out = out.reset_index(drop=True)
    out["completeness"] = out["known"] / out["applicable"]
    return out


def _set_aside_rows(tables: dict[str, TableReport]) -> list[dict[str, Any]]:
    rows = []
    for table, t in tables.items():
        if t.file is None:
            continue
        rules = dict(t.set_aside) or {None: 0}
        for rule, n in rules.items():
            rows.append({"table": table, "rule": rule, "rows": int(n), "rows_read": int(t.rows_read)})
    return rows


def snapshot_path(ws: Workspace, export_date: date | str) -> Path:
    """The snapshot file of one export date under ``ws.quality_dir``."""
    return ws.quality_dir / f"{date.fromisoformat(str(export_date)).isoformat()}.parquet"


def write_snapshot(ws: Workspace, report: IngestReport) -> Path:
    """Write the data-quality snapshot of a committed import (``Workspace.quality_dir``).

    Every field of :data:`FIELD_RULES` is counted, so that a field a bank starts to track later
    has its history; reports show the fields of ``quality.fields``.

    Args:
        ws: the workspace the import was stored in (a member bank's own).
        report: the import's report (export date, bank, each table's rows read and set aside).

    Returns:
        The file written, ``<export_date>.parquet`` (columns :data:`SNAPSHOT_COLUMNS`).
    """
    t0 = time.perf_counter()
    export_date = date.fromisoformat(report.export_date)
    comp = customer_completeness(ws, list(FIELD_RULES), export_date + timedelta(days=1))
    fields = by_manager(comp).assign(kind="field")
    aside = pd.DataFrame(_set_aside_rows(report.tables), columns=["table", "rule", "rows", "rows_read"])
    snap = pd.concat([fields, aside.assign(kind="set_aside")], ignore_index=True)
    snap["export_date"] = pd.Timestamp(export_date)
    snap["bank_code"] = report.bank_code
    snap = snap.reindex(columns=SNAPSHOT_COLUMNS)
    for c in ("kind", "bank_code", "branch_id", "manager_id", "field", "table", "rule"):
        snap[c] = snap[c].astype("string")
    for c in ("applicable", "known", "rows", "rows_read"):
        snap[c] = snap[c].astype("Int64")
    snap["completeness"] = snap["completeness"].astype("float64")
    path = snapshot_path(ws, export_date)
    with atomic_write(path) as tmp:
        snap.to_parquet(tmp, index=False)
    log.info("quality: %d customers, snapshot %s, %.2f s", len(comp), path.name, time.perf_counter() - t0)
    return path


def read_history(ws: Workspace) -> pd.DataFrame:
    """Every snapshot of ``ws.quality_dir``, oldest export date first (columns :data:`SNAPSHOT_COLUMNS`);
    empty when no import has written one."""
    files = sorted(ws.quality_dir.glob("????-??-??.parquet")) if ws.quality_dir.exists() else []
    if not files:
        return pd.DataFrame(columns=SNAPSHOT_COLUMNS)
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except Exception as e:  # any reader error is a broken file to name
            raise DataContractError(f"{f}: unreadable data-quality snapshot ({e}); re-run `nbp ingest`") from e
    return pd.concat(frames, ignore_index=True).sort_values(["export_date", "kind"], kind="stable")
