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


# Every path of a single-bank workspace, as laid out before federations existed: must not move.
SINGLE_BANK_LAYOUT = {
    "ingest_dir": "ingest",
    "ingest_refused_dir": "ingest.refused",
    "ingested_dir": "data/ingested",
    "ingest_meta": "data/ingested/_meta.json",
    "ingest_append_dir": "data/ingested/_append",
    "ingest_report": "ingest/report.json",
    "features_dir": "data/features",
    "features_build_meta": "data/features/_build.json",
    "feast_dir": "feast",
    "feast_registry": "feast/registry.db",
    "feast_yaml": "feast/feature_store.yaml",
    "online_store_db": "feast/online_store.db",
    "mlruns_dir": "mlruns",
    "mlflow_db": "mlruns/mlflow.db",
    "outputs_dir": "outputs",
    "scores_dir": "outputs/scores",
    "latest_scores": "outputs/scores/latest.parquet",
    "bentoml_home": "bentoml",
    "audit_log": "audit/audit.jsonl",
    "do_not_contact": "policy/do_not_contact.txt",
    "campaigns_dir": "campaigns",
    "campaign_reports_dir": "outputs/campaigns",
    "drift_report": "outputs/drift/latest.json",
    "tiers_dir": "outputs/tiers",
    "segments_dir": "segments",
    "segment_outputs_dir": "outputs/segments",
    "quality_dir": "quality",
    "quality_reports_dir": "outputs/quality",
    "fingerprint_key": "secrets/fingerprint.key",
    "scratch_root": ".tmp",
}


def _calls(ws: Workspace) -> dict[str, Path]:
    return {
        "table": ws.table("loans"),
        "rejects": ws.rejects("loans"),
        "cells": ws.cells("loans"),
        "feature_table": ws.feature_table("income"),
        "mlflow_artifacts": ws.mlflow_artifacts("nbp-consumer"),
        "train_outputs": ws.train_outputs("consumer"),
        "backtest_outputs": ws.backtest_outputs(date(2026, 1, 1)),
        "job_scratch": ws.job_scratch("h-1"),
    }


SINGLE_BANK_CALLS = {
    "table": "data/ingested/loans.parquet",
    "rejects": "ingest/rejects/loans.csv",
    "cells": "ingest/cells/loans.csv",
    "feature_table": "data/features/income",
    "mlflow_artifacts": "mlruns/artifacts/nbp-consumer",
    "train_outputs": "outputs/train/consumer",
    "backtest_outputs": "outputs/backtest/2026-01-01",
    "job_scratch": ".tmp/h-1",
}
# What stays shared by every bank of a federation (decision 016)
SHARED = {"mlruns", "bentoml", "audit", "secrets", ".tmp"}


def _paths(ws: Workspace) -> dict[str, Path]:
    props = {n: getattr(ws, n) for n in dir(Workspace) if isinstance(getattr(Workspace, n), property)}
    return {**{n: p for n, p in props.items() if n not in ("banks_dir", "bank_root")}, **_calls(ws)}


def test_single_bank_paths_are_unchanged(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert ws.bank is None and ws.bank_root == tmp_path
    got = {n: p.relative_to(tmp_path).as_posix() for n, p in _paths(ws).items()}
    assert got == {**SINGLE_BANK_LAYOUT, **SINGLE_BANK_CALLS}


def test_bank_paths_sit_under_their_folder_and_shared_ones_do_not_move(tmp_path: Path) -> None:
    home, a, b = Workspace(tmp_path), Workspace(tmp_path).for_bank("A"), Workspace(tmp_path).for_bank("b-2")
    assert a.home == b.home == tmp_path and a.bank_root == tmp_path / "banks" / "A"
    single, pa, pb = _paths(home), _paths(a), _paths(b)
    for name, p in single.items():
        rel = p.relative_to(tmp_path)
        if rel.parts[0] in SHARED:
            assert pa[name] == pb[name] == p, name
        else:
            assert pa[name] == a.bank_root / rel and pb[name] == b.bank_root / rel, name
    own_a = {p for n, p in pa.items() if pa[n] != single[n]}
    own_b = {p for n, p in pb.items() if pb[n] != single[n]}
    assert own_a and all(not x.is_relative_to(y) and not y.is_relative_to(x) for x in own_a for y in own_b)


@pytest.mark.parametrize("code", ["", "../x", "a/b", "x" * 17, "中文", "a b", "."])
def test_an_invalid_bank_code_is_no_workspace(tmp_path: Path, code: str) -> None:
    with pytest.raises(ValueError, match="bank code"):
        Workspace(tmp_path).for_bank(code)


def test_banks_lists_folders_holding_a_store(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert ws.banks() == []
    for code in ("Z9", "A1"):
        ws.for_bank(code).ingested_dir.mkdir(parents=True)
        ws.for_bank(code).ingest_meta.write_text("{}", encoding="utf-8")
    ws.for_bank("EMPTY").ingest_dir.mkdir(parents=True)  # a refused first import stores nothing
    (ws.banks_dir / "not a bank").mkdir()
    assert ws.banks() == ["A1", "Z9"] and ws.for_bank("A1").banks() == ["A1", "Z9"]


@pytest.mark.parametrize("text", ["plain", "it's", 'say "hi"', "'; DROP TABLE t; --", "中文\n换行", ""])
def test_quoted_text_round_trips_through_duckdb(text: str) -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({ident(text or 'x')} VARCHAR)")
    con.execute(f"INSERT INTO t VALUES ({lit(text)})")
    assert con.execute("SELECT * FROM t").fetchall() == [(text,)]
    assert con.execute("SELECT name FROM pragma_table_info('t')").fetchone()[0] == (text or "x")


def test_recorded_bank_is_the_bank_code_ingest_wrote(tmp_path: Path) -> None:
    single, bank = Workspace(tmp_path), Workspace(tmp_path).for_bank("QINGSHAN")
    assert single.recorded_bank() is None and bank.recorded_bank() is None
    bank.ingested_dir.mkdir(parents=True)
    bank.ingest_meta.write_text(json.dumps({"export_date": "2026-10-31", "bank_code": "QINGSHAN"}), encoding="utf-8")
    assert bank.recorded_bank() == "QINGSHAN" and bank.export_date() == date(2026, 10, 31)
    bank.ingest_meta.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataContractError, match="_meta.json: unreadable"):
        bank.recorded_bank()
