"""Skipped products and the repair after killed jobs: reasons, MLflow records, temporary files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from training_synth import FEATURES, time_slices, uptake_frame

from bankexport.spec import ALL_TABLES
from nbp import jobs
from nbp.config import load_config
from nbp.errors import ModelUnavailable
from nbp.workspace import Workspace
from training import evaluate as ev
from training import registry
from training.model import ModelParams, fit_rolling
from training.pipeline import MIN_FIT_MONTHS, trainability

FAST = ModelParams(
    learning_rate=0.1, max_rounds=50, early_stopping_rounds=10, min_child_samples=50, folds=2, search=False
)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _rows(months: int, uptakes: int, n: int = 40) -> pd.DataFrame:
    as_of = pd.date_range("2025-01-01", periods=months, freq="MS").repeat(n)
    label = [1] * uptakes + [0] * (len(as_of) - uptakes)
    return pd.DataFrame({"customer_id": range(len(as_of)), "as_of": as_of, "label": label})


def _ws_without(tmp_path: Path, *absent: str) -> Workspace:
    ws = Workspace(tmp_path / "home")
    ws.ingested_dir.mkdir(parents=True)
    for t in ALL_TABLES:
        if t not in absent:
            ws.table(t).touch()
    return ws


def test_trainability_names_each_reason(tmp_path: Path) -> None:
    cfg = load_config()
    ws = _ws_without(tmp_path, "tax_records")
    te = _rows(2, 3)
    empty = _rows(0, 0)
    skip = trainability(cfg, ws, "tax_linked", empty, te)
    assert "tax_records" in skip.en and "tax_credit_grade_latest" in skip.en and "tax_records" in skip.zh
    skip = trainability(cfg, _ws_without(tmp_path / "all"), "tax_linked", empty, te)
    assert "no candidates" in skip.en and "tax_records" not in skip.en  # the tables are there: another cause
    skip = trainability(cfg, ws, "consumer", _rows(MIN_FIT_MONTHS - 1, 50), te)
    assert f"only {MIN_FIT_MONTHS - 1} fitting month" in skip.en
    skip = trainability(cfg, ws, "consumer", _rows(MIN_FIT_MONTHS, cfg.training.min_uptakes - 1), te)
    assert "min_uptakes" in skip.en and f"仅有 {cfg.training.min_uptakes - 1} 笔" in skip.zh
    skip = trainability(cfg, ws, "consumer", _rows(MIN_FIT_MONTHS, 50), _rows(2, 0))
    assert "no uptake in the test months" in skip.en
    assert trainability(cfg, ws, "consumer", _rows(MIN_FIT_MONTHS, cfg.training.min_uptakes), te) is None


@pytest.fixture(scope="module")
def model_and_test():
    train, valid, test = time_slices(uptake_frame(n=6_000))
    model = fit_rolling(pd.concat([train, valid]), FEATURES, "label", "period", FAST)
    return model, test


def _register(ws: Workspace, model_and_test) -> tuple[int, dict]:
    model, test = model_and_test
    m = ev.metrics(test["label"], model.predict_proba(test))
    v = registry.log_and_register(
        ws,
        "consumer",
        model,
        m,
        {},
        plots={},
        feature_info={},
        as_of_range=("2026-01-01", "2026-03-01"),
        backtest_window="w1",
        input_example=test,
    )
    return v, m


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A fresh workspace; the working directory is an empty folder MLflow must not write to."""
    monkeypatch.chdir(tmp_path)
    return Workspace(tmp_path / "home")


@pytest.mark.integration
def test_a_skip_is_recorded_shown_and_cleared_by_the_next_model(ws: Workspace, model_and_test) -> None:
    registry.record_skip(ws, "consumer", "训练月份内仅有 3 笔办理", "only 3 uptake(s)", "w1")
    assert registry.skip_of(ws, "consumer") == {"zh": "训练月份内仅有 3 笔办理", "en": "only 3 uptake(s)"}
    with pytest.raises(ModelUnavailable, match=r"skipped the product: only 3 uptake\(s\)"):
        registry.load_champion(ws, "consumer")
    client = registry._connect(ws)
    exp = client.get_experiment_by_name("nbp-consumer")
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags[registry.TAG_SKIPPED_ZH] == "训练月份内仅有 3 笔办理"
    v, m = _register(ws, model_and_test)
    assert registry.skip_of(ws, "consumer") is None
    registry.promote(ws, "consumer", v, m, floor=0.5, leak_alarm=False)
    assert registry.load_champion(ws, "consumer")[1] == v


