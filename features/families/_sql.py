"""Small SQL builders shared by the families (pure string functions)."""

from __future__ import annotations

from collections.abc import Sequence


def q(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def codes(expr: str, values: Sequence[str]) -> str:
    """Integer code of an enum column: position in ``values`` (0-based), else NULL."""
    whens = " ".join(f"WHEN {q(v)} THEN {i}" for i, v in enumerate(values))
    return f"(CASE {expr} {whens} END)"


def win(agg: str, expr: str, months: int, skip: int = 0) -> str:
    """A window aggregate over the ``months`` whole months before the anchor month.

    Reads the dense monthly relation (one row per customer and month, ordered by ``m``):
    months ``[m - months - skip, m - 1 - skip]``. The anchor month itself (which may
    hold records dated on or after the as-of) is never in the frame.
    """
    lo, hi = months + skip, 1 + skip
    return (f"{agg}({expr}) OVER (PARTITION BY customer_id ORDER BY m "
            f"ROWS BETWEEN {lo} PRECEDING AND {hi} PRECEDING)")


def ratio(num: str, den: str) -> str:
    """``num / den``, NULL when the denominator is not positive."""
    return f"(CASE WHEN ({den}) > 0 THEN ({num}) / ({den}) END)"


def anchors(inner: str, names: Sequence[str]) -> str:
    """Keep only the rows of anchor months, joined to their as-of dates.

    ``inner`` is a windowed query over a dense monthly relation with columns
    ``customer_id``, ``m`` and ``names``; the result has ``customer_id``, ``as_of``
    and ``names``. Windows are computed before this filter, so they see every month.
    """
    cols = ", ".join(f"w.{n}" for n in names)
    return (f"SELECT w.customer_id, a.as_of, {cols} FROM ({inner}) w "
            f"JOIN asofs a ON a.m = w.m")


def select(exprs: dict[str, str]) -> str:
    """``expr AS name, ...`` of an ordered mapping name -> SQL expression."""
    return ",\n    ".join(f"{e} AS {n}" for n, e in exprs.items())


def monthly(exprs: dict[str, str], source: str = "txn_month") -> str:
    """Window expressions over a dense monthly relation, kept at anchor months.

    Returns:
        A query with ``customer_id``, ``as_of`` and one column per ``exprs`` key.
    """
    inner = f"SELECT customer_id, m,\n    {select(exprs)}\nFROM {source}"
    return anchors(inner, list(exprs))
