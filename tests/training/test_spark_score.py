"""Batch scoring on Spark gives the DuckDB path's scores: same rows, same order, scores within 1e-9.

A small simulated bank is ingested, built and trained through the CLI (the champion floor
lowered so that more than one product has a champion); ``training.pipeline.score`` then runs
with ``compute.engine: duckdb`` and ``spark`` on the same as-of dates and champions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nbp.cli import main
from nbp.config import Config, load_config
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(args: list[str]) -> None:
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Iterator[tuple[Workspace, Path]]:
    """A 2,000-customer bank trained with ``training.auc_floor: 0`` (a champion for every fitted product)."""
    root = tmp_path_factory.mktemp("spark_score")
    overlay = root / "floor.yaml"
    overlay.write_text("training:\n  auc_floor: 0.0\n", encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(root / "home"))
    mp.chdir(root)  # MLflow writes nothing into the checkout
    try:
        _run(["simulate", "--out", str(root / "bank"), "--customers", "2000", "--months", "14", "--seed", "7"])
        _run(["ingest", str(root / "bank" / "export")])
        _run(["features"])
        _run(["train", "--config", str(overlay)])
        yield Workspace(root / "home"), root
    finally:
        mp.undo()


def _configs(root: Path) -> tuple[Config, Config]:
    overlay = root / "spark.yaml"
    overlay.write_text("compute:\n  engine: spark\n", encoding="utf-8")
    return load_config(), load_config(overlay)


def test_scores_on_spark_equal_the_duckdb_scores(trained: tuple[Workspace, Path]) -> None:
    from training.pipeline import feature_as_ofs, score

    ws, root = trained
    duck, on_spark = _configs(root)
    as_ofs = feature_as_ofs(ws)[-2:]
    want = score(duck, ws, as_ofs)
    got = score(on_spark, ws, as_ofs)
    assert len(want) > 500 and want["product"].nunique() >= 2  # more than one product's rules and model
    assert want["as_of"].nunique() == 2
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=0)
    assert want["score"].nunique() > 50  # real probabilities, not a constant
