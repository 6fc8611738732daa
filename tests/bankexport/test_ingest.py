"""Validated ingest: every bad-input rule, typed storage, reports, atomic swap, CLI exit codes.

Every import costs ~0.2 s: the fast tier plants all bad rows in one export per format and keeps
one case per behaviour; each bad row alone, per format, and the other variants are slow."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bankexport import ingest as ingest_mod
from bankexport.ingest import ingest
from bankexport.spec import TABLES
from nbp.config import IngestConfig
from nbp.errors import DataContractError
from nbp.workspace import Workspace

# `.venv/bin/pytest` puts only this folder on sys.path (no __init__.py); `python -m pytest` the checkout too
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bankexport.conftest import base_tables, file_hashes, read_report, report_rows, write_csv, write_export


def test_valid_export_is_stored_typed(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    rep = ingest(src, ws, cfg)
    for name, rows in base_tables().items():
        df = pd.read_parquet(ws.table(name))
        assert len(df) == len(rows)
        assert list(df.columns) == TABLES[name].column_names
    tx = pd.read_parquet(ws.table("transactions"))
    assert str(tx["txn_id"].dtype) == "string"
    assert str(tx["txn_time"].dtype) == "datetime64[us]"
    assert tx["amount"].dtype == "float64"
    assert str(tx["channel"].dtype) == "string"  # enums are plain strings in the store
    import pyarrow.parquet as pq

    assert pq.read_schema(ws.table("transactions")).field("channel").type == "string"
    assert tx.loc[tx.txn_id == "T2", "txn_time"].iloc[0] == pd.Timestamp("2024-05-02 11:30:00")
    loans = pd.read_parquet(ws.table("loans"))
    assert str(loans["term_months"].dtype) == "Int64"
    assert loans["term_months"].isna().sum() == 1
    bal = pd.read_parquet(ws.table("balances"))
    assert bal["month"].iloc[0] == pd.Timestamp("2024-04-01")
    assert ws.export_date() == date(2024, 5, 3)  # inferred from txn_time (no manifest): its last day
    report = read_report(ws)
    assert set(report["tables"]) == set(TABLES)
    assert report["tables"]["transactions"] == {"rows_read": 3, "rows_kept": 3, "set_aside": {}, "cells_reported": {}}
    assert not ws.rejects("x").parent.exists()
    assert "transactions" in rep.summary_table()


# (table, row to append (merged over a copy of that table's first row), rule, column); ids differ so
# that every row can be planted in one export (only the duplicate_key rows repeat a key on purpose)
BAD_ROWS = [
    ("customers", {"customer_id": "C7", "customer_type": ""}, "missing_required", "customer_type"),
    ("customers", {"customer_id": "C8", "customer_type": "person"}, "unknown_enum", "customer_type"),
    ("customers", {"customer_id": "C9", "open_date": "2020/01/01"}, "unparseable", "open_date"),
    ("customers", {"customer_id": "C10", "open_date": "2023-02-30"}, "unparseable", "open_date"),
    ("customers", {"customer_id": "C1", "gender": "F"}, "duplicate_key", "customer_id"),
    ("accounts", {"account_id": "A7", "customer_id": "C404"}, "broken_reference", "customer_id"),
    ("transactions", {"txn_id": "T7", "amount": "0"}, "non_positive", "amount"),
    ("transactions", {"txn_id": "T8", "amount": "-3.5"}, "non_positive", "amount"),
    ("transactions", {"txn_id": "T9", "amount": "1.234"}, "unparseable", "amount"),
    ("transactions", {"txn_id": "T10", "amount": "1,000"}, "unparseable", "amount"),
    ("transactions", {"txn_id": "T11", "txn_time": "2024-05-01 10:00"}, "unparseable", "txn_time"),
    ("transactions", {"txn_id": "T12", "txn_time": "2024-05-01T10:00:00+08:00"}, "unparseable", "txn_time"),
    ("transactions", {"txn_id": "T13", "direction": "X"}, "unknown_enum", "direction"),
    ("transactions", {"txn_id": "T14", "direction": "c"}, "unknown_enum", "direction"),  # case-sensitive
    ("transactions", {"txn_id": "T15", "channel": "atm "}, "unknown_enum", "channel"),  # stored as read
    ("transactions", {"txn_id": "T16", "account_id": "A404"}, "broken_reference", "account_id"),
    ("transactions", {"txn_id": "T17", "account_id": "A2"}, "broken_reference", "customer_id"),  # not the owner
    ("transactions", {"txn_id": ""}, "missing_required", "txn_id"),
    ("loans", {"loan_id": "L1", "product": "mortgage"}, "duplicate_key", "loan_id"),
    ("loans", {"loan_id": "L7", "status": "paid"}, "unknown_enum", "status"),
    ("balances", {"month": "2024-13"}, "unparseable", "month"),
    ("balances", {"month": "2024-04"}, "duplicate_key", "account_id+month"),
    ("tax_records", {"tax_year": "2023.5"}, "unparseable", "tax_year"),
    ("services", {}, "duplicate_key", "*"),  # exact duplicate of a keyless table's row
    ("contacts", {"customer_id": "C404"}, "broken_reference", "customer_id"),
    ("managers", {"manager_id": "M7", "branch_id": ""}, "missing_required", "branch_id"),
]


def _assert_set_aside(
    ws: Workspace, fmt: str, table: str, rows: list[dict], planted: list[tuple[int, str, str]]
) -> None:
    """``planted`` (index in ``rows``, rule, column) are exactly the rows of ``table`` set aside: each
    with its source line, rule, column, the value as read (blanks kept) and its original cells; the
    rest is stored."""
    rejects = report_rows(ws.rejects(table))
    assert len(rejects) == len(planted)
    for (i, rule, column), r in zip(planted, rejects, strict=True):  # rejects/ is in line order
        line = i + (2 if fmt == "csv" else 1)  # CSV: header is line 1; Parquet: row number
        assert (r["source_file"], int(r["source_line"]), r["rule"], r["column"]) == (
            f"{table}.{fmt}",
            line,
            rule,
            column,
        )
        if rule != "duplicate_key":
            assert r["value"] == rows[i].get(column, "")
        for k, v in rows[i].items():  # the original cells follow
            assert r[k] == v
    t = read_report(ws)["tables"][table]
    assert t["set_aside"] == dict(Counter(rule for _, rule, _ in planted))
    assert t["rows_read"] == len(rows) and t["rows_kept"] == len(rows) - len(planted)
    assert len(pd.read_parquet(ws.table(table))) == len(rows) - len(planted)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_bad_row_is_set_aside_under_its_rule(tmp_path: Path, ws: Workspace, cfg: IngestConfig, fmt: str) -> None:
    """Every row of BAD_ROWS planted in one export: each is set aside alone, under its own rule."""
    tables = base_tables()
    planted: dict[str, list[tuple[int, str, str]]] = {}
    for table, change, rule, column in BAD_ROWS:
        tables[table].append({**tables[table][0], **change})
        planted.setdefault(table, []).append((len(tables[table]) - 1, rule, column))
    ingest(write_export(tmp_path / "exp", tables, fmt=fmt), ws, cfg)
    for table, rows in planted.items():
        _assert_set_aside(ws, fmt, table, tables[table], rows)
    for table in set(tables) - set(planted):
        assert read_report(ws)["tables"][table]["set_aside"] == {}, table


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(
    ("table", "change", "rule", "column"), BAD_ROWS, ids=[f"{t}-{r}-{c}" for t, _, r, c in BAD_ROWS]
)
def test_bad_row_is_set_aside(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, fmt: str, table: str, change: dict, rule: str, column: str
) -> None:
    """Each row of BAD_ROWS alone in an otherwise valid export (one import per row and format)."""
    tables = base_tables()
    tables[table].append({**tables[table][0], **change})
    ingest(write_export(tmp_path / "exp", tables, fmt=fmt), ws, cfg)
    _assert_set_aside(ws, fmt, table, tables[table], [(len(tables[table]) - 1, rule, column)])


def test_references_cascade(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """A customer set aside takes its accounts with it, and their transactions and balances."""
    tables = base_tables()
    tables["customers"][0]["customer_type"] = "??"  # C1 set aside
    src = write_export(tmp_path / "exp", tables)
    ingest(src, ws, cfg)
    rep = read_report(ws)["tables"]
    assert rep["customers"]["set_aside"] == {"unknown_enum": 1}
    for t in ("accounts", "transactions", "loans", "balances", "services", "contacts"):
        assert rep[t]["set_aside"] == {"broken_reference": 1}, t
    tx = report_rows(ws.rejects("transactions"))
    assert [(r["txn_id"], r["column"]) for r in tx] == [("T1", "account_id")]
    assert set(pd.read_parquet(ws.table("transactions"))["txn_id"]) == {"T2", "T3"}


@pytest.mark.slow
def test_exact_duplicate_keeps_first_copy(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    tables["transactions"].insert(1, dict(tables["transactions"][0]))  # lines 2 and 3 are the same
    src = write_export(tmp_path / "exp", tables)
    ingest(src, ws, cfg)
    rej = report_rows(ws.rejects("transactions"))
    assert [(r["txn_id"], r["source_line"], r["rule"]) for r in rej] == [("T1", "3", "duplicate_key")]
    tx = pd.read_parquet(ws.table("transactions"))
    assert (tx["txn_id"] == "T1").sum() == 1


def test_malformed_optional_cells_keep_row(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    tables["customers"][1]["gender"] = "X"
    tables["customers"][1]["birth_date"] = "1990-13-01"
    tables["tax_records"][0]["months_filed"] = "13"
    tables["loans"][0]["amount"] = "12.345"
    src = write_export(tmp_path / "exp", tables)
    ingest(src, ws, cfg)
    rep = read_report(ws)["tables"]
    assert rep["customers"]["cells_reported"] == {"malformed_optional": 2}
    assert rep["customers"]["set_aside"] == {} and rep["customers"]["rows_kept"] == 3
    assert rep["tax_records"]["cells_reported"] == {"malformed_optional": 1}
    cells = report_rows(ws.cells("customers"))
    assert [(c["source_line"], c["column"], c["value"], c["rule"]) for c in cells] == [
        ("3", "birth_date", "1990-13-01", "malformed_optional"),
        ("3", "gender", "X", "malformed_optional"),
    ]
    cu = pd.read_parquet(ws.table("customers")).set_index("customer_id")
    assert pd.isna(cu.loc["C2", "gender"]) and pd.isna(cu.loc["C2", "birth_date"])
    assert cu.loc["C1", "gender"] == "M"
    assert pd.isna(pd.read_parquet(ws.table("tax_records"))["months_filed"].iloc[0])
    loans = pd.read_parquet(ws.table("loans")).set_index("loan_id")
    assert pd.isna(loans.loc["L1", "amount"]) and loans.loc["L1", "term_months"] == 12


def test_malformed_csv_record_and_line_numbers(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """Quoted newlines and blank lines do not shift the reported line; a wrong field count is set aside."""
    tables = base_tables()
    cols = TABLES["transactions"].column_names
    rows = tables["transactions"]
    rows[0]["counterparty_id"] = "two\nlines"  # record on lines 2-3
    rows.append({**rows[1], "txn_id": "T8", "amount": "abc"})
    src = write_export(tmp_path / "exp", tables)
    write_csv(src / "transactions.csv", cols, rows)
    with (src / "transactions.csv").open("a", encoding="utf-8") as f:
        f.write("\nT9,A1,C1,too,few\n")  # blank line 7, malformed record on line 8
    ingest(src, ws, cfg)
    rej = report_rows(ws.rejects("transactions"))
    assert [(r["source_line"], r["rule"]) for r in rej] == [("6", "unparseable"), ("8", "malformed_row")]
    assert rej[1]["value"] == "T9,A1,C1,too,few"
    assert read_report(ws)["tables"]["transactions"]["set_aside"] == {"unparseable": 1, "malformed_row": 1}
    tx = pd.read_parquet(ws.table("transactions"))
    assert tx.loc[tx.txn_id == "T1", "counterparty_id"].iloc[0] == "two\nlines"


@pytest.mark.parametrize(
    ("encoding", "eol"),
    [
        pytest.param("gbk", "\r\n", id="gbk-crlf"),
        pytest.param("gbk", "\n", id="gbk-lf", marks=pytest.mark.slow),
        pytest.param("utf-8", "\r\n", id="utf-8-crlf", marks=pytest.mark.slow),
        pytest.param("utf-8", "\n", id="utf-8-lf", marks=pytest.mark.slow),
    ],
)
def test_reported_rows_show_original_cells(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, encoding: str, eol: str
) -> None:
    """Reports show every cell exactly as the file has it, read again from the file by the row's
    byte span: quoted commas, doubled quotes, a newline inside quotes, blanks around a number,
    Chinese text (GBK too), CRLF line ends, a last record without a line end."""
    src = write_export(
        tmp_path / "exp",
        base_tables(),
        encoding=encoding,
        manifest={"encoding": encoding} if encoding != "utf-8" else None,
    )
    quoted = f'"对方, ""甲""{eol}乙"'  # one cell over two lines
    tx = [
        ",".join(TABLES["transactions"].column_names),
        "T1,A1,C1,2024-05-01 10:00:00,100.50,C,mobile,payroll,",
        f"T7,A1,C1, 2024-05-01 10:00:00 ,0,C,mobile,payroll,{quoted}",  # lines 3-4: non_positive
        'T8,A2,C2,2024-05-02 11:30:00,-1.5,D,"counter",transfer,X9',  # line 5: non_positive
        '"T9",A3,C3,2024-05-03 09:15:00,35.2,C,qr,merchant_settlement,X 1',  # kept
        "T10,A3,C3,2024-05-03 09:15:00,1.234,C,qr,fee,",
    ]  # line 7: unparseable, no line end after it
    (src / "transactions.csv").write_bytes(eol.join(tx).encode(encoding))
    cu = (src / "customers.csv").read_bytes().decode(encoding).splitlines()
    cu_cols = cu[0].split(",")
    row = {
        "customer_id": "C9",
        "customer_type": "individual",
        "gender": "X",
        "township_code": '"东村, ""老"""',
        "birth_date": " 1990-01-01 ",
        "branch_id": "B1",
        "open_date": "2020-01-01",
    }  # gender X: a bad cell
    (src / "customers.csv").write_bytes(
        eol.join([*cu, ",".join(row.get(c, "") for c in cu_cols)]).encode(encoding) + eol.encode()
    )
    ingest(src, ws, cfg)
    rej = report_rows(ws.rejects("transactions"))
    assert [(r["source_line"], r["rule"], r["column"], r["value"]) for r in rej] == [
        ("3", "non_positive", "amount", "0"),
        ("5", "non_positive", "amount", "-1.5"),
        ("7", "unparseable", "amount", "1.234"),
    ]
    assert rej[0]["txn_time"] == " 2024-05-01 10:00:00 " and rej[0]["counterparty_id"] == f'对方, "甲"{eol}乙'
    assert (rej[1]["txn_id"], rej[1]["channel"], rej[1]["counterparty_id"]) == ("T8", "counter", "X9")
    assert (rej[2]["txn_id"], rej[2]["amount"], rej[2]["counterparty_id"]) == ("T10", "1.234", "")
    assert pd.read_parquet(ws.table("transactions"))["txn_id"].tolist() == ["T1", "T9"]
    cells = report_rows(ws.cells("customers"))
    assert [(c["source_line"], c["column"], c["value"], c["township_code"], c["birth_date"]) for c in cells] == [
        (str(len(cu) + 1), "gender", "X", '东村, "老"', " 1990-01-01 ")
    ]


