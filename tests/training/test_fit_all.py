"""Products fitted side by side (training.pipeline._fit_all): same models whatever the workers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from training_synth import uptake_frame

from nbp.config import load_config
from training import pipeline


def _rows(seed: int) -> pd.DataFrame:
    df = uptake_frame(n=4_500, periods=9, seed=seed, intercept=-2.0)
    months = pd.date_range("2025-01-01", periods=9, freq="MS")
    return df.assign(as_of=months[df["period"].to_numpy()], weight=1.0).drop(columns="period")


def test_parallel_fits_equal_one_at_a_time(monkeypatch) -> None:
    base = load_config()
    # few settings and rounds keep the test short; the point is parallel against serial
    monkeypatch.setattr(
        pipeline,
        "model_params",
        lambda cfg: pipeline.ModelParams(
            folds=2, num_threads=1, max_rounds=60, early_stopping_rounds=10, learning_rate=0.2, search=False
        ),
    )
    data = {}
    for i, key in enumerate(["a", "b", "c"]):
        rows = _rows(i)
        data[key] = (
            rows[rows["as_of"] < "2025-08-01"].reset_index(drop=True),
            rows[rows["as_of"] >= "2025-08-01"].reset_index(drop=True),
        )
    got = {}
    for workers in (1, 2):
        cfg = base.model_copy(update={"training": base.training.model_copy(update={"workers": workers})})
        got[workers] = pipeline._fit_all(cfg, data, "fit")
    assert list(got[2]) == ["a", "b", "c"]
    for key in data:
        (m1, te1, s1), (m2, te2, s2) = got[1][key], got[2][key]
        np.testing.assert_array_equal(te1["score"].to_numpy(), te2["score"].to_numpy())
        assert s1 == s2 and m1.best_iteration == m2.best_iteration
    # different data, different models: the comparison above could fail
    assert not np.array_equal(got[2]["a"][1]["score"].to_numpy()[:100], got[2]["b"][1]["score"].to_numpy()[:100])


@pytest.mark.slow
def test_settings_searched_side_by_side_choose_what_one_at_a_time_chooses() -> None:
    from training_synth import FEATURES

    from training.model import ModelParams, fit_rolling

    rows = _rows(5)
    fast = dict(folds=2, num_threads=1, max_rounds=80, early_stopping_rounds=10, learning_rate=0.2)
    models = [
        fit_rolling(
            rows,
            FEATURES,
            "label",
            "as_of",
            ModelParams(**fast, search_workers=k),
            weight="weight",
            embargo=pd.Timedelta(days=90),
        )
        for k in (1, 2)
    ]
    assert models[0].info["search"] == models[1].info["search"] and len(models[0].info["search"]) > 1
    np.testing.assert_array_equal(models[0].predict_proba(rows), models[1].predict_proba(rows))


FEAST_FIRST = """
import sys
from nbp.config import load_config
from nbp.workspace import Workspace
from training import pipeline
from features import store

def read_base(ws):
    print("feast" in sys.modules, len(store._STORES))
    raise SystemExit(0)

pipeline.read_base = read_base
pipeline._datasets(load_config(), Workspace.from_env(), ["consumer"], [], [])
"""


@pytest.mark.integration
def test_training_data_opens_the_feature_store_before_any_data_work(tmp_path) -> None:
    """The store is open (Feast imported, the workspace's FeatureStore created) by the time a
    training job reads its first table: Feast imported after the data work leaves
    gigabytes the process never gets back (docs/decisions/005-feast-import-first.md).
    A fresh interpreter, so no other test has imported Feast before."""
    env = {**os.environ, "NBP_HOME": str(tmp_path)}
    got = subprocess.run([sys.executable, "-c", FEAST_FIRST], env=env, capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["True", "1"], got.stderr[-2000:]
