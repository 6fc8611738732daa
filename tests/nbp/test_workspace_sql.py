"""Workspace paths, the recorded export date and SQL quoting."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from nbp.errors import DataContractError
from nbp.sqltext import ident, lit
from nbp.workspace import Workspace


def test_export_date_is_none_before_ingest_and_read_from_meta_after(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert ws.export_date() is None
    ws.ingested_dir.mkdir(parents=True)
    ws.ingest_meta.write_text(json.dumps({"export_date": "2026-10-31"}), encoding="utf-8")
    assert ws.export_date() == date(2026, 10, 31)


@pytest.mark.parametrize("body", ['{"export_date": "31/10/2026"}', "{}", "[1]"])
def test_a_broken_meta_names_the_file(tmp_path: Path, body: str) -> None:
    ws = Workspace(tmp_path)
    ws.ingested_dir.mkdir(parents=True)
    ws.ingest_meta.write_text(body, encoding="utf-8")
    with pytest.raises(DataContractError, match="_meta.json"):
        ws.export_date()


def test_every_path_stays_inside_home(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    paths = [getattr(ws, n) for n in dir(Workspace) if isinstance(getattr(Workspace, n), property)]
    paths += [ws.table("x"), ws.mlflow_artifacts("m"), ws.train_outputs("p"), ws.backtest_outputs(date(2026, 1, 1))]
    assert all(isinstance(p, Path) and p.is_relative_to(tmp_path) for p in paths)
    assert len({str(p) for p in paths}) == len(paths)


@pytest.mark.parametrize("text", ["plain", "it's", 'say "hi"', "'; DROP TABLE t; --", "中文\n换行", ""])
def test_quoted_text_round_trips_through_duckdb(text: str) -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({ident(text or 'x')} VARCHAR)")
    con.execute(f"INSERT INTO t VALUES ({lit(text)})")
    assert con.execute("SELECT * FROM t").fetchall() == [(text,)]
    assert con.execute("SELECT name FROM pragma_table_info('t')").fetchone()[0] == (text or "x")
