"""Window aggregates over whole calendar months, per customer and as-of, in numpy.

The monthly families (income, spend, business, liquidity) aggregate a customer's
monthly figures over the last k whole calendar months before each as-of's month.
The months of one customer form a short dense series (at most 13 months are ever
read), so instead of a SQL window function per feature (DuckDB evaluates framed
windows at about 2 µs per row and frame) every window is a handful of vectorised
numpy operations over a ``customers × months`` array, taken at the as-of months.

A family names a window with :func:`column` (``<input>__<agg>_<lo>_<hi>``: the
aggregate ``agg`` of the monthly column ``input`` over the months ``lo`` … ``hi``
before the as-of's month, 1 = the month before); the build finds the names in the
family's SQL (:func:`referenced`), computes them here, and hands them back to
DuckDB as the relation ``<source>_win(customer_id, as_of, <window columns>)``.

Aggregates (``NULL`` = a month without a value; transactions fill absent months
with 0, balances leave them ``NULL``):

``sum``, ``avg``, ``min``, ``max``, ``stddev_pop``
    as in SQL over the window's months, ignoring ``NULL``; ``NULL`` when every
    month is ``NULL``. Sums run in month order (oldest first); ``stddev_pop``
    uses Welford's update, so a constant series gives exactly 0.
``months``
    months with a value > 0.
``since``
    months since the latest month with a value > 0 (``lo`` … ``hi``), ``NULL``
    when there is none.
``streak``
    consecutive months with a value > 0, counted back from month ``lo``.

Every window lies inside the grid (``LOOKBACK_MONTHS`` before the first as-of's
month), so a window of k months always sees k calendar months.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa

from features.schema import AS_OF, JOIN_KEY

AGGS = ("sum", "avg", "min", "max", "stddev_pop", "months", "since", "streak")
_NAME = re.compile(r"\b([a-z][a-z0-9_]*?)__(" + "|".join(AGGS) + r")_(\d+)_(\d+)\b")


@dataclass(frozen=True)
class Window:
    """One window aggregate: ``agg`` of monthly column ``col`` over months ``lo`` … ``hi`` before T's month."""

    col: str
    agg: str
    lo: int
    hi: int

    @property
    def name(self) -> str:
        return f"{self.col}__{self.agg}_{self.lo}_{self.hi}"


def column(agg: str, col: str, lo: int, hi: int) -> str:
    """The name of a window column (see the module docstring).

    Raises:
        ValueError: unknown aggregate or an empty/invalid month range.
    """
    if agg not in AGGS:
        raise ValueError(f"window aggregate {agg!r}: must be one of {AGGS}")
    if not 1 <= lo <= hi:
        raise ValueError(f"window months {lo}..{hi}: need 1 <= lo <= hi (month 0 is the as-of's own month)")
    w = Window(col, agg, lo, hi)
    if not _NAME.fullmatch(w.name):
        raise ValueError(f"window column {col!r}: lower-case letters, digits and single underscores only")
    return w.name


def referenced(sql: str) -> list[Window]:
    """The window columns named in a family's SQL, in first-appearance order."""
    out: dict[str, Window] = {}
    for m in _NAME.finditer(sql):
        w = Window(m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))
        out.setdefault(w.name, w)
    return list(out.values())


def _month_index(d: date) -> int:
    return d.year * 12 + d.month


