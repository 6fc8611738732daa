"""Tiny bank exports built by hand, written as CSV or Parquet."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbp.config import IngestConfig
from nbp.sheets import restore
from nbp.workspace import Workspace

# A valid export: every table, every reference resolvable. Cells are strings as in a CSV.
BASE: dict[str, list[dict[str, str]]] = {
    "customers": [
        {
            "customer_id": "C1",
            "customer_type": "individual",
            "gender": "M",
            "birth_date": "1980-05-01",
            "occupation": "farmer",
            "residence": "rural",
            "branch_id": "B1",
            "manager_id": "M1",
            "open_date": "2015-03-02",
            "risk_tolerance": "C2",
        },
        {
            "customer_id": "C2",
            "customer_type": "business",
            "industry": "C",
            "established_date": "2010-01-01",
            "branch_id": "B1",
            "open_date": "2016-07-08",
        },
        {
            "customer_id": "C3",
            "customer_type": "individual",
            "gender": "F",
            "occupation": "merchant",
            "branch_id": "B2",
            "open_date": "2020-01-15",
        },
    ],
    "accounts": [
        {"account_id": "A1", "customer_id": "C1", "account_type": "savings", "open_date": "2015-03-02"},
        {"account_id": "A2", "customer_id": "C2", "account_type": "current", "open_date": "2016-07-08"},
        {
            "account_id": "A3",
            "customer_id": "C3",
            "account_type": "debit_card",
            "open_date": "2020-01-15",
            "close_date": "2024-01-01",
        },
    ],
    "transactions": [
        {
            "txn_id": "T1",
            "account_id": "A1",
            "customer_id": "C1",
            "txn_time": "2024-05-01 10:00:00",
            "amount": "100.50",
            "direction": "C",
            "channel": "mobile",
            "txn_type": "payroll",
        },
        {
            "txn_id": "T2",
            "account_id": "A2",
            "customer_id": "C2",
            "txn_time": "2024-05-02T11:30:00",
            "amount": "2000",
            "direction": "D",
            "channel": "counter",
            "txn_type": "transfer",
            "counterparty_id": "X9",
        },
        {
            "txn_id": "T3",
            "account_id": "A3",
            "customer_id": "C3",
            "txn_time": "2024-05-03 09:15:00",
            "amount": "35.2",
            "direction": "C",
            "channel": "qr",
            "txn_type": "merchant_settlement",
        },
    ],
    "loans": [
        {
            "loan_id": "L1",
            "customer_id": "C1",
            "product": "consumer",
            "application_date": "2023-01-05",
            "grant_date": "2023-01-10",
            "amount": "50000",
            "term_months": "12",
            "status": "settled",
            "max_overdue_days": "0",
            "end_date": "2024-01-10",
        },
        {
            "loan_id": "L2",
            "customer_id": "C2",
            "product": "business_flow",
            "application_date": "2024-02-01",
            "status": "rejected",
        },
    ],
    "balances": [
        {"account_id": "A1", "month": "2024-04", "avg_daily_balance": "1200.00", "end_balance": "1300"},
        {"account_id": "A2", "month": "2024-04", "avg_daily_balance": "50000", "end_balance": "48000.5"},
    ],
    "tax_records": [
        {
            "customer_id": "C2",
            "tax_year": "2023",
            "months_filed": "12",
            "tax_paid": "8000",
            "credit_grade": "A",
            "published_date": "2024-03-01",
        },
    ],
    "services": [
        {"customer_id": "C1", "service": "mobile_banking", "start_date": "2018-01-01"},
        {"customer_id": "C3", "service": "qr_merchant", "start_date": "2021-01-01"},
    ],
    "contacts": [
        {
            "customer_id": "C1",
            "product": "consumer",
            "contact_date": "2024-04-01",
            "channel": "sms",
            "outcome": "no_response",
            "campaign_id": "K1",
        },
    ],
    "profile_updates": [
        {
            "customer_id": "C1",
            "field": "monthly_income",
            "value": "4500.50",
            "collected_date": "2024-04-10",
            "manager_id": "M1",
        },
        {"customer_id": "C3", "field": "education", "value": "college", "collected_date": "2024-04-12"},
    ],
    "branches": [
        {"branch_id": "B1", "name": "城关支行", "area": "urban"},
        {"branch_id": "B2", "name": "王庄支行", "area": "rural"},
    ],
    "managers": [
        {"manager_id": "M1", "branch_id": "B1", "name": "张三", "capacity_per_month": "40"},
    ],
}


def base_tables() -> dict[str, list[dict[str, str]]]:
    """A fresh deep copy of the valid export's rows."""
    return {t: [dict(r) for r in rows] for t, rows in BASE.items()}


def many_transactions(tables: dict, n: int, bad: int = 0, day0: int = 1) -> None:
    """Replace the transactions by ``n`` valid ones over May 2024 (``bad`` of them with amount 0)."""
    tables["transactions"] = [
        {
            "txn_id": f"T{i}",
            "account_id": "A1",
            "customer_id": "C1",
            "txn_time": f"2024-05-{day0 + i % 28:02d} 10:00:00",
            "amount": "0" if i < bad else "12.50",
            "direction": "C",
            "channel": "mobile",
            "txn_type": "payroll",
        }
        for i in range(n)
    ]


def _columns(table: str, rows: list[dict[str, str]]) -> list[str]:
    from bankexport.spec import TABLES

    names = list(TABLES[table].column_names)
    for r in rows:
        names += [k for k in r if k not in names]
    return names


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str | None]], encoding: str = "utf-8") -> None:
    """Write rows as CSV by hand (quotes only where needed), one record per line."""

    def cell(v: str | None) -> str:
        if v is None:
            return ""
        return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',"\n') else v

    lines = [",".join(columns)] + [",".join(cell(r.get(c)) for c in columns) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


def write_export(
    root: Path,
    tables: dict[str, list[dict[str, str]]],
    fmt: str = "csv",
    manifest: dict | None = None,
    encoding: str = "utf-8",
) -> Path:
    """Write ``tables`` into folder ``root`` as ``<table>.csv`` or ``<table>.parquet``."""
    root.mkdir(parents=True, exist_ok=True)
    for t, rows in tables.items():
        cols = _columns(t, rows)
        if fmt == "csv":
            write_csv(root / f"{t}.csv", cols, rows, encoding)
        else:
            pq.write_table(
                pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in cols}), root / f"{t}.parquet"
            )
    if manifest is not None:
        (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def bank_manifest(code: object, **more: object) -> dict:
    """The manifest of a member bank's export (spec, "Federation"): ``bank_code`` and a display name."""
    return {"format": "bank-export/1", "bank": f"农商银行 {code}", "bank_code": code, **more}


def report_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``rejects/`` or ``cells/`` file (which must start with the UTF-8 BOM), as the
    bank reads them back (nbp.sheets)."""
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode()), f"{path} lacks the UTF-8 BOM"
    rows = csv.DictReader(raw.decode("utf-8-sig").splitlines(keepends=True))
    return [{k: restore(v) for k, v in r.items()} for r in rows]


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path: what a test compares to say nothing changed."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_report(ws: Workspace) -> dict:
    """The workspace's ``ingest/report.json``."""
    return json.loads(ws.ingest_report.read_text(encoding="utf-8"))


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "home")


def ingest_config() -> IngestConfig:
    """The ingest settings of these tests: a small memory limit, two DuckDB threads."""
    return IngestConfig(memory_limit="1GB", threads=2)


@pytest.fixture
def cfg() -> IngestConfig:
    return ingest_config()
