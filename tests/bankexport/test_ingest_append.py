"""Appending a re-delivered export's new months (``bankexport/ingest_append.py``): after month N,
ingesting N+1 stores exactly what ingesting N+1 from nothing stores (tables in order, rejects,
cells, report counts, quality snapshot), with the unchanged months not checked again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from bankexport import ingest_append as ia
from bankexport.ingest import ingest
from nbp.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bankexport.conftest import bank_manifest, base_tables, ingest_config, read_report, write_export

OWNER = {"A1": "C1", "A2": "C2", "A3": "C3"}


def _txn(m: int, i: int) -> dict[str, str]:
    acc = f"A{1 + i % 3}"
    return {
        "txn_id": f"T{m}-{i}",
        "account_id": acc,
        "customer_id": OWNER[acc],
        "txn_time": f"2024-{m:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:00",
        "amount": "12.50",
        "direction": "C" if i % 2 else "D",
        "channel": "mobile",
        "txn_type": "payroll",
    }


def _month_rows(m: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """One month's transactions and balances, with rows each rule sets aside and a cell reported."""
    txn = [_txn(m, i) for i in range(30)]
    txn[0]["amount"] = "0"  # non_positive
    txn[1]["account_id"] = "A9"  # broken_reference
    txn[3]["txn_id"] = txn[2]["txn_id"]  # duplicate_key, first copy kept
    txn[4]["amount"] = "abc"  # unparseable
    txn[5]["customer_id"] = "C3" if txn[5]["account_id"] != "A3" else "C1"  # not the account's owner
    if m == 5:
        txn[6]["txn_id"] = "T1-7"  # repeats a kept row of an earlier month
    bal = [
        {"account_id": a, "month": f"2024-{m:02d}", "avg_daily_balance": "100", "end_balance": "110.5"}
        for a in ("A1", "A2", "A3")
    ]
    bal[2]["avg_daily_balance"] = "x1"  # malformed optional cell, reported
    bal.append({"account_id": "A9", "month": f"2024-{m:02d}", "end_balance": "1"})  # broken_reference
    return txn, bal


def _export(root: Path, last: int, fmt: str = "csv", change=None, manifest: dict | None = None) -> Path:
    """The export of a bank holding months 1..``last`` of 2024 (exported on the next month's first
    day); ``change(tables)`` edits the tables before they are written."""
    tables = base_tables()
    tables["transactions"], tables["balances"] = [], []
    for m in range(1, last + 1):
        txn, bal = _month_rows(m)
        tables["transactions"] += txn
        tables["balances"] += bal
    if change is not None:
        change(tables)
    export_date = f"2024-{last + 1:02d}-01"
    src = write_export(root, tables, fmt, manifest={"export_date": export_date, **(manifest or {})})
    if fmt == "csv":  # a record the reader cannot split, among month 2's rows
        lines = (src / "transactions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
        lines.insert(35, "T2-x,A1,C1,2024-02-10 10:00:00,5,C,mobile,payroll,,too,many\n")
        (src / "transactions.csv").write_text("".join(lines), encoding="utf-8")
    return src


def _stored(ws: Workspace) -> dict[str, object]:
    """Everything an import leaves that a full import must match: each table (rows in order),
    the rejects and cells files, the report's counts, the quality snapshot of its export date."""
    out: dict[str, object] = {p.stem: pd.read_parquet(p) for p in sorted(ws.ingested_dir.glob("*.parquet"))}
    for kind in ("rejects", "cells"):
        for p in sorted((ws.ingest_dir / kind).glob("*.csv")):
            out[f"{kind}/{p.name}"] = p.read_bytes()
    report = read_report(ws)
    out["report"] = report["tables"]
    out["quality"] = pd.read_parquet(ws.quality_dir / f"{report['export_date']}.parquet")
    return out


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, pd.DataFrame):
            pd.testing.assert_frame_equal(v, b[k], check_exact=True, obj=k)
        else:
            assert v == b[k], k


def _ingest(src: Path, ws: Workspace, **kw: object) -> None:
    """Import with the bad rows these exports plant (more than the set-aside limit) let through."""
    ingest(src, ws, ingest_config(), accept_set_aside=True, **kw)


def _full(src: Path, home: Path, **kw: object) -> dict[str, object]:
    ws = Workspace(home)
    _ingest(src, ws, **kw)
    return _stored(ws)


