"""A killed `nbp retrain` leaves nothing half-done for the next run.

`nbp retrain` runs in a subprocess that SIGKILLs itself at one stage (tests/e2e/kill_at.py):
features, train, register, gate, score, one after another in one workspace. Each killed run
leaves its debris (a temporary file, a RUNNING MLflow run, a registered version without a
gate decision) and must not touch the champion or the published scores; the next run removes
the debris of the previous one before dying in turn. A last, whole run ends with no RUNNING
run, no version without a decision, no temporary file, and scores from the champions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from e2ekit import run_cli

from nbp import jobs
from nbp.workspace import Workspace
from training import registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILL_AT = Path(__file__).with_name("kill_at.py")
STAGES = ("features", "train", "register", "gate", "score")
PRODUCTS = ("consumer", "business_flow", "tax_linked")


def _runs(ws: Workspace) -> list:
    client = registry._connect(ws)
    exps = [e.experiment_id for e in client.search_experiments() if e.name.startswith("nbp-")]
    return client.search_runs(exps, max_results=1000) if exps else []


def _undecided(ws: Workspace) -> list[tuple[str, str]]:
    """(model, version) registered without a champion-gate decision."""
    client = registry._connect(ws)
    return [
        (mv.name, mv.version)
        for p in PRODUCTS
        for mv in client.search_model_versions(f"name = 'nbp-{p}'")
        if registry.TAG_DECISION not in mv.tags
    ]


def _temp(ws: Workspace, pid: int) -> list[Path]:
    """Temporary files and folders tagged with ``pid`` (this host)."""
    t = jobs.tag(pid)
    return [p for p in ws.home.rglob("*") if p.name == t or p.name.endswith(f".tmp-{t}")]


def _champions(ws: Workspace) -> dict[str, int]:
    out = {}
    for p in PRODUCTS:
        try:
            out[p] = registry.load_champion(ws, p)[1]
        except Exception:  # noqa: BLE001 - no champion for this product
            pass
    return out


def _kill(stage: str, home: Path) -> int:
    env = {**os.environ, "NBP_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, str(KILL_AT), stage, "--log-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, (stage, proc.returncode, proc.stderr[-2000:])
    return int(proc.stderr.split("KILL_AT pid ")[1].split()[0])


def test_a_killed_retrain_is_cleaned_up_by_the_next_run(
    small_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("NBP_HOME", str(home))
    ws = Workspace.from_env()
    run_cli(["ingest", str(small_export)])
    run_cli(["retrain"])
    champions = _champions(ws)
    assert champions, "the small bank needs a champion for this test"
    latest = ws.latest_scores
    published = latest.read_bytes()

    before: int | None = None
    for stage in STAGES:
        pid = _kill(stage, home)
        # what this run left behind is there (so the checks below can fail) ...
        runs = [r for r in _runs(ws) if r.data.tags.get(registry.TAG_PID) == str(pid)]
        if stage in ("features", "score"):
            assert any(".tmp-" in p.name for p in _temp(ws, pid)), stage
        if stage == "register":
            assert [r.info.status for r in runs] == ["RUNNING"], stage
        if stage == "gate":
            assert _undecided(ws), stage
        # ... the previous run's debris is gone ...
        if before is not None:
            assert not _temp(ws, before), (stage, _temp(ws, before))
            prev = [r for r in _runs(ws) if r.data.tags.get(registry.TAG_PID) == str(before)]
            assert all(r.info.status != "RUNNING" for r in prev), stage
        # ... and what serving reads is untouched (a champion moves only through a whole gate)
        assert latest.read_bytes() == published, stage
        if stage != "score":
            assert _champions(ws) == champions, stage
        before = pid

    out = run_cli(["retrain"])
    assert "scores at" in out
    assert not [r.info.run_id for r in _runs(ws) if r.info.status == "RUNNING"]
    failed = [r for r in _runs(ws) if r.info.status == "FAILED"]
    assert failed and all(registry.TAG_FAILED in r.data.tags for r in failed)
    assert not _undecided(ws)
    assert not jobs.leftovers(ws) and not ws.scratch_root.exists()
    assert not [p for p in home.rglob("*") if ".tmp-" in p.name]
    champions = _champions(ws)
    s = pd.read_parquet(latest)
    assert {p: int(v) for p, v in s.groupby("product")["model_version"].first().items()} == champions
    product = sorted(champions)[0]
    assert "customers to contact" in run_cli(
        ["targets", "--product", product, "--top", "10", "--out", str(tmp_path / "list.xlsx")]
    )
