"""Tax (银税互动): the latest published record's grade and figures, years on record, trend.

A tax record is known at T only when ``published_date < T``. Needs the optional
``tax_records`` table (features are null without it).
"""

from __future__ import annotations

from bankexport.spec import TAX_GRADES
from features.families._sql import codes, ratio, select
from features.schema import Feature

FAMILY = "tax"
REQUIRES = ("tax_records",)

FEATURES: list[Feature] = [
    Feature(
        "tax_credit_grade_latest",
        FAMILY,
        "int",
        "最新纳税信用等级(A=0…D=4)",
        "latest published tax credit grade (code: A=0, B=1, M=2, C=3, D=4)",
        categories=TAX_GRADES,
    ),
    Feature("tax_paid_latest", FAMILY, "float", "最新年度纳税额", "tax paid in the latest published year"),
    Feature("tax_months_filed_latest", FAMILY, "int", "最新年度申报月数", "months filed in the latest published year"),
    Feature(
        "tax_years_on_record",
        FAMILY,
        "int",
        "已公布的纳税记录年数",
        "years of tax records published",
        zero_if_none=True,
    ),
    Feature(
        "tax_paid_ratio_latest_prior",
        FAMILY,
        "float",
        "最新年度纳税额与上一年度之比",
        "tax paid in the latest year over the year before",
    ),
    Feature(
        "tax_years_since_latest",
        FAMILY,
        "int",
        "最新纳税记录距今年数",
        "years between the latest tax year and the as-of year",
    ),
    Feature(
        "tax_days_since_published",
        FAMILY,
        "int",
        "距最新纳税记录公布的天数",
        "days since the latest tax record was published",
    ),
]


def sql(tables: frozenset[str]) -> str:
    """Tax features per (customer_id, as_of), from ``tax_records``."""
    exprs = {
        "tax_credit_grade_latest": "max(CASE WHEN rn = 1 THEN grade END)",
        "tax_paid_latest": "max(CASE WHEN rn = 1 THEN tax_paid END)",
        "tax_months_filed_latest": "max(CASE WHEN rn = 1 THEN months_filed END)",
        "tax_years_on_record": "count(*)",
        "tax_paid_ratio_latest_prior": ratio(
            "max(CASE WHEN rn = 1 THEN tax_paid END)", "max(CASE WHEN rn = 2 THEN tax_paid END)"
        ),
        "tax_years_since_latest": "year(as_of) - max(tax_year)",
        "tax_days_since_published": "date_diff('day', max(published_date), as_of)",
    }
    return f"""
WITH known AS (
    SELECT r.customer_id, a.as_of, r.tax_year, r.tax_paid, r.months_filed, r.published_date,
        {codes("r.credit_grade", TAX_GRADES)} AS grade,
        row_number() OVER (PARTITION BY r.customer_id, a.as_of
                           ORDER BY r.tax_year DESC, r.published_date DESC) AS rn
    FROM tax_records r JOIN asofs a ON r.published_date < a.as_of
)
SELECT customer_id, as_of,
    {select(exprs)}
FROM known GROUP BY customer_id, as_of
"""
