"""Window aggregates over whole calendar months, per customer and as-of, in numpy.

The monthly families (income, spend, business, liquidity) aggregate a customer's
monthly figures over the last k whole calendar months before each as-of's month.
The months of one customer form a short dense series (at most 13 months are ever
read), so instead of a SQL window function per feature (a framed window per row and
frame; docs/decisions/009b-month-windows-in-numpy.md) every window is a handful of
vectorised numpy operations over a ``customers × months`` array, taken at the as-of months.

A family names a window with :func:`column` (``<input>__<agg>_<lo>_<hi>``: the
aggregate ``agg`` of the monthly column ``input`` over the months ``lo`` … ``hi``
before the as-of's month, 1 = the month before); the build finds the names in the
family's SQL (:func:`referenced`), computes them here, and hands them back to
DuckDB as the relation ``win(customer_id, as_of, <window columns>)`` (one row per spine row).

Aggregates (``NULL`` = a month without a value; transactions fill absent months
with 0, balances leave them ``NULL``):

``sum``, ``avg``, ``min``, ``max``, ``stddev_pop``, ``median``
    as in SQL over the window's months, ignoring ``NULL``; ``NULL`` when every
    month is ``NULL`` (the median of an even count is ``(lo + hi) / 2`` of the middle
    two, as DuckDB's). Sums run in month order (oldest first); ``stddev_pop``
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
import pyarrow.compute as pc

from features.schema import AS_OF, JOIN_KEY

AGGS = ("sum", "avg", "min", "max", "stddev_pop", "median", "months", "since", "streak")
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


class Spine:
    """The (customer, as-of) rows of the feature tables: customers known at T (``open_date < T``).

    Args:
        customers: every customer id (unique).
        open_date: their ``open_date`` (``datetime64[us]``; NaT is never known).
        as_of: the as-of dates; windows end the month before each one's month.
        first_mi: month index (year * 12 + month) of the grid's first month; every
            as-of month is at least 13 months later.
    """

    def __init__(self, customers: pa.Array, open_date: np.ndarray, as_of: list[date], first_mi: int) -> None:
        self.customers = customers
        self.as_of = list(as_of)
        self.first_mi = first_mi
        self.pos = np.array([_month_index(d) - first_mi for d in as_of], dtype=np.int64)
        if len(self.pos) and self.pos.min() < 13:
            raise ValueError("as-of month too close to the grid start (windows reach back 12 months)")
        self.months = int(self.pos.max()) + 1 if len(self.pos) else 0
        t = np.array(self.as_of, dtype="datetime64[us]")
        self.known = open_date[None, :] < t[:, None]  # as-of × customer

    @classmethod
    def from_sql(cls, con: duckdb.DuckDBPyConnection, query: str, as_of: list[date], first_mi: int) -> Spine:
        """From a query with columns ``customer_id`` and ``open_date``."""
        return cls.from_arrow(con.sql(query).to_arrow_table(), as_of, first_mi)

    @classmethod
    def from_arrow(cls, tbl: pa.Table, as_of: list[date], first_mi: int) -> Spine:
        """From a table with columns ``customer_id`` and ``open_date`` (e.g. one partition of customers)."""
        opened = tbl.column("open_date").combine_chunks().cast(pa.timestamp("us"))
        return cls(
            tbl.column(JOIN_KEY).combine_chunks(),
            opened.to_numpy(zero_copy_only=False).astype("datetime64[us]"),
            as_of,
            first_mi,
        )

    def __len__(self) -> int:
        return len(self.customers)

    def table(self, columns: dict[str, np.ndarray]) -> pa.Table:
        """``customer_id``, ``as_of`` and the given ``as-of × customers`` arrays (NaN = NULL), spine rows only."""
        a_idx, c_idx = np.nonzero(self.known)  # as-of major, customers in order
        out: dict[str, pa.Array] = {
            JOIN_KEY: pa.DictionaryArray.from_arrays(pa.array(c_idx.astype(np.int32)), self.customers),
            AS_OF: pa.array(np.array(self.as_of, dtype="datetime64[us]")[a_idx]),
        }
        for name, arr in columns.items():
            v = arr[self.known]
            nan = np.isnan(v)
            out[name] = pa.array(v, mask=nan if nan.any() else None)
        return pa.table(out)


class MonthlySeries:
    """One monthly source (customer × month figures) held as numpy, with its windows.

    Args:
        tbl: columns ``customer_id``, ``mi`` (year * 12 + month) and one numeric column per
            monthly figure; at most one row per customer and month. Rows before the grid
            start or of customers outside the spine are ignored, so a table holding more
            customers than ``spine`` (or a partition of them) gives the spine's windows.
        spine: the customers and as-of dates.
        fill: value of a month without a row (0 for transactions, NaN = unknown).
    """

    def __init__(self, tbl: pa.Table, spine: Spine, fill: float) -> None:
        ci = pc.index_in(tbl.column(JOIN_KEY), value_set=spine.customers)
        g = tbl.column("mi").to_numpy().astype(np.int64) - spine.first_mi
        keep = (g >= 0) & (g < spine.months) & ci.is_valid().to_numpy(zero_copy_only=False)
        self._keep = None if keep.all() else keep
        self._ci = ci.to_numpy(zero_copy_only=False)
        if self._keep is not None:
            self._ci, g = self._ci[keep], g[keep]
        self._ci = self._ci.astype(np.int64)
        self._g = g
        self._raw = {n: tbl.column(n) for n in tbl.column_names if n not in (JOIN_KEY, "mi")}
        self._dense: dict[str, np.ndarray] = {}
        self._nan: dict[str, bool] = {}  # the dense column has NULLs (NaN)
        self.spine = spine
        self._pos = spine.pos
        self.months = spine.months
        self.fill = fill

    @classmethod
    def from_sql(cls, con: duckdb.DuckDBPyConnection, query: str, spine: Spine, fill: float) -> MonthlySeries:
        """From a DuckDB query with the columns of ``tbl``."""
        return cls(con.sql(query).to_arrow_table(), spine, fill)

    @property
    def columns(self) -> list[str]:
        return list(self._raw)

    def __len__(self) -> int:
        return len(self.spine)

    def dense(self, col: str) -> np.ndarray:
        """``months × customers`` array of one figure (absent months = ``fill``; NULL = NaN)."""
        if col not in self._dense:
            if col not in self._raw:
                raise KeyError(f"monthly column {col!r}: not one of {self.columns}")
            arr = self._raw[col].combine_chunks()
            vals = arr.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
            if self._keep is not None:
                vals = vals[self._keep]
            x = np.full((self.months, len(self)), self.fill, dtype=np.float64)
            x[self._g, self._ci] = vals
            self._dense[col] = x
            self._nan[col] = bool(np.isnan(self.fill) or np.isnan(vals).any())
        return self._dense[col]

    def drop_dense(self) -> None:
        """Free the dense arrays (they are rebuilt on demand)."""
        self._dense.clear()

    def _rows(self, x: np.ndarray, off: int) -> np.ndarray:
        """The months ``off`` months before each as-of's month (a view when the as-ofs are consecutive months)."""
        p = self._pos - off
        if len(p) and (np.diff(p) == 1).all():
            return x[p[0] : p[-1] + 1]
        return x[p]

    def window(self, w: Window) -> np.ndarray:
        """``as-of × customers`` values of one window (NaN = NULL)."""
        x = self.dense(w.col)
        offs = range(w.hi, w.lo - 1, -1)  # oldest month first
        take = [self._rows(x, o) for o in offs]
        shape = take[0].shape
        if w.agg in ("sum", "avg", "stddev_pop"):
            if w.agg == "sum" and not self._nan[w.col]:
                out = take[0].copy()
                for v in take[1:]:
                    out += v
                return out
            n = np.zeros(shape)
            s = np.zeros(shape)
            mean = np.zeros(shape)
            m2 = np.zeros(shape)
            for v in take:
                ok = ~np.isnan(v)
                vv = np.where(ok, v, 0.0)
                n += ok
                s += vv
                if w.agg == "stddev_pop":  # Welford, as DuckDB's stddev_pop
                    d = np.where(ok, vv - mean, 0.0)
                    mean += d / np.maximum(n, 1)
                    m2 += np.where(ok, d * (vv - mean), 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                if w.agg == "sum":
                    out = s
                elif w.agg == "avg":
                    out = s / n
                else:
                    out = np.sqrt(m2 / n)
            return np.where(n > 0, out, np.nan)
        if w.agg == "median":
            return _median(np.stack(take))
        if w.agg in ("min", "max"):
            f = np.fmin if w.agg == "min" else np.fmax
            out = take[0].copy()
            for v in take[1:]:
                f(out, v, out=out)
            return out
        if w.agg == "months":
            out = np.zeros(shape)
            for v in take:
                out += v > 0
            return out
        if w.agg == "since":
            out = np.full(shape, np.nan)
            for o, v in zip(offs, take, strict=True):  # later (smaller) offsets overwrite
                out[v > 0] = o
            return out
        # streak: newest month first
        alive = np.ones(shape, dtype=bool)
        out = np.zeros(shape)
        for v in reversed(take):
            alive &= v > 0
            out += alive
        return out


def _median(x: np.ndarray) -> np.ndarray:
    """The median over axis 0 ignoring NaN, computed as DuckDB's ``median`` (NaN when all are NaN)."""
    v = np.sort(x, axis=0)  # NaN sorts last
    n = (~np.isnan(x)).sum(axis=0)
    lo = np.take_along_axis(v, (np.maximum(n - 1, 0) // 2)[None], axis=0)[0]
    hi = np.take_along_axis(v, np.minimum(n // 2, len(v) - 1)[None], axis=0)[0]
    out = (lo + hi) / 2
    out[n == 0] = np.nan
    return out


def window_table(spine: Spine, series: dict[str, MonthlySeries], routed: dict[str, list[Window]]) -> pa.Table:
    """The relation ``win`` of one spine: every window of ``routed`` (source -> windows), each
    computed from that source's :class:`MonthlySeries` (built on ``spine``)."""
    return spine.table({w.name: series[src].window(w) for src, wins in routed.items() for w in wins})
