"""Income: payroll (代发工资), pension, subsidies, remittances, all credits.

Windows are whole calendar months before the as-of's month (``txn`` monthly source).
"""

from __future__ import annotations

from features.families._sql import monthly, ratio, win
from features.schema import Feature, declarer

FAMILY = "income"
SPINE_ROWS = True
REQUIRES = ("transactions",)

_f = declarer(FAMILY)

FEATURES: list[Feature] = [
    _f(
        "income_payroll_months_3m",
        "int",
        "近3个月代发工资月数",
        "months with payroll in the last 3 months",
        win("months", "payroll_amt", 3),
    ),
    _f(
        "income_payroll_months_6m",
        "int",
        "近6个月代发工资月数",
        "months with payroll in the last 6 months",
        win("months", "payroll_amt", 6),
    ),
    _f(
        "income_payroll_months_12m",
        "int",
        "近12个月代发工资月数",
        "months with payroll in the last 12 months",
        win("months", "payroll_amt", 12),
    ),
    _f(
        "income_payroll_streak_months",
        "int",
        "最近连续代发工资月数(最多12)",
        "consecutive months with payroll up to the as-of (at most 12)",
        win("streak", "payroll_amt", 12),
    ),
    _f(
        "income_payroll_months_since_last",
        "int",
        "距最近一次代发工资的月数(12个月内)",
        "months since the last month with payroll (within 12 months)",
        win("since", "payroll_amt", 12),
        nullable=True,
    ),
    _f(
        "income_payroll_amount_1m",
        "float",
        "上月代发工资金额",
        "payroll amount last month",
        win("sum", "payroll_amt", 1),
    ),
    _f(
        "income_payroll_amount_avg_6m",
        "float",
        "近6个月月均代发工资",
        "average monthly payroll, last 6 months",
        win("sum", "payroll_amt", 6) + " / 6",
    ),
    _f(
        "income_payroll_cv_6m",
        "float",
        "近6个月代发工资波动系数",
        "coefficient of variation of monthly payroll, last 6 months",
        ratio(win("stddev_pop", "payroll_amt", 6), win("avg", "payroll_amt", 6)),
        nullable=True,
    ),
    _f(
        "income_payroll_ratio_3m_prior3m",
        "float",
        "近3个月代发工资与前3个月之比",
        "payroll in the last 3 months over the 3 months before",
        ratio(win("sum", "payroll_amt", 3), win("sum", "payroll_amt", 3, 3)),
        nullable=True,
    ),
    _f(
        "income_pension_amount_avg_6m",
        "float",
        "近6个月月均养老金",
        "average monthly pension, last 6 months",
        win("sum", "pension_amt", 6) + " / 6",
    ),
    _f(
        "income_pension_months_6m",
        "int",
        "近6个月领取养老金月数",
        "months with a pension credit, last 6 months",
        win("months", "pension_amt", 6),
    ),
    _f(
        "income_subsidy_amount_12m",
        "float",
        "近12个月补贴金额",
        "subsidies received, last 12 months",
        win("sum", "subsidy_amt", 12),
    ),
    _f(
        "income_subsidy_count_12m",
        "int",
        "近12个月补贴笔数",
        "number of subsidy credits, last 12 months",
        win("sum", "subsidy_n", 12),
    ),
    _f(
        "income_remittance_amount_6m",
        "float",
        "近6个月转入汇款金额",
        "transfers received (remittances), last 6 months",
        win("sum", "remit_amt", 6),
    ),
    _f(
        "income_remittance_count_6m",
        "int",
        "近6个月转入汇款笔数",
        "number of transfers received, last 6 months",
        win("sum", "remit_n", 6),
    ),
    _f(
        "income_credit_amount_avg_3m",
        "float",
        "近3个月月均入账金额",
        "average monthly credits (all money in), last 3 months",
        win("sum", "credit_amt", 3) + " / 3",
    ),
    _f(
        "income_credit_amount_avg_12m",
        "float",
        "近12个月月均入账金额",
        "average monthly credits (all money in), last 12 months",
        win("sum", "credit_amt", 12) + " / 12",
    ),
    _f(
        "income_credit_ratio_3m_prior3m",
        "float",
        "近3个月入账与前3个月之比",
        "money in during the last 3 months over the 3 months before",
        ratio(win("sum", "credit_amt", 3), win("sum", "credit_amt", 3, 3)),
        nullable=True,
    ),
]


def sql(tables: frozenset[str]) -> str:
    """Income features per (customer_id, as_of), from windows over the ``txn`` monthly source."""
    return monthly(FEATURES, tables)
