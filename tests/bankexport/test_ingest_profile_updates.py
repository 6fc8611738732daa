"""Ingest of ``profile_updates``: each row's ``value`` is checked against the type and enum of the
field it names (spec, ``profile_updates``), by the same SQL rules as every other column."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from bankexport.ingest import ingest
from nbp.config import IngestConfig
from nbp.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bankexport.conftest import base_tables, read_report, report_rows, write_export

# (row, rule, column) planted after the base's good rows
BAD = [
    ({"field": "annual_income", "value": "1000"}, "unknown_enum", "field"),
    ({"field": "occupation", "value": "pilot"}, "unknown_enum", "value"),  # an enum field
    ({"field": "risk_tolerance", "value": "c3"}, "unknown_enum", "value"),  # case-sensitive like customers
    ({"field": "established_date", "value": "2019-02-30"}, "unparseable", "value"),  # a date field
    ({"field": "monthly_income", "value": "-100"}, "out_of_range", "value"),  # a money field
    ({"field": "business_turnover_monthly", "value": "12.345"}, "unparseable", "value"),
    ({"field": "education", "value": ""}, "missing_required", "value"),
    ({"field": "education", "value": "bachelor", "collected_date": "2024-06-01"}, "future_date", "collected_date"),
    ({"customer_id": "C404", "field": "education", "value": "bachelor"}, "broken_reference", "customer_id"),
]
GOOD = [
    {"field": "established_date", "value": "2019-02-28"},
    {"field": "business_turnover_monthly", "value": "0"},
    {"field": "industry", "value": "G"},
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_profile_updates_checked_per_field(tmp_path: Path, ws: Workspace, cfg: IngestConfig, fmt: str) -> None:
    tables = base_tables()
    first = {"customer_id": "C2", "collected_date": "2024-05-01", "manager_id": "M1"}
    rows = tables["profile_updates"]
    n_base = len(rows)
    rows += [{**first, **change} for change, _, _ in BAD] + [{**first, **g} for g in GOOD]
    manifest = {"format": "bank-export/1", "export_date": "2024-05-31"}
    ingest(write_export(tmp_path / "exp", tables, fmt=fmt, manifest=manifest), ws, cfg)

    rejects = report_rows(ws.rejects("profile_updates"))
    assert [(r["rule"], r["column"], r["value"]) for r in rejects] == [
        (rule, column, rows[n_base + i].get(column, "")) for i, (_, rule, column) in enumerate(BAD)
    ]
    rep = read_report(ws)["tables"]["profile_updates"]
    assert rep["rows_read"] == len(rows) and rep["rows_kept"] == n_base + len(GOOD)
    kept = pd.read_parquet(ws.table("profile_updates"))
    assert list(kept.columns) == ["customer_id", "field", "value", "collected_date", "manager_id"]
    assert list(zip(kept["field"], kept["value"], strict=True)) == [
        ("monthly_income", "4500.50"),
        ("education", "college"),
        *[(g["field"], g["value"]) for g in GOOD],
    ]
    assert str(kept["collected_date"].dtype) == "datetime64[us]"
