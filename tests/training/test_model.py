"""The training recipe on synthetic data with a known signal."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from training_synth import FEATURES, time_slices, uptake_frame

from training import evaluate as ev
from training.model import IsotonicCalibrator, ModelParams, downsample_negatives, fit_rolling

FAST = ModelParams(
    learning_rate=0.1, max_rounds=300, early_stopping_rounds=30, min_child_samples=50, folds=2, search=False
)


def fit(train: pd.DataFrame, valid: pd.DataFrame, params: ModelParams = FAST):
    """The recipe on the training and validation periods (the latter validate its folds)."""
    return fit_rolling(pd.concat([train, valid]), FEATURES, "label", "period", params)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return uptake_frame()


@pytest.fixture(scope="module")
def model(data: pd.DataFrame):
    train, valid, _ = time_slices(data)
    return fit(train, valid)


def test_downsampling_keeps_positives_and_weighted_base_rate() -> None:
    df = uptake_frame(n=60_000, seed=4)
    out = downsample_negatives(df, "label", rate=0.1, seed=1)
    assert out["label"].sum() == df["label"].sum()
    assert len(out) < 0.3 * len(df)
    assert set(out.loc[out["label"] == 0, "weight"]) == {10.0}
    weighted = np.average(out["label"], weights=out["weight"])
    assert weighted == pytest.approx(df["label"].mean(), rel=0.05)


def test_downsampling_multiplies_an_existing_weight() -> None:
    df = pd.DataFrame({"label": [1, 0, 0, 0], "weight": [2.0, 3.0, 3.0, 3.0]})
    out = downsample_negatives(df, "label", rate=1.0)
    assert list(out["weight"]) == [2.0, 3.0, 3.0, 3.0]
    with pytest.raises(ValueError, match=r"negative rate must be in \(0, 1\], got 0.0"):
        downsample_negatives(df, "label", rate=0.0)


def test_downsampled_fit_keeps_mean_probability_at_the_base_rate() -> None:
    df = uptake_frame(n=30_000, seed=5)
    train, valid, test = time_slices(df)
    m = fit(train, valid, FAST.model_copy(update={"negative_rate": 0.2, "calibration": "none"}))
    assert m.info["negative_rate"] == 0.2 and m.info["n_train"] < 0.5 * (len(train) + len(valid))
    p = m.predict_proba(test)
    # the weights alone (no calibration step) keep probabilities on the full population's scale;
    # without them the mean would be about 1 / (base + 0.2 * (1 - base)) ~ 3x the base rate
    assert p.mean() == pytest.approx(test["p"].mean(), rel=0.2)


def test_fit_beats_random_on_a_later_slice_and_is_calibrated(data: pd.DataFrame, model) -> None:
    _, _, test = time_slices(data)
    p = model.predict_proba(test)
    oracle = ev.auc(test["label"], test["p"])
    assert ev.auc(test["label"], p) > 0.5 + 0.8 * (oracle - 0.5)  # recovers most of the known signal
    assert ev.ece(test["label"], p) < 0.03
    assert ((p > 0) & (p < 1)).all()


def test_contributions_sum_to_the_raw_score(data: pd.DataFrame, model) -> None:
    rows = data.tail(50)
    c = model.contributions(rows)
    assert list(c.columns) == [*FEATURES, "bias"]
    np.testing.assert_allclose(c.sum(axis=1).to_numpy(), model.raw_score(rows), rtol=1e-6, atol=1e-6)
    assert c["noise"].abs().mean() < c["x1"].abs().mean()


def test_categories_are_stored_and_unseen_ones_score(data: pd.DataFrame, model) -> None:
    assert model.categories["segment"] == ["a", "b", "c"]
    rows = data.tail(3).copy()
    rows["segment"] = ["a", "zzz", None]
    p = model.predict_proba(rows)
    assert np.isfinite(p).all()
    # category dtype with a different category order scores the same as plain strings
    cat = data.tail(20).copy()
    cat["segment"] = pd.Categorical(cat["segment"], categories=["c", "b", "a"])
    np.testing.assert_allclose(model.predict_proba(cat), model.predict_proba(data.tail(20)))


def test_model_pickles_and_scores_the_same(data: pd.DataFrame, model) -> None:
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(back.predict_proba(data.tail(100)), model.predict_proba(data.tail(100)))


def test_missing_feature_column_is_named(data: pd.DataFrame, model) -> None:
    with pytest.raises(KeyError, match="x1"):
        model.predict_proba(data.drop(columns=["x1"]).tail(3))


def test_one_class_training_rows_are_an_error(data: pd.DataFrame) -> None:
    train, valid, _ = time_slices(data)
    with pytest.raises(ValueError, match="one class"):
        fit(train.assign(label=0), valid.assign(label=0))


def test_isotonic_calibration_is_monotone_and_ranks_like_the_raw_score(data: pd.DataFrame) -> None:
    train, valid, test = time_slices(data)
    m = fit(train, valid, FAST.model_copy(update={"calibration": "isotonic"}))
    assert isinstance(m.calibrator, IsotonicCalibrator)
    p, raw = m.predict_proba(test), m.raw_score(test)
    assert 0 <= p.min() and p.max() <= 1
    order = np.argsort(raw)
    assert (np.diff(p[order]) >= -1e-12).all()  # a step function of the raw score, never decreasing
    assert ev.auc(test["label"], p) > 0.7
