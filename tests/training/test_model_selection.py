"""The rolling-fold recipe's choice of setting: the one-SE rule and the extra-trees member of GRID."""

from __future__ import annotations

from training.model import ModelParams, choose_setting


def test_when_the_folds_cannot_tell_the_grid_apart_the_extra_trees_member_is_kept() -> None:
    """GRID's near-additive member (extremely randomised trees) is its simplest: the one-SE
    rule keeps it unless another setting beats it by more than the best one's standard error."""
    from training.model import GRID

    grown = [ModelParams().model_copy(update=g) for g in GRID]
    tie = [(p, 0.70, 0.01) for p in grown]
    assert grown[choose_setting(tie, "one_se")].lgb_params()["extra_trees"] is True
    assert [p.lgb_params()["extra_trees"] for p in grown].count(True) == 1
    # a member ahead by more than the noise is kept instead
    i = next(i for i, p in enumerate(grown) if p.num_leaves == 31)
    clear = [(p, 0.75 if j == i else 0.70, 0.01) for j, p in enumerate(grown)]
    assert choose_setting(clear, "one_se") == i


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


def test_platt_intercept_solves_its_score_equation_where_newton_steps_diverge() -> None:
    """A steep Platt slope can leave a few fold scores hundreds of logits out: the mean
    score then starts the intercept far off, in the sigmoid's flat tail, and plain
    Newton steps overshoot without end (they reached b = -1.9e15 on these rows)."""
    import numpy as np

    from training.model import _intercept, _sigmoid

    rng = np.random.default_rng(3)
    z = np.where(rng.random(4000) < 0.05, 300.0, rng.normal(0, 1, 4000))
    y = (rng.random(4000) < 0.1).astype(int)
    y[z > 100] = 1
    w = rng.uniform(0.5, 2.0, 4000)
    b = _intercept(z, y, w)
    assert np.isfinite(b) and -5 < b < 0
    assert abs(np.sum(w * (y - _sigmoid(z + b)))) < 1e-6 * w.sum()  # weighted mean p = weighted rate
