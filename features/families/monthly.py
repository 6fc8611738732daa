"""The monthly sources the windowed families read: per customer and calendar month.

``txn``: transactions aggregated per customer × month (one pass over
``transactions``, :data:`MEASURES`); a month without transactions is all zeros.
``bal``: balances summed over the customer's accounts per month
(:data:`BAL_MEASURES`); a month without a row is unknown. The income, spending,
business and liquidity families name window aggregates over these columns
(:func:`features.families._sql.win`); :mod:`features.windows` computes them.
"""

from __future__ import annotations

from nbp.sqltext import lit

_C, _D = lit("C"), lit("D")


def _sum(cond: str) -> str:
    return f"coalesce(sum(amount) FILTER (WHERE {cond}), 0)"


def _count(cond: str) -> str:
    return f"count(*) FILTER (WHERE {cond})"


# Monthly measures: column name -> aggregate over the month's transactions.
MEASURES: dict[str, str] = {
    "credit_amt": _sum(f"direction = {_C}"),
    "debit_amt": _sum(f"direction = {_D}"),
    "debit_n": _count(f"direction = {_D}"),
    "payroll_amt": _sum(f"txn_type = 'payroll' AND direction = {_C}"),
    "pension_amt": _sum(f"txn_type = 'pension' AND direction = {_C}"),
    "subsidy_amt": _sum(f"txn_type = 'subsidy' AND direction = {_C}"),
    "subsidy_n": _count(f"txn_type = 'subsidy' AND direction = {_C}"),
    "remit_amt": _sum(f"txn_type = 'transfer' AND direction = {_C}"),
    "remit_n": _count(f"txn_type = 'transfer' AND direction = {_C}"),
    "purchase_amt": _sum(f"txn_type = 'purchase' AND direction = {_D}"),
    "purchase_n": _count(f"txn_type = 'purchase' AND direction = {_D}"),
    "purchase_pos_amt": _sum(f"txn_type = 'purchase' AND direction = {_D} AND channel = 'pos'"),
    "purchase_qr_amt": _sum(f"txn_type = 'purchase' AND direction = {_D} AND channel = 'qr'"),
    "purchase_mobile_amt": _sum(f"txn_type = 'purchase' AND direction = {_D} AND channel = 'mobile'"),
    "cash_out_amt": _sum(f"txn_type = 'cash' AND direction = {_D}"),
    "digital_debit_n": _count(f"direction = {_D} AND channel IN ('mobile', 'qr')"),
    "agent_n": _count("channel = 'agent'"),
    "settle_amt": _sum(f"txn_type = 'merchant_settlement' AND direction = {_C}"),
    "settle_n": _count(f"txn_type = 'merchant_settlement' AND direction = {_C}"),
    "counterparties_n": "count(DISTINCT counterparty_id)",
    # the value tiers' activity and turnover (features/tiers.py): money out but interest and fees, all money
    "activity_n": _count(f"direction = {_D} AND txn_type NOT IN ('interest', 'fee')"),
    "turnover_amt": _sum("TRUE"),
}


def month_index(expr: str) -> str:
    """``year * 12 + month`` of a date/timestamp expression (consecutive months differ by 1)."""
    return f"(year({expr}) * 12 + month({expr}))"


BAL_MEASURES: dict[str, str] = {
    "end_bal": "sum(b.end_balance)",
    "adb": "sum(b.avg_daily_balance)",
    # deposits only (the value tiers): every account type but loan and credit card
    "deposit_adb": "sum(b.avg_daily_balance) FILTER (WHERE a.account_type NOT IN ('loan', 'credit_card'))",
}


def txn_month_sql(first_month: str, last_month: str) -> str:
    """SQL of the ``txn`` monthly source: transactions per customer and calendar month.

    Args:
        first_month: SQL timestamp literal, first month of the grid (a month start).
        last_month: SQL timestamp literal, last month of the grid (the last anchor month).

    Returns:
        A query with columns ``customer_id``, ``mi`` (month index) and one column per
        :data:`MEASURES` key, one row per customer and month with transactions (a month
        without a row is all zeros). Only transactions dated before ``last_month`` are
        read: the anchor month is never inside a window.
    """
    aggs = ",\n        ".join(f"{e} AS {n}" for n, e in MEASURES.items())
    return f"""
SELECT customer_id, {month_index("txn_time")} AS mi,
        {aggs}
FROM transactions
WHERE txn_time >= {first_month} AND txn_time < {last_month}
GROUP BY ALL
"""


def bal_month_sql(first_month: str, last_month: str) -> str:
    """SQL of the ``bal`` monthly source: balances summed over a customer's accounts per month.

    A month is known once it has ended, so only months before ``last_month`` are read;
    a month without a row (or with only empty cells) is unknown (NULL), not zero.
    """
    aggs = ",\n        ".join(f"{e} AS {n}" for n, e in BAL_MEASURES.items())
    return f"""
SELECT a.customer_id, {month_index("b.month")} AS mi,
        {aggs}
FROM balances b JOIN accounts a USING (account_id)
WHERE b.month >= {first_month} AND b.month < {last_month}
GROUP BY ALL
"""
