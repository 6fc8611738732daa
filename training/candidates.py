"""Who is a candidate for a product at an as-of date.

A candidate for product P at T (spec, "Labels"): a customer who does not hold an
active P loan at T, and who meets every eligibility rule of P in
``configs/products.yaml``. Rules are evaluated on the same feature values the
model reads (offline for training, online for serving), so the two agree.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbp.config import EligibilityRule
from nbp.errors import ConfigError


def rule_mask(features: pd.DataFrame, rule: EligibilityRule) -> pd.Series:
    """Rows of ``features`` that meet one rule (a missing value fails).

    Raises:
        ConfigError: the rule names a feature that is not in ``features``.
    """
    if rule.feature not in features.columns:
        raise ConfigError(
            f"eligibility rule on unknown feature '{rule.feature}' (not in the product's feature service)"
        )
    col = features[rule.feature]
    ok = col.notna()
    if rule.min is not None:
        ok &= pd.to_numeric(col, errors="coerce") >= rule.min
    if rule.max is not None:
        ok &= pd.to_numeric(col, errors="coerce") <= rule.max
    if rule.one_of is not None:
        ok &= col.isin(rule.one_of)
    ok = ok.fillna(False).astype(bool)
    return ok | col.isna() if rule.allow_missing else ok


def rule_holds(value: Any, rule: EligibilityRule) -> bool:
    """One rule on one feature value, decided as :func:`rule_mask` decides it for a row.

    The per-request form (serving's hints evaluate a handful of rules on one customer): a
    missing value (None or NaN) passes only with ``allow_missing``; ``min``/``max`` need a
    number (a value that is not one fails); ``one_of`` compares the value as it is.
    """
    if value is None or value != value:  # NaN is the one value unequal to itself
        return bool(rule.allow_missing)
    if rule.min is not None or rule.max is not None:
        try:
            num = float(value)
        except (TypeError, ValueError):
            return False
        if (rule.min is not None and not num >= rule.min) or (rule.max is not None and not num <= rule.max):
            return False
    return rule.one_of is None or value in rule.one_of


def eligible(features: pd.DataFrame, rules: list[EligibilityRule]) -> pd.Series:
    """Rows meeting every rule (all rows when there are none)."""
    ok = pd.Series(True, index=features.index)
    for r in rules:
        ok &= rule_mask(features, r)
    return ok


def failed_rules(row: pd.Series, rules: list[EligibilityRule]) -> list[EligibilityRule]:
    """The rules one customer's feature row fails, for explaining a refusal."""
    frame = row.to_frame().T
    return [r for r in rules if not bool(rule_mask(frame, r).iloc[0])]
