"""Value tiers (客户价值分层): a contribution score (综合贡献度) per customer and month, and the tier
it puts the customer in, from the 12 months before the month rather than a day's balance.

The score's parts, each known at T (records dated before T, balance months that have ended):

``deposit``        the median of the 12 monthly average daily balances (月日均) of deposit accounts
                   (every account type but ``loan`` and ``credit_card``): one month's spike moves
                   the median by at most one month's rank, not the whole figure;
``loan_interest``  each loan's amount × ``tiers.loan_rate`` × the share of the 12 months it was
                   active (granted before T, ended by ``end_date`` or by its term as the bank's
                   loan mode says, ``features/build.py: detect_loan_mode``);
``products``       accounts by type, services and loan products held at T (the holdings family);
``activity``       money-out transactions in the 12 months (interest and fees are not the customer's);
``tenure``         months since ``open_date`` (the demo family).

Each part is ranked among the customers the bank knew at T (percentile 0–1; a customer without
records ranks lowest), the score is 100 × the weighted mean of the ranks (``configs/tiers.yaml``;
a part the bank cannot compute, e.g. deposits without the optional ``balances`` table, drops
out and its weight with it), and the tier is the first of ``tiers.levels`` whose ``min_score``
the score reaches and whose ``max_branch_share`` (share of the branch's customers in that tier
or above, best scores first) still has room.

The table is the feature view ``tier`` (``Workspace.feature_table("tier")``), built by
``nbp features`` after the families it reads, read by Feast like any other view but not by the
product models (``features/repo/definitions.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import tables as feature_tables
from features.families._sql import add_months, days_between
from features.schema import EVENT_TS, JOIN_KEY, Feature
from features.windows import MonthlySeries, Spine, Window
from nbp.config import Config, TierLevel
from nbp.sqltext import ident, lit
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

Monthly = Callable[[str, Sequence[date], Sequence[str]], pa.Table]

FAMILY = "tier"
REQUIRES = ("holdings", "demo")  # feature tables read (built first)


def _f(name: str, dtype: str, zh: str, en: str) -> Feature:
    return Feature(name, FAMILY, dtype, zh, en)


FEATURES: list[Feature] = [
    _f("tier_score", "float", "综合贡献度(0–100)", "contribution score (0-100)"),
    _f("tier_level", "int", "客户价值层级(0为最高层)", "value tier (0 = the highest)"),
    _f(
        "tier_deposit_median_12m",
        "float",
        "近12个月存款月日均的中位数",
        "median monthly average daily deposit balance, last 12 months",
    ),
    _f("tier_loan_interest_12m", "float", "近12个月估算贷款利息收入", "estimated loan interest earned, last 12 months"),
    _f("tier_products_held_count", "int", "持有产品与服务数", "accounts by type, services and loan products held"),
    _f("tier_transactions_12m", "int", "近12个月支出交易笔数", "money-out transactions, last 12 months"),
    _f("tier_deposit_balance_1m", "float", "上月存款月日均", "average daily deposit balance, last month"),
    _f("tier_turnover_1m", "float", "上月交易流水(收入+支出)", "money in and out, last month"),
]
NAMES: list[str] = [f.name for f in FEATURES]

# The parts of the score: config weight name -> column of the parts relation.
PARTS: dict[str, str] = {
    "deposit": "tier_deposit_median_12m",
    "loan_interest": "tier_loan_interest_12m",
    "products": "tier_products_held_count",
    "activity": "tier_transactions_12m",
    "tenure": "tenure",
}


def levels(cfg: Config) -> list[TierLevel]:
    """The tiers, highest first: ``tier_level`` is an index into this list."""
    return list(cfg.tiers.levels)


def level_label(cfg: Config, code: float | int | None, lang: str = "zh") -> str | None:
    """The tier's name (``zh`` or ``en``) of a ``tier_level`` code; None when unknown."""
    if code is None or pd.isna(code) or not 0 <= int(code) < len(cfg.tiers.levels):
        return None
    lv = cfg.tiers.levels[int(code)]
    return lv.zh if lang == "zh" else lv.en


