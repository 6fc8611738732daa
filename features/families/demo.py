"""Demographics and relationship: who the customer is and how long they have banked here.

Customer attributes come from ECIF as of the export date; dated ones count only
through their dates (``birth_date``, ``established_date``, ``open_date`` before T).
Enum columns become integer codes (:data:`features.schema.CATEGORY_CODE_RULE`).
Branch: ``branch_id`` is bank-specific, so instead of a code the features describe
the branch (its area from the optional ``branches`` table, its size at T).
"""

from __future__ import annotations

from bankexport.spec import TABLES
from features.families._sql import codes, select
from features.schema import Feature

FAMILY = "demo"
# sql() returns exactly one row per spine row (customer known at T, per as-of): the build
# writes it without joining it to the spine again (and checks the row count).
SPINE_ROWS = True
REQUIRES = ("customers",)

_ENUM_ZH = {
    "customer_type": "客户类型",
    "gender": "性别",
    "occupation": "职业",
    "employer_type": "单位性质",
    "marital_status": "婚姻状况",
    "education": "学历",
    "residence": "城乡居住地",
    "industry": "行业门类",
    "risk_tolerance": "风险承受等级",
}


def _enum_feature(col: str) -> Feature:
    values = TABLES["customers"].column(col).enum
    return Feature(
        f"demo_{col}",
        FAMILY,
        "int",
        f"{_ENUM_ZH[col]}(编码)",
        f"{col.replace('_', ' ')} (code: position in {', '.join(values)})",
        categories=values,
    )


ENUM_COLUMNS = tuple(_ENUM_ZH)

FEATURES: list[Feature] = [
    *[_enum_feature(c) for c in ENUM_COLUMNS],
    Feature("demo_age_years", FAMILY, "int", "年龄(周岁)", "age in years"),
    Feature(
        "demo_tenure_months", FAMILY, "int", "成为本行客户的月数", "months since the first relationship with the bank"
    ),
    Feature("demo_firm_age_months", FAMILY, "int", "企业/个体户成立月数", "months since the business was established"),
    Feature("demo_branch_rural", FAMILY, "int", "所属支行位于农村(1/0)", "home branch is in a rural area (1/0)"),
    Feature("demo_branch_customers", FAMILY, "int", "所属支行客户数", "customers of the home branch at the as-of"),
]


def sql(tables: frozenset[str]) -> str:
    """Demographic and relationship features per (customer_id, as_of), from ``customers``."""
    rural = "(CASE b.area WHEN 'rural' THEN 1 WHEN 'urban' THEN 0 END)" if "branches" in tables else "NULL"
    branches = "LEFT JOIN branches b ON b.branch_id = c.branch_id" if "branches" in tables else ""
    exprs = {
        **{f"demo_{col}": codes(f"c.{col}", TABLES["customers"].column(col).enum) for col in ENUM_COLUMNS},
        "demo_age_years": (
            "CASE WHEN c.birth_date < s.as_of "
            "THEN CAST(floor(date_diff('day', c.birth_date, s.as_of) / 365.25) AS BIGINT) END"
        ),
        "demo_tenure_months": "date_diff('month', c.open_date, s.as_of)",
        "demo_firm_age_months": (
            "CASE WHEN c.established_date < s.as_of THEN date_diff('month', c.established_date, s.as_of) END"
        ),
        "demo_branch_rural": rural,
        "demo_branch_customers": "bc.n",
    }
    # customers known at T per home branch (one small aggregate, joined back by branch and T)
    per_branch = (
        "SELECT k.branch_id, a.as_of, count(*) AS n FROM customers k JOIN asofs a ON k.open_date < a.as_of GROUP BY ALL"
    )
    return f"""
SELECT s.customer_id, s.as_of,
    {select(exprs)}
FROM spine s JOIN customers c ON c.customer_id = s.customer_id
{branches}
LEFT JOIN ({per_branch}) bc ON bc.branch_id IS NOT DISTINCT FROM c.branch_id AND bc.as_of = s.as_of"""
