"""Tax (银税互动): the latest published record's grade and figures, years on record, trend.

A tax record is known at T only when ``published_date < T``. Needs the optional
``tax_records`` table (features are null without it).
"""

from __future__ import annotations

from bankexport.spec import TAX_GRADES
from features.families._sql import codes, days_between, known, per_as_of, ratio
from features.schema import Feature, code_list, declarer

FAMILY = "tax"
REQUIRES = ("tax_records",)

_f = declarer(FAMILY, nullable=True)


def _latest(col: str, rank: int = 1) -> str:
    """``col`` of the customer's latest known record (``rank`` 2: the one before it)."""
    return f"max(CASE WHEN rn = {rank} THEN {col} END)"


FEATURES: list[Feature] = [
    _f(
        "tax_credit_grade_latest",
        "int",
        f"最新纳税信用等级({TAX_GRADES[0]}=0…{TAX_GRADES[-1]}={len(TAX_GRADES) - 1})",
        f"latest published tax credit grade (code: {code_list(TAX_GRADES)})",
        _latest("grade"),
        categories=TAX_GRADES,
    ),
    _f("tax_paid_latest", "float", "最新年度纳税额", "tax paid in the latest published year", _latest("tax_paid")),
    _f(
        "tax_months_filed_latest",
        "int",
        "最新年度申报月数",
        "months filed in the latest published year",
        _latest("months_filed"),
    ),
    _f(
        "tax_years_on_record",
        "int",
        "已公布的纳税记录年数",
        "years of tax records published",
        "count(*)",
        nullable=False,
    ),
    _f(
        "tax_paid_ratio_latest_prior",
        "float",
        "最新年度纳税额与上一年度之比",
        "tax paid in the latest year over the year before",
        ratio(_latest("tax_paid"), _latest("tax_paid", 2)),
    ),
    _f(
        "tax_years_since_latest",
        "int",
        "最新纳税记录距今年数",
        "years between the latest tax year and the as-of year",
        "year(as_of) - max(tax_year)",
    ),
    _f(
        "tax_days_since_published",
        "int",
        "距最新纳税记录公布的天数",
        "days since the latest tax record was published",
        days_between("max(published_date)", "as_of"),
    ),
]


def sql(tables: frozenset[str]) -> str:
    """Tax features per (customer_id, as_of), from ``tax_records`` (``rn`` 1 = the latest known record)."""
    rows = known(
        "tax_records",
        "published_date",
        grade=codes("r.credit_grade", TAX_GRADES),
        rn="row_number() OVER (PARTITION BY r.customer_id, a.as_of ORDER BY r.tax_year DESC, r.published_date DESC)",
    )
    return per_as_of(FEATURES, rows, tables)
