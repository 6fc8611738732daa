"""Marketing history: contacts per product and channel, last outcome, days since.

A contact is known at T when ``contact_date < T``. Needs the optional ``contacts``
table (features are null without it).
"""

from __future__ import annotations

from bankexport.spec import CONTACT_CHANNELS, CONTACT_OUTCOMES, ENUM_ZH, LOAN_PRODUCTS, PRODUCT_NAMES_ZH
from features.families._sql import codes, days_between, known, per_as_of
from features.schema import Feature, code_list, declarer
from nbp.sqltext import lit

FAMILY = "marketing"
REQUIRES = ("contacts",)

_OUTCOME_CODES = code_list(CONTACT_OUTCOMES)

_IN_12M = "contact_date >= as_of - INTERVAL 12 MONTH"
# Ties on one day are broken by the outcome code, so results do not depend on row order. A contact
# without a known outcome has no key: skipped, as DuckDB's arg_max skips a NULL value (Spark's max_by
# would return it).
_LAST_OUTCOME = "arg_max(oc, CASE WHEN oc IS NOT NULL THEN epoch(contact_date) * 10 + oc END)"

_f = declarer(FAMILY)

FEATURES: list[Feature] = [
    _f(
        "marketing_contacts_12m",
        "int",
        "近12个月营销触达次数",
        "marketing contacts, last 12 months",
        f"count(*) FILTER (WHERE {_IN_12M})",
    ),
    *[
        _f(
            f"marketing_contacts_{p}_12m",
            "int",
            f"近12个月{PRODUCT_NAMES_ZH[p]}营销次数",
            f"contacts about {p} loans, last 12 months",
            f"count(*) FILTER (WHERE {_IN_12M} AND product = {lit(p)})",
        )
        for p in LOAN_PRODUCTS
    ],
    *[
        _f(
            f"marketing_contacts_{c}_12m",
            "int",
            f"近12个月{ENUM_ZH[c]}触达次数",
            f"contacts by {c}, last 12 months",
            f"count(*) FILTER (WHERE {_IN_12M} AND channel = {lit(c)})",
        )
        for c in CONTACT_CHANNELS
    ],
    _f(
        "marketing_accepted_12m",
        "int",
        "近12个月接受营销次数",
        "contacts accepted, last 12 months",
        f"count(*) FILTER (WHERE {_IN_12M} AND outcome = 'accepted')",
    ),
    _f(
        "marketing_declined_12m",
        "int",
        "近12个月拒绝营销次数",
        "contacts declined, last 12 months",
        f"count(*) FILTER (WHERE {_IN_12M} AND outcome = 'declined')",
    ),
    _f(
        "marketing_last_outcome",
        "int",
        "最近一次营销结果",
        f"outcome of the last contact (code: {_OUTCOME_CODES})",
        _LAST_OUTCOME,
        categories=CONTACT_OUTCOMES,
    ),
    _f(
        "marketing_days_since_last_contact",
        "int",
        "距最近一次营销的天数",
        "days since the last contact",
        days_between("max(contact_date)", "as_of"),
        nullable=True,
    ),
    *[
        _f(
            f"marketing_last_outcome_{p}",
            "int",
            f"最近一次{PRODUCT_NAMES_ZH[p]}营销结果",
            f"outcome of the last {p} contact (code: {_OUTCOME_CODES})",
            f"{_LAST_OUTCOME} FILTER (WHERE product = {lit(p)})",
            categories=CONTACT_OUTCOMES,
        )
        for p in LOAN_PRODUCTS
    ],
    *[
        _f(
            f"marketing_days_since_contact_{p}",
            "int",
            f"距最近一次{PRODUCT_NAMES_ZH[p]}营销的天数",
            f"days since the last {p} contact",
            days_between(f"max(contact_date) FILTER (WHERE product = {lit(p)})", "as_of"),
            nullable=True,
        )
        for p in LOAN_PRODUCTS
    ],
]


def sql(tables: frozenset[str]) -> str:
    """Marketing features per (customer_id, as_of), from ``contacts`` (``oc``: the outcome's code)."""
    return per_as_of(FEATURES, known("contacts", "contact_date", oc=codes("r.outcome", CONTACT_OUTCOMES)), tables)