class MonthlySeries:
    """One monthly source (customer × month figures) held as numpy, with its windows.

    Args:
        con: DuckDB connection.
        query: SQL with columns ``customer_id``, ``mi`` (year * 12 + month) and one
            numeric column per monthly figure; at most one row per customer and month.
        first_mi: month index of the grid's first month (rows before it are ignored).
        as_of: the as-of dates; windows end the month before each one's month.
        fill: value of a month without a row (0 for transactions, NaN = unknown).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, query: str, first_mi: int, as_of: list[date],
                 fill: float) -> None:
        tbl = con.sql(query).to_arrow_table()
        ids = tbl.column(JOIN_KEY).combine_chunks().dictionary_encode()
        self.customers: pa.Array = ids.dictionary
        self._ci = np.asarray(ids.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        self._g = tbl.column("mi").to_numpy().astype(np.int64) - first_mi
        keep = self._g >= 0
        if not keep.all():
            self._ci, self._g = self._ci[keep], self._g[keep]
        self._keep = None if keep.all() else keep
        self._raw = {n: tbl.column(n) for n in tbl.column_names if n not in (JOIN_KEY, "mi")}
        self._dense: dict[str, np.ndarray] = {}
        self.as_of = list(as_of)
        self._pos = np.array([_month_index(d) - first_mi for d in as_of], dtype=np.int64)
        if len(self._pos) and self._pos.min() < 13:
            raise ValueError("as-of month too close to the grid start (windows reach back 12 months)")
        self.months = int(self._pos.max()) + 1 if len(self._pos) else 0
        self.fill = fill

    @property
    def columns(self) -> list[str]:
        return list(self._raw)

    def __len__(self) -> int:
        return len(self.customers)

    def dense(self, col: str) -> np.ndarray:
        """``customers × months`` array of one figure (absent months = ``fill``; NULL = NaN)."""
        if col not in self._dense:
            if col not in self._raw:
                raise KeyError(f"monthly column {col!r}: not one of {self.columns}")
            arr = self._raw[col].combine_chunks()
            vals = arr.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
            if self._keep is not None:
                vals = vals[self._keep]
            x = np.full((len(self), self.months), self.fill, dtype=np.float64)
            inside = self._g < self.months
            x[self._ci[inside], self._g[inside]] = vals[inside]
            self._dense[col] = x
        return self._dense[col]

    def drop_dense(self) -> None:
        """Free the dense arrays (they are rebuilt on demand)."""
        self._dense.clear()

    def window(self, w: Window) -> np.ndarray:
        """``customers × as-of`` values of one window (NaN = NULL)."""
        x = self.dense(w.col)
        offs = range(w.hi, w.lo - 1, -1)  # oldest month first
        take = [x[:, self._pos - o] for o in offs]
        if w.agg in ("sum", "avg", "stddev_pop"):
            n = np.zeros(take[0].shape)
            s = np.zeros(take[0].shape)
            mean = np.zeros(take[0].shape)
            m2 = np.zeros(take[0].shape)
            for v in take:
                ok = ~np.isnan(v)
                vv = np.where(ok, v, 0.0)
                n += ok
                s += vv
                if w.agg == "stddev_pop":
                    safe = np.maximum(n, 1)
                    d = np.where(ok, vv - mean, 0.0)
                    mean += d / safe
                    m2 += np.where(ok, d * (vv - mean), 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                if w.agg == "sum":
                    out = s
                elif w.agg == "avg":
                    out = s / n
                else:
                    out = np.sqrt(m2 / n)
            return np.where(n > 0, out, np.nan)
        if w.agg in ("min", "max"):
            f = np.fmin if w.agg == "min" else np.fmax
            out = take[0].copy()
            for v in take[1:]:
                out = f(out, v)
            return out
        if w.agg == "months":
            return np.sum([v > 0 for v in take], axis=0, dtype=np.float64)
        if w.agg == "since":
            out = np.full(take[0].shape, np.nan)
            for o, v in zip(offs, take, strict=True):  # later (smaller) offsets overwrite
                out[v > 0] = o
            return out
        # streak: newest month first
        alive = np.ones(take[0].shape, dtype=bool)
        out = np.zeros(take[0].shape)
        for v in reversed(take):
            alive &= v > 0
            out += alive
        return out

    def table(self, windows: list[Window]) -> pa.Table:
        """``customer_id``, ``as_of`` and one column per window, one row per customer and as-of."""
        n, a = len(self), len(self.as_of)
        idx = np.repeat(np.arange(n, dtype=np.int32), a)
        cols: dict[str, pa.Array] = {
            JOIN_KEY: pa.DictionaryArray.from_arrays(pa.array(idx), self.customers),
            AS_OF: pa.array(np.tile(np.array(self.as_of, dtype="datetime64[us]"), n)),
        }
        for w in windows:
            v = self.window(w).ravel()
            nan = np.isnan(v)
            cols[w.name] = pa.array(v, mask=nan if nan.any() else None)
        return pa.table(cols)
