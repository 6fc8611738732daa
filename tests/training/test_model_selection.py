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


def test_one_se_rule_by_size_keeps_the_model_with_the_fewest_leaves_over_all_its_trees() -> None:
    """Within one standard error of the best, 15 leaves x 66 rounds (990 leaves) is a smaller
    model than 4 leaves x 340 rounds (1,360); per tree (the rule before decision 029) it is not."""
    from training.model import GRID

    default, additive, seven, wide = (ModelParams().model_copy(update=g) for g in GRID)
    scores = [(default, 0.846, 0.004), (additive, 0.847, 0.004), (seven, 0.845, 0.004), (wide, 0.836, 0.004)]
    rounds = [66, 340, 168, 40]
    assert choose_setting(scores, "one_se", rounds, "size") == 0
    assert choose_setting(scores, "one_se", rounds, "leaves") == 1
    assert choose_setting(scores, "one_se", None, "size") == 1  # without rounds: per tree
    # the smallest model only among those within one SE: 31 x 20 = 620 leaves, but 0.010 behind
    assert choose_setting(scores, "one_se", [66, 340, 168, 20], "size") == 0
    # a setting ahead by more than the noise is kept whatever its size
    ahead = [(default, 0.830, 0.004), (additive, 0.847, 0.004), (seven, 0.845, 0.004), (wide, 0.836, 0.004)]
    assert choose_setting(ahead, "one_se", rounds, "size") == 2  # 7 x 168 = 1,176 < 1,360
    assert choose_setting(ahead, "best", rounds, "size") == 1
    # equal sizes: fewer leaves per tree, then more rows per leaf
    assert choose_setting([(wide, 0.84, 0.01), (additive, 0.84, 0.01)], "one_se", [4, 31], "size") == 1
    a, b = default.model_copy(update={"min_child_samples": 300}), default
    assert choose_setting([(b, 0.71, 0.02), (a, 0.70, 0.01)], "one_se", [50, 50], "size") == 1


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


def test_the_search_settings_come_from_the_training_config_and_shape_the_search_fingerprint(tmp_path) -> None:
    """``training.search_folds``, ``training.simplest`` and ``training.se_floor`` reach the recipe of
    ``nbp train`` and of pooled fits, and a change sends the monthly job to a full search (its fingerprint)."""
    from nbp.config import load_config
    from training.pipeline import model_params
    from training.pooled import pooled_params
    from training.setting_search import fingerprint

    overlay = tmp_path / "search.yaml"
    text = "training:\n  rolling_folds: 5\n  search_folds: 3\n  simplest: size\n  se_floor: true\n"
    overlay.write_text(text, encoding="utf-8")
    base, changed = load_config(), load_config(overlay)
    for params in (model_params(changed), pooled_params(changed)):
        assert (params.folds, params.search_folds, params.simplest, params.se_floor) == (5, 3, "size", True)
    b = model_params(base)
    t = base.training
    want = (t.rolling_folds, t.search_folds, t.simplest, t.se_floor)
    assert (b.folds, b.search_folds, b.simplest, b.se_floor) == want
    product = next(iter(base.products))
    assert fingerprint(base, product, ["f1"], b) != fingerprint(changed, product, ["f1"], model_params(changed))
