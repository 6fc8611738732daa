"""The member bank itself: its size and how long it has offered each loan product.

Built only for the member banks of a federation workspace (:data:`features.catalog.MEMBER_MODULES`):
within one bank these are the same for every customer at T, so they only tell banks apart in a
model fitted on several banks (``training.scope: pooled``). Point in time: a customer counts
from ``open_date < T``; a product is offered from the first application of it before T
(``application_date < T``); a bank that has had no application yet has null (not launched).
The months are counted up to :data:`ESTABLISHED_MONTHS`: past a product's first year they
would only count calendar time (the same clock at every bank whose product predates its
export), which a model fitted on past months would extrapolate into the months it scores.
"""

from __future__ import annotations

from bankexport.spec import LOAN_PRODUCTS, PRODUCT_NAMES_ZH
from features.families._sql import months_between
from features.schema import Feature, declarer
from nbp.sqltext import lit

FAMILY = "bank"
SPINE_ROWS = True
REQUIRES = ("customers", "loans")

ESTABLISHED_MONTHS = 12  # months since launch are counted up to this: a year or more is "established"

_f = declarer(FAMILY, nullable=True)


def _launch_name(product: str) -> str:
    return f"bank_months_since_launch_{product}"


FEATURES: list[Feature] = [
    _f(
        "bank_customers_count",
        "int",
        "本行截至当月的客户数",
        "customers of the bank at the as-of date (relationship begun before it)",
        "count(*) OVER (PARTITION BY s.as_of)",
        nullable=False,
    ),
    *[
        _f(
            _launch_name(p),
            "int",
            f"本行开办{PRODUCT_NAMES_ZH[p]}以来的月数(首笔申请起算，满{ESTABLISHED_MONTHS}个月记为{ESTABLISHED_MONTHS})",
            f"months since the bank's first {p.replace('_', ' ')} loan application, up to {ESTABLISHED_MONTHS} "
            f"(null: not offered yet)",
            f"l.{_launch_name(p)}",
        )
        for p in LOAN_PRODUCTS
    ],
]


def sql(tables: frozenset[str]) -> str:
    """Bank features per spine row: the bank's customer count at T, and each product's months
    since its first application before T (one grouped row per as-of, joined to the spine)."""

    def months(p: str) -> str:  # null while the product has no application before T (least() would skip it)
        d = months_between(f"min(CASE WHEN r.product = {lit(p)} THEN r.application_date END)", "a.as_of")
        return f"CASE WHEN {d} > {ESTABLISHED_MONTHS} THEN {ESTABLISHED_MONTHS} ELSE {d} END"

    launches = ",\n        ".join(f"{months(p)} AS {_launch_name(p)}" for p in LOAN_PRODUCTS)
    cols = ",\n    ".join(f"{f.sql} AS {f.name}" for f in FEATURES)
    return (
        f"SELECT s.customer_id, s.as_of,\n    {cols}\nFROM spine s LEFT JOIN (\n"
        f"    SELECT a.as_of,\n        {launches}\n"
        f"    FROM loans r JOIN asofs a ON r.application_date < a.as_of GROUP BY a.as_of\n"
        f") l ON l.as_of = s.as_of"
    )
