from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbp.config import EligibilityRule
from nbp.errors import ConfigError
from training.candidates import eligible, failed_rules, rule_holds, rule_mask

AGE = EligibilityRule(feature="age", min=18, max=60, zh="年龄不在18–60岁", en="age outside 18-60")
KIND = EligibilityRule(feature="kind", one_of=["individual"], zh="非个人客户", en="not an individual")


def test_bounds_are_inclusive_and_unknown_fails() -> None:
    f = pd.DataFrame({"age": [17, 18, 60, 61, np.nan], "kind": ["individual"] * 5})
    assert eligible(f, [AGE, KIND]).tolist() == [False, True, True, False, False]


def test_one_of_and_no_rules() -> None:
    f = pd.DataFrame({"age": [30, 30], "kind": ["individual", "business"]})
    assert eligible(f, [KIND]).tolist() == [True, False]
    assert eligible(f, []).tolist() == [True, True]


def test_failed_rules_names_each_failure() -> None:
    f = pd.DataFrame({"age": [70], "kind": ["business"]})
    assert [r.en for r in failed_rules(f.iloc[0], [AGE, KIND])] == [AGE.en, KIND.en]


def test_rule_on_unknown_feature_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'age'"):
        eligible(pd.DataFrame({"x": [1]}), [AGE])


def test_allow_missing_lets_unknown_pass_but_still_checks_known() -> None:
    rule = EligibilityRule(feature="overdue", max=30, allow_missing=True, zh="逾期", en="overdue")
    f = pd.DataFrame({"overdue": [np.nan, 10, 31]})
    assert eligible(f, [rule]).tolist() == [True, True, False]


def test_configured_rules_name_real_features() -> None:
    from features.catalog import catalog_frame
    from nbp.config import load_config

    names = set(catalog_frame()["name"])
    for key, pc in load_config().products.items():
        for r in pc.eligibility:
            assert r.feature in names, f"{key}: {r.feature}"


@pytest.mark.parametrize(
    "rule",
    [
        AGE,
        KIND,
        EligibilityRule(feature="v", min=0.5, zh="x", en="x"),
        EligibilityRule(feature="v", max=3, allow_missing=True, zh="x", en="x"),
        EligibilityRule(feature="v", one_of=[1, 2], zh="x", en="x"),
        EligibilityRule(feature="v", min=1, max=2, one_of=[1, 2.5], zh="x", en="x"),
    ],
)
def test_one_value_is_decided_as_the_frame_decides_it(rule: EligibilityRule) -> None:
    values = [None, np.nan, -1, 0, 0.5, 1, 1.0, 2, 2.5, 3, 3.0001, 18, 60, 60.5, "individual", "business", "2"]
    frame = pd.DataFrame({rule.feature: pd.Series(values, dtype=object)})
    assert [rule_holds(v, rule) for v in values] == rule_mask(frame, rule).tolist()
