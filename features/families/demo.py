"""Demographics and relationship: who the customer is and how long they have banked here.

Customer attributes come from ECIF as of the export date; dated ones count only
through their dates (``birth_date``, ``established_date``, ``open_date`` before T).
Enum columns become integer codes (:data:`features.schema.CATEGORY_CODE_RULE`).
Branch: ``branch_id`` is bank-specific, so instead of a code the features describe
the branch (its area from the optional ``branches`` table, its size at T).
"""

from __future__ import annotations

from bankexport.spec import TABLES
from features.families._sql import codes, days_between, months_between, select
from features.schema import Feature, declarer

FAMILY = "demo"
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
ENUM_COLUMNS = tuple(_ENUM_ZH)

_f = declarer(FAMILY, nullable=True)


def _enum_feature(col: str) -> Feature:
    values = TABLES["customers"].column(col).enum
    en = f"{col.replace('_', ' ')} (code: position in {', '.join(values)})"
    return _f(f"demo_{col}", "int", f"{_ENUM_ZH[col]}(编码)", en, codes(f"c.{col}", values), categories=values)


# Relations of sql(): the spine row s, its customer c, the home branch b, the branch's size bc.
FEATURES: list[Feature] = [
    *[_enum_feature(c) for c in ENUM_COLUMNS],
    _f(
        "demo_age_years",
        "int",
        "年龄(周岁)",
        "age in years",
        f"CASE WHEN c.birth_date < s.as_of THEN CAST(floor({days_between('c.birth_date', 's.as_of')} / 365.25) AS BIGINT) END",
    ),
    _f(
        "demo_tenure_months",
        "int",
        "成为本行客户的月数",
        "months since the first relationship with the bank",
        months_between("c.open_date", "s.as_of"),
    ),
    _f(
        "demo_firm_age_months",
        "int",
        "企业/个体户成立月数",
        "months since the business was established",
        f"CASE WHEN c.established_date < s.as_of THEN {months_between('c.established_date', 's.as_of')} END",
    ),
    _f(
        "demo_branch_rural",
        "int",
        "所属支行位于农村(1/0)",
        "home branch is in a rural area (1/0)",
        "(CASE b.area WHEN 'rural' THEN 1 WHEN 'urban' THEN 0 END)",
        needs=("branches",),
    ),
    _f("demo_branch_customers", "int", "所属支行客户数", "customers of the home branch at the as-of", "bc.n"),
]


def sql(tables: frozenset[str]) -> str:
    """Demographic and relationship features per (customer_id, as_of), from ``customers``."""
    branches = "LEFT JOIN branches b ON b.branch_id = c.branch_id" if "branches" in tables else ""
    # customers known at T per home branch (one small aggregate, joined back by branch and T)
    per_branch = (
        "SELECT k.branch_id, a.as_of, count(*) AS n FROM customers k JOIN asofs a ON k.open_date < a.as_of GROUP BY ALL"
    )
    return f"""
SELECT s.customer_id, s.as_of,
    {select(FEATURES, tables)}
FROM spine s JOIN customers c ON c.customer_id = s.customer_id
{branches}
LEFT JOIN ({per_branch}) bc ON bc.branch_id IS NOT DISTINCT FROM c.branch_id AND bc.as_of = s.as_of"""
