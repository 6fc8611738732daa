"""The rolling-fold recipe: time-ordered folds with an embargo, search, refit, Platt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from training_synth import FEATURES, uptake_frame

from training import evaluate as ev
from training.model import GRID, MIN_FOLD_CLASS, ModelParams, PlattCalibrator, fit_rolling, rolling_folds

FAST = ModelParams(learning_rate=0.1, max_rounds=300, early_stopping_rounds=30, min_child_samples=50)


def monthly(df: pd.DataFrame) -> pd.DataFrame:
    """The synthetic periods as month-start as-of dates from 2025-01."""
    months = pd.date_range("2025-01-01", periods=int(df["period"].max()) + 1, freq="MS")
    return df.assign(as_of=months[df["period"].to_numpy()])


def test_rolling_folds_train_only_on_periods_whose_labels_closed_before_the_validation_month() -> None:
    t = pd.date_range("2025-01-01", periods=10, freq="MS").repeat(3).to_numpy()
    folds = rolling_folds(t, 3, np.timedelta64(90, "D"))
    assert len(folds) == 3
    for tr, va in folds:
        v = t[va]
        assert len(set(v)) == 1
        assert (t[tr] + np.timedelta64(90, "D") < v[0]).all()
        # every period that satisfies the embargo is used
        assert len(tr) == int((t + np.timedelta64(90, "D") < v[0]).sum())
    # validating 2025-08: May 1 + 90 days = July 30 trains, June 1 + 90 days = Aug 30 does not
    assert pd.Timestamp(t[folds[0][0]].max()) == pd.Timestamp("2025-05-01")
    # without an embargo every earlier period trains
    plain = rolling_folds(t, 3)
    assert (t[plain[-1][0]] < t[plain[-1][1]][0]).all() and len(plain[-1][0]) == 27


def test_rolling_folds_skip_periods_with_too_few_of_a_class() -> None:
    t = np.repeat(np.arange(8), 100)
    y = np.zeros(len(t))
    y[t != 6] = (np.arange(int((t != 6).sum())) % 5 == 0)  # 20 positives a period...
    y[np.flatnonzero(t == 6)[:MIN_FOLD_CLASS - 1]] = 1  # ...but period 6 has too few
    folds = rolling_folds(t, 3, None, y)
    assert [int(t[va][0]) for _, va in folds] == [4, 5, 7]
    assert [int(t[va][0]) for _, va in rolling_folds(t, 3)] == [5, 6, 7]  # without labels: the latest


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return monthly(uptake_frame(n=36_000, periods=12, seed=3))


@pytest.fixture(scope="module")
def model(data: pd.DataFrame):  # noqa: ANN201
    fit_rows = data[data["period"] < 10]
    return fit_rolling(fit_rows, FEATURES, "label", "as_of", FAST, embargo=pd.Timedelta(days=90))


def test_final_booster_skips_the_embargo_before_the_calibration_months(model) -> None:  # noqa: ANN001
    cal = [pd.Timestamp(p) for p in model.info["calibration_periods"]]
    assert cal == [pd.Timestamp("2025-09-01"), pd.Timestamp("2025-10-01")]
    last_train = pd.Timestamp(model.info["train_periods"][-1])
    assert last_train + pd.Timedelta(days=90) < cal[0]
    assert last_train == pd.Timestamp("2025-06-01")  # July and August are the embargo
    assert model.info["n_train"] == 6 * 3_000 and model.info["n_calibration"] == 2 * 3_000


def test_search_keeps_the_setting_with_the_best_mean_fold_auc(model) -> None:  # noqa: ANN001
    s = model.info["search"]
    assert len(s) == len(GRID) and model.info["folds"] == FAST.folds
    best = max(s, key=lambda r: r["cv_auc"])
    assert model.params["num_leaves"] == best["num_leaves"]
    assert model.best_iteration == best["rounds"] <= FAST.max_rounds


def test_rolling_fit_ranks_later_months_and_is_calibrated_by_platt(data: pd.DataFrame, model) -> None:  # noqa: ANN001
    test = data[data["period"] >= 10]
    p = model.predict_proba(test)
    assert isinstance(model.calibrator, PlattCalibrator) and model.calibrator.a != 1.0
    assert ev.auc(test["label"], p) > 0.95 * ev.auc(test["label"], test["p"])
    assert ev.ece(test["label"], p) < 0.02
    assert p.mean() == pytest.approx(test["p"].mean(), rel=0.15)


def test_rolling_fit_without_search_uses_the_given_settings(data: pd.DataFrame) -> None:
    m = fit_rolling(data[data["period"] < 10], FEATURES, "label", "period",
                    FAST.model_copy(update={"search": False, "num_leaves": 5}), embargo=None)
    assert len(m.info["search"]) == 1 and m.params["num_leaves"] == 5
    assert m.info["train_periods"][-1] == "7"  # periods, no embargo: 8 and 9 calibrate


def test_rolling_fit_refuses_too_few_periods(data: pd.DataFrame) -> None:
    with pytest.raises(ValueError):
        fit_rolling(data[data["period"] < 3], FEATURES, "label", "period", FAST)
