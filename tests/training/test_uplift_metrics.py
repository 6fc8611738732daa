"""Limit checks and hand computations of the uplift metrics."""

from __future__ import annotations

import numpy as np
import pytest

from training import uplift_metrics as um


def _randomised(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tau = rng.uniform(-0.05, 0.2, n)
    treated = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.05 + tau * treated).astype(int)
    return y, treated, tau


def test_qini_curve_and_auuc_by_hand() -> None:
    y, treated, score = [1, 0, 1, 0], [1, 1, 0, 0], [4, 3, 2, 1]
    share, inc = um.qini_curve(y, treated, score)
    # k=3: 1 treated uptake of 2, 1 control uptake of 1, scaled to 2 treated: 1 - 2 = -1
    np.testing.assert_allclose(share, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(inc, [0, 1, 1, -1, 0])
    assert um.qini_coefficient(y, treated, score) == pytest.approx(0.25)
    _, up = um.uplift_curve(y, treated, score)
    np.testing.assert_allclose(up, [0, 1, 1, -1.5, 0])
    assert um.auuc(y, treated, score) == pytest.approx(0.125)


def test_perfect_ranking_has_the_largest_qini_random_about_zero() -> None:
    y, treated, tau = _randomised(40_000, 3)
    rng = np.random.default_rng(4)
    perfect = um.qini_coefficient(y, treated, tau)
    noisy = um.qini_coefficient(y, treated, tau + rng.normal(0, 0.1, tau.size))
    random = um.qini_coefficient(y, treated, rng.random(tau.size))
    assert perfect > noisy > random
    assert abs(random) < 0.15 * perfect
    assert um.qini_coefficient(y, treated, np.zeros(tau.size)) == pytest.approx(0.0)


def test_reversed_ranking_has_the_lowest_auuc() -> None:
    y, treated, tau = _randomised(40_000, 5)
    rng = np.random.default_rng(6)
    reversed_ = um.auuc(y, treated, -tau)
    assert reversed_ < um.auuc(y, treated, rng.random(tau.size)) < um.auuc(y, treated, tau)
    assert um.qini_coefficient(y, treated, -tau) < 0


def test_expected_versions_sum_true_uplift() -> None:
    tau = np.array([0.3, -0.1, 0.2, 0.0, 0.1])
    assert um.expected_incremental_at(tau, tau, 0.4) == pytest.approx(0.5)
    assert um.expected_incremental_at(tau, -tau, 0.2) == pytest.approx(-0.1)
    # a constant score takes the mean uplift per contacted row: 2 rows x 0.1
    assert um.expected_incremental_at(tau, np.zeros(5), 0.4) == pytest.approx(0.2)
    assert um.expected_qini_coefficient(tau, np.zeros(5)) == pytest.approx(0.0)
    assert um.expected_qini_coefficient(tau, tau) > um.expected_qini_coefficient(tau, -np.arange(5)) > 0
    assert um.expected_auuc(tau, tau) > um.expected_auuc(tau, -tau)


def test_inputs_must_match() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        um.qini_curve([1, 0], [1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        um.expected_qini_coefficient([0.1, np.nan], [1, 2])
