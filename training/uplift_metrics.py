"""Pure metrics of an uplift ranking: Qini curve, Qini coefficient, AUUC.

Observed versions take ``y`` (0/1 uptake), ``treated`` (1 when the customer was in the
treatment arm of a randomised campaign, intent to treat) and ``score`` (higher means
"contact changes more"), as array-likes of the same length. Expected versions take, in
place of outcomes, each row's true uplift (the simulator's ``uplift_true``), so that no
sampling noise enters a comparison of rankings.

Definitions (Radcliffe 2007; Gutierrez and Gérardy 2017):

- Qini curve at the top ``k`` rows by ``score``: incremental uptakes
  ``Y_t(k) - Y_c(k) * N_t(k) / N_c(k)`` (treated uptakes less control uptakes scaled to
  the treated count; the control term is 0 while ``N_c(k) = 0``). The expected curve is
  the running sum of true uplift.
- Uplift curve at ``k``: ``(Y_t(k) / N_t(k) - Y_c(k) / N_c(k)) * k`` (an arm with no row
  yet counts a rate of 0).
- Rows with equal scores are one block: the curves are evaluated only at block ends and
  joined by straight lines, so an order among ties never counts (a constant score is the
  random line exactly).
- ``qini_coefficient``: area between the Qini curve and the random line (the straight
  line from (0, 0) to (1, curve at n)), x being the share of rows, y incremental uptakes.
  A perfect ranking has the largest area, a random one about 0, a reversed one negative.
- ``auuc``: area under the uplift curve over the share of rows (x in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _sorted_blocks(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order rows by descending score; return the order and the end index of each tie block."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return order, ends


def _arrays(*cols: Iterable) -> list[np.ndarray]:
    arrs = [np.asarray(c, dtype=float).ravel() for c in cols]
    n = arrs[0].size
    if any(a.size != n for a in arrs):
        raise ValueError(f"uplift metric inputs differ in length: {[a.size for a in arrs]}")
    if any(np.isnan(a).any() for a in arrs):
        raise ValueError("uplift metric inputs hold NaN: drop or fill those rows first")
    return arrs


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _arm_sums(
    y: Iterable, treated: Iterable, score: Iterable
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """At each tie block's end in score order: rows so far, treated and control uptakes and counts."""
    ya, ta, sa = _arrays(y, treated, score)
    if ya.size == 0:
        return None
    order, ends = _sorted_blocks(sa)
    t = ta[order] > 0
    yt = np.cumsum(ya[order] * t)[ends]
    yc = np.cumsum(ya[order] * ~t)[ends]
    return ends + 1, yt, yc, np.cumsum(t)[ends], np.cumsum(~t)[ends]


def qini_curve(y: Iterable, treated: Iterable, score: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative incremental uptakes by rank on observed randomised outcomes.

    Args:
        y: 0/1 uptake per row.
        treated: 1 for the treatment arm, 0 for control.
        score: the ranking (higher first).

    Returns:
        ``(share, incremental)``: the share of rows contacted (0 then each tie block's end,
        up to 1) and the incremental uptakes among them, both starting at 0.
    """
    sums = _arm_sums(y, treated, score)
    if sums is None:
        return np.zeros(1), np.zeros(1)
    k, yt, yc, nt, nc = sums
    inc = yt - np.where(nc > 0, yc * nt / np.maximum(nc, 1), 0.0)
    return np.r_[0.0, k / k[-1]], np.r_[0.0, inc]


def uplift_curve(y: Iterable, treated: Iterable, score: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: the difference of arm rates among the top rows, times their count."""
    sums = _arm_sums(y, treated, score)
    if sums is None:
        return np.zeros(1), np.zeros(1)
    k, yt, yc, nt, nc = sums
    rate_t = np.where(nt > 0, yt / np.maximum(nt, 1), 0.0)
    rate_c = np.where(nc > 0, yc / np.maximum(nc, 1), 0.0)
    return np.r_[0.0, k / k[-1]], np.r_[0.0, (rate_t - rate_c) * k]


def _above_random(share: np.ndarray, inc: np.ndarray) -> float:
    return _area(share, inc) - inc[-1] / 2.0


def qini_coefficient(y: Iterable, treated: Iterable, score: Iterable) -> float:
    """Area between the observed Qini curve and the random line, in incremental uptakes."""
    share, inc = qini_curve(y, treated, score)
    return float("nan") if share.size < 2 else _above_random(share, inc)


def auuc(y: Iterable, treated: Iterable, score: Iterable) -> float:
    """Area under the observed uplift curve over the share of rows, in incremental uptakes."""
    share, up = uplift_curve(y, treated, score)
    return float("nan") if share.size < 2 else _area(share, up)


def expected_qini_curve(uplift_true: Iterable, score: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Expected incremental uptakes by rank: the running sum of each row's true uplift."""
    ua, sa = _arrays(uplift_true, score)
    if ua.size == 0:
        return np.zeros(1), np.zeros(1)
    order, ends = _sorted_blocks(sa)
    inc = np.cumsum(ua[order])[ends]
    return np.r_[0.0, (ends + 1) / ua.size], np.r_[0.0, inc]


def expected_qini_coefficient(uplift_true: Iterable, score: Iterable) -> float:
    """Area between the expected Qini curve and the random line, in expected uptakes."""
    share, inc = expected_qini_curve(uplift_true, score)
    return float("nan") if share.size < 2 else _above_random(share, inc)


def expected_auuc(uplift_true: Iterable, score: Iterable) -> float:
    """Area under the expected incremental-uptake curve over the share of rows."""
    share, inc = expected_qini_curve(uplift_true, score)
    return float("nan") if share.size < 2 else _area(share, inc)


def expected_incremental_at(uplift_true: Iterable, score: Iterable, share: float) -> float:
    """Expected incremental uptakes when the top ``share`` of rows by ``score`` are contacted.

    Contacts ``ceil(share * n)`` rows; a tie block cut by that count contributes its mean
    uplift per row taken, so the order among ties never counts.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within [0, 1], got {share}")
    ua, sa = _arrays(uplift_true, score)
    if ua.size == 0:
        return 0.0
    x, inc = expected_qini_curve(ua, sa)
    k = int(np.ceil(share * ua.size - 1e-9))
    return float(np.interp(k / ua.size, x, inc))
