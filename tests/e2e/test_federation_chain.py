"""The chain on a federation workspace through the CLI: two member banks whose customer ids
overlap, each with its own Feast repo, models ``nbp-<bank>-<product>`` and scores.

Small on purpose (two banks of a few thousand customers): it checks that every stage keeps
each bank's data to itself, not model quality (``benchmarks/bench_federation.py``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nbp.cli import main
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BANKS = ("QINGSHAN", "BAISHA")


def _run(args: list[str], code: int = 0) -> str:
    res = CliRunner().invoke(main, [*args, "--log-level", "WARNING"], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("fedchain")
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(root / "home"))
    try:
        _run(["simulate", "--federation", "2", "--sizes", "6000,3000", "--seed", "5", "--out", str(root / "export")])
        for code in BANKS:
            _run(["ingest", str(root / "export" / code / "export")])
        _run(["features"])
        out = _run(["train"])
        assert out.index("bank QINGSHAN") < out.index("bank BAISHA"), out  # largest bank first (decision 019)
        yield Workspace(root / "home")
    finally:
        mp.undo()


def _client(ws: Workspace):
    from training.registry import _connect

    return _connect(ws)


def test_each_bank_registers_its_own_models_tagged_with_the_bank(fed: Workspace) -> None:
    client = _client(fed)
    names = {m.name for m in client.search_registered_models()}
    assert names and all(n.startswith(("nbp-QINGSHAN-", "nbp-BAISHA-")) for n in names), names
    assert "nbp-QINGSHAN-consumer" in names
    for m in client.search_model_versions("name='nbp-QINGSHAN-consumer'"):
        assert client.get_run(m.run_id).data.tags["nbp.bank"] == "QINGSHAN"


def test_scores_of_one_bank_carry_the_bank_and_only_its_customers(fed: Workspace, tmp_path: Path) -> None:
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(fed.home))
    try:
        other = _digests(fed.for_bank("BAISHA").bank_root)
        _run(["score", "--bank", "QINGSHAN", "--as-of", "2026-10-01", "--out", str(tmp_path / "s.parquet")])
        assert _digests(fed.for_bank("BAISHA").bank_root) == other
    finally:
        mp.undo()
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert list(df.columns)[0] == "bank_code" and set(df["bank_code"]) == {"QINGSHAN"}
    ids = set(pd.read_parquet(fed.for_bank("QINGSHAN").table("customers"))["customer_id"])
    assert len(df) > 0 and set(df["customer_id"]) <= ids
    meta = json.loads(fed.for_bank("QINGSHAN").features_build_meta.read_text())
    assert meta["bank_code"] == "QINGSHAN"


@pytest.fixture(scope="module")
def pooled(fed: Workspace, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``nbp train`` of consumer with scope pooled, after the per-bank models of ``fed``."""
    overlay = tmp_path_factory.mktemp("pooledcfg") / "pooled.yaml"
    overlay.write_text("products:\n  consumer: {scope: pooled}\n", encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(fed.home))
    try:
        return _run(["train", "--config", str(overlay), "--product", "consumer"])
    finally:
        mp.undo()


def _pooled_run(fed: Workspace):
    client = _client(fed)
    exp = client.get_experiment_by_name("nbp-pooled-consumer")
    (run,) = client.search_runs([exp.experiment_id])
    banks = json.loads(Path(client.download_artifacts(run.info.run_id, "banks.json")).read_text())
    return client, run, {b["bank"]: b for b in banks}


def test_a_pooled_run_logs_each_bank_metrics_and_table(fed: Workspace, pooled: str) -> None:
    assert "product consumer: pooled model (scope pooled) over banks BAISHA, QINGSHAN" in pooled
    assert "per-bank models" not in pooled  # only the pooled product was asked for
    _, run, banks = _pooled_run(fed)
    assert run.data.tags["nbp.scope"] == "pooled" and run.info.status == "FINISHED"
    for bank in BANKS:
        for name in ("auc", "auc_se", "positives", "n", "ece"):
            assert f"{name}.{bank}" in run.data.metrics, (name, bank)
        assert run.data.metrics[f"auc.{bank}"] == pytest.approx(banks[bank]["auc"])
    assert run.data.metrics["n.QINGSHAN"] != run.data.metrics["n.BAISHA"]  # each bank's own rows


