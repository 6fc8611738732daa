"""Imports that would lose the bank stop (exit 2, one line, store untouched); dates after the
export date never move it.

Every test runs at least one import (~0.2 s): the fast tier keeps one case per stop rule and
its counterparts; variants (other encodings, other shapes of the same rule, overrides, the CLI)
are slow."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bankexport.ingest import infer_export_date, ingest
from bankexport.spec import TABLES
from nbp.config import IngestConfig
from nbp.errors import DataContractError
from nbp.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bankexport.conftest import (
    base_tables,
    file_hashes,
    ingest_config,
    many_transactions,
    read_report,
    report_rows,
    write_csv,
    write_export,
)


def _snapshot(root: Path) -> dict[str, str]:
    """The store's files (a refused import's report under ``ingest.refused/`` aside)."""
    return {k: v for k, v in file_hashes(root).items() if "refused" not in k}


@pytest.fixture(scope="module")
def good_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding a good import (transactions: 200 rows), made once per module."""
    root = tmp_path_factory.mktemp("stored")
    tables = base_tables()
    many_transactions(tables, 200)
    ingest(write_export(root / "good", tables), Workspace(root / "home"), ingest_config())
    return root / "home"


@pytest.fixture
def stored(good_home: Path, ws: Workspace) -> dict[str, str]:
    """The good import copied into this test's workspace; its files' hashes."""
    shutil.copytree(good_home, ws.home)
    return _snapshot(ws.home)


def _stops(
    src: Path, ws: Workspace, cfg: IngestConfig, before: dict[str, str], rule: str, match: str = "", **kw: bool
) -> str:
    """Ingest ``src``: it must stop with ``rule`` in a one-line message and leave the store as it was."""
    with pytest.raises(DataContractError, match=match) as e:
        ingest(src, ws, cfg, **kw)
    msg = str(e.value)
    assert f"(rule {rule})" in msg and "\n" not in msg, msg
    assert _snapshot(ws.home) == before
    return msg


# ---------------------------------------------------------------- empty and cut-short files


def test_header_only_required_table_stops(tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    write_csv(src / "loans.csv", TABLES["loans"].column_names, [])
    _stops(src, ws, cfg, stored, "empty_table", r"loans\.csv: a header but no rows")


def test_header_only_parquet_required_table_stops(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    tables = base_tables()
    tables["customers"] = []
    src = write_export(tmp_path / "exp", tables, fmt="parquet")
    _stops(src, ws, cfg, stored, "empty_table", r"customers\.parquet")


def test_zero_byte_required_file_is_empty_not_missing_column(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    (src / "transactions.csv").write_bytes(b"")
    msg = _stops(src, ws, cfg, stored, "empty_file", r"transactions\.csv: the file is empty \(0 bytes")
    assert "missing" not in msg


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="0-byte", marks=pytest.mark.slow),
        pytest.param("\ufeff".encode(), id="bom-only", marks=pytest.mark.slow),
        pytest.param(None, id="header-only"),
    ],
)
def test_empty_optional_table_counts_as_absent_with_warning(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, caplog: pytest.LogCaptureFixture, content: bytes | None
) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    if content is None:
        write_csv(src / "balances.csv", TABLES["balances"].column_names, [])
    else:
        (src / "balances.csv").write_bytes(content)
    rep = ingest(src, ws, cfg)
    files = read_report(ws)["files"]["balances"]
    assert files["present"] is False and not ws.table("balances").exists()
    assert len(files["warnings"]) == 1 and "balances.csv" in files["warnings"][0]
    assert read_report(ws)["warnings"] == files["warnings"]
    assert "balances.csv" in caplog.text and "absent" in caplog.text
    assert "warning: balances.csv" in rep.summary_table()


