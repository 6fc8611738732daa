"""Liquidity: month-end and average daily balances (月日均), trend, minimum, and
balances relative to turnover and income.

A balance month is known at T once it has ended: months before the as-of's month.
Windows aggregate the months that have a reported balance (a month without a
``balances`` row is unknown, not zero); a window without any is null.
Needs the optional ``balances`` table (features are null without it).
"""

from __future__ import annotations

from features.families._sql import anchors, ratio, select, win
from features.schema import Feature, declarer

FAMILY = "liquidity"
REQUIRES = ("balances",)


_f = declarer(FAMILY, zero=False)


FEATURES: list[Feature] = [
    _f("liquidity_end_balance_1m", "float", "上月末余额", "month-end balance, last month"),
    _f("liquidity_end_balance_min_6m", "float", "近6个月最低月末余额", "lowest month-end balance, last 6 months"),
    _f("liquidity_avg_daily_balance_1m", "float", "上月日均余额", "average daily balance, last month"),
    _f("liquidity_avg_daily_balance_3m", "float", "近3个月日均余额", "average daily balance, last 3 months"),
    _f("liquidity_avg_daily_balance_12m", "float", "近12个月日均余额", "average daily balance, last 12 months"),
    _f("liquidity_avg_daily_balance_ratio_3m_prior3m", "float", "近3个月日均余额与前3个月之比",
       "average daily balance of the last 3 months over the 3 months before"),
    _f("liquidity_balance_to_turnover_3m", "float", "近3个月日均余额与月均支出之比",
       "average daily balance over average monthly money out, last 3 months"),
    _f("liquidity_balance_to_income_3m", "float", "近3个月日均余额与月均入账之比",
       "average daily balance over average monthly money in, last 3 months"),
]


def sql(tables: frozenset[str]) -> str:
    """Liquidity features per (customer_id, as_of), from ``balances`` (+ ``txn_month``)."""
    bal = """
WITH per_month AS (
    SELECT a.customer_id, b.month AS m,
        sum(b.end_balance) AS end_bal, sum(b.avg_daily_balance) AS adb
    FROM balances b JOIN accounts a USING (account_id)
    WHERE b.month < (SELECT max(m) FROM months)
    GROUP BY ALL
),
dense AS (
    SELECT c.customer_id, g.m, p.end_bal, p.adb
    FROM (SELECT DISTINCT customer_id FROM per_month) c CROSS JOIN months g
    LEFT JOIN per_month p ON p.customer_id = c.customer_id AND p.m = g.m
)"""
    bal_exprs = {
        "end_bal_1m": win("sum", "end_bal", 1),
        "end_bal_min_6m": win("min", "end_bal", 6),
        "adb_1m": win("sum", "adb", 1),
        "adb_3m": win("avg", "adb", 3),
        "adb_12m": win("avg", "adb", 12),
        "adb_prior3m": win("avg", "adb", 3, 3),
    }
    txn_exprs = {"debit_avg_3m": win("sum", "debit_amt", 3) + " / 3",
                 "credit_avg_3m": win("sum", "credit_amt", 3) + " / 3"}
    b = anchors(f"SELECT customer_id, m, {select(bal_exprs)} FROM dense", list(bal_exprs))
    t = anchors(f"SELECT customer_id, m, {select(txn_exprs)} FROM txn_month", list(txn_exprs))
    out = {
        "liquidity_end_balance_1m": "b.end_bal_1m",
        "liquidity_end_balance_min_6m": "b.end_bal_min_6m",
        "liquidity_avg_daily_balance_1m": "b.adb_1m",
        "liquidity_avg_daily_balance_3m": "b.adb_3m",
        "liquidity_avg_daily_balance_12m": "b.adb_12m",
        "liquidity_avg_daily_balance_ratio_3m_prior3m": ratio("b.adb_3m", "b.adb_prior3m"),
        "liquidity_balance_to_turnover_3m": ratio("b.adb_3m", "t.debit_avg_3m"),
        "liquidity_balance_to_income_3m": ratio("b.adb_3m", "t.credit_avg_3m"),
    }
    return (f"{bal}\nSELECT b.customer_id, b.as_of, {select(out)}\n"
            f"FROM ({b}) b LEFT JOIN ({t}) t ON t.customer_id = b.customer_id AND t.as_of = b.as_of")
