"""Month windows in numpy (features.windows) against a plain per-customer reference."""

from __future__ import annotations

import math
import random
import statistics
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from features.families._sql import win
from features.windows import AGGS, MonthlySeries, Spine, Window, column, referenced, window_table

FIRST = date(2024, 1, 1)
FIRST_MI = FIRST.year * 12 + FIRST.month


def _mi(d: date) -> int:
    return d.year * 12 + d.month


def _bank(seed: int, fill_null: bool) -> tuple[duckdb.DuckDBPyConnection, dict[tuple[str, int], float | None]]:
    """Sparse monthly rows: some months absent, some values NULL or 0."""
    rng = random.Random(seed)
    rows: dict[tuple[str, int], float | None] = {}
    for c in range(12):
        for g in range(-2, 30):  # a few rows before the grid start are ignored
            r = rng.random()
            if r < 0.3:
                continue  # no row for this month
            if r < 0.4 and fill_null:
                rows[f"c{c}", FIRST_MI + g] = None
            elif r < 0.55:
                rows[f"c{c}", FIRST_MI + g] = 0.0
            else:
                rows[f"c{c}", FIRST_MI + g] = round(rng.uniform(-50 if fill_null else 0.01, 5000), 2)
    con = duckdb.connect()
    con.execute("CREATE TABLE src(customer_id VARCHAR, mi BIGINT, x DOUBLE)")
    con.executemany("INSERT INTO src VALUES (?, ?, ?)", [(c, m, v) for (c, m), v in rows.items()])
    return con, rows


def _reference(vals: list[float | None], agg: str, lo: int) -> float | None:
    """``vals`` oldest first; ``lo`` is the offset of the newest month."""
    known = [v for v in vals if v is not None]
    if agg in ("sum", "avg", "min", "max", "stddev_pop", "median") and not known:
        return None
    if agg == "median":
        return statistics.median(known)
    if agg == "sum":
        return math.fsum(known)
    if agg == "avg":
        return math.fsum(known) / len(known)
    if agg == "min":
        return min(known)
    if agg == "max":
        return max(known)
    if agg == "stddev_pop":
        m = math.fsum(known) / len(known)
        return math.sqrt(math.fsum((v - m) ** 2 for v in known) / len(known))
    pos = [v is not None and v > 0 for v in vals]
    if agg == "months":
        return float(sum(pos))
    if agg == "since":
        newest_first = list(reversed(pos))
        return float(lo + newest_first.index(True)) if any(pos) else None
    streak = 0
    for p in reversed(pos):
        if not p:
            break
        streak += 1
    return float(streak)


@pytest.mark.parametrize("fill_null", [False, True])
@pytest.mark.parametrize(
    "as_of",
    [
        [date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)],  # consecutive months
        [date(2025, 6, 1), date(2025, 2, 15), date(2026, 3, 1), date(2025, 6, 20)],  # any order, mid-month, repeats
    ],
)
def test_every_window_matches_a_plain_reference(fill_null: bool, as_of: list[date]) -> None:
    con, rows = _bank(3, fill_null)
    fill = float("nan") if fill_null else 0.0
    # c12 has no monthly rows at all; c5 opens on 2025-03-10 (not known before); c13 has rows but is no customer
    con.execute(f"INSERT INTO src VALUES ('c13', {FIRST_MI + 20}, 7.0)")
    ids = [f"c{c}" for c in range(13)]
    opened = np.array(["2020-01-01"] * 13, dtype="datetime64[us]")
    opened[5] = np.datetime64("2025-03-10")
    spine = Spine(pa.array(ids), opened, as_of, FIRST_MI)
    s = MonthlySeries.from_sql(con, "SELECT * FROM src", spine, fill)
    wins = [Window("x", agg, lo, hi) for agg in AGGS for lo, hi in ((1, 1), (1, 3), (4, 6), (2, 4), (1, 12), (12, 12))]
    tbl = spine.table({w.name: s.window(w) for w in wins}).to_pylist()
    want_rows = sorted((c, t) for t in as_of for c in ids if c != "c5" or t > date(2025, 3, 10))
    assert sorted((r["customer_id"], r["as_of"].date()) for r in tbl) == want_rows
    for r in tbl:
        t = r["as_of"].date()
        for w in wins:
            months = [_mi(t) - o for o in range(w.hi, w.lo - 1, -1)]  # oldest first
            vals = []
            for m in months:
                v = rows.get((r["customer_id"], m), "absent")
                vals.append(None if v is None or (v == "absent" and fill_null) else (0.0 if v == "absent" else v))
            want = _reference(vals, w.agg, w.lo)
            got = r[w.name]
            if want is None:
                assert got is None, (r["customer_id"], t, w)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=1e-9), (r["customer_id"], t, w)


def test_constant_series_has_zero_spread() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE src AS SELECT 'c' AS customer_id, range AS mi, 6100.37 AS x "
        f"FROM range({FIRST_MI}, {FIRST_MI + 20})"
    )
    spine = Spine(pa.array(["c"]), np.array(["2020-01-01"], dtype="datetime64[us]"), [date(2025, 6, 1)], FIRST_MI)
    s = MonthlySeries.from_sql(con, "SELECT * FROM src", spine, 0.0)
    assert s.window(Window("x", "stddev_pop", 1, 6))[0, 0] == 0.0  # not 1e-13: ratios stay exact


def test_window_names_round_trip_through_sql() -> None:
    sql = f"SELECT {win('sum', 'payroll_amt', 3, 3)} / 3, {win('streak', 'payroll_amt', 12)} FROM win"
    assert referenced(sql) == [Window("payroll_amt", "sum", 4, 6), Window("payroll_amt", "streak", 1, 12)]
    with pytest.raises(ValueError, match="mode"):
        column("mode", "x", 1, 3)
    with pytest.raises(ValueError, match="as-of's own month"):
        column("sum", "x", 0, 3)  # the as-of's own month is never in a window
    with pytest.raises(ValueError, match="single underscores"):
        column("sum", "Payroll", 1, 3)  # a name the build could not find again in the SQL


def test_windows_of_customer_partitions_are_the_windows_of_the_whole() -> None:
    # the Spark build computes each bucket of customers apart, from Arrow tables holding only its rows
    con, _ = _bank(5, fill_null=True)
    src = con.sql("SELECT * FROM src").to_arrow_table()
    ids = [f"c{c}" for c in range(12)]
    customers = pa.table({"customer_id": ids, "open_date": pa.array(np.full(12, np.datetime64("2020-01-01", "us")))})
    as_of = [date(2025, 3, 1), date(2025, 7, 15)]
    routed = {"x": [Window("x", agg, 1, 6) for agg in AGGS]}

    def windows(part: list[str]) -> pa.Table:
        keep = pa.array(part)
        spine = Spine.from_arrow(customers.filter(pc.is_in(customers["customer_id"], keep)), as_of, FIRST_MI)
        series = MonthlySeries(src.filter(pc.is_in(src["customer_id"], keep)), spine, float("nan"))
        t = window_table(spine, {"x": series}, routed)
        return t.set_column(0, "customer_id", t["customer_id"].cast(pa.string()))

    whole = windows(ids).sort_by([("customer_id", "ascending"), ("as_of", "ascending")])
    parts = pa.concat_tables([windows(ids[:5]), windows(ids[5:9]), windows(ids[9:])])
    assert parts.sort_by([("customer_id", "ascending"), ("as_of", "ascending")]).equals(whole)
    assert whole.num_rows == 24 and whole.column("x__avg_1_6").null_count < 24
