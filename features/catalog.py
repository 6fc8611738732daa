"""The machine-readable feature catalogue: every feature with name, family, dtype,
Chinese and English description, and its categories when categorical.

Reason codes, Feast definitions, the build and the docs all read this one list.
:data:`MEMBER_CATALOG` holds the features built only for the member banks of a federation
workspace (the bank family: constant within one bank, so they only serve models pooled over
banks); a single-bank workspace never builds, publishes or reads them.
"""

from __future__ import annotations

from types import ModuleType

import pandas as pd

from bankexport.spec import ENUM_ZH
from features import tiers
from features.families import bank, business, demo, holdings, income, liquidity, marketing, spend, tax
from features.schema import Feature

MODULES: dict[str, ModuleType] = {
    m.FAMILY: m for m in (demo, income, spend, business, liquidity, tax, holdings, marketing)
}

MEMBER_MODULES: dict[str, ModuleType] = {bank.FAMILY: bank}  # built for member banks only

CATALOG: tuple[Feature, ...] = tuple(f for m in MODULES.values() for f in m.FEATURES)
MEMBER_CATALOG: tuple[Feature, ...] = tuple(f for m in MEMBER_MODULES.values() for f in m.FEATURES)
# The value tiers (features/tiers.py): a feature view of their own, built after the families,
# read by segments, hints and the staff page but never by a product model.
TIER_CATALOG: tuple[Feature, ...] = tuple(tiers.FEATURES)
BY_NAME: dict[str, Feature] = {f.name: f for f in CATALOG + MEMBER_CATALOG + TIER_CATALOG}
BANK_FEATURES: frozenset[str] = frozenset(f.name for f in MEMBER_CATALOG)


def modules(member: bool) -> dict[str, ModuleType]:
    """The families built for a workspace: a member bank's (``member``) adds :data:`MEMBER_MODULES`."""
    return MODULES | MEMBER_MODULES if member else MODULES


def family_features(family: str) -> list[Feature]:
    """The features of one family, in catalogue order."""
    return [f for f in CATALOG + MEMBER_CATALOG + TIER_CATALOG if f.family == family]


def feature_names() -> list[str]:
    """Every feature name, in catalogue order."""
    return [f.name for f in CATALOG]


def catalog_frame() -> pd.DataFrame:
    """The catalogue as a table.

    Returns:
        One row per feature: ``name``, ``family``, ``dtype``, ``zh``, ``en``,
        ``categorical`` (bool), ``categories`` (comma-separated enum, code = position),
        ``categories_zh`` (the same labels in Chinese, for staff).
    """
    return pd.DataFrame(
        [
            {
                "name": f.name,
                "family": f.family,
                "dtype": f.dtype,
                "zh": f.zh,
                "en": f.en,
                "categorical": f.categorical,
                "categories": ",".join(f.categories),
                "categories_zh": ",".join(labels_zh(f.categories)),
            }
            for f in CATALOG
        ]
    )


def labels_zh(values: tuple[str, ...]) -> tuple[str, ...]:
    """Chinese labels of one enum's values, or the values themselves unless every one has a label.

    ``ENUM_ZH`` is one flat table: its ``M``/``F`` are genders, so an enum of codes such as
    industry letters or tax credit grades (where ``M`` is a grade) keeps its codes.
    """
    if all(v in ENUM_ZH for v in values):
        return tuple(ENUM_ZH[v] for v in values)
    return values
