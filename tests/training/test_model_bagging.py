"""Seed bagging in the rolling-fold recipe (``ModelParams.bag``) and the booster average it
stores (``average_boosters``); the one-SE choice of setting; the extra-trees member of GRID."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from training_synth import FEATURES, uptake_frame

from training import evaluate as ev
from training.model import ModelParams, average_boosters, choose_setting, fit_rolling

FAST = ModelParams(learning_rate=0.1, max_rounds=200, early_stopping_rounds=20, min_child_samples=50, search=False)


def test_average_boosters_scores_the_mean_raw_score_with_contributions_that_add_up() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3_000, 5))
    x[:, 4] = rng.integers(0, 4, len(x))  # a categorical column: its splits must survive the merge
    y = (x[:, 0] + 0.3 * (x[:, 4] == 2) + rng.random(len(x)) > 1.1).astype(float)
    params = {"objective": "binary", "verbosity": -1, "num_leaves": 5, "bagging_fraction": 0.7, "bagging_freq": 1,
              "feature_fraction": 0.6, "extra_trees": True, "num_threads": 1}
    boosters = [lgb.train(params | {"seed": s}, lgb.Dataset(x, y, categorical_feature=[4]), 15) for s in range(3)]
    raws = np.array([b.predict(x, raw_score=True) for b in boosters])
    assert np.ptp(raws, axis=0).max() > 1e-3  # the seeds really give different boosters
    avg = average_boosters(boosters)
    assert avg.num_trees() == 45
    np.testing.assert_allclose(avg.predict(x, raw_score=True), raws.mean(axis=0), atol=1e-9)
    contrib = avg.predict(x, pred_contrib=True)
    np.testing.assert_allclose(contrib.sum(axis=1), raws.mean(axis=0), atol=1e-9)
    assert average_boosters(boosters[:1]) is boosters[0]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    df = uptake_frame(n=24_000, periods=10, seed=5)
    months = pd.date_range("2025-01-01", periods=10, freq="MS")
    return df.assign(as_of=months[df["period"].to_numpy()])


def test_bagged_fit_averages_seeds_and_stays_calibrated(data: pd.DataFrame) -> None:
    fit_rows, test = data[data["period"] < 8], data[data["period"] >= 8]
    one = fit_rolling(fit_rows, FEATURES, "label", "as_of", FAST, embargo=pd.Timedelta(days=90))
    bag = fit_rolling(fit_rows, FEATURES, "label", "as_of", FAST.model_copy(update={"bag": 3}),
                      embargo=pd.Timedelta(days=90))
    rounds = one.info["best_iteration"]
    # same search (seed 7), so the same rounds; three boosters of that many rounds, averaged
    assert bag.info["best_iteration"] == rounds and bag.info["bag"] == 3
    # (a booster stops early when no split is left: every tree counts, at most rounds per seed)
    assert bag.best_iteration == bag.booster.num_trees() and 2 * rounds < bag.best_iteration <= 3 * rounds
    assert not np.allclose(bag.raw_score(test), one.raw_score(test))
    p = bag.predict_proba(test)
    assert ev.auc(test["label"], p) > 0.95 * ev.auc(test["label"], test["p"])
    assert ev.ece(test["label"], p) < 0.02
    again = pickle.loads(pickle.dumps(bag))
    np.testing.assert_allclose(again.predict_proba(test), p)
    c = bag.contributions(test.head(50))
    np.testing.assert_allclose(c.sum(axis=1).to_numpy(), bag.raw_score(test.head(50)), atol=1e-9)


def test_only_the_near_additive_member_grows_extra_trees_and_patience_is_50() -> None:
    from training.model import GRID

    grown = [ModelParams().model_copy(update=g) for g in GRID]
    assert [p.lgb_params()["extra_trees"] for p in grown] == [p.num_leaves == 4 for p in grown]
    assert ModelParams().early_stopping_rounds == 50 and ModelParams().select == "one_se"


def test_one_se_rule_keeps_the_simplest_setting_within_one_standard_error() -> None:
    p = ModelParams()
    big, mid, small = p.model_copy(update={"num_leaves": 31}), p, p.model_copy(update={"num_leaves": 4})
    scores = [(mid, 0.70, 0.01), (small, 0.69, 0.01), (big, 0.72, 0.035)]
    assert choose_setting(scores, "best") == 2
    assert choose_setting(scores, "one_se") == 1  # 0.69 >= 0.72 - 0.035: 4 leaves kept
    assert choose_setting([(mid, 0.70, 0.01), (small, 0.69, 0.01), (big, 0.72, 0.025)], "one_se") == 0
    assert choose_setting([(mid, 0.70, 0.01), (small, 0.69, 0.01), (big, 0.72, 0.005)], "one_se") == 2
    # equal leaves: more rows per leaf is simpler
    a, b = p.model_copy(update={"min_child_samples": 300}), p.model_copy(update={"min_child_samples": 50})
    assert choose_setting([(b, 0.71, 0.02), (a, 0.70, 0.01)], "one_se") == 1
