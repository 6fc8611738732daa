"""No formula ever reaches a spreadsheet (nbp/sheets.py), and every writer of nbp uses it."""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from nbp.sheets import (
    GUARD,
    TRIGGERS,
    Sheet,
    from_xlsx_text,
    needs_guard,
    neutralise,
    restore,
    write_csv,
    write_csv_batches,
    write_xlsx,
)
from nbp.workspace import CHECKOUT

# OWASP's CSV-injection payloads, plus leading spaces, full-width forms and values already quoted
PAYLOADS = [
    '=HYPERLINK("http://evil","x")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(1+1)",
    "\t=1",
    "\r=1",
    "=1+1;",
    "  =1+1;",
    "\u3000+1",
    "＝1+1",
    "＠SUM(1)",
    "'=1",
    "''-1",
    "\t",
    "\r",
    "-",
    "=",
]
HARMLESS = ["C000123", "城关支行", "a=1", "'abc", "", "x\r=1", "1-2", "'", "''"]
FULL_WIDTH = ("＝", "＋", "－", "＠")


def _starts_a_formula(text: str) -> bool:
    return text.lstrip(" \u00a0\u3000")[:1] in (*TRIGGERS, *FULL_WIDTH)


@pytest.mark.parametrize("value", PAYLOADS)
def test_payloads_get_one_guard_quote_and_come_back(value: str) -> None:
    assert needs_guard(value)
    safe = neutralise(value)
    assert safe == GUARD + value and not _starts_a_formula(safe)
    assert restore(safe) == value


@pytest.mark.parametrize("value", HARMLESS)
def test_harmless_text_is_left_alone_both_ways(value: str) -> None:
    assert neutralise(value) == value and restore(value) == value


def test_numbers_and_missing_values_are_not_text() -> None:
    assert neutralise(-2.5) == -2.5 and neutralise(None) is None and restore(3) == 3


def test_csv_fields_are_quoted_and_neutralised(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": PAYLOADS, "n": range(len(PAYLOADS)), "p": [-0.5] * len(PAYLOADS)})
    path = write_csv(df, tmp_path / "x.csv")
    text = path.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert [r[0] for r in rows[1:]] == [GUARD + p for p in PAYLOADS]
    assert not [f for r in rows for f in r if _starts_a_formula(f) and f != "-0.5"]
    assert all(r[2] == "-0.5" for r in rows[1:])  # a number stays a number
    assert '"\'=HYPERLINK(""http://evil"",""x"")"' in text  # the field is quoted too


def test_xlsx_has_string_cells_only_and_round_trips(tmp_path: Path) -> None:
    df = pd.DataFrame({"=id": PAYLOADS + HARMLESS + ["_x000D_ literal"], "n": range(len(PAYLOADS) + len(HARMLESS) + 1)})
    path = write_xlsx(tmp_path / "x.xlsx", [Sheet("s", df, banner="=banner")])
    ws = load_workbook(path)["s"]
    cells = [c for row in ws.iter_rows() for c in row if c.value is not None]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    assert not [c.value for c in cells if isinstance(c.value, str) and _starts_a_formula(c.value)]
    assert ws.cell(2, 1).value == "'=id"  # a header from a bank's file is neutralised too
    back = [restore(from_xlsx_text(ws.cell(r, 1).value or "")) for r in range(3, ws.max_row + 1)]
    assert back == PAYLOADS + HARMLESS + ["_x000D_ literal"]  # a carriage return survives XML


def test_xlsx_cuts_a_text_longer_than_a_cell_holds(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "x.xlsx", [Sheet("s", pd.DataFrame({"v": ["=" + "x" * 40_000, "ok"]}))])
    v = load_workbook(path)["s"].cell(2, 1).value
    assert len(v) == 32_767 and v.startswith("'=x") and v.endswith("…")


def test_report_batches_are_neutralised(tmp_path: Path) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS v, 7 AS n", [PAYLOADS])
    path = write_csv_batches(con.sql("SELECT * FROM t").to_arrow_reader(5), tmp_path / "r.csv")
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
    assert rows[0] == ["v", "n"] and [restore(r[0]) for r in rows[1:]] == PAYLOADS
    assert not [f for r in rows for f in r if _starts_a_formula(f)]
    empty = write_csv_batches(con.sql("SELECT * FROM t WHERE false").to_arrow_reader(5), tmp_path / "e.csv")
    assert empty.read_bytes().decode("utf-8-sig").splitlines() == ['"v","n"']


def test_ingest_reports_neutralise_hostile_ids(tmp_path: Path) -> None:
    """A hostile customer_id and manager_id in a bank's export reach rejects/ and cells/ as text."""
    sys.path.insert(0, str(CHECKOUT))
    from bankexport.ingest import ingest
    from nbp.config import IngestConfig
    from nbp.workspace import Workspace
    from tests.bankexport.conftest import base_tables, write_export

    tables = base_tables()
    evil_id, evil_mgr = '=HYPERLINK("http://evil","x")', "@SUM(1+1)"
    tables["customers"].append(
        {
            **tables["customers"][0],
            "customer_id": evil_id,
            "customer_type": "=cmd|' /C calc'!A0",
            "manager_id": evil_mgr,
        }
    )  # unknown enum: set aside
    tables["customers"][1]["gender"] = "-2+3"  # malformed optional cell: reported, row kept
    ws = Workspace(tmp_path / "home")
    ingest(write_export(tmp_path / "exp", tables), ws, IngestConfig(memory_limit="1GB", threads=1))
    for kind in ("rejects", "cells"):
        text = (ws.ingest_dir / kind / "customers.csv").read_bytes().decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert rows, kind
        assert not [v for r in rows for v in r.values() if v and _starts_a_formula(v)], kind
    rej = list(csv.DictReader(io.StringIO((ws.rejects("customers")).read_bytes().decode("utf-8-sig"), newline="")))
    assert [(restore(r["customer_id"]), restore(r["manager_id"]), restore(r["value"])) for r in rej] == [
        (evil_id, evil_mgr, "=cmd|' /C calc'!A0")
    ]


def test_every_spreadsheet_writer_goes_through_sheets() -> None:
    """A new .csv/.xlsx writer must use nbp.sheets: the raw writers appear nowhere else."""
    raw = re.compile(
        r"\.to_csv\(|\.to_excel\(|ExcelWriter|csv\.writer\(|CSVWriter\(|\.write_csv\(|"
        r"(import|from) (openpyxl|xlsxwriter)"
    )
    allowed = {
        CHECKOUT / "nbp" / "sheets.py",
        CHECKOUT / "bankexport" / "simulate.py",  # writes the simulated bank's export, not a report
        CHECKOUT / "benchmarks" / "bench_ingest.py",
    }  # writes ingest's benchmark input
    found = []
    for stage in ("nbp", "bankexport", "features", "training", "serving", "benchmarks"):
        for f in sorted((CHECKOUT / stage).rglob("*.py")):
            if f not in allowed and raw.search(f.read_text(encoding="utf-8")):
                found.append(str(f.relative_to(CHECKOUT)))
    assert not found, f"write spreadsheets through nbp.sheets: {found}"
