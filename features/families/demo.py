"""Demographics and relationship: who the customer is and how long they have banked here.

Customer attributes come from ECIF as of the export date; dated ones count only
through their dates (``birth_date``, ``established_date``, ``open_date`` before T).
Enum columns become integer codes (:data:`features.schema.CATEGORY_CODE_RULE`).
Branch: ``branch_id`` is bank-specific, so instead of a code the features describe
the branch (its area from the optional ``branches`` table, its size at T).

What managers collect on visits (the optional ``profile_updates`` table) overrides a
customer's field from its ``collected_date`` on: at T, each field takes its latest update
dated before T (spec "Point in time"), else the ``customers`` value. Two figures only
visits give, the monthly income and the business's monthly turnover, are features of
their own (unknown without an update).
"""

from __future__ import annotations

from bankexport.spec import PROFILE_CUSTOMER_FIELDS, PROFILE_FIELDS, PROFILE_MONEY_FIELDS, TABLES
from features.families._sql import codes, days_between, months_between, select
from features.schema import Feature, declarer
from nbp.sqltext import lit

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
    _f(
        "demo_monthly_income_amount",
        "float",
        "月收入(客户经理走访采集)",
        "monthly income as a manager last collected it on a visit (CNY)",
        "c.monthly_income",
        needs=("profile_updates",),
    ),
    _f(
        "demo_business_turnover_monthly_amount",
        "float",
        "月经营流水(客户经理走访采集)",
        "monthly business turnover as a manager last collected it on a visit (CNY)",
        "c.business_turnover_monthly",
        needs=("profile_updates",),
    ),
]


def _profile_at_as_of() -> str:
    """Each spine row's customer as known at its as-of (relation ``c``: the ``customers`` columns
    plus ``as_of`` and the visit-only figures): per field the latest ``profile_updates`` value
    with ``collected_date < as_of``, else the ``customers`` value. Two updates of one field on
    one day: the greater value (as text) wins, so the result does not depend on row order."""
    latest = (
        "SELECT r.customer_id, a.as_of, r.field, r.value, row_number() OVER ("
        "PARTITION BY r.customer_id, a.as_of, r.field ORDER BY r.collected_date DESC, r.value DESC) AS k "
        "FROM profile_updates r JOIN asofs a ON r.collected_date < a.as_of"
    )
    pivot = ", ".join(f"max(CASE WHEN field = {lit(f)} THEN value END) AS {f}" for f in PROFILE_FIELDS)
    known = f"SELECT customer_id, as_of, {pivot} FROM ({latest}) WHERE k = 1 GROUP BY customer_id, as_of"

    def column(name: str, type_: str) -> str:
        if name not in PROFILE_CUSTOMER_FIELDS:
            return f"c0.{name}"
        if type_ == "date":
            return f"COALESCE(CAST(u.{name} AS TIMESTAMP), c0.{name}) AS {name}"
        return f"COALESCE(u.{name}, c0.{name}) AS {name}"

    cols = ", ".join(column(c.name, c.type) for c in TABLES["customers"].columns)
    figures = ", ".join(f"CAST(u.{f} AS DOUBLE) AS {f}" for f in PROFILE_MONEY_FIELDS)
    return (
        f"SELECT s0.as_of, {cols}, {figures} FROM spine s0 JOIN customers c0 ON c0.customer_id = s0.customer_id "
        f"LEFT JOIN ({known}) u ON u.customer_id = s0.customer_id AND u.as_of = s0.as_of"
    )


def sql(tables: frozenset[str]) -> str:
    """Demographic and relationship features per (customer_id, as_of), from ``customers`` (and
    ``profile_updates``, where the bank has it)."""
    branches = "LEFT JOIN branches b ON b.branch_id = c.branch_id" if "branches" in tables else ""
    if "profile_updates" in tables:
        customers = f"({_profile_at_as_of()}) c ON c.customer_id = s.customer_id AND c.as_of = s.as_of"
    else:
        customers = "customers c ON c.customer_id = s.customer_id"
    # customers known at T per home branch (one small aggregate, joined back by branch and T)
    per_branch = (
        "SELECT k.branch_id, a.as_of, count(*) AS n FROM customers k JOIN asofs a ON k.open_date < a.as_of GROUP BY ALL"
    )
    return f"""
SELECT s.customer_id, s.as_of,
    {select(FEATURES, tables)}
FROM spine s JOIN {customers}
{branches}
LEFT JOIN ({per_branch}) bc ON bc.branch_id IS NOT DISTINCT FROM c.branch_id AND bc.as_of = s.as_of"""
