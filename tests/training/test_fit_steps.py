"""The steps of the rolling-fold recipe, each on its own: the split between fitting and
calibration rows, the choice of setting and rounds on the folds, the fold scores, the
refit and the calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from training_synth import FEATURES, uptake_frame

from training.model import (
    Design,
    FoldScores,
    IsotonicCalibrator,
    ModelParams,
    PlattCalibrator,
    calibrate,
    category_mapping,
    choose_on_folds,
    choose_setting,
    encode,
    fit_rolling_parts,
    fold_boosters,
    fold_scores,
    refit,
    rolling_folds,
    sampling_se,
    split_fit_calibration,
)

SMALL = ModelParams(learning_rate=0.2, max_rounds=60, early_stopping_rounds=10, min_child_samples=20, folds=2)


def design(df: pd.DataFrame, weights: bool = False) -> Design:
    cats = category_mapping(df, FEATURES)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(df)) if weights else None
    cat_idx = [i for i, f in enumerate(FEATURES) if f in cats]
    return Design(encode(df, FEATURES, cats), df["label"].to_numpy(dtype=float), w, df["period"].to_numpy(), cat_idx)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return uptake_frame(n=4_000, periods=8, seed=2, intercept=-1.5)


@pytest.fixture(scope="module")
def d(rows: pd.DataFrame) -> Design:
    return design(rows)


@pytest.fixture(scope="module")
def folds(d: Design) -> list[tuple[np.ndarray, np.ndarray]]:
    return rolling_folds(d.t, SMALL.folds, 1, d.y)  # embargo of one period


def test_cross_fitting_refits_on_every_row_and_calibrates_on_no_held_out_row(d: Design, folds) -> None:
    cross, fit, cal = split_fit_calibration(d.t, folds, SMALL, 1)
    assert cross and fit.all() and not cal.any()


def test_held_out_calibration_keeps_the_embargo_between_fitting_and_calibration_periods(d: Design, folds) -> None:
    p = SMALL.model_copy(update={"calibrate_on": "holdout", "calib_periods": 2})
    cross, fit, cal = split_fit_calibration(d.t, folds, p, 1)
    assert not cross
    assert sorted(set(d.t[cal])) == [6, 7]
    assert sorted(set(d.t[fit])) == [0, 1, 2, 3, 4]  # period 5 + 1 is not before 6: the embargo
    # without a usable fold the held-out split is used even when folds were asked for
    assert split_fit_calibration(d.t, [], SMALL, 1)[0] is False
    with pytest.raises(ValueError, match="need at least 10"):
        split_fit_calibration(d.t, [], p.model_copy(update={"calib_periods": 8}), 1)


def test_the_choice_on_the_folds_is_the_one_se_rule_over_its_own_search_table(d: Design, folds) -> None:
    cands = [SMALL.model_copy(update={"num_leaves": n}) for n in (31, 4, 7)]
    choice = choose_on_folds(d, folds, cands, "one_se", threads=1, keep_boosters=True)
    assert [r["num_leaves"] for r in choice.search] == [31, 4, 7]
    scores = [(c, r["cv_auc"], r["cv_auc_sd"] / np.sqrt(len(folds))) for c, r in zip(cands, choice.search, strict=True)]
    kept = choose_setting(scores, "one_se")
    assert choice.params == cands[kept] and choice.rounds == choice.search[kept]["rounds"]
    assert 1 <= choice.rounds <= SMALL.max_rounds
    assert choice.boosters is not None and len(choice.boosters) == len(folds)
    # side by side on two threads: the same choice and the same boosters
    twice = choose_on_folds(d, folds, cands, "one_se", threads=1, workers=2, keep_boosters=True)
    assert twice.search == choice.search
    assert [b.model_to_string() for b in twice.boosters] == [b.model_to_string() for b in choice.boosters]


def test_the_se_floor_is_each_fold_aucs_own_sampling_error(d: Design, folds) -> None:
    """With ``se_floor`` the one-SE rule's standard error is at least the Hanley-McNeil error of
    the fold AUCs (from each validation month's positives and negatives), never below the spread."""
    from training.evaluate import auc_se

    var = [auc_se(0.7, int(d.y[va].sum()), int(len(va) - d.y[va].sum())) ** 2 for _, va in folds]
    assert sampling_se(d, folds, 0.7) == pytest.approx(np.sqrt(sum(var)) / len(folds), rel=1e-12)
    assert sampling_se(d, folds[-1:], 0.7) == pytest.approx(np.sqrt(var[-1]), rel=1e-12)
    cands = [SMALL.model_copy(update={"num_leaves": n}) for n in (31, 4, 7)]
    plain = choose_on_folds(d, folds, cands, "one_se", threads=1)
    floor = choose_on_folds(d, folds, cands, "one_se", threads=1, se_floor=True)
    for a, b in zip(plain.search, floor.search, strict=True):
        spread = a["cv_auc_sd"] / np.sqrt(len(folds))
        assert a["cv_auc_se"] == pytest.approx(spread, abs=1e-4)
        want = max(spread, sampling_se(d, folds, b["cv_auc"]))
        assert b["cv_auc_se"] == pytest.approx(want, abs=1e-4) and b["cv_auc_se"] >= a["cv_auc_se"]
    scores = [(c, r["cv_auc"], r["cv_auc_se"]) for c, r in zip(cands, floor.search, strict=True)]
    assert floor.params == cands[choose_setting(scores, "one_se")]


def test_without_a_fold_nothing_is_searched(d: Design) -> None:
    choice = choose_on_folds(d, [], [SMALL, SMALL.model_copy(update={"num_leaves": 4})], "one_se", threads=1)
    assert choice.params == SMALL and choice.rounds is None and choice.search == [] and choice.boosters is None


def test_a_fold_booster_never_learns_from_the_embargo_before_its_validation_period(rows: pd.DataFrame, folds) -> None:
    """Flipping every label of period 5 changes no tree of the fold booster validating period 6
    (5 + the embargo of one period is not before 6), and changes the one validating period 7."""
    assert [int(rows["period"].to_numpy()[va][0]) for _, va in folds] == [6, 7]
    flipped = rows.assign(label=np.where(rows["period"] == 5, 1 - rows["label"], rows["label"]))
    got = [
        choose_on_folds(design(r), folds, [SMALL.model_copy(update={"early_stopping_rounds": 60})], "best", 1, 1, True)
        for r in (rows, flipped)
    ]
    x = design(rows).x[:200]
    first = [g.boosters[0].predict(x, raw_score=True, num_iteration=10, num_threads=1) for g in got]
    last_fold = [g.boosters[-1].predict(x, raw_score=True, num_iteration=10, num_threads=1) for g in got]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(last_fold[0], last_fold[1])  # the later fold learns from period 5


def test_fold_scores_are_each_validation_period_scored_at_the_chosen_rounds(d: Design, folds) -> None:
    choice = choose_on_folds(d, folds, [SMALL], "best", threads=1, keep_boosters=True)
    rounds = max(1, choice.rounds - 3)
    fs = fold_scores(d, folds, choice.boosters, rounds, threads=1)
    np.testing.assert_array_equal(fs.idx, np.concatenate([va for _, va in folds]))
    assert sorted(set(d.t[fs.idx])) == sorted(int(d.t[va][0]) for _, va in folds)
    for b, (tr, va) in zip(choice.boosters, folds, strict=True):
        at = np.isin(fs.idx, va)
        want = b.predict(d.x[va], raw_score=True, num_iteration=rounds, num_threads=1)
        np.testing.assert_array_equal(fs.raw[at], want)
        # the centre is the booster's level on the rows it learnt from, not on the scored ones
        raw_tr = b.predict(d.x[tr], raw_score=True, num_iteration=rounds, num_threads=1)
        np.testing.assert_allclose(fs.centre[at], raw_tr.mean(), rtol=1e-12)
    full = choice.boosters[0].predict(d.x[folds[0][1]], raw_score=True, num_threads=1)
    assert choice.boosters[0].current_iteration() > rounds and not np.array_equal(fs.raw[: len(full)], full)


def test_fold_boosters_are_the_search_boosters_of_that_setting_at_those_rounds(rows: pd.DataFrame, d: Design) -> None:
    """The boosters the calibration gets for folds the search left out are the ones a search of
    those folds would have kept at the chosen rounds, and they too learn nothing from the
    embargo before their validation period."""
    three = rolling_folds(d.t, 3, 1, d.y)
    choice = choose_on_folds(d, three, [SMALL], "best", threads=1, keep_boosters=True)
    rounds = max(1, choice.rounds - 2)
    got = fold_boosters(d, three, SMALL, rounds, threads=1)
    assert [b.current_iteration() for b in got] == [rounds] * 3
    for b, kept, (_, va) in zip(got, choice.boosters, three, strict=True):
        want = kept.predict(d.x[va], raw_score=True, num_iteration=rounds, num_threads=1)
        np.testing.assert_array_equal(b.predict(d.x[va], raw_score=True, num_threads=1), want)
    assert fold_boosters(d, [], SMALL, rounds, threads=1) == []
    # side by side on two threads: the same boosters
    twice = fold_boosters(d, three, SMALL, rounds, threads=1, workers=2)
    assert [b.model_to_string() for b in twice] == [b.model_to_string() for b in got]
    # the earliest fold validates period 5: labels of period 4 on (4 + the embargo is not before 5)
    # change none of its trees
    assert int(d.t[three[0][1]][0]) == 5
    late = design(rows.assign(label=np.where(rows["period"] >= 4, 1 - rows["label"], rows["label"])))
    assert fold_boosters(late, three[:1], SMALL, rounds, 1)[0].model_to_string() == got[0].model_to_string()


def test_fewer_search_folds_still_calibrate_on_every_folds_out_of_time_scores(rows: pd.DataFrame) -> None:
    """The latest fold alone chooses setting and rounds; all three folds' validation periods
    calibrate, each scored by its own fold booster of the kept setting at those rounds."""
    p = SMALL.model_copy(update={"folds": 3, "search_folds": 1})
    grid = [{}, {"num_leaves": 4}]
    fit = fit_rolling_parts(rows, FEATURES, "label", "period", p, None, 1, grid)
    info, d = fit.model.info, fit.design
    assert info["folds"] == 3 and info["search_folds"] == 1 and info["calibrate_on"] == "folds"
    assert info["calibration_periods"] == ["5", "6", "7"]
    three = rolling_folds(d.t, 3, 1, d.y)
    kept = p.model_copy(update=info["setting"])
    only = choose_on_folds(d, three[-1:], [p.model_copy(update=g) for g in grid], "one_se", 1)
    assert only.params == kept and only.rounds == fit.model.best_iteration
    want = fold_scores(d, three, fold_boosters(d, three, kept, only.rounds, 1), only.rounds, 1)
    np.testing.assert_array_equal(fit.cross.idx, want.idx)
    np.testing.assert_array_equal(fit.cross.raw, want.raw)
    np.testing.assert_allclose(fit.cross.centre, want.centre, rtol=1e-12)
    # every fold searching (the search before decision 029): the same calibration rows
    every_fold = p.model_copy(update={"search_folds": 3})
    every = fit_rolling_parts(rows, FEATURES, "label", "period", every_fold, None, 1, grid)
    assert every.model.info["search_folds"] == 3
    np.testing.assert_array_equal(every.cross.idx, fit.cross.idx)


def test_refit_learns_exactly_the_selected_rows_for_the_given_rounds(rows: pd.DataFrame, d: Design) -> None:
    mask = d.t < 6
    b = refit(d, mask, SMALL, rounds=12, threads=1)
    assert b.current_iteration() == 12 and b.num_trees() == 12
    # rows outside the mask do not matter; rows inside do
    later = design(rows.assign(label=np.where(rows["period"] >= 6, 1 - rows["label"], rows["label"])))
    assert refit(later, mask, SMALL, 12, 1).model_to_string() == b.model_to_string()
    earlier = design(rows.assign(label=np.where(rows["period"] == 0, 1 - rows["label"], rows["label"])))
    assert refit(earlier, mask, SMALL, 12, 1).model_to_string() != b.model_to_string()


def test_cross_fitted_platt_moves_the_fold_level_onto_the_final_booster() -> None:
    """Fold scores measured from their boosters' levels calibrate a final booster whose level
    differs: the same scores relative to its own level get the same probabilities."""
    rng = np.random.default_rng(4)
    t = np.repeat([0, 1, 2], 4_000)
    logit = rng.normal(-2.0, 1.0, len(t))
    y = (rng.random(len(t)) < 1 / (1 + np.exp(-logit))).astype(float)
    centre = np.repeat([0.5, -0.3, 0.2], 4_000)  # each fold booster learnt another level
    d = Design(np.zeros((len(t), 1)), y, None, t, [])
    cross = FoldScores(np.arange(len(t)), logit + centre, centre)
    cal = calibrate("platt", d, cross.idx, cross.raw, cross, final_centre=3.0)
    assert isinstance(cal, PlattCalibrator) and cal.a == pytest.approx(1.0, abs=0.1)
    p = cal.predict(logit + 3.0)  # the final booster's scores: the same ranking at its level
    assert p.mean() == pytest.approx(y.mean(), rel=0.03)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-logit)), atol=0.03)


def test_held_out_calibration_fits_the_scores_as_they_are(rows: pd.DataFrame) -> None:
    rng = np.random.default_rng(5)
    raw = rng.normal(0, 2, 3_000)
    y = (rng.random(3_000) < 1 / (1 + np.exp(-(0.5 * raw - 1)))).astype(float)
    d = Design(np.zeros((3_000, 1)), y, None, np.zeros(3_000), [])
    idx = np.arange(3_000)
    platt = calibrate("platt", d, idx, raw)
    assert platt.a == pytest.approx(0.5, abs=0.1) and platt.b == pytest.approx(-1.0, abs=0.15)
    iso = calibrate("isotonic", d, idx, raw)
    assert isinstance(iso, IsotonicCalibrator)
    assert (np.diff(iso.predict(np.sort(raw))) >= 0).all()
    assert calibrate("none", d, idx, raw) == PlattCalibrator()
    one_class = Design(np.zeros((3_000, 1)), np.zeros(3_000), None, np.zeros(3_000), [])
    assert calibrate("platt", one_class, idx, raw) == PlattCalibrator()  # raw sigmoid kept
