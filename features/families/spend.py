"""Spending: purchases by channel, surges, cash and digital shares.

Windows are whole calendar months before the as-of's month (``txn`` monthly source).
"""

from __future__ import annotations

from features.families._sql import monthly, ratio, win
from features.schema import Feature, declarer

FAMILY = "spend"
SPINE_ROWS = True
REQUIRES = ("transactions",)

_f = declarer(FAMILY)

FEATURES: list[Feature] = [
    _f("spend_purchase_amount_1m", "float", "上月消费金额", "purchases last month", win("sum", "purchase_amt", 1)),
    _f(
        "spend_purchase_amount_3m",
        "float",
        "近3个月消费金额",
        "purchases, last 3 months",
        win("sum", "purchase_amt", 3),
    ),
    _f(
        "spend_purchase_amount_6m",
        "float",
        "近6个月消费金额",
        "purchases, last 6 months",
        win("sum", "purchase_amt", 6),
    ),
    _f(
        "spend_purchase_count_3m",
        "int",
        "近3个月消费笔数",
        "number of purchases, last 3 months",
        win("sum", "purchase_n", 3),
    ),
    _f(
        "spend_purchase_pos_amount_3m",
        "float",
        "近3个月POS刷卡消费金额",
        "card (POS) purchases, last 3 months",
        win("sum", "purchase_pos_amt", 3),
    ),
    _f(
        "spend_purchase_qr_amount_3m",
        "float",
        "近3个月扫码消费金额",
        "QR-code purchases, last 3 months",
        win("sum", "purchase_qr_amt", 3),
    ),
    _f(
        "spend_purchase_mobile_amount_3m",
        "float",
        "近3个月手机银行消费金额",
        "mobile-banking purchases, last 3 months",
        win("sum", "purchase_mobile_amt", 3),
    ),
    _f(
        "spend_purchase_surge_1m_prior3m",
        "float",
        "上月消费与此前3个月月均之比",
        "purchases last month over the monthly average of the 3 months before",
        ratio(win("sum", "purchase_amt", 1), win("sum", "purchase_amt", 3, 1) + " / 3"),
        nullable=True,
    ),
    _f(
        "spend_purchase_surge_3m_prior3m",
        "float",
        "近3个月消费与前3个月之比",
        "purchases in the last 3 months over the 3 months before",
        ratio(win("sum", "purchase_amt", 3), win("sum", "purchase_amt", 3, 3)),
        nullable=True,
    ),
    _f("spend_debit_amount_3m", "float", "近3个月支出总额", "all money out, last 3 months", win("sum", "debit_amt", 3)),
    _f(
        "spend_debit_surge_1m_prior3m",
        "float",
        "上月支出与此前3个月月均之比",
        "money out last month over the monthly average of the 3 months before",
        ratio(win("sum", "debit_amt", 1), win("sum", "debit_amt", 3, 1) + " / 3"),
        nullable=True,
    ),
    _f(
        "spend_cash_share_3m",
        "float",
        "近3个月取现占支出比例",
        "cash withdrawals as a share of money out, last 3 months",
        ratio(win("sum", "cash_out_amt", 3), win("sum", "debit_amt", 3)),
        nullable=True,
    ),
    _f(
        "spend_digital_share_3m",
        "float",
        "近3个月手机/扫码支出笔数占比",
        "share of debits made by mobile or QR, last 3 months",
        ratio(win("sum", "digital_debit_n", 3), win("sum", "debit_n", 3)),
        nullable=True,
    ),
    _f(
        "spend_agent_count_3m",
        "int",
        "近3个月助农取款点交易笔数",
        "transactions at village cash points, last 3 months",
        win("sum", "agent_n", 3),
    ),
    _f(
        "spend_active_months_6m",
        "int",
        "近6个月有支出的月数",
        "months with any money out, last 6 months",
        win("months", "debit_n", 6),
    ),
]


def sql(tables: frozenset[str]) -> str:
    """Spending features per (customer_id, as_of), from windows over the ``txn`` monthly source."""
    return monthly(FEATURES, tables)
