"""The rolling-fold recipe: time-ordered folds with an embargo, search, refit, Platt
(cross-fitted on the folds' out-of-time scores by default, or on held-out periods)."""

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
    y[t != 6] = np.arange(int((t != 6).sum())) % 5 == 0  # 20 positives a period...
    y[np.flatnonzero(t == 6)[: MIN_FOLD_CLASS - 1]] = 1  # ...but period 6 has too few
    folds = rolling_folds(t, 3, None, y)
    assert [int(t[va][0]) for _, va in folds] == [4, 5, 7]
    assert [int(t[va][0]) for _, va in rolling_folds(t, 3)] == [5, 6, 7]  # without labels: the latest


def fit(data: pd.DataFrame, time: str = "as_of", embargo: object = pd.Timedelta(days=90), **update: object):
    """The recipe on the first ten months, with FAST's settings changed by ``update``."""
    return fit_rolling(
        data[data["period"] < 10], FEATURES, "label", time, FAST.model_copy(update=update), embargo=embargo
    )


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return monthly(uptake_frame(n=36_000, periods=12, seed=3))


@pytest.fixture(scope="module")
def model(data: pd.DataFrame):
    return fit(data)


@pytest.fixture(scope="module")
def holdout_model(data: pd.DataFrame):
    return fit(data, calibrate_on="holdout")


@pytest.mark.slow
def test_cross_fitted_calibration_uses_the_folds_validation_months_and_refits_on_all(model) -> None:
    assert ModelParams().calibrate_on == "folds" and model.info["calibrate_on"] == "folds"
    months = pd.date_range("2025-01-01", periods=10, freq="MS")
    # the final booster sees every period handed over, up to the latest
    assert [pd.Timestamp(p) for p in model.info["train_periods"]] == list(months)
    assert model.info["n_train"] == 10 * 3_000
    # Platt sees the folds' validation periods (the latest FAST.folds), each scored by a fold
    # booster trained only on periods whose label window closed before it
    assert [pd.Timestamp(p) for p in model.info["calibration_periods"]] == list(months[-FAST.folds :])
    assert model.info["n_calibration"] == FAST.folds * 3_000
    assert model.info["pos_calibration"] == model.info["pos_folds"]


@pytest.mark.slow
def test_cross_fitted_calibration_falls_back_to_held_out_periods_without_a_fold(data: pd.DataFrame) -> None:
    m = fit(data, folds=0)
    assert m.info["folds"] == 0 and m.info["calibrate_on"] == "holdout"
    assert m.info["train_periods"][-1].startswith("2025-06") and len(m.info["calibration_periods"]) == 2


@pytest.mark.slow
def test_final_booster_skips_the_embargo_before_the_calibration_months(holdout_model) -> None:
    model = holdout_model
    cal = [pd.Timestamp(p) for p in model.info["calibration_periods"]]
    assert cal == [pd.Timestamp("2025-09-01"), pd.Timestamp("2025-10-01")]
    last_train = pd.Timestamp(model.info["train_periods"][-1])
    assert last_train + pd.Timedelta(days=90) < cal[0]
    assert last_train == pd.Timestamp("2025-06-01")  # July and August are the embargo
    assert model.info["n_train"] == 6 * 3_000 and model.info["n_calibration"] == 2 * 3_000


@pytest.mark.slow
def test_search_keeps_the_simplest_setting_within_one_standard_error_of_the_best(model) -> None:
    """Chosen on the latest ``search_folds`` folds (all by default); simplest: the fewest leaves over
    all trees; the standard error at least the fold AUCs' sampling error (decision 029)."""
    s, k = model.info["search"], model.info["search_folds"]
    assert len(s) == len(GRID) and model.info["folds"] == FAST.folds and FAST.select == "one_se"
    assert k == min(FAST.search_folds, FAST.folds) and FAST.simplest == "size" and FAST.se_floor
    best = max(s, key=lambda r: r["cv_auc"])
    assert best["cv_auc_se"] >= best["cv_auc_sd"] / np.sqrt(k) - 1e-4
    near = [r for r in s if r["cv_auc"] >= best["cv_auc"] - best["cv_auc_se"] - 1e-4]
    simplest = min(
        near, key=lambda r: (r["num_leaves"] * r["rounds"], r["num_leaves"], -r["min_child_samples"], -r["lambda_l2"])
    )
    assert model.params["num_leaves"] == simplest["num_leaves"]
    assert model.best_iteration == simplest["rounds"] <= FAST.max_rounds


@pytest.mark.slow
def test_search_can_keep_the_best_mean_fold_auc(data: pd.DataFrame) -> None:
    m = fit(data, select="best")
    best = max(m.info["search"], key=lambda r: r["cv_auc"])
    assert m.params["num_leaves"] == best["num_leaves"] and m.best_iteration == best["rounds"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["model", "holdout_model"])
def test_rolling_fit_ranks_later_months_and_is_calibrated_by_platt(
    data: pd.DataFrame, which: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(which)
    test = data[data["period"] >= 10]
    p = model.predict_proba(test)
    assert isinstance(model.calibrator, PlattCalibrator) and model.calibrator.a != 1.0
    assert ev.auc(test["label"], p) > 0.95 * ev.auc(test["label"], test["p"])
    assert ev.ece(test["label"], p) < 0.02
    assert p.mean() == pytest.approx(test["p"].mean(), rel=0.15)


@pytest.mark.slow
def test_rolling_fit_without_search_uses_the_given_settings(data: pd.DataFrame) -> None:
    m = fit(data, "period", None, search=False, num_leaves=5, calibrate_on="holdout")
    assert len(m.info["search"]) == 1 and m.params["num_leaves"] == 5
    assert m.info["train_periods"][-1] == "7"  # periods, no embargo: 8 and 9 calibrate


def test_rolling_fit_refuses_too_few_periods(data: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="3 periods: need at least 4"):
        fit_rolling(
            data[data["period"] < 3], FEATURES, "label", "period", FAST.model_copy(update={"calibrate_on": "holdout"})
        )


def test_every_prediction_beside_training_names_the_training_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """LightGBM's thread count is one process-wide setting that each call rewrites from its
    own ``num_threads`` (docs/decisions/004-lightgbm-thread-count.md): a prediction left at
    the default (0, every core) while another booster trained on one thread crashed
    `nbp backtest` with a segmentation fault. Every predict of the recipe and of the
    pipeline's test scoring must pass the training's count."""
    import lightgbm as lgb

    from nbp.config import load_config
    from training import pipeline

    calls: list[object] = []
    real = lgb.Booster.predict

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("num_threads"))
        return real(self, *args, **kwargs)

    cfg = load_config(None)
    params = pipeline.model_params(cfg)  # the pipeline's own settings, with few rounds
    monkeypatch.setattr(
        pipeline, "model_params", lambda c: params.model_copy(update={"max_rounds": 30, "early_stopping_rounds": 5})
    )
    monkeypatch.setattr(lgb.Booster, "predict", spy)
    data = monthly(uptake_frame(n=8_000, periods=10, seed=3, intercept=-2.0)).assign(weight=1.0)
    model, _, _ = pipeline._fit_product(cfg, data[data["period"] < 8], data[data["period"] >= 8])
    assert model.info["threads"] == 1 and params.num_threads == 1 and params.search
    assert model.info["calibrate_on"] == "folds" and model.info["folds"] == params.folds
    # each fold's scores and centre, the final booster's centre, the test rows
    assert len(calls) >= 2 * params.folds + 2 and set(calls) == {1}, calls
