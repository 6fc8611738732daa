"""Limit checks of the pure metrics, and the plots they draw."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training import evaluate as ev


def test_perfect_ranking_gives_auc_one_and_full_capture() -> None:
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    p = np.linspace(0, 1, 10)
    m = ev.metrics(y, p)
    assert m["auc"] == 1.0
    assert m["pr_auc"] == 1.0
    assert m["capture_20"] == 1.0
    assert m["lift_20"] == pytest.approx(5.0)  # top 2 rows hold both positives: 1.0 / 0.2
    assert m["gain_area"] == pytest.approx(1 - 0.2 / 2, abs=0.01)


def test_reversed_ranking_gives_auc_zero() -> None:
    y = np.array([1, 1, 0, 0, 0])
    assert ev.auc(y, [0.1, 0.2, 0.3, 0.4, 0.5]) == 0.0
    assert ev.capture_at(y, [0.1, 0.2, 0.3, 0.4, 0.5], 0.2) == 0.0


def test_constant_score_is_random() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 1, 0])
    assert ev.auc(y, np.full(8, 0.3)) == 0.5


def test_random_scores_give_gain_area_near_half() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.1).astype(int)
    assert ev.gain_area(y, rng.random(20_000)) == pytest.approx(0.5, abs=0.02)
    assert ev.lift_at(y, rng.random(20_000), 0.1) == pytest.approx(1.0, abs=0.15)


def test_all_negative_ranking_metrics_are_nan_and_brier_is_defined() -> None:
    y = np.zeros(6)
    p = np.array([0.1, 0.2, 0.0, 0.0, 0.3, 0.4])
    m = ev.metrics(y, p)
    for k in ("auc", "pr_auc", "gain_area", "lift_10", "capture_10"):
        assert math.isnan(m[k]), k
    assert m["brier"] == pytest.approx(np.mean(p**2))
    assert m["ece"] == pytest.approx(p.mean())
    assert m["positives"] == 0


def test_perfect_probabilities_have_zero_brier_and_ece() -> None:
    y = np.array([0, 1, 0, 1])
    assert ev.brier(y, y.astype(float)) == 0.0
    assert ev.ece(y, y.astype(float)) == 0.0


def test_ece_of_calibrated_probabilities_is_small_and_of_shifted_ones_is_the_shift() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.0, 0.4, 50_000)
    y = (rng.random(p.size) < p).astype(int)
    assert ev.ece(y, p) < 0.01
    assert ev.ece(y, p + 0.1) == pytest.approx(0.1, abs=0.01)


def test_calibration_bins_have_equal_mass() -> None:
    b = ev.calibration_bins(np.zeros(100), np.arange(100) / 100)
    assert list(b["n"]) == [10] * 10


def test_auc_standard_error_matches_the_spread_of_auc_over_repeated_small_windows() -> None:
    # binormal scores, 20 uptakes among 2,000 rows: the small-window case of a gate; the 400
    # windows' AUCs from their ranks at once (Mann-Whitney; continuous scores have no ties)
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(20), np.zeros(1980)]
    p = rng.normal(size=(400, y.size)) + 0.6 * y
    ranks = p.argsort(axis=1).argsort(axis=1) + 1.0
    aucs = (ranks[:, :20].sum(axis=1) - 20 * 21 / 2) / (20 * 1980)
    assert ev.auc(y, p[0]) == pytest.approx(aucs[0])
    mean, sd = float(np.mean(aucs)), float(np.std(aucs, ddof=1))
    se = ev.auc_se(mean, 20, 1980)
    assert se == pytest.approx(sd, rel=0.2)
    assert ev.auc_se(mean, 2000, 198_000) < se / 5  # a hundred times the rows: a tenth of the error
    assert math.isnan(ev.auc_se(0.7, 0, 100)) and math.isnan(ev.auc_se(float("nan"), 10, 100))


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        ev.metrics([0, 1], [0.5])


def test_metrics_table_is_markdown_with_dashes_for_nan() -> None:
    t = ev.metrics_table([{"model": "a", "auc": 0.81234, "n": 1200}, {"model": "b", "auc": float("nan")}])
    lines = t.splitlines()
    assert lines[0] == "| model | auc | n |"
    assert lines[2] == "| a | 0.812 | 1,200 |"
    assert lines[3] == "| b | – | – |"


@pytest.mark.slow
def test_plots_are_png_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    imp = pd.Series({"x1": 3.0, "x2": 1.0})
    paths = ev.save_plots(y, p, imp, tmp_path)
    assert set(paths) == {"gain", "calibration", "importance"}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_are_labelled_in_chinese_when_a_cjk_font_is_installed() -> None:
    from matplotlib import font_manager

    from training.evaluate import CJK_FILES, _labels

    installed = any(any(k in Path(p).name.lower() for k in CJK_FILES) for p in font_manager.findSystemFonts())
    if not installed:
        pytest.skip("no CJK font file on this machine")
    assert _labels()["model"] == "模型"  # found even when matplotlib's font cache predates the font
