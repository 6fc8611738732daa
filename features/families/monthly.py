"""Transactions per customer and calendar month: the shared ``txn_month`` relation.

One pass over ``transactions``; the income, spending, business and liquidity
families window over it (see :func:`features.families._sql.win`). The relation is
dense: every customer with any transaction has one row per month from
``first_month`` to ``last_month`` with zeros where nothing happened, so that a
window of k rows is exactly k calendar months.
"""

from __future__ import annotations

from features.families._sql import q

_C, _D = q("C"), q("D")


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
}


def month_index(expr: str) -> str:
    """``year * 12 + month`` of a date/timestamp expression (consecutive months differ by 1)."""
    return f"(year({expr}) * 12 + month({expr}))"


def txn_month_sql(first_month: str, last_month: str) -> str:
    """SQL of the dense ``txn_month`` relation.

    Args:
        first_month: SQL timestamp literal, first month of the grid (a month start).
        last_month: SQL timestamp literal, last month of the grid (the last anchor month).

    Returns:
        A query with columns ``customer_id``, ``m`` (month start), ``mi`` (month index)
        and one column per :data:`MEASURES` key. Only transactions dated before
        ``last_month`` are read: the anchor month is never inside a window.
    """
    aggs = ",\n        ".join(f"{e} AS {n}" for n, e in MEASURES.items())
    filled = ",\n    ".join(f"coalesce(t.{n}, 0) AS {n}" for n in MEASURES)
    return f"""
WITH agg AS (
    SELECT customer_id, CAST(date_trunc('month', txn_time) AS TIMESTAMP) AS m,
        {aggs}
    FROM transactions
    WHERE txn_time >= {first_month} AND txn_time < {last_month}
    GROUP BY ALL
),
months AS (
    SELECT CAST(range AS TIMESTAMP) AS m
    FROM range({first_month}, {last_month} + INTERVAL 1 MONTH, INTERVAL 1 MONTH)
),
custs AS (SELECT DISTINCT customer_id FROM agg)
SELECT c.customer_id, g.m, {month_index('g.m')} AS mi,
    {filled}
FROM custs c CROSS JOIN months g
LEFT JOIN agg t ON t.customer_id = c.customer_id AND t.m = g.m
"""