def test_each_bank_gets_a_version_with_its_calibrator_gated_on_its_own_window(fed: Workspace, pooled: str) -> None:
    from features.catalog import BANK_FEATURES
    from nbp.config import load_config
    from training.registry import load_version

    client, run, banks = _pooled_run(fed)
    min_pos = load_config().training.min_bank_calibration_uptakes
    for bank in BANKS:
        ws = fed.for_bank(bank)
        name = f"nbp-{bank}-consumer"
        row = banks[bank]
        mv = client.get_model_version(name, str(row["version"]))
        assert mv.tags["nbp.scope"] == "pooled" and mv.tags["nbp.pooled_run"] == run.info.run_id
        model, _ = load_version(ws, "consumer", row["version"])
        assert BANK_FEATURES <= set(model.features)
        for v in client.search_model_versions(f"name='{name}'"):  # the fixture's per-bank models, if any
            if "nbp.scope" not in v.tags:
                assert not BANK_FEATURES & set(load_version(ws, "consumer", v.version)[0].features)
        assert row["calibration"] == ("bank" if row["calibration_uptakes"] >= min_pos else "pooled")
        assert repr(model.calibrator) == row["calibrator"]
        assert (row["calibrator"] == run.data.params["pooled_calibrator"]) == (row["calibration"] == "pooled")
        version_run = client.get_run(mv.run_id)
        assert version_run.data.metrics["n"] == run.data.metrics[f"n.{bank}"]  # the gate saw this bank's rows
        decision = mv.tags["nbp.decision"]
        assert f"AUC {row['auc']:.4f} ± " in decision and f"({int(row['uptakes'])} uptakes)" in decision, decision
        assert decision in pooled and f"bank {bank}: consumer: pooled: " in pooled


def test_a_pooled_champion_hints_what_the_batch_scores_say(fed: Workspace, pooled: str, tmp_path: Path) -> None:
    """Training/serving parity through the bank features: the hint path reads them from the bank's
    online store, batch scoring from its offline store; the propensities must agree."""
    from nbp.config import load_config
    from serving.engine import Recommender
    from training.registry import CHAMPION

    client, _, banks = _pooled_run(fed)
    bank = "BAISHA"
    client.set_registered_model_alias(f"nbp-{bank}-consumer", CHAMPION, str(banks[bank]["version"]))
    ws = fed.for_bank(bank)
    latest = max(json.loads(ws.features_build_meta.read_text())["as_of"])
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(fed.home))
    try:
        _run(["score", "--bank", bank, "--product", "consumer", "--as-of", latest, "--out", str(ws.latest_scores)])
    finally:
        mp.undo()
    scores = pd.read_parquet(ws.latest_scores)
    assert set(scores["model_version"]) == {banks[bank]["version"]}
    rec = Recommender.load(load_config(), ws)
    sample = scores.sort_values("score").iloc[:: max(1, len(scores) // 40)]
    for cid, want in sample[["customer_id", "score"]].itertuples(index=False):
        got = next(p for p in rec.hints(cid).products if p.product == "consumer").propensity
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), cid


def test_the_monthly_job_scores_every_bank_into_its_own_folder(fed: Workspace) -> None:
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(fed.home))
    try:
        out = _run(["retrain"])
    finally:
        mp.undo()
    assert out.index("bank QINGSHAN: models: ") < out.index("bank BAISHA: models: "), out  # largest first
    for bank in BANKS:
        ws = fed.for_bank(bank)
        scores = pd.read_parquet(ws.latest_scores)
        assert set(scores["bank_code"]) == {bank} and len(scores) > 0
        assert set(scores["customer_id"]) <= set(pd.read_parquet(ws.table("customers"))["customer_id"])
        dated = list(ws.scores_dir.glob("20*.parquet"))
        assert len(dated) == 1 and pd.read_parquet(dated[0]).equals(scores)
        # the month's tier migration, per bank, naming only the bank's own customers
        (book,) = ws.tiers_dir.glob("migration-*.xlsx")
        movers = pd.read_excel(book, sheet_name="变动客户", dtype=str)
        assert set(movers["客户号"]) <= set(pd.read_parquet(ws.table("customers"))["customer_id"])
        assert str(book) in out