@pytest.mark.slow
def test_files_not_read_are_named(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """An optional table under another name would be absent without a word."""
    tables = base_tables()
    src = write_export(tmp_path / "exp", {t: r for t, r in tables.items() if t != "balances"})
    write_csv(src / "Balances.csv", TABLES["balances"].column_names, tables["balances"])
    (src / "notes.txt").write_text("extract log", encoding="utf-8")
    rep = ingest(src, ws, cfg)
    assert read_report(ws)["warnings"] == [
        "Balances.csv: not read: table 'balances' is read only from balances.csv or balances.parquet (lower case, "
        "uncompressed)",
        "notes.txt: not read: not a table nbp reads (" + ", ".join(TABLES) + ")",
    ]
    assert "warning: Balances.csv: not read" in rep.summary_table()


CUT = {
    # the last record stops inside a quoted cell (a counterparty with a comma, cut before its closing quote)
    "quote": 'T9,A1,C1,2024-05-03 09:15:00,1.00,C,qr,fee,"Zhang, Li',
    # the last record stops after a few fields, in the middle of a timestamp
    "fields": "T9,A1,C1,2024-05-03 09:1",
    # a quoted cell spanning lines, cut on its second line
    "quote-lines": 'T9,A1,C1,2024-05-03 09:15:00,1.00,C,qr,fee,"first line\nsecond',
}


@pytest.mark.parametrize("cut", list(CUT), ids=list(CUT))
def test_truncated_csv_stops(tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict, cut: str) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    with (src / "transactions.csv").open("a", encoding="utf-8") as f:
        f.write(CUT[cut])
    msg = _stops(src, ws, cfg, stored, "truncated_file", r"transactions\.csv: the file ends")
    assert "line 5" in msg  # header + 3 records, the cut one starts on line 5


@pytest.mark.slow
def test_cut_inside_a_character_is_a_cut_not_an_encoding(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    with (src / "branches.csv").open("ab") as f:
        f.write("B3,东城".encode()[:-1])  # the last character's third byte is missing
    _stops(src, ws, cfg, stored, "truncated_file", r"branches\.csv: the file ends in the middle of its last record")


def test_last_line_with_too_many_fields_is_only_set_aside(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    with (src / "branches.csv").open("a", encoding="utf-8") as f:
        f.write("B3,x,,rural,extra")  # no line end, but a cut never adds a field
    ingest(src, ws, cfg)
    assert read_report(ws)["tables"]["branches"]["set_aside"] == {"malformed_row": 1}


def test_stray_quote_swallowing_the_rest_of_the_file_stops(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    """A quote opened on line 4 and never closed turns the 2,000 records after it into one cell:
    the file ends inside it, whatever the reader's record text shows."""
    tables = base_tables()
    many_transactions(tables, 2000)
    src = write_export(tmp_path / "exp", tables)
    lines = (src / "transactions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n") + '"x\n'  # the empty counterparty cell opens a quote
    lines[10] = lines[10].rstrip("\n") + '"X, 1"\n'  # a well-quoted cell after it does not close it
    (src / "transactions.csv").write_text("".join(lines), encoding="utf-8")
    msg = _stops(src, ws, cfg, stored, "truncated_file", r"transactions\.csv: the file ends inside a quoted cell")
    assert "opened on line 4" in msg


def test_closed_quote_followed_by_text_is_only_set_aside(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """`"ab"c` is a bad record the reader reports as an unterminated quote, but the file goes on."""
    src = write_export(tmp_path / "exp", base_tables())
    lines = (src / "transactions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(2, 'T9,A1,C1,2024-05-03 09:15:00,1.00,C,qr,fee,"ab"c\n')
    (src / "transactions.csv").write_text("".join(lines), encoding="utf-8")
    ingest(src, ws, cfg)
    assert read_report(ws)["tables"]["transactions"]["set_aside"] == {"malformed_row": 1}


@pytest.mark.slow
def test_short_last_record_with_line_end_is_only_set_aside(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """A broken last record that ends with a line end is a bad row, not a cut file (spec: set aside)."""
    src = write_export(tmp_path / "exp", base_tables())
    with (src / "transactions.csv").open("a", encoding="utf-8") as f:
        f.write("T9,A1,C1,too,few\n")
    ingest(src, ws, cfg)
    assert read_report(ws)["tables"]["transactions"]["set_aside"] == {"malformed_row": 1}


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_parquet_stops_in_one_line(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict, keep: float
) -> None:
    src = write_export(tmp_path / "exp", base_tables(), fmt="parquet")
    raw = (src / "transactions.parquet").read_bytes()
    (src / "transactions.parquet").write_bytes(raw[: int(len(raw) * keep)])
    _stops(src, ws, cfg, stored, "truncated_file", r"transactions\.parquet: the file is incomplete")


# ---------------------------------------------------------------- encodings


@pytest.mark.slow
def test_gbk_file_without_encoding_names_gbk(tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict) -> None:
    for manifest in (None, {"encoding": "utf-8"}):
        src = write_export(tmp_path / f"exp{manifest is None}", base_tables(), encoding="gbk", manifest=manifest)
        msg = _stops(src, ws, cfg, stored, "wrong_encoding", r"branches\.csv")
        assert 'looks like GBK: set "encoding": "gbk" in manifest.json' in msg


@pytest.mark.slow
def test_utf8_file_under_gbk_manifest_names_utf8(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    tables = base_tables()
    tables["branches"].append({"branch_id": "B3", "name": "𠀋村支行", "area": "rural"})  # not in GBK at all
    src = write_export(tmp_path / "exp", tables, manifest={"encoding": "gbk"})
    msg = _stops(src, ws, cfg, stored, "wrong_encoding", r"branches\.csv")
    assert '"encoding": "utf-8"' in msg


def test_utf8_chinese_under_gbk_manifest_is_not_read_as_other_characters(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    """UTF-8 "东城" is valid GBK bytes too (other characters, no error): declared GBK, it must stop."""
    assert "东城".encode().decode("gbk") == "涓滃煄"  # what the bank's staff would see
    tables = base_tables()
    tables["branches"] = [
        {"branch_id": "B1", "name": "东城", "area": "urban"},
        {"branch_id": "B2", "name": "西关", "area": "rural"},
    ]
    src = write_export(tmp_path / "exp", tables, manifest={"encoding": "gbk"})
    msg = _stops(src, ws, cfg, stored, "wrong_encoding", r"branches\.csv: manifest.json declares encoding GBK")
    assert '"encoding": "utf-8"' in msg


@pytest.mark.slow
def test_stray_bad_byte_is_a_bad_row_not_an_encoding(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    src = write_export(tmp_path / "exp", base_tables())
    with (src / "branches.csv").open("ab") as f:
        f.write(b"B9,\xff\xfe,,rural\n")  # valid neither as UTF-8 nor as GBK
    ingest(src, ws, cfg)
    assert read_report(ws)["tables"]["branches"]["set_aside"] == {"malformed_row": 1}


# ---------------------------------------------------------------- share of rows set aside


@pytest.mark.parametrize("accept", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["stops", "accepted"])
def test_set_aside_share_above_limit_stops_unless_accepted(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict, accept: bool
) -> None:
    tables = base_tables()
    many_transactions(tables, 200, bad=12)  # 6 % set aside (non_positive)
    src = write_export(tmp_path / "exp", tables)
    msg = _stops(src, ws, cfg, stored, "too_many_set_aside", r"transactions\.csv: 6\.0% of its rows set aside")
    assert "non_positive 12" in msg and "--accept-set-aside" in msg
    refused = ws.ingest_dir.with_name("ingest.refused")
    assert str(refused) in msg
    assert len(report_rows(refused / "rejects" / "transactions.csv")) == 12
    assert json.loads((refused / "report.json").read_text(encoding="utf-8"))["refused"] == [msg]
    if not accept:
        return
    rep = ingest(src, ws, cfg, accept_set_aside=True)
    checks = read_report(ws)["checks"]["set_aside"]
    assert checks["overridden"] is True and checks["exceeded"] == {"transactions": 0.06}
    assert "set-aside limit 5% exceeded by transactions (6.0%), accepted with --accept-set-aside" in rep.summary_table()
    assert len(pd.read_parquet(ws.table("transactions"))) == 188
    assert not refused.exists()  # a stored import clears the refused one


@pytest.mark.slow
def test_set_aside_share_within_limit_and_small_tables_pass(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    tables = base_tables()
    many_transactions(tables, 200, bad=10)  # 5 %: at the limit, not above it
    tables["managers"].append({"manager_id": "M2", "branch_id": ""})  # 1 of 2 rows: below share_min_rows
    ingest(write_export(tmp_path / "exp", tables), ws, cfg)
    checks = read_report(ws)["checks"]["set_aside"]
    assert checks["exceeded"] == {} and checks["overridden"] is False


@pytest.mark.slow
def test_required_table_with_no_row_kept_stops_whatever_its_size(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig
) -> None:
    tables = base_tables()
    for r in tables["loans"]:
        r["status"] = "paid"
    src = write_export(tmp_path / "exp", tables)
    for accept in (False, True):  # nothing to keep: the override does not apply
        with pytest.raises(DataContractError, match=r"loans\.csv: 100\.0% of its rows set aside.*unknown_enum"):
            ingest(src, ws, cfg, accept_set_aside=accept)
    assert not ws.ingested_dir.exists()


@pytest.mark.slow
def test_cli_accept_set_aside_and_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbp.cli import main

    tables = base_tables()
    many_transactions(tables, 200, bad=30)
    src = write_export(tmp_path / "exp", tables)
    monkeypatch.setenv("NBP_HOME", str(tmp_path / "home"))
    res = CliRunner().invoke(main, ["ingest", str(src), "--log-level", "ERROR"])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and res.output.startswith("error: transactions.csv: 15.0%")
    res = CliRunner().invoke(main, ["ingest", str(src), "--accept-set-aside"])
    assert res.exit_code == 0, res.output
    assert "accepted with --accept-set-aside" in res.output


# ---------------------------------------------------------------- shrinking tables


@pytest.mark.parametrize("accept", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["stops", "accepted"])
def test_shrink_against_previous_import_stops_unless_accepted(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict, accept: bool
) -> None:
    tables = base_tables()
    many_transactions(tables, 150)  # 25 % fewer than the 200 stored
    src = write_export(tmp_path / "exp", tables)
    msg = _stops(src, ws, cfg, stored, "table_shrank", r"transactions\.csv: 150 rows kept against 200")
    assert "25% fewer" in msg and "--accept-shrink" in msg
    if not accept:
        return
    rep = ingest(src, ws, cfg, accept_shrink=True)
    shrink = read_report(ws)["checks"]["shrink"]
    assert shrink["overridden"] is True and shrink["exceeded"] == {"transactions": 0.25}
    assert "accepted with --accept-shrink" in rep.summary_table()


@pytest.mark.slow
def test_small_shrink_passes(tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict) -> None:
    tables = base_tables()
    many_transactions(tables, 170)  # 15 % fewer
    ingest(write_export(tmp_path / "exp", tables), ws, cfg)
    assert read_report(ws)["checks"]["shrink"]["exceeded"] == {}


@pytest.mark.slow
def test_vanished_optional_table_counts_as_shrink(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    tables = base_tables()
    many_transactions(tables, 200)
    del tables["balances"]
    _stops(
        write_export(tmp_path / "exp", tables),
        ws,
        cfg,
        stored,
        "table_shrank",
        r"balances: the table is absent or empty now, 2 rows kept",
    )


def test_another_bank_does_not_join_a_single_bank_store(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    # tables are compared with the same bank's previous import only; a member bank's export
    # cannot land beside a single-bank store (tests/bankexport/test_federation_ingest.py)
    tables = base_tables()
    many_transactions(tables, 20)
    src = write_export(tmp_path / "exp", tables, manifest={"bank_code": "OTHER"})
    _stops(src, ws, cfg, stored, "mixed_workspace", r"bank OTHER: .* holds a single-bank store")


# ---------------------------------------------------------------- dates after the export date


def test_rows_after_manifest_export_date_set_aside_optional_dates_blanked(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig
) -> None:
    tables = base_tables()
    tables["transactions"].append({**tables["transactions"][0], "txn_id": "T8", "txn_time": "2024-06-01 00:00:00"})
    tables["accounts"][0]["close_date"] = "2099-01-01"  # optional: the cell becomes unknown, the row stays
    tables["loans"][0]["end_date"] = "2024-07-01"
    tables["balances"].append({"account_id": "A1", "month": "2024-06", "avg_daily_balance": "1"})
    tables["contacts"].append({**tables["contacts"][0], "contact_date": "2024-05-31"})  # on the day: kept
    src = write_export(tmp_path / "exp", tables, manifest={"export_date": "2024-05-31"})
    rep = ingest(src, ws, cfg)
    t = read_report(ws)["tables"]
    assert t["transactions"]["set_aside"] == {"future_date": 1}
    assert t["balances"]["set_aside"] == {"future_date": 1}
    assert t["contacts"]["set_aside"] == {} and t["contacts"]["rows_kept"] == 2
    assert t["accounts"]["cells_reported"] == {"future_date": 1} and t["accounts"]["rows_kept"] == 3
    assert t["loans"]["cells_reported"] == {"future_date": 1}
    assert rep.export_date == "2024-05-31" and rep.inference is None
    rej = report_rows(ws.rejects("transactions"))
    assert [(r["source_line"], r["rule"], r["column"], r["value"], r["txn_id"]) for r in rej] == [
        ("5", "future_date", "txn_time", "2024-06-01 00:00:00", "T8")
    ]
    cells = report_rows(ws.cells("accounts"))
    assert [(c["source_line"], c["rule"], c["column"], c["value"]) for c in cells] == [
        ("2", "future_date", "close_date", "2099-01-01")
    ]
    acc = pd.read_parquet(ws.table("accounts")).set_index("account_id")
    assert pd.isna(acc.loc["A1", "close_date"])
    assert pd.read_parquet(ws.table("transactions"))["txn_time"].max() < pd.Timestamp("2024-06-01")


@pytest.mark.slow
def test_wrong_manifest_export_date_stops_with_a_hint(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, stored: dict
) -> None:
    tables = base_tables()
    many_transactions(tables, 200)  # May 2024: 1st .. 28th
    src = write_export(tmp_path / "exp", tables, manifest={"export_date": "2024-05-14"})
    _stops(
        src,
        ws,
        cfg,
        stored,
        "too_many_set_aside",
        r"most: future_date 98\), .* rows dated after the export date 2024-05-14 \(export_date of manifest.json\)",
    )


@pytest.mark.slow
def test_future_customer_takes_its_rows_with_it(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    """A customer opened after the export date is set aside, and what points at it follows (references)."""
    tables = base_tables()
    tables["customers"][2]["open_date"] = "2099-01-01"  # C3
    ingest(write_export(tmp_path / "exp", tables, manifest={"export_date": "2024-05-31"}), ws, cfg)
    t = read_report(ws)["tables"]
    assert t["customers"]["set_aside"] == {"future_date": 1}
    assert t["accounts"]["set_aside"] == {"broken_reference": 1}
    assert t["transactions"]["set_aside"] == {"broken_reference": 1}


def test_infer_export_date_ignores_a_handful_of_far_future_rows() -> None:
    days = [date(2024, 5, d) for d in range(1, 31)]
    counts = np.full(30, 1000)
    assert infer_export_date(days, counts, 0.2)[0] == date(2024, 5, 30)  # clean: the last day
    d, info = infer_export_date([*days, date(2099, 1, 1)], np.array([*counts, 5]), 0.2)
    assert d == date(2024, 5, 30) and info["rows_after"] == 5 and info["latest_day"] == "2099-01-01"
    # stray rows spread over several later days still sum to a small tail
    d, _ = infer_export_date(
        [*days, date(2024, 6, 3), date(2031, 2, 2), date(2099, 1, 1)], np.array([*counts, 60, 70, 60]), 0.2
    )
    assert d == date(2024, 5, 30)
    # a day that just began (a night's few transactions) is after the export date
    assert infer_export_date([*days, date(2024, 5, 31)], np.array([*counts, 40]), 0.2)[0] == date(2024, 5, 30)
    # a low but real last day (a Sunday at a third of the volume) is the export date
    assert infer_export_date([*days, date(2024, 5, 31)], np.array([*counts, 330]), 0.2)[0] == date(2024, 5, 31)


def test_inferred_export_date_is_reported_and_future_rows_counted(
    tmp_path: Path, ws: Workspace, cfg: IngestConfig, caplog: pytest.LogCaptureFixture
) -> None:
    tables = base_tables()
    many_transactions(tables, 280)  # 10 a day, 2024-05-01 .. 2024-05-28
    tables["transactions"].append({**tables["transactions"][0], "txn_id": "F1", "txn_time": "2099-01-01 00:00:00"})
    caplog.set_level("INFO")
    rep = ingest(write_export(tmp_path / "exp", tables), ws, cfg)
    assert rep.export_date == "2024-05-28" and rep.export_date_from == "data"
    inf = read_report(ws)["export_date_inference"]
    assert (inf["column"], inf["rows_after"], inf["latest_day"]) == ("transactions.txn_time", 1, "2099-01-01")
    assert read_report(ws)["tables"]["transactions"]["set_aside"] == {"future_date": 1}
    assert "export date inferred: 2024-05-28 from transactions.txn_time" in caplog.text
    assert "export date 2024-05-28 inferred from transactions.txn_time" in rep.summary_table()
    assert ws.export_date() == date(2024, 5, 28)
    assert json.loads(ws.ingest_meta.read_text(encoding="utf-8"))["export_date_inference"]["rows_after"] == 1


@pytest.mark.slow
def test_planted_2099_timestamp_moves_neither_export_date_nor_feature_build(tmp_path: Path) -> None:
    """A simulated bank exported without an export date, once clean and once with one transaction
    dated 2099-01-01: same export date, same as-of dates, same number of feature rows."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bankexport.simulate import simulate
    from features.build import build
    from training.pipeline import export_date, feature_as_ofs

    sim = simulate(tmp_path / "bank", customers=600, months=8, end="2026-10", seed=3, horizon_days=90)
    manifest = json.loads((sim.export_dir / "manifest.json").read_text(encoding="utf-8"))
    del manifest["export_date"]
    (sim.export_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    out = {}
    for planted in (False, True):
        if planted:
            path = sim.export_dir / "transactions.parquet"
            tx = pq.read_table(path)
            row = tx.slice(0, 1).to_pylist()[0]
            row.update(txn_id="FUTURE-1", txn_time=dt.datetime(2099, 1, 1, 12, 0))
            pq.write_table(pa.concat_tables([tx, pa.Table.from_pylist([row], schema=tx.schema)]), path)
        ws = Workspace(tmp_path / f"home{planted}")
        ingest(sim.export_dir, ws, ingest_config())
        summary = build(ws)
        rows = {
            f: len(pd.read_parquet(ws.feature_table(f), columns=["customer_id"])) for f in summary.rows
        }  # rows of every feature table, as written
        out[planted] = (
            export_date(ws),
            feature_as_ofs(ws),
            summary.as_of,
            rows,
            read_report(ws)["tables"]["transactions"]["set_aside"],
        )
    clean, dirty = out[False], out[True]
    assert dirty[0] == clean[0] == pd.Timestamp(sim.export_date) - pd.Timedelta(days=1)  # last day with data
    assert dirty[1] == clean[1] and dirty[1][-1] == pd.Timestamp("2026-11-01")
    assert dirty[2] == clean[2]
    assert dirty[3] == clean[3] and min(clean[3].values()) > 0
    assert (clean[4], dirty[4]) == ({}, {"future_date": 1})