def _append(tmp_path: Path, earlier: Path, later: Path, **kw: object) -> tuple[dict[str, object], dict]:
    ws = Workspace(tmp_path / "appended")
    _ingest(earlier, ws, **kw)
    _ingest(later, ws, **kw)
    return _stored(ws), read_report(ws)["append"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_next_month_appended_equals_full_ingest(tmp_path: Path, fmt: str) -> None:
    earlier, later = _export(tmp_path / "n", 4, fmt), _export(tmp_path / "n1", 5, fmt)
    got, append = _append(tmp_path, earlier, later)
    want = _full(later, tmp_path / "fresh")
    _assert_same(got, want)
    extra = 1 if fmt == "csv" else 0  # the malformed record is not among the reader's records
    assert append["transactions"]["reused_rows"] == 4 * 30
    assert append["transactions"]["reused_months"] == ["2024-01", "2024-04"]
    assert append["balances"]["reused_rows"] == 4 * 4
    rules = json.loads(json.dumps(got["report"]))["transactions"]["set_aside"]
    # each month's five bad rows and the new month's repeat of an earlier month's key
    assert rules["duplicate_key"] == 5 + 1
    assert rules["non_positive"] == rules["unparseable"] == 5
    assert rules["broken_reference"] == 2 * 5
    assert rules.get("malformed_row", 0) == extra


@pytest.mark.slow
def test_same_export_again_reuses_every_month(tmp_path: Path) -> None:
    src = _export(tmp_path / "n", 4, "parquet")
    got, append = _append(tmp_path, src, src)
    assert append["transactions"]["reused_rows"] == 4 * 30
    _assert_same(got, _full(src, tmp_path / "fresh"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_restated_old_month_is_checked_again(tmp_path: Path, fmt: str) -> None:
    def restate(tables: dict) -> None:
        for r in tables["transactions"]:
            if r["txn_id"] == "T2-10":
                r["amount"] = "-3"  # now set aside
        for r in tables["balances"]:
            if r["month"] == "2024-03" and r["account_id"] == "A1":
                r["end_balance"] = "999"

    earlier, later = _export(tmp_path / "n", 4, fmt), _export(tmp_path / "n1", 5, fmt, restate)
    got, append = _append(tmp_path, earlier, later)
    _assert_same(got, _full(later, tmp_path / "fresh"))
    assert append["transactions"]["reused_months"] == ["2024-01", "2024-01"]
    assert "2024-02 changed" in append["transactions"]["why"]
    assert append["balances"]["reused_months"] == ["2024-01", "2024-02"]


@pytest.mark.slow
def test_changed_close_date_keeps_the_append(tmp_path: Path) -> None:
    """A closed account changes no transaction's verdict (no rule compares dates across tables)."""

    def close(tables: dict) -> None:
        tables["accounts"][0]["close_date"] = "2024-03-15"

    earlier, later = _export(tmp_path / "n", 4), _export(tmp_path / "n1", 5, "csv", close)
    got, append = _append(tmp_path, earlier, later)
    _assert_same(got, _full(later, tmp_path / "fresh"))
    assert append["transactions"]["reused_rows"] == 4 * 30


def test_changed_account_owner_checks_the_table_in_full(tmp_path: Path) -> None:
    """An account given to another customer changes old transactions' verdicts (owner check)."""

    def move(tables: dict) -> None:
        tables["accounts"][1]["customer_id"] = "C3"

    earlier, later = _export(tmp_path / "n", 4, "parquet"), _export(tmp_path / "n1", 5, "parquet", move)
    got, append = _append(tmp_path, earlier, later)
    _assert_same(got, _full(later, tmp_path / "fresh"))
    for t in ("transactions", "balances"):
        assert append[t]["reused_rows"] == 0
        assert "accounts whose kept row changed" in append[t]["why"]


def test_full_flag_and_code_change_check_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    earlier, later = _export(tmp_path / "n", 4, "parquet"), _export(tmp_path / "n1", 5, "parquet")
    ws = Workspace(tmp_path / "w")
    _ingest(earlier, ws)
    _ingest(later, ws, full=True)
    assert read_report(ws)["append"]["transactions"] == {
        "reused_rows": 0,
        "reused_months": [],
        "checked_in_full": True,
        "why": "--full",
    }
    monkeypatch.setattr(ia, "code_hash", lambda: "other")
    _ingest(later, ws)
    assert "changed since the previous import" in read_report(ws)["append"]["balances"]["why"]


@pytest.mark.slow
def test_csv_then_parquet_checks_in_full(tmp_path: Path) -> None:
    got, append = _append(tmp_path, _export(tmp_path / "n", 4, "csv"), _export(tmp_path / "n1", 5, "parquet"))
    assert append["transactions"]["reused_rows"] == 0
    assert "format changed" in append["transactions"]["why"]


@pytest.mark.slow
def test_member_bank_appends_in_its_own_folder(tmp_path: Path) -> None:
    man = bank_manifest("A")
    earlier = _export(tmp_path / "n", 4, "parquet", manifest=man)
    later = _export(tmp_path / "n1", 5, "parquet", manifest=man)
    fed = Workspace(tmp_path / "fed")
    _ingest(earlier, fed)
    _ingest(later, fed)
    assert read_report(fed.for_bank("A"))["append"]["transactions"]["reused_rows"] == 4 * 30
    fresh = Workspace(tmp_path / "fresh")
    _ingest(later, fresh)
    _assert_same(_stored(fed.for_bank("A")), _stored(fresh.for_bank("A")))


def test_reusable_prefix_stops_at_the_first_change() -> None:
    def m(n: int, lo: int, s: int = 1) -> ia.Month:
        return ia.Month(n, s, s, lo, lo + n - 1)

    old = {"2024-01": m(3, 0), "2024-02": m(2, 3), "2024-03": m(2, 5)}
    same = dict(old, **{"2024-04": m(1, 7)})
    assert ia.reusable_prefix(old, same, "2024-04-01", "2024-05-01")[:2] == (["2024-01", "2024-02", "2024-03"], 7)
    # a month ending after the earlier export date is checked again, and so is everything after it
    assert ia.reusable_prefix(old, same, "2024-03-15", "2024-05-01")[:2] == (["2024-01", "2024-02"], 5)
    restated = dict(same, **{"2024-02": m(2, 3, s=9)})
    taken, k, why = ia.reusable_prefix(old, restated, "2024-04-01", "2024-05-01")
    assert (taken, k, why) == (["2024-01"], 3, "2024-02 changed")
    # months interleaved in the file (not a prefix) reuse nothing past the first gap
    scattered = {"2024-01": ia.Month(3, 1, 1, 0, 4), "2024-02": ia.Month(2, 1, 1, 1, 3)}
    assert ia.reusable_prefix(scattered, scattered, "2024-04-01", "2024-05-01")[1] == 0
    assert ia.reusable_prefix({}, {"": m(2, 0)}, "2024-04-01", "2024-05-01")[1] == 0


def test_appendable_tables_depend_only_on_what_is_rechecked() -> None:
    ia.check_table_names()


@pytest.mark.slow
@pytest.mark.integration
def test_cli_says_what_was_appended_and_full_checks_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from nbp.cli import main

    earlier, later = _export(tmp_path / "n", 4, "parquet"), _export(tmp_path / "n1", 5, "parquet")
    monkeypatch.setenv("NBP_HOME", str(tmp_path / "home"))
    for src, more in ((earlier, []), (later, []), (later, ["--full"])):
        res = CliRunner().invoke(main, ["ingest", "--accept-set-aside", *more, str(src)])
        assert res.exit_code == 0, res.output
        noted = "note: transactions: 120 rows of the months 2024-01 to 2024-04 unchanged" in res.output
        assert noted == (src == later and not more), res.output


def test_an_unreadable_file_stops_the_append_as_it_stops_a_full_ingest(tmp_path: Path) -> None:
    """Data pages garbled behind an intact footer: the fingerprint pass is the first to read them."""
    from nbp.errors import DataContractError

    earlier, later = _export(tmp_path / "n", 4, "parquet"), _export(tmp_path / "n1", 5, "parquet")
    ws = Workspace(tmp_path / "w")
    _ingest(earlier, ws)
    before = ws.table("transactions").read_bytes()
    f = later / "transactions.parquet"
    raw = bytearray(f.read_bytes())
    raw[4:400] = b"\xff" * 396
    f.write_bytes(bytes(raw))
    with pytest.raises(DataContractError, match="unreadable_file"):
        _ingest(later, ws)
    assert ws.table("transactions").read_bytes() == before