def _sub_months(d: date, n: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 - n, 12)
    return date(y, m + 1, 1)


def _parts_sql(tables: frozenset[str], ws: Workspace) -> str:
    """One row per spine row (customer known at T, from the holdings table) with every part."""
    hold, demo = (lit(ws.feature_glob(f)) for f in REQUIRES)
    from features.catalog import family_features

    held = [f.name for f in family_features("holdings") if f.name.endswith("_held")]
    held = [n for n in held if n.startswith("holdings_account_")]
    loans_active = [
        f.name
        for f in family_features("holdings")
        if f.name.startswith("holdings_loans_active_")
        and f.name.endswith("_count")
        and f.name != "holdings_loans_active_count"
    ]
    products = " + ".join(
        [*(f"coalesce(h.{ident(n)}, 0)" for n in held), "coalesce(h.holdings_services_count, 0)"]
        + [f"CASE WHEN coalesce(h.{ident(n)}, 0) > 0 THEN 1 ELSE 0 END" for n in loans_active]
    )
    deposit = dep_1m = "NULL::DOUBLE"
    joins = f"LEFT JOIN tier_win w ON w.customer_id = h.customer_id AND w.as_of = h.{EVENT_TS}\n"
    if {"balances", "accounts"} <= tables:
        deposit, dep_1m = "w.dep_median", "w.dep_1m"
    txn, turnover = "0", "0.0"
    if "transactions" in tables:
        txn, turnover = "coalesce(CAST(w.txn_12m AS BIGINT), 0)", "coalesce(w.turnover_1m, 0.0)"
    interest = "0.0"
    if "loans" in tables:
        interest = "coalesce(l.interest, 0.0)"
        joins += f"LEFT JOIN intr l ON l.customer_id = h.customer_id AND l.as_of = h.{EVENT_TS}\n"
    return f"""
SELECT h.customer_id, h.{EVENT_TS} AS as_of,
       {deposit} AS tier_deposit_median_12m,
       {interest} AS tier_loan_interest_12m,
       CAST({products} AS BIGINT) AS tier_products_held_count,
       CAST({txn} AS BIGINT) AS tier_transactions_12m,
       {dep_1m} AS tier_deposit_balance_1m,
       {turnover} AS tier_turnover_1m,
       d.demo_tenure_months AS tenure
FROM read_parquet({hold}) h
JOIN read_parquet({demo}) d ON d.customer_id = h.customer_id AND d.{EVENT_TS} = h.{EVENT_TS}
{joins}WHERE h.{EVENT_TS} IN (SELECT as_of FROM tier_asofs)
"""


def _windows(con: duckdb.DuckDBPyConnection, tables: frozenset[str], dates: Sequence[date], monthly: Monthly) -> None:
    """Register ``tier_win`` (one row per customer known at T): the deposit median and last month,
    the money-out transactions of the 12 months and last month's turnover, windows in numpy
    (:mod:`features.windows`) over the build's monthly sources (``monthly``: source -> rows)."""
    first = _sub_months(min(dates), 13)  # the grid of features/build.py: 12 months plus one
    customers = "SELECT customer_id, open_date FROM customers"
    spine = Spine.from_sql(con, customers, list(dates), first.year * 12 + first.month)
    cols: dict[str, np.ndarray] = {}
    if {"balances", "accounts"} <= tables:
        dep = MonthlySeries(monthly("bal", dates, ["deposit_adb"]), spine, float("nan"))
        cols["dep_median"] = dep.window(Window("deposit_adb", "median", 1, 12))
        cols["dep_1m"] = dep.window(Window("deposit_adb", "max", 1, 1))
    if "transactions" in tables:
        act = MonthlySeries(monthly("txn", dates, ["activity_n", "turnover_amt"]), spine, 0.0)
        cols["txn_12m"] = act.window(Window("activity_n", "sum", 1, 12))
        cols["turnover_1m"] = act.window(Window("turnover_amt", "sum", 1, 1))
    con.register("tier_win", spine.table(cols))


