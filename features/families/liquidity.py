"""Liquidity: month-end and average daily balances (月日均), trend, minimum, and
balances relative to turnover and income.

A balance month is known at T once it has ended: months before the as-of's month.
Windows aggregate the months that have a reported balance (a month without a
``balances`` row is unknown, not zero); a window without any is null.
Needs the optional ``balances`` table (features are null without it).
"""

from __future__ import annotations

from features.families._sql import monthly, ratio, win
from features.schema import Feature, declarer

FAMILY = "liquidity"
SPINE_ROWS = True
REQUIRES = ("balances",)

_f = declarer(FAMILY, nullable=True)
_ADB_3M = win("avg", "adb", 3)

FEATURES: list[Feature] = [
    _f("liquidity_end_balance_1m", "float", "上月末余额", "month-end balance, last month", win("sum", "end_bal", 1)),
    _f(
        "liquidity_end_balance_min_6m",
        "float",
        "近6个月最低月末余额",
        "lowest month-end balance, last 6 months",
        win("min", "end_bal", 6),
    ),
    _f(
        "liquidity_avg_daily_balance_1m",
        "float",
        "上月日均余额",
        "average daily balance, last month",
        win("sum", "adb", 1),
    ),
    _f("liquidity_avg_daily_balance_3m", "float", "近3个月日均余额", "average daily balance, last 3 months", _ADB_3M),
    _f(
        "liquidity_avg_daily_balance_12m",
        "float",
        "近12个月日均余额",
        "average daily balance, last 12 months",
        win("avg", "adb", 12),
    ),
    _f(
        "liquidity_avg_daily_balance_ratio_3m_prior3m",
        "float",
        "近3个月日均余额与前3个月之比",
        "average daily balance of the last 3 months over the 3 months before",
        ratio(_ADB_3M, win("avg", "adb", 3, 3)),
    ),
    _f(
        "liquidity_balance_to_turnover_3m",
        "float",
        "近3个月日均余额与月均支出之比",
        "average daily balance over average monthly money out, last 3 months",
        ratio(_ADB_3M, win("sum", "debit_amt", 3) + " / 3"),
    ),
    _f(
        "liquidity_balance_to_income_3m",
        "float",
        "近3个月日均余额与月均入账之比",
        "average daily balance over average monthly money in, last 3 months",
        ratio(_ADB_3M, win("sum", "credit_amt", 3) + " / 3"),
    ),
]


def sql(tables: frozenset[str]) -> str:
    """Liquidity features per (customer_id, as_of), from windows over the ``bal`` (+ ``txn``) monthly sources."""
    return monthly(FEATURES, tables)