@pytest.mark.integration
def test_recover_fails_dead_runs_and_deletes_their_undecided_versions(ws: Workspace, model_and_test) -> None:
    v1, m1 = _register(ws, model_and_test)
    registry.promote(ws, "consumer", v1, m1, floor=0.5, leak_alarm=False)
    client = registry._connect(ws)
    dead = str(_dead_pid())
    # a version registered by a job that died before the gate, and a run left RUNNING by one
    v2, _ = _register(ws, model_and_test)
    client.set_tag(client.get_model_version("nbp-consumer", str(v2)).run_id, registry.TAG_PID, dead)
    exp = client.get_experiment_by_name("nbp-consumer").experiment_id
    running = client.create_run(exp, tags={registry.TAG_PID: dead, registry.TAG_HOST: jobs.host()}).info.run_id
    # a live job's run and version (this process) and another host's run are left alone
    v3, _ = _register(ws, model_and_test)
    other = client.create_run(exp, tags={registry.TAG_PID: dead, registry.TAG_HOST: "elsewhere"}).info.run_id

    done = registry.recover(ws)
    assert len(done) == 3, done  # the RUNNING run, the version v2 and its run
    assert client.get_run(running).info.status == "FAILED"
    assert "died" in client.get_run(running).data.tags[registry.TAG_FAILED]
    versions = {int(mv.version) for mv in client.search_model_versions("name = 'nbp-consumer'")}
    assert versions == {v1, v3}
    assert client.get_run(client.get_model_version("nbp-consumer", str(v1)).run_id).info.status == "FINISHED"
    assert client.get_run(other).info.status == "RUNNING"
    assert registry.load_champion(ws, "consumer")[1] == v1
    assert registry.recover(ws) == []  # nothing left to repair


def test_clean_stale_removes_only_dead_local_jobs_files(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "home")
    dead = jobs.tag(_dead_pid())
    demo = ws.feature_table("demo")  # a build's new file is written beside the table's others
    demo.mkdir(parents=True)
    ws.scores_dir.mkdir(parents=True)
    gone = [
        demo / f".2026-11-01.parquet.tmp-{dead}",
        ws.scores_dir / f".latest.parquet.tmp-{dead}",
        ws.job_scratch(dead),
    ]
    kept = [
        demo / f".2026-11-01.parquet.tmp-{jobs.tag()}",
        demo / ".2026-11-01.parquet.tmp-elsewhere-1",
        ws.job_scratch(jobs.tag()),
        demo / "2025-01-01_2026-10-01.parquet",
    ]
    for p in gone + kept:
        if p.parent == ws.scratch_root:
            (p / "duckdb-build").mkdir(parents=True)
        else:
            p.write_bytes(b"x")
    assert sorted(jobs.clean_stale(ws)) == sorted(gone)
    assert not any(p.exists() for p in gone) and all(p.exists() for p in kept)
    jobs.clean_own(ws)
    assert not ws.scratch_root.exists() and not kept[0].exists() and kept[1].exists()


def test_clean_stale_finds_a_dead_jobs_files_in_a_member_banks_folders(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "home")
    bank = ws.for_bank("QINGSHAN")
    bank.ingested_dir.mkdir(parents=True)
    bank.ingest_meta.write_text('{"export_date": "2026-11-01", "bank_code": "QINGSHAN"}', encoding="utf-8")
    dead = jobs.tag(_dead_pid())
    income = bank.feature_table("income")
    income.mkdir(parents=True)
    bank.scores_dir.mkdir(parents=True)
    gone = [income / f".2026-11-01.parquet.tmp-{dead}", bank.scores_dir / f".latest.parquet.tmp-{dead}"]
    kept = income / f".2026-11-01.parquet.tmp-{jobs.tag()}"
    for p in [*gone, kept]:
        p.write_bytes(b"x")
    assert sorted(jobs.clean_stale(ws)) == sorted(gone)
    assert not any(p.exists() for p in gone) and kept.exists()


def test_jobs_read_the_export_date_ingest_recorded_and_refuse_without_one(tmp_path: Path) -> None:
    from nbp.errors import FeatureStoreError
    from training.pipeline import export_date

    ws = Workspace(tmp_path / "home")
    with pytest.raises(FeatureStoreError, match=r"_meta\.json missing: run `nbp ingest` first"):
        export_date(ws)
    ws.ingested_dir.mkdir(parents=True)
    ws.ingest_meta.write_text('{"export_date": "2026-10-31", "source": "manifest"}', encoding="utf-8")
    assert export_date(ws) == pd.Timestamp("2026-10-31")
