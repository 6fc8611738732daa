"""Small SQL builders shared by the families (pure string functions)."""

from __future__ import annotations

from collections.abc import Sequence

from features.windows import column


def q(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def codes(expr: str, values: Sequence[str]) -> str:
    """Integer code of an enum column: position in ``values`` (0-based), else NULL."""
    whens = " ".join(f"WHEN {q(v)} THEN {i}" for i, v in enumerate(values))
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


def ratio(num: str, den: str) -> str:
    """``num / den``, NULL when the denominator is not positive."""
    return f"(CASE WHEN ({den}) > 0 THEN ({num}) / ({den}) END)"


def select(exprs: dict[str, str]) -> str:
    """``expr AS name, ...`` of an ordered mapping name -> SQL expression."""
    return ",\n    ".join(f"{e} AS {n}" for n, e in exprs.items())


def monthly(exprs: dict[str, str]) -> str:
    """Expressions over the window relation ``win`` (exactly one row per spine row).

    Returns:
        A query with ``customer_id``, ``as_of`` and one column per ``exprs`` key.
    """
    return f"SELECT customer_id, as_of,\n    {select(exprs)}\nFROM win"