def _setup(
    con: duckdb.DuckDBPyConnection,
    tables: frozenset[str],
    dates: Sequence[date],
    cfg: Config,
    loan_mode: str,
    monthly: Monthly,
) -> None:
    """Temporary relations: the as-ofs, the monthly windows (``tier_win``) and loan interest per (customer, T)."""
    values = ", ".join(f"(TIMESTAMP {lit(d.isoformat())})" for d in dates)
    con.execute(f"CREATE OR REPLACE TEMP TABLE tier_asofs AS SELECT col0 AS as_of FROM (VALUES {values})")
    _windows(con, tables, dates, monthly)
    if "loans" in tables:
        end = (
            "coalesce(l.end_date, x.as_of)"
            if loan_mode == "end_date"
            else f"coalesce({add_months('l.grant_date', 'CAST(l.term_months AS INTEGER)')}, x.as_of)"
        )
        start = "greatest(l.grant_date, x.as_of - INTERVAL 12 MONTH)"
        days = f"greatest({days_between(start, f'least({end}, x.as_of)')}, 0)"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE intr AS
SELECT l.customer_id, x.as_of,
       sum(coalesce(l.amount, 0) * {float(cfg.tiers.loan_rate)!r} * {days} / 365.0) AS interest
FROM loans l JOIN tier_asofs x ON l.grant_date < x.as_of
GROUP BY ALL"""
        )


def _percent_rank(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """SQL's ``percent_rank() OVER (PARTITION BY g ORDER BY x)`` for rows sorted by their group
    ``g`` (``starts``: each group's first row): ``(rank - 1) / (n - 1)``, ties sharing the lowest rank."""
    out = np.zeros(len(x))
    bounds = [*starts.tolist(), len(x)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        v = x[a:b]
        if b - a > 1:
            out[a:b] = np.searchsorted(np.sort(v), v, side="left") / float(b - a - 1)
    return out


def _score(cfg: Config, available: dict[str, bool], parts: dict[str, np.ndarray], starts: np.ndarray) -> np.ndarray:
    """``tier_score``: 100 × the weighted mean of the parts' percentile ranks within each as-of
    (a part's missing value ranks as 0), summed in the order of the config's weights."""
    w = cfg.tiers.weights.model_dump()
    used = {k: v for k, v in w.items() if v > 0 and available[k]}
    total = sum(used.values()) or 1.0
    acc: np.ndarray | None = None
    for k, v in used.items():
        term = (v / total) * _percent_rank(np.nan_to_num(parts[PARTS[k]], nan=0.0), starts)
        acc = term if acc is None else acc + term
    return 100.0 * (acc if acc is not None else np.zeros(len(next(iter(parts.values())))))


def _levels(cfg: Config, score: np.ndarray, as_of: np.ndarray, branch: np.ndarray, customer: np.ndarray) -> np.ndarray:
    """``tier_level``: the first tier whose score floor the row reaches and whose branch quota
    (the branch's best scores first, ties by customer id) still has room."""
    order = np.lexsort((customer, -score, branch, as_of))
    key = np.stack([as_of[order], branch[order]])
    new = np.r_[True, (key[:, 1:] != key[:, :-1]).any(axis=0)]
    start = np.flatnonzero(new)
    size = np.diff(np.r_[start, len(order)])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(start, size) + 1
    n = np.empty(len(order), dtype=np.int64)
    n[order] = np.repeat(size, size)
    lvls = levels(cfg)
    out = np.full(len(score), len(lvls) - 1, dtype=np.int64)
    undecided = np.ones(len(score), dtype=bool)
    for i, lv in enumerate(lvls):
        ok = score >= lv.min_score
        if lv.max_branch_share is not None:
            ok &= rank <= np.floor(lv.max_branch_share * n)
        hit = undecided & ok
        out[hit] = i
        undecided &= ~hit
    return out


def _scored(con: duckdb.DuckDBPyConnection, cfg: Config, available: dict[str, bool]) -> pa.Table:
    """The parts with ``tier_score`` and ``tier_level`` (percentile ranks per as-of, branch quotas)."""
    tbl = con.sql("SELECT * FROM parts").to_arrow_table()
    cust = con.sql("SELECT customer_id, branch_id FROM customers").to_arrow_table()
    cust = cust.take(pc.sort_indices(cust, [(JOIN_KEY, "ascending")]))
    customer = pc.index_in(tbl.column(JOIN_KEY), value_set=cust.column(JOIN_KEY)).to_numpy(zero_copy_only=False)
    branches = pc.dictionary_encode(cust.column("branch_id").combine_chunks())
    branch_of = np.where(branches.is_null(), -1, branches.indices.fill_null(0)).astype(np.int64)
    as_of = tbl.column("as_of").to_numpy().astype("datetime64[us]").astype(np.int64)
    order = np.argsort(as_of, kind="stable")  # each as-of's rows together
    a = as_of[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    parts = {c: tbl.column(c).to_numpy(zero_copy_only=False).astype(np.float64)[order] for c in set(PARTS.values())}
    c = customer.astype(np.int64)[order]
    score = _score(cfg, available, parts, starts)
    level = _levels(cfg, score, a, branch_of[c], c)
    out_score, out_level = np.empty_like(score), np.empty_like(level)
    out_score[order], out_level[order] = score, level
    return tbl.append_column("tier_score", pa.array(out_score)).append_column("tier_level", pa.array(out_level))


def build(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    cfg: Config,
    tables: frozenset[str],
    dates: Sequence[date],
    loan_mode: str,
    key_columns: list[str],
    parquet_options: str,
    monthly: Monthly,
) -> int:
    """Write the tier table's rows of ``dates`` (keeping the file's rows of other as-ofs).

    Args:
        con: the build's DuckDB connection (a view per ingested table).
        ws: the workspace; its holdings and demo feature tables must be built for ``dates``.
        cfg: weights, loan rate and levels (``configs/tiers.yaml``).
        tables: the ingested tables present.
        dates: the as-of dates built.
        loan_mode: ``end_date`` or ``term``.
        key_columns: the table's leading columns (``bank_code`` first in a member bank's).
        parquet_options: the COPY options every feature table is written with.
        monthly: the build's monthly sources: ``(source, dates, measures)`` -> rows per customer
            and month (``features/build.py: MonthlyCache.table``).

    Returns:
        Rows written for ``dates``.
    """
    available = {
        "deposit": {"balances", "accounts"} <= tables,
        "loan_interest": "loans" in tables,
        "products": True,
        "activity": "transactions" in tables,
        "tenure": True,
    }
    _setup(con, tables, dates, cfg, loan_mode, monthly)
    con.execute(f"CREATE OR REPLACE TEMP TABLE parts AS {_parts_sql(tables, ws)}")
    con.register("tier_scored", _scored(con, cfg, available))
    bank = f"{lit(ws.bank)} AS bank_code, " if ws.bank is not None else ""
    cols = ", ".join(ident(n) for n in NAMES)
    query = (
        f"SELECT {bank}customer_id AS {JOIN_KEY}, as_of AS {EVENT_TS}, {cols} FROM tier_scored "
        f"ORDER BY {EVENT_TS}, {JOIN_KEY}"
    )
    n, _ = feature_tables.replace_dates(
        con, ws.feature_table(FAMILY), query, dates, key_columns + NAMES, parquet_options, ws.bank
    )
    for t in ("parts", "intr", "tier_asofs"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    for t in ("tier_win", "tier_scored"):
        con.unregister(t)
    log.info("tiers: %s rows (%s)", f"{n:,}", ", ".join(f"{k} {'on' if v else 'off'}" for k, v in available.items()))
    return n


def months(ws: Workspace) -> list[date]:
    """The as-of dates the tier table holds, oldest first (empty when it was not built)."""
    if not ws.feature_files(FAMILY):
        return []
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT DISTINCT CAST({EVENT_TS} AS DATE) FROM read_parquet({lit(ws.feature_glob(FAMILY))})"
        ).fetchall()
    finally:
        con.close()
    return sorted(r[0] for r in rows)


def read(
    ws: Workspace,
    as_of: date | Sequence[date] | None = None,
    customer_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The tier table: ``customer_id``, ``as_of`` (date) and the tier features, oldest month first.

    Args:
        ws: the workspace (its built tier table).
        as_of: one as-of date or several (default: every built month).
        customer_ids: only these customers (default: all).

    Raises:
        FileNotFoundError: the tier table was not built (``nbp features``).
    """
    path = ws.feature_table(FAMILY)
    if not ws.feature_files(FAMILY):
        raise FileNotFoundError(f"{path}: tier table missing; run `nbp features`")
    con = duckdb.connect()
    try:
        where = []
        if as_of is not None:
            ds = [as_of] if isinstance(as_of, date) else list(as_of)
            where.append(f"{EVENT_TS} IN ({', '.join(f'TIMESTAMP {lit(d.isoformat())}' for d in ds) or 'NULL'})")
        if customer_ids is not None:
            con.register("wanted", pd.DataFrame({JOIN_KEY: [str(c) for c in customer_ids]}))
            where.append(f"{JOIN_KEY} IN (SELECT {JOIN_KEY} FROM wanted)")
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        df = con.execute(
            f"SELECT {JOIN_KEY}, CAST({EVENT_TS} AS DATE) AS as_of, {', '.join(ident(n) for n in NAMES)} "
            f"FROM read_parquet({lit(ws.feature_glob(FAMILY))}) {cond} ORDER BY as_of, {JOIN_KEY}"
        ).df()
    finally:
        con.close()
    df["as_of"] = pd.to_datetime(df["as_of"]).dt.date
    return df


def _latest_two(ws: Workspace, as_of: date | None) -> tuple[pd.DataFrame, list[date]]:
    """The tier table's rows of its latest two months up to ``as_of`` (default: the latest), and
    those months, oldest first; a migration reads no other month.

    Raises:
        FileNotFoundError: the tier table was not built.
    """
    wanted = [m for m in months(ws) if as_of is None or m <= as_of][-2:]
    return read(ws, wanted), wanted


def migration(
    ws: Workspace, cfg: Config, as_of: date | None = None, customers: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Tier migration (层级迁移) into the month ``as_of`` (default: the latest built) from the month before.

    Args:
        ws: the workspace.
        cfg: the tier names.
        as_of: the later month.
        customers: ``customer_id``, ``branch_id`` (default: read from the ingested customers table).

    Returns:
        One row per branch and (from, to) tier pair: ``branch_id``, ``as_of``, ``from_level``,
        ``to_level``, ``from_tier``, ``to_tier`` (Chinese names), ``customers``, ``direction``
        (``up``, ``down``, ``same``, ``new``: not known a month before). Empty with fewer than
        two built months.
    """
    tiers, months = _latest_two(ws, as_of)
    if len(months) < 1:
        return pd.DataFrame(columns=MIGRATION_COLUMNS)
    cur = tiers[tiers["as_of"] == months[-1]][[JOIN_KEY, "tier_level"]]
    prev = (
        tiers[tiers["as_of"] == months[-2]][[JOIN_KEY, "tier_level"]]
        if len(months) > 1
        else pd.DataFrame(columns=[JOIN_KEY, "tier_level"])
    )
    m = cur.merge(prev, on=JOIN_KEY, how="left", suffixes=("", "_prev"))
    if customers is None:
        customers = pd.read_parquet(ws.table("customers"), columns=[JOIN_KEY, "branch_id"])
    m = m.merge(customers[[JOIN_KEY, "branch_id"]].astype({JOIN_KEY: str}), on=JOIN_KEY, how="left")
    m["from_level"] = m["tier_level_prev"].astype("Int64")
    m["to_level"] = m["tier_level"].astype("Int64")
    direction = pd.Series("same", index=m.index)
    direction[m["from_level"].isna()] = "new"
    direction[m["to_level"] < m["from_level"]] = "up"  # a lower code is a higher tier
    direction[m["to_level"] > m["from_level"]] = "down"
    m["direction"] = direction
    out = (
        m.groupby(["branch_id", "from_level", "to_level", "direction"], dropna=False)
        .size()
        .rename("customers")
        .reset_index()
    )
    out.insert(1, "as_of", months[-1])
    out["from_tier"] = [level_label(cfg, v) for v in out["from_level"]]
    out["to_tier"] = [level_label(cfg, v) for v in out["to_level"]]
    return (
        out[MIGRATION_COLUMNS]
        .sort_values(["branch_id", "from_level", "to_level"], na_position="first")
        .reset_index(drop=True)
    )


def movers(ws: Workspace, cfg: Config, as_of: date | None = None) -> pd.DataFrame:
    """Who changed tier into the month ``as_of`` (default: the latest built) from the month before.

    Returns:
        One row per customer whose tier moved: ``customer_id``, ``branch_id``, ``manager_id``,
        ``from_tier``, ``to_tier`` (Chinese names), ``direction`` (``up``/``down``), ``score_before``,
        ``score_now``; largest score change first.
    """
    tiers, months = _latest_two(ws, as_of)
    cols = [JOIN_KEY, "branch_id", "manager_id", "from_tier", "to_tier", "direction", "score_before", "score_now"]
    if len(months) < 2:
        return pd.DataFrame(columns=cols)
    cur = tiers[tiers["as_of"] == months[-1]][[JOIN_KEY, "tier_level", "tier_score"]]
    prev = tiers[tiers["as_of"] == months[-2]][[JOIN_KEY, "tier_level", "tier_score"]]
    m = cur.merge(prev, on=JOIN_KEY, suffixes=("", "_prev"))
    m = m[m["tier_level"] != m["tier_level_prev"]].copy()
    customers = pd.read_parquet(ws.table("customers"), columns=[JOIN_KEY, "branch_id", "manager_id"])
    m = m.merge(customers.astype({JOIN_KEY: str}), on=JOIN_KEY, how="left")
    m["direction"] = np.where(m["tier_level"] < m["tier_level_prev"], "up", "down")
    m["from_tier"] = [level_label(cfg, v) for v in m["tier_level_prev"]]
    m["to_tier"] = [level_label(cfg, v) for v in m["tier_level"]]
    m = m.rename(columns={"tier_score_prev": "score_before", "tier_score": "score_now"})
    order = (m["score_now"] - m["score_before"]).abs().sort_values(ascending=False).index
    return m.loc[order, cols].reset_index(drop=True)


MIGRATION_COLUMNS = ["branch_id", "as_of", "from_level", "to_level", "from_tier", "to_tier", "direction", "customers"]
MIGRATION_ZH = {
    "branch_id": "支行",
    "as_of": "月份",
    "from_level": "上月层级代码",
    "to_level": "本月层级代码",
    "from_tier": "上月层级",
    "to_tier": "本月层级",
    "direction": "变动",
    "customers": "客户数",
}
DIRECTION_ZH = {"up": "上升", "down": "下降", "same": "不变", "new": "新增"}
