"""Small SQL builders shared by the families (pure string functions).

A family declares each feature once, with its SQL expression (:class:`features.schema.Feature`),
and builds its query from the list: :func:`monthly` for window families, :func:`per_as_of` over
:func:`known` rows for the dated tables.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from features.families.monthly import month_index
from features.schema import Feature
from features.windows import column
from nbp.sqltext import lit


def codes(expr: str, values: Sequence[str]) -> str:
    """Integer code of an enum column: position in ``values`` (0-based), else NULL."""
    whens = " ".join(f"WHEN {lit(v)} THEN {i}" for i, v in enumerate(values))
    return f"(CASE {expr} {whens} END)"


def win(agg: str, col: str, months: int, skip: int = 0) -> str:
    """A window aggregate over the ``months`` whole months before the anchor month.

    Names the column ``agg(col)`` over months ``skip + 1`` … ``skip + months`` before
    the as-of's month (1 = the month before) of a monthly source, e.g.
    ``win("sum", "payroll_amt", 3)`` = payroll of the last 3 months. The as-of's own
    month (which may hold records dated on or after the as-of) is never in a window.
    The build computes every window a family names (:mod:`features.windows`, where the
    aggregates ``sum avg min max stddev_pop months since streak`` are defined) and
    provides it in the relation ``win`` (one row per spine row; a customer without
    records has the window of an all-empty series); ``col`` is a column of a monthly
    source (``features.families.monthly.MEASURES`` or ``BAL_MEASURES``).
    """
    return column(agg, col, 1 + skip, months + skip)


def months_between(start: str, end: str) -> str:
    """Calendar months from ``start`` to ``end``: the month boundaries crossed (DuckDB's
    ``date_diff('month', start, end)``), as month-index arithmetic, which Spark computes alike
    (Spark's ``DATEDIFF(MONTH, ...)`` counts whole months instead)."""
    return f"({month_index(end)} - {month_index(start)})"


def days_between(start: str, end: str) -> str:
    """Calendar days from ``start`` to ``end``: the midnights crossed (DuckDB's
    ``date_diff('day', start, end)``), taken between dates, where Spark's ``DATEDIFF(DAY, ...)``
    agrees (on timestamps it counts whole 24-hour days)."""
    return f"date_diff('day', CAST({start} AS DATE), CAST({end} AS DATE))"


def add_months(ts: str, n: str) -> str:
    """``ts`` plus ``n`` calendar months (a day past the month's end is its last day), as
    ``INTERVAL 1 MONTH * n``: DuckDB's ``to_months`` does not exist in Spark."""
    return f"({ts} + INTERVAL 1 MONTH * {n})"


def ratio(num: str, den: str) -> str:
    """``num / den``, NULL when the denominator is not positive."""
    return f"(CASE WHEN ({den}) > 0 THEN ({num}) / ({den}) END)"


def select(features: Sequence[Feature], tables: Collection[str]) -> str:
    """``sql AS name, ...`` of the features whose optional tables are present (:attr:`Feature.needs`)."""
    return ",\n    ".join(f"{f.sql} AS {f.name}" for f in features if f.computed(tables))


def monthly(features: Sequence[Feature], tables: Collection[str]) -> str:
    """The features as expressions over the window relation ``win`` (exactly one row per spine row).

    Returns:
        A query with ``customer_id``, ``as_of`` and one column per feature.
    """
    return f"SELECT customer_id, as_of,\n    {select(features, tables)}\nFROM win"


def known(table: str, date_col: str, **extra: str) -> str:
    """The rows of ``table`` (alias ``r``) known at each as-of (``date_col < as_of``), with ``as_of``.

    ``extra``: more columns, name -> expression over ``r`` and the as-of row ``a``.
    """
    cols = "".join(f", {e} AS {n}" for n, e in extra.items())
    return f"SELECT r.*, a.as_of{cols} FROM {table} r JOIN asofs a ON r.{date_col} < a.as_of"


def per_as_of(features: Sequence[Feature], rows: str, tables: Collection[str]) -> str:
    """The features as aggregates over ``rows`` (a query with ``customer_id`` and ``as_of``).

    Returns:
        A query with one row per (customer_id, as_of) that has rows.
    """
    return f"SELECT customer_id, as_of,\n    {select(features, tables)}\nFROM ({rows})\nGROUP BY customer_id, as_of"
