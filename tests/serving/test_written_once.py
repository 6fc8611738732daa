"""Serving's per-request forms compute what the frame forms compute.

A hint evaluates one customer on numpy values; target lists and training work on
frames. The percentile in a branch has one definition (``policy.percentile_among``)
and the eligibility rules one meaning (``training.candidates``): these tests hold
both forms to the same numbers on random rows with ties and missing values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbp.config import EligibilityRule, load_config
from nbp.errors import ConfigError
from serving.engine import failed_rules_at, percentile_of
from serving.policy import percentile_in_branch
from training.candidates import eligible, failed_rules, rule_mask


def _scores(rng: np.random.Generator, n: int) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "branch_id": rng.choice(np.array(["B1", "B2", "B3", None], dtype=object), n),
            "propensity": rng.integers(0, 15, n) / 15.0,  # few distinct values: many ties
        }
    )
    df.loc[rng.random(n) < 0.05, "propensity"] = np.nan
    return df


def test_the_percentile_of_a_hint_is_the_percentile_in_branch_of_a_list() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        df = _scores(rng, int(rng.integers(1, 250)))
        frame = percentile_in_branch(df)
        for _, g in df.groupby(df["branch_id"].fillna("")):
            known = np.sort(g["propensity"].dropna().to_numpy())  # what the service keeps per branch
            one = [np.nan if np.isnan(p) else percentile_of(known, p) for p in g["propensity"]]
            np.testing.assert_array_equal(np.array(one, dtype=float), frame.loc[g.index].to_numpy())


def test_percentile_in_branch_is_the_share_at_or_below() -> None:
    df = pd.DataFrame({"branch_id": ["B", "B", "B", "B", None], "propensity": [0.1, 0.3, 0.3, np.nan, 0.2]})
    np.testing.assert_array_equal(percentile_in_branch(df).to_numpy(), [1 / 3 * 100.0, 100.0, 100.0, np.nan, 100.0])
    assert percentile_of(np.array([0.1, 0.3]), 0.05) == 0.0 and percentile_of(np.array([0.1, 0.3]), 0.3) == 100.0
    assert percentile_of(np.empty(0), 0.2) is None and percentile_of(np.array([0.1]), np.nan) is None


def _rules() -> list[EligibilityRule]:
    configured = [r for p in load_config().products.values() for r in p.eligibility]
    return configured + [
        EligibilityRule(feature="f", min=1, zh="z", en="e"),
        EligibilityRule(feature="f", max=2.5, allow_missing=True, zh="z", en="e"),
        EligibilityRule(feature="f", one_of=[0, 2], min=0, zh="z", en="e"),
        EligibilityRule(feature="f", one_of=["1"], zh="z", en="e"),
    ]


def test_serving_and_training_find_the_same_failed_rules() -> None:
    rules = _rules()
    names = sorted({r.feature for r in rules})
    rng = np.random.default_rng(4)
    edges = np.array([np.nan, -1.0, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 17.0, 18.0, 30.0, 31.0, 60.0, 61.0, 1e9])
    x = pd.DataFrame(rng.choice(edges, (400, len(names))), columns=names)
    at = [(r, names.index(r.feature)) for r in rules]
    rows = x.to_numpy()
    served = [failed_rules_at(rows[i], at) for i in range(len(x))]
    masks = {id(r): rule_mask(x, r).to_numpy() for r in rules}
    assert [[r for r in rules if not masks[id(r)][i]] for i in range(len(x))] == served
    assert eligible(x, rules).tolist() == [not f for f in served]
    assert [failed_rules(x.iloc[i], rules) for i in range(20)] == served[:20]  # training's one-row form
    for r in rules:  # every rule both holds and fails somewhere: the rows test each one
        assert 0 < rule_mask(x, r).sum() < len(x) or r.one_of == ["1"]
    with pytest.raises(ConfigError, match="unknown feature 'f'"):
        failed_rules_at(rows[0], [(rules[-1], None)])
