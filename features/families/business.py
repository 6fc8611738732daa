"""Business flow: merchant acquiring settlements (收单结算) and counterparties.

Windows are whole calendar months before the as-of's month (``txn`` monthly source).
"""

from __future__ import annotations

from features.families._sql import monthly, ratio, win
from features.schema import Feature, declarer

FAMILY = "business"
SPINE_ROWS = True
REQUIRES = ("transactions",)

_f = declarer(FAMILY)

FEATURES: list[Feature] = [
    _f(
        "business_settlement_amount_1m",
        "float",
        "上月商户收单结算金额",
        "merchant settlement last month",
        win("sum", "settle_amt", 1),
    ),
    _f(
        "business_settlement_avg_3m",
        "float",
        "近3个月月均商户结算金额",
        "average monthly merchant settlement, last 3 months",
        win("sum", "settle_amt", 3) + " / 3",
    ),
    _f(
        "business_settlement_avg_6m",
        "float",
        "近6个月月均商户结算金额",
        "average monthly merchant settlement, last 6 months",
        win("sum", "settle_amt", 6) + " / 6",
    ),
    _f(
        "business_settlement_avg_12m",
        "float",
        "近12个月月均商户结算金额",
        "average monthly merchant settlement, last 12 months",
        win("sum", "settle_amt", 12) + " / 12",
    ),
    _f(
        "business_settlement_count_3m",
        "int",
        "近3个月商户结算笔数",
        "number of merchant settlements, last 3 months",
        win("sum", "settle_n", 3),
    ),
    _f(
        "business_settlement_months_12m",
        "int",
        "近12个月有商户结算的月数",
        "months with merchant settlement, last 12 months",
        win("months", "settle_amt", 12),
    ),
    _f(
        "business_settlement_growth_3m_prior3m",
        "float",
        "近3个月结算与前3个月之比",
        "settlement in the last 3 months over the 3 months before",
        ratio(win("sum", "settle_amt", 3), win("sum", "settle_amt", 3, 3)),
        nullable=True,
    ),
    _f(
        "business_settlement_growth_6m_prior6m",
        "float",
        "近6个月结算与前6个月之比",
        "settlement in the last 6 months over the 6 months before",
        ratio(win("sum", "settle_amt", 6), win("sum", "settle_amt", 6, 6)),
        nullable=True,
    ),
    _f(
        "business_settlement_cv_6m",
        "float",
        "近6个月月结算金额波动系数",
        "coefficient of variation of monthly settlement, last 6 months",
        ratio(win("stddev_pop", "settle_amt", 6), win("avg", "settle_amt", 6)),
        nullable=True,
    ),
    _f(
        "business_settlement_season_index_12m",
        "float",
        "去年同月结算与近12个月月均之比(季节性)",
        "settlement in the same month last year over the 12-month monthly average (seasonality)",
        ratio(win("sum", "settle_amt", 1, 11), win("sum", "settle_amt", 12) + " / 12"),
        nullable=True,
    ),
    _f(
        "business_counterparties_avg_3m",
        "float",
        "近3个月月均交易对手数",
        "average number of distinct counterparties per month, last 3 months",
        win("sum", "counterparties_n", 3) + " / 3",
    ),
    _f(
        "business_counterparties_max_12m",
        "int",
        "近12个月单月最多交易对手数",
        "most distinct counterparties in one month, last 12 months",
        win("max", "counterparties_n", 12),
    ),
]


def sql(tables: frozenset[str]) -> str:
    """Business-flow features per (customer_id, as_of), from windows over the ``txn`` monthly source."""
    return monthly(FEATURES, tables)
