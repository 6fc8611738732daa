"""Products fitted side by side (training.pipeline._fit_all): same models whatever the workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from training_synth import uptake_frame

from nbp.config import load_config
from training import pipeline


def _rows(seed: int) -> pd.DataFrame:
    df = uptake_frame(n=9_000, periods=9, seed=seed)
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


def test_training_data_opens_the_feature_store_before_any_data_work(monkeypatch) -> None:
    """dataset.FEAST_FIRST_NOTE: importing Feast after the screen and the labels left about
    3 GB in a full-scale `nbp train` that the process never got back."""
    import pytest

    from nbp.workspace import Workspace

    calls: list[str] = []

    class Stop(Exception):
        pass

    def read_base(ws):
        calls.append("read_base")
        raise Stop

    monkeypatch.setattr(pipeline, "open_feature_store", lambda cfg, ws: calls.append("open_feature_store"))
    monkeypatch.setattr(pipeline, "read_base", read_base)
    with pytest.raises(Stop):
        pipeline._datasets(load_config(), Workspace.from_env(), ["consumer"], [], [])
    assert calls == ["open_feature_store", "read_base"]
