"""Names of the feature store: entity, keys, timestamps, shared relations, and the
:class:`Feature` record every family declares.

Conventions (see ``docs/features.md``):

* One row per (customer, as-of date T). ``T`` is an instant, ``T 00:00``; a
  feature at T uses only records whose own date is strictly before T.
* Feature names are ``<family>_<measure>_<window>``; every feature carries a
  Chinese and an English description (they feed reason codes for branch staff).
* Categorical features are stored as integer codes: the 0-based position of the
  value in the enum tuple of :mod:`bankexport.spec` (``CATEGORY_CODE_RULE``);
  unknown or empty values are null. The spec's enum order is part of the export
  format, so training and serving read the same codes from the same files.

Shared DuckDB relations a family's SQL may read (created by :mod:`features.build`):

``asofs(as_of TIMESTAMP, m TIMESTAMP, mi BIGINT)``
    the as-of dates, ``m`` the first day of the as-of's month, ``mi`` = year*12+month.
``spine(customer_id, as_of, m)``
    customers known at T (``open_date < T``), one row per customer and as-of.
``win(customer_id, as_of, <window columns>)``
    exactly one row per spine row, holding the window aggregates over whole months
    that the family's SQL names with ``features.families._sql.win`` (computed by
    :mod:`features.windows` from the monthly sources of
    :mod:`features.families.monthly`: transactions and balances per customer × month).
``loan_mode(mode VARCHAR)``
    one row: ``'end_date'`` when the bank fills ``loans.end_date``, else ``'term'``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

ENTITY = "customer"
JOIN_KEY = "customer_id"
EVENT_TS = "event_timestamp"
AS_OF = "as_of"
FEATURE_SERVICE_VERSION = "v1"
# Every feature view, the tier view included: what segments and the staff page's profile read.
PROFILE_SERVICE = "customer_profile_v1"

CATEGORY_CODE_RULE = (
    "integer code = 0-based position of the value in the enum tuple of bankexport/spec.py; null when unknown"
)

DTYPES = ("int", "float")


@dataclass(frozen=True)
class Feature:
    """One feature of the catalogue, with the SQL that computes it.

    Attributes:
        name: ``<family>_<measure>_<window>``.
        family: the family module's ``FAMILY`` (:data:`features.catalog.MODULES`).
        dtype: ``int`` (stored Int64) or ``float`` (stored Float64).
        zh: description in Chinese, for branch staff.
        en: description in English.
        categories: for categorical features, the enum tuple whose positions are the codes.
        zero_if_none: a customer with no source records gets 0 (a count or an amount),
            not null; when a source table is absent the feature is null anyway.
        sql: the DuckDB expression of the feature in its family's query (one row per
            customer and as-of; what it may read is the family's business).
        needs: optional tables the feature reads beyond its family's ``REQUIRES``; without
            one of them the family's query leaves the feature out and the build writes null.
    """

    name: str
    family: str
    dtype: str
    zh: str
    en: str
    categories: tuple[str, ...] = ()
    zero_if_none: bool = False
    sql: str = field(default="", compare=False, repr=False)
    needs: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        return bool(self.categories)

    @property
    def description(self) -> str:
        """``"<zh> / <en>"``, the Feast field description."""
        return f"{self.zh} / {self.en}"

    @property
    def sql_type(self) -> str:
        return "BIGINT" if self.dtype == "int" else "DOUBLE"

    def computed(self, tables: Collection[str]) -> bool:
        """True when every optional table the feature reads is among ``tables``."""
        return all(t in tables for t in self.needs)


def code_list(values: Sequence[str]) -> str:
    """The codes of an enum as described to people: ``A=0, B=1, ...`` (:data:`CATEGORY_CODE_RULE`)."""
    return ", ".join(f"{v}={i}" for i, v in enumerate(values))


def feature_service_name(product: str) -> str:
    """The Feast FeatureService a product's model reads, e.g. ``consumer_v1``."""
    return f"{product}_{FEATURE_SERVICE_VERSION}"


def declarer(family: str, *, nullable: bool = False) -> Callable[..., Feature]:
    """A shorthand that declares the features of one family, each with its SQL expression.

    Args:
        family: the family every declared feature belongs to.
        nullable: the family's default for a customer without records: null (True) or 0
            (False: counts and amounts). Categorical features are always null then.

    Returns:
        ``f(name, dtype, zh, en, sql, *, nullable=<default>, categories=(), needs=())``
        returning a :class:`Feature`.
    """
    default = nullable

    def declare(
        name: str,
        dtype: str,
        zh: str,
        en: str,
        sql: str,
        *,
        nullable: bool = default,
        categories: tuple[str, ...] = (),
        needs: tuple[str, ...] = (),
    ) -> Feature:
        return Feature(
            name,
            family,
            dtype,
            zh,
            en,
            categories=categories,
            zero_if_none=not nullable and not categories,
            sql=sql,
            needs=needs,
        )

    return declare