@pytest.mark.slow
def test_gbk_csv_via_manifest(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    tables["branches"].append({"branch_id": "B3", "name": "河东支行", "area": "城区"})  # bad enum, in Chinese
    src = write_export(
        tmp_path / "exp",
        tables,
        encoding="gbk",
        manifest={"format": "bank-export/1", "export_date": "2024-06-30", "encoding": "gbk"},
    )
    assert "城关支行".encode("gbk") in (src / "branches.csv").read_bytes()
    ingest(src, ws, cfg)
    br = pd.read_parquet(ws.table("branches")).set_index("branch_id")
    assert br.loc["B1", "name"] == "城关支行" and pd.isna(br.loc["B3", "area"])
    cells = report_rows(ws.cells("branches"))
    assert (cells[0]["value"], cells[0]["name"], cells[0]["source_line"]) == ("城区", "河东支行", "4")
    assert ws.export_date() == date(2024, 6, 30)


@pytest.mark.slow
def test_optional_tables_and_columns_absent_extra_columns_reported(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig
) -> None:
    tables = {t: r for t, r in base_tables().items() if t in ("customers", "accounts", "transactions", "loans")}
    for r in tables["accounts"]:
        r.pop("close_date", None)
        r["legacy_flag"] = "Y"
    src = write_export(tmp_path / "exp", tables)
    write_csv(
        src / "accounts.csv",
        ["account_id", "customer_id", "account_type", "open_date", "legacy_flag"],
        tables["accounts"],
    )
    rep = ingest(src, ws, cfg)
    acc = pd.read_parquet(ws.table("accounts"))
    assert "legacy_flag" not in acc.columns and acc["close_date"].isna().all()
    files = read_report(ws)["files"]
    assert files["accounts"]["unknown_columns"] == ["legacy_flag"]
    assert files["accounts"]["absent_columns"] == ["close_date"]
    assert files["balances"]["present"] is False
    assert not ws.table("balances").exists()
    assert read_report(ws)["tables"]["balances"]["rows_read"] == 0
    assert "legacy_flag" in rep.summary_table() and "absent" in rep.summary_table()


def test_missing_required_table_stops(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    del tables["loans"]
    src = write_export(tmp_path / "exp", tables)
    with pytest.raises(DataContractError, match=r"loans\.csv.*missing_table"):
        ingest(src, ws, cfg)
    assert not ws.ingested_dir.exists()


def test_missing_required_column_stops_and_cli_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbp.cli import main

    tables = base_tables()
    src = write_export(tmp_path / "exp", tables)
    cols = [c for c in TABLES["transactions"].column_names if c != "amount"]
    write_csv(src / "transactions.csv", cols, tables["transactions"])
    with pytest.raises(DataContractError, match=r"transactions\.csv: required column 'amount' missing"):
        ingest(src, Workspace(tmp_path / "h1"), IngestConfig())
    monkeypatch.setenv("NBP_HOME", str(tmp_path / "home"))
    res = CliRunner().invoke(main, ["ingest", str(src)])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "transactions.csv" in res.output and "'amount'" in res.output


@pytest.mark.slow
def test_cli_ingest_prints_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbp.cli import main

    src = write_export(tmp_path / "exp", base_tables(), fmt="parquet")
    monkeypatch.setenv("NBP_HOME", str(tmp_path / "home"))
    res = CliRunner().invoke(main, ["ingest", str(src)])
    assert res.exit_code == 0, res.output
    assert "transactions" in res.output and "kept" in res.output
    assert (tmp_path / "home" / "data" / "ingested" / "transactions.parquet").exists()


def test_failed_run_leaves_previous_store_intact(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = base_tables()
    tables["transactions"].append({**tables["transactions"][0], "amount": "0", "txn_id": "T0"})
    ingest(write_export(tmp_path / "exp1", tables), ws, cfg)
    before = file_hashes(ws.home)
    assert "ingest/rejects/transactions.csv" in before

    real = ingest_mod.write_table
    written: list[str] = []

    def failing(con, t, path, *bank):
        if t.name == "loans":
            raise OSError("disk full (simulated)")
        real(con, t, path, *bank)
        written.append(t.name)

    monkeypatch.setattr(ingest_mod, "write_table", failing)
    with pytest.raises(OSError, match="simulated"):
        ingest(write_export(tmp_path / "exp2", base_tables(), fmt="parquet"), ws, cfg)
    assert written == ["customers", "accounts", "transactions"]
    assert file_hashes(ws.home) == before
    leftovers = [p for p in ws.home.rglob(".*") if "tmp" in p.name or "work" in p.name or "old" in p.name]
    assert leftovers == []


@pytest.mark.slow
def test_second_run_replaces_store_and_report(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    tables["transactions"].append({**tables["transactions"][0], "amount": "0", "txn_id": "T0"})
    ingest(write_export(tmp_path / "exp1", tables), ws, cfg)
    ingest(write_export(tmp_path / "exp2", base_tables()), ws, cfg)
    assert not ws.rejects("x").parent.exists()  # the report is the new run's, not a mix
    assert read_report(ws)["tables"]["transactions"]["set_aside"] == {}
    run_ids = {read_report(ws)["run_id"], json.loads(ws.ingest_meta.read_text(encoding="utf-8"))["run_id"]}
    assert len(run_ids) == 1


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ({"encoding": "big5"}, r"encoding 'big5' not supported, use utf-8 or gbk"),
        ({"export_date": "2024-5-31"}, r"export_date '2024-5-31' is not YYYY-MM-DD"),
        ([], r"must be a JSON object"),
    ],
    ids=["encoding", "date", "not-an-object"],
)
def test_bad_manifest_stops(tmp_path: Path, ws: Workspace, cfg: IngestConfig, manifest: object, why: str) -> None:
    src = write_export(tmp_path / "exp", base_tables(), manifest=manifest)
    with pytest.raises(DataContractError, match=rf"^manifest\.json: {why} \(rule bad_manifest\)$"):
        ingest(src, ws, cfg)
    assert not ws.ingested_dir.exists()


def test_record_lines_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Line numbers stay right when quoted newlines, quotes and blank lines straddle scan chunks."""
    import numpy as np

    from bankexport import ingest_lines

    text = 'a,b\n1,"x\ny"\n\n2,"q""\n"\n3,z\r\n\r\n4,w\n5,"\n\n"\n6,v'
    # records: 1 on line 2, 2 on line 5, 3 on line 7, 4 on line 9, 5 on line 10, 6 on line 13
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    rejected_at = text.index("4,w") + 1  # DuckDB's line_byte_position is 1-based
    for chunk in (3, 5, 7, 64):
        monkeypatch.setattr(ingest_lines, "_CHUNK", chunk)
        found = ingest_lines.record_lines(path, np.arange(5), np.array([rejected_at]))
        assert found.lines.tolist() == [2, 5, 7, 10, 13], chunk  # record 4 (line 9) was rejected by the reader
        assert found.rej_lines.tolist() == [9], chunk
        # each record's bytes up to and including its newline (blank lines after it are not part of it)
        assert [text[a:b] for a, b in zip(found.starts, found.ends, strict=True)] == [
            '1,"x\ny"\n',
            '2,"q""\n"\n',
            "3,z\r\n",
            '5,"\n\n"\n',
            "6,v",
        ], chunk


@pytest.mark.slow
def test_gbk_invalid_bytes_set_row_aside(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    src = write_export(tmp_path / "exp", tables, encoding="gbk", manifest={"encoding": "gbk"})
    with (src / "branches.csv").open("ab") as f:
        f.write(b"B9,\xff\xff,,rural\n")  # 0xFF is never valid in GBK
    ingest(src, ws, cfg)
    rej = report_rows(ws.rejects("branches"))
    assert [(r["source_line"], r["rule"]) for r in rej] == [("4", "malformed_row")]
    assert read_report(ws)["tables"]["branches"] == {
        "rows_read": 3,
        "rows_kept": 2,
        "set_aside": {"malformed_row": 1},
        "cells_reported": {},
    }


def test_typed_parquet_and_bom_csv(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """Parquet with native types reads like text; a UTF-8 BOM and padded numbers are tolerated."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = base_tables()
    del tables["transactions"]
    src = write_export(tmp_path / "exp", tables)
    pq.write_table(
        pa.table(
            {
                "txn_id": ["T1", "T2"],
                "account_id": ["A1", "A1"],
                "customer_id": ["C1", "C1"],
                "txn_time": pa.array([dt.datetime(2024, 5, 1, 10, 0, 0), dt.datetime(2024, 5, 1, 10, 0, 0, 500000)]),
                "amount": pa.array([12.5, 0.1 + 0.2]),  # the second has more than 2 decimals
                "direction": ["C", "D"],
                "channel": ["qr", "qr"],
                "txn_type": ["fee", "fee"],
            }
        ),
        src / "transactions.parquet",
    )
    cols = TABLES["branches"].column_names
    (src / "branches.csv").write_bytes("\ufeff".encode() + (",".join(cols) + "\nB1,城关支行,,urban\n").encode())
    tables["managers"][0]["capacity_per_month"] = " 40 "
    write_csv(src / "managers.csv", TABLES["managers"].column_names, tables["managers"])
    ingest(src, ws, cfg)
    tx = pd.read_parquet(ws.table("transactions"))
    assert tx["txn_time"].tolist() == [pd.Timestamp("2024-05-01 10:00:00")]
    assert tx["amount"].tolist() == [12.5]
    rej = report_rows(ws.rejects("transactions"))
    assert [(r["source_file"], r["source_line"], r["rule"], r["column"]) for r in rej] == [
        ("transactions.parquet", "2", "unparseable", "amount")
    ]
    assert pd.read_parquet(ws.table("branches"))["branch_id"].tolist() == ["B1"]
    assert pd.read_parquet(ws.table("managers"))["capacity_per_month"].tolist() == [40]


@pytest.mark.slow
def test_typed_parquet_loans_nan_whole_floats_midnight_dates(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """pandas-style Parquet: NaN is unknown, 12.0 is an int, a midnight timestamp is a date."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = base_tables()
    del tables["loans"]
    src = write_export(tmp_path / "exp", tables)
    d = dt.datetime
    pq.write_table(
        pa.table(
            {
                "loan_id": ["L1", "L2", "L3"],
                "customer_id": ["C1", "C2", "C3"],
                "product": ["consumer", "consumer", "consumer"],
                "application_date": pa.array([d(2024, 1, 5), d(2024, 1, 6), d(2024, 1, 7, 9, 30)]),
                "grant_date": pa.array([dt.date(2024, 1, 9), None, None]),
                "amount": pa.array([5000.0, float("nan"), 100.0]),
                "term_months": pa.array([12.0, 12.5, float("nan")]),
                "status": ["active", "rejected", "rejected"],
            }
        ),
        src / "loans.parquet",
    )
    ingest(src, ws, cfg)
    loans = pd.read_parquet(ws.table("loans")).set_index("loan_id")
    assert list(loans.index) == ["L1", "L2"]  # L3: application_date is not a date (09:30)
    assert loans.loc["L1", "term_months"] == 12 and loans.loc["L1", "grant_date"] == pd.Timestamp("2024-01-09")
    assert pd.isna(loans.loc["L2", "amount"]) and pd.isna(loans.loc["L2", "term_months"])
    rep = read_report(ws)["tables"]["loans"]
    assert rep["set_aside"] == {"unparseable": 1}
    assert rep["cells_reported"] == {"malformed_optional": 1}  # 12.5 months; NaN is just unknown
    cells = report_rows(ws.cells("loans"))
    assert [(c["source_line"], c["column"], c["value"]) for c in cells] == [("2", "term_months", "12.5")]


@pytest.mark.parametrize(
    "text, n_accepted, rejected, lines, rej_lines",
    [
        # one line per record, quoted header (as pyarrow writes it), a rejected record on line 4
        ('"a","b"\n1,x\n2,y\nbad\n3,z\n4,w', 4, ["bad"], [2, 3, 5, 6], [4]),
        # CRLF, two rejected records next to each other, no final newline
        ("a,b\r\nbad1\r\nbad2\r\n1,x\r\n2,y", 2, ["bad1", "bad2"], [4, 5], [2, 3]),
        # a blank line: more lines than records, so the line count falls back to the scan
        ("a,b\n1,x\n\n2,y\nbad\n3,z\n", 3, ["bad"], [2, 4, 6], [5]),
        # a quoted newline: a record spans two lines, so the line count falls back to the scan
        ('a,b\n1,"x\ny"\nbad\n2,z\n', 2, ["bad"], [2, 5], [4]),
        # every string quoted, none spanning lines: one line per record
        ('"a","b"\n"1","x,y"\n"bad"\n"2","z"""\n', 2, ['"bad"'], [2, 4], [3]),
    ],
)
def test_record_lines_one_line_records(
    tmp_path: Path, text: str, n_accepted: int, rejected: list[str], lines: list[int], rej_lines: list[int]
) -> None:
    """Records of one line each get their line from their position; any other file from the scan."""
    import numpy as np

    from bankexport import ingest_lines

    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    rej_bytes = np.array([text.index(r) + 1 for r in rejected][::-1])  # any order; 1-based
    got = ingest_lines.record_lines(path, np.arange(n_accepted)[::-1], rej_bytes, n_accepted=n_accepted)
    assert got.lines.tolist() == lines[::-1]
    assert got.rej_lines.tolist() == rej_lines[::-1]
    scan = ingest_lines.record_lines(path, np.arange(n_accepted)[::-1], rej_bytes)
    for a, b in zip(scan, got, strict=True):  # the line count and the quote scan agree on lines and byte spans
        assert a.tolist() == b.tolist()
    physical = text.encode().splitlines(keepends=True)
    if len(physical) == 1 + n_accepted + len(rejected):  # one line per record: the span is the line
        spans = [text.encode()[a:b] for a, b in zip(got.starts, got.ends, strict=True)]
        assert spans == [physical[n - 1] for n in lines[::-1]]


def test_one_line_records_detection(tmp_path: Path) -> None:
    """The shortcut is taken only when every record is provably one line."""
    import numpy as np

    from bankexport.ingest_lines import _one_line_records

    path = tmp_path / "t.csv"
    path.write_bytes(b'"a","b"\n1,x\nbad\n2,y\n')
    assert _one_line_records(path, 3, np.array([13]))[0].tolist() == [3]
    assert _one_line_records(path, 4, np.array([13])) is None  # a record more than lines: not one line each
    path.write_bytes(b'"a\nb",c\n1,x\n')  # quoted newline in the header
    assert _one_line_records(path, 1, np.zeros(0, np.int64)) is None
    path.write_bytes(b"a,b\n1,x\n\n2,y\n")  # a blank line
    assert _one_line_records(path, 2, np.zeros(0, np.int64)) is None
    path.write_bytes(b'a,b\n1,"x\ny"\n2,z\n')  # a quoted newline: 2 records on 3 data lines
    assert _one_line_records(path, 2, np.zeros(0, np.int64)) is None
    path.write_bytes(b'a,b\n"1","x"\n"2","y"')  # quoted cells, no final newline
    assert _one_line_records(path, 2, np.zeros(0, np.int64))[0].tolist() == []


def test_one_line_records_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejected records' lines are counted right wherever the chunks of the newline count end."""
    import numpy as np

    from bankexport import ingest_lines

    text = '"id","v"\n1,a\nbad1\n2,b\n3,c\nbad2\n4,d\n'
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    rej = np.array([text.index("bad2") + 1, text.index("bad1") + 1])
    for chunk in (9, 10, 13, 64):  # below 9 the header does not fit in the first chunk
        monkeypatch.setattr(ingest_lines, "_CHUNK", chunk)
        assert ingest_lines._one_line_records(path, 6, rej)[0].tolist() == [6, 3], chunk
        found = ingest_lines.record_lines(path, np.arange(4), rej, n_accepted=4)
        assert (found.lines.tolist(), found.rej_lines.tolist()) == ([2, 4, 5, 7], [6, 3]), chunk
        # byte spans from the newlines of the chunks that hold them, read again
        spans = [text[a:b] for a, b in zip(found.starts, found.ends, strict=True)]
        assert spans == ["1,a\n", "2,b\n", "3,c\n", "4,d\n"], chunk


def test_transcode_ascii_passthrough_and_split_characters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pure-ASCII GBK file is read as it is; otherwise every chunk is decoded, also an
    ASCII chunk that follows a chunk ending inside a two-byte character."""
    from bankexport import ingest_lines

    src, dst = tmp_path / "t.csv", tmp_path / "t.utf8.csv"
    src.write_bytes(b"a,b\n1,x\n")
    assert ingest_lines.transcode_to_utf8(src, dst, "gbk") == src and not dst.exists()
    text = "a,b\n1,城关\n2,丂x\n"  # 丂 is 0x81 0x40: its second byte is ASCII "@"
    raw = text.encode("gbk")
    src.write_bytes(raw)
    monkeypatch.setattr(ingest_lines, "_CHUNK", 4)
    real_read = Path.open
    for cut in range(1, len(raw)):  # chunk borders everywhere, also between a character's two bytes

        def small_reads(self: Path, mode: str = "r", *a: object, _cut: int = cut, **k: object):
            f = real_read(self, mode, *a, **k)
            if "r" in mode and "b" in mode and self == src:
                read = f.read
                f.read = lambda n=-1: read(min(n, _cut) if n > 0 else n)  # type: ignore[method-assign]
            return f

        monkeypatch.setattr(Path, "open", small_reads)
        assert ingest_lines.transcode_to_utf8(src, dst, "gbk") == dst
        assert dst.read_bytes().decode("utf-8") == text, cut
        monkeypatch.setattr(Path, "open", real_read)


def test_ok_expr_agrees_with_break_expr() -> None:
    """The cheap all-fine test is true exactly where no rule is named, for every required column."""
    import duckdb

    from bankexport import ingest_sql as q
    from nbp.sqltext import ident

    con = duckdb.connect()
    samples = [
        "",
        "x",
        "0",
        "-1",
        "1",
        "1.5",
        "1.234",
        "13",
        "2024-01-01",
        "2024-01-01 10:00:00",
        "2024-01-01T10:00:00",
        "2024-13",
        "2024-01",
        "C",
        "individual",
        "consumer",
        "atm ",
    ]
    checked = 0
    for t in TABLES.values():
        for c in t.columns:
            if not c.required or c.by:  # a column checked by its row's variant: ok_expr is break_expr IS NULL
                continue
            vals = samples + list(c.enum)
            v, p = ident("v_" + c.name), ident("p_" + c.name)
            rows = con.execute(
                f"SELECT {v}, ({q.ok_expr(c)}) AS ok, ({q.break_expr(c)}) AS brk FROM ("
                f"SELECT {v}, {q.parse_expr(c, v)} AS {p} FROM ("
                f"SELECT NULLIF(unnest(?::VARCHAR[]), '') AS {v}))",
                [vals],
            ).fetchall()
            for val, ok, brk in rows:
                assert bool(ok) == (brk is None), (t.name, c.name, val, ok, brk)
                checked += 1
    assert checked > 100


def test_read_spans_copies_records_under_a_placeholder_header(tmp_path: Path) -> None:
    """Records are copied byte for byte in the given order; a last record without a line end
    gets the header's (CRLF here); an unlocated record (empty span) is refused."""
    import numpy as np

    from bankexport.ingest_lines import read_spans

    text = b'a,b\r\n1,"x\r\ny"\r\n2,z'
    path, dst = tmp_path / "t.csv", tmp_path / "again.csv"
    path.write_bytes(text)
    starts = np.array([text.index(b"2,z"), text.index(b'1,"x')])
    ends = np.array([len(text), text.index(b"2,z")])
    assert read_spans(path, starts, ends, 2, dst)
    assert dst.read_bytes() == b'c0,c1\r\n2,z\r\n1,"x\r\ny"\r\n'
    assert not read_spans(path, np.array([5]), np.array([5]), 2, dst)


@pytest.mark.slow
def test_rows_not_read_again_are_still_reported(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should a reported row's bytes not be found again, it is still reported (line, rule), its
    cells empty, with a warning: nothing is dropped."""
    tables = base_tables()
    tables["transactions"].append({**tables["transactions"][0], "txn_id": "T7", "amount": "0"})
    src = write_export(tmp_path / "exp", tables)
    monkeypatch.setattr(ingest_mod, "read_spans", lambda *a: False)
    ingest(src, ws, cfg)
    rej = report_rows(ws.rejects("transactions"))
    got = [(r["source_line"], r["rule"], r["column"], r["txn_id"]) for r in rej]
    assert got == [("5", "non_positive", "amount", "")]
    assert "could not be read again" in caplog.text
