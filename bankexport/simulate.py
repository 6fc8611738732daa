"""The bank simulator behind ``nbp simulate``: a county rural bank's export plus its oracle.

``simulate(out, ...)`` writes ``out/export/`` (every table of the bank export spec as
``<table>.parquet`` plus ``manifest.json``) and, beside it, ``out/oracle/oracle.parquet``
with each candidate's true probability of uptake. The world is drawn once
(:mod:`bankexport.sim_population`), then months run one by one: drivers known at the
month's start set each product's application hazard (:mod:`bankexport.sim_oracle`),
transactions and balances of the month are generated vectorised and appended to the
Parquet files as one row group. ``docs/simulator.md`` documents the mechanism.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from bankexport import sim_params as P
from bankexport.sim_oracle import apply_prob, gh_grid, log_lik_update, solve_intercept, window_prob
from bankexport.sim_population import (
    EMP,
    NO_DAY,
    OCC,
    Population,
    add_months,
    build_population,
    customers_table,
    ids,
    network_tables,
)
from bankexport.spec import ALL_TABLES, CHANNELS, FORMAT, LOAN_PRODUCTS, TABLES, TXN_TYPES
from nbp.errors import ConfigError

log = logging.getLogger(__name__)

FULL_CUSTOMERS = P.FULL_CUSTOMERS
PRODUCTS = ("consumer", "business_flow", "tax_linked")
LP = {name: i for i, name in enumerate(LOAN_PRODUCTS)}
CH = {name: i for i, name in enumerate(CHANNELS)}
TT = {name: i for i, name in enumerate(TXN_TYPES)}
N_EMPLOYERS, CP_GOV, N_PEOPLE = 400, 400, 60_000  # counterparty pool: employers, agencies, others
CP_SOCIAL, CP_FINANCE, CP_ACQUIRER, CP_TAX = CP_GOV, CP_GOV + 1, CP_GOV + 2, CP_GOV + 3
CP_OTHERS = CP_GOV + 10
DAY_S = 86_400
COMPRESSION = "zstd"  # a third smaller than snappy for the id-heavy transactions, as fast


# ---------------------------------------------------------------- small helpers
def _rng(seed: int, *stream: int) -> np.random.Generator:
    """A PCG64 generator for one (seed, stream...) pair: each month and purpose has its own."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *stream])))


def _month_days(ms: np.datetime64) -> int:
    return int(((ms.astype("datetime64[M]") + 1).astype("datetime64[D]") - ms).astype(np.int64))


def _festival(year: int) -> np.datetime64:
    return np.datetime64(P.SPRING_FESTIVAL[year], "D")


def _share_in(ms: np.datetime64, nd: int, lo: np.datetime64, hi: np.datetime64) -> float:
    """Share of the month's days d with lo <= d < hi."""
    days = ms + np.arange(nd)
    return float(((days >= lo) & (days < hi)).mean())


def _calendar(ms: np.datetime64, nd: int) -> tuple[float, float]:
    """(turnover multiplier, pre-festival stocking share) of the month starting ``ms``."""
    y = int(ms.astype("datetime64[Y]").astype(int)) + 1970
    mult, stock = 1.0, 0.0
    for fy in (y, y + 1):
        f = _festival(fy)
        mult += P.FESTIVAL_PEAK_LIFT * _share_in(ms, nd, f + P.FESTIVAL_PEAK[0], f + P.FESTIVAL_PEAK[1])
        mult -= P.FESTIVAL_SLUMP_DROP * _share_in(ms, nd, f + P.FESTIVAL_SLUMP[0], f + P.FESTIVAL_SLUMP[1])
        stock += _share_in(ms, nd, f - P.STOCKING_DAYS, f)
    return mult, stock


def _money(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(x, 2), 0.01)


def _split(total: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split each ``total[i]`` into ``counts[i]`` random positive parts (flattened, in order)."""
    owner = np.repeat(np.arange(len(total)), counts)
    w = rng.exponential(1.0, len(owner)) + 0.05
    s = np.bincount(owner, weights=w, minlength=len(total))
    return total[owner] * w / s[owner]


def _draw_terms(product: str, k: int, rng: np.random.Generator) -> np.ndarray:
    terms, p = P.TERMS[product]
    return np.asarray(terms, np.int64)[rng.choice(len(terms), k, p=p)]


# ---------------------------------------------------------------- transactions buffer
class _Txns:
    """Collects one month's transactions as parallel arrays, then builds the Arrow table."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(
        self,
        cust: np.ndarray,
        day: np.ndarray,
        amount: np.ndarray,
        direction: str,
        channel: np.ndarray | str,
        ttype: str,
        cp: np.ndarray | int = -1,
        acct: np.ndarray | None = None,
    ) -> None:
        k = len(cust)
        if k == 0:
            return
        ch = np.full(k, CH[channel], np.int8) if isinstance(channel, str) else channel.astype(np.int8)
        cpa = np.full(k, cp, np.int32) if np.isscalar(cp) else np.asarray(cp, np.int32)
        self.parts.append(
            (
                np.asarray(cust, np.int32),
                np.asarray(day, np.int16),
                _money(amount),
                np.full(k, direction == "C"),
                ch,
                np.full(k, TT[ttype], np.int8),
                cpa,
                np.full(k, -1, np.int32) if acct is None else np.asarray(acct, np.int32),
            )
        )

    def table(
        self,
        ms: np.datetime64,
        rng: np.random.Generator,
        first_id: int,
        main_acct: np.ndarray,
        cust_ids: pa.Array,
        acct_ids: pa.Array,
        cp_ids: pa.Array,
    ) -> pa.Table:
        cols = [np.concatenate(c) for c in zip(*self.parts, strict=True)]
        cust, day, amount, credit, ch, tt, cp, acct = cols
        n = len(cust)
        # counters, agents open in business hours; batch runs early; the rest all day
        lo = np.where(np.isin(ch, [CH["counter"], CH["agent"]]), 8.5 * 3600, 7 * 3600)
        hi = np.where(np.isin(ch, [CH["counter"], CH["agent"]]), 17.5 * 3600, 22.5 * 3600)
        lo = np.where(ch == CH["batch"], 2 * 3600, lo)
        hi = np.where(ch == CH["batch"], 6 * 3600, hi)
        sec = (lo + rng.random(n) * (hi - lo)).astype(np.int64)
        order = np.lexsort((tt, cust, sec, day))
        cust, day, amount, credit, ch, tt, cp, acct, sec = (
            a[order] for a in (cust, day, amount, credit, ch, tt, cp, acct, sec)
        )
        acct = np.where(acct < 0, main_acct[cust], acct)
        t = ms.astype("datetime64[s]").astype(np.int64) + day.astype(np.int64) * DAY_S + sec
        tid = pc.binary_join_element_wise(
            pa.scalar("T"), pc.utf8_lpad(pc.cast(pa.array(np.arange(first_id, first_id + n)), pa.string()), 12, "0"), ""
        )
        cpa = pa.array(cp, mask=cp < 0)
        return pa.table(
            {
                "txn_id": tid,
                "account_id": acct_ids.take(pa.array(acct)),
                "customer_id": cust_ids.take(pa.array(cust)),
                "txn_time": pa.array((t * 1_000_000).astype("datetime64[us]"), pa.timestamp("us")),
                "amount": pa.array(amount, pa.float64()),
                "direction": pa.array(np.where(credit, "C", "D"), pa.string()),
                "channel": pa.array(np.array(CHANNELS, dtype=object)[ch], pa.string()),
                "txn_type": pa.array(np.array(TXN_TYPES, dtype=object)[tt], pa.string()),
                "counterparty_id": cp_ids.take(cpa),
            }
        )


# ---------------------------------------------------------------- loans store
@dataclass
class _Loans:
    """All loan applications as growing parallel arrays (customer positions, not ids)."""

    cust: list[np.ndarray] = field(default_factory=list)
    prod: list[np.ndarray] = field(default_factory=list)
    app: list[np.ndarray] = field(default_factory=list)
    grant: list[np.ndarray] = field(default_factory=list)
    amount: list[np.ndarray] = field(default_factory=list)
    term: list[np.ndarray] = field(default_factory=list)
    end: list[np.ndarray] = field(default_factory=list)
    overdue: list[np.ndarray] = field(default_factory=list)
    written_off: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        cust: np.ndarray,
        product: str,
        app: np.ndarray,
        grant: np.ndarray,
        amount: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Record applications (grant NaT: rejected); returns the end dates (NaT for rejected)."""
        k = len(cust)
        granted = ~np.isnat(grant)
        term = _draw_terms(product, k, rng)
        planned = add_months(np.where(granted, grant, app), term)
        early = rng.geometric(P.EARLY_REPAY_MONTHLY, k)
        end = np.where(early < term, add_months(np.where(granted, grant, app), early), planned)
        bounds = np.array([b for b, _ in P.OVERDUE_MIX])
        shares = np.array([s for _, s in P.OVERDUE_MIX])
        band = rng.choice(len(bounds), k, p=shares / shares.sum())
        lows = np.r_[0, bounds[:-1]][band] + 1
        od = np.where(band == 0, 0, rng.integers(lows, np.maximum(bounds[band], lows) + 1))
        off = (od > 90) & (rng.random(k) < P.WRITE_OFF_SHARE)
        off_at = add_months(np.where(granted, grant, app), np.minimum(term, rng.integers(6, 13, k)))
        end = np.where(off, np.minimum(off_at, end), end)
        end = np.where(granted, end, NO_DAY)
        self.cust.append(np.asarray(cust, np.int64))
        self.prod.append(np.full(k, LP[product], np.int8))
        self.app.append(app.astype("datetime64[D]"))
        self.grant.append(grant.astype("datetime64[D]"))
        self.amount.append(np.where(granted, np.round(amount, -2).clip(1_000), np.nan))
        self.term.append(np.where(granted, term, -1))
        self.end.append(end)
        self.overdue.append(np.where(granted, od, -1))
        self.written_off.append(off & granted)
        return end

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            k: np.concatenate(getattr(self, k)) if getattr(self, k) else np.array([])
            for k in ("cust", "prod", "app", "grant", "amount", "term", "end", "overdue", "written_off")
        }


# ---------------------------------------------------------------- summary
@dataclass
class SimSummary:
    """What one run wrote."""

    out: Path
    export_dir: Path
    oracle_path: Path
    customers: int
    months: int
    export_date: str
    rows: dict[str, int]
    grants: dict[str, int]  # loans granted during the simulated months, per product
    labels: dict[str, int]  # positive (customer, as-of) labels pooled over the oracle's as-of dates
    expected: dict[str, float]  # sum of p_true over oracle rows, per product
    seconds: float

    def describe(self) -> str:
        """A short multi-line text for people."""
        lines = [
            f"simulated bank: {self.customers:,} customers x {self.months} months, "
            f"export date {self.export_date}, {self.seconds:.0f} s",
            f"export: {self.export_dir}",
        ]
        lines += [f"  {t:<13} {self.rows.get(t, 0):>12,} rows" for t in ALL_TABLES]
        lines.append("uptake (grants during the simulation; positive labels pooled over as-of; oracle sum p):")
        lines += [
            f"  {p:<13} {self.grants[p]:>8,} grants {self.labels[p]:>8,} labels {self.expected[p]:>10,.1f} expected"
            for p in PRODUCTS
        ]
        lines.append(f"oracle: {self.oracle_path} ({self.rows.get('oracle', 0):,} rows; omitted rows have p=0)")
        return "\n".join(lines)


# ---------------------------------------------------------------- the simulation
def simulate(
    out: Path, customers: int = 20_000, months: int = 24, end: str = "2026-10", seed: int = 7, horizon_days: int = 90
) -> SimSummary:
    """Simulate a county rural bank and write its export and oracle.

    Args:
        out: folder to write to; ``out/export/`` gets the export, ``out/oracle/`` the oracle.
        customers: number of customers (``FULL_CUSTOMERS`` is the reference bank).
        months: number of simulated months, ending with ``end``.
        end: last simulated month, ``YYYY-MM``.
        seed: random seed; the same seed gives byte-identical files.
        horizon_days: label horizon of the oracle's probability.

    Returns:
        A :class:`SimSummary`. ``oracle.parquet`` has columns ``customer_id`` (string),
        ``product`` (consumer | business_flow | tax_linked), ``as_of`` (date, a month start),
        ``p_true`` (float64): P(a loan of that product is granted in
        ``(as_of, as_of + horizon_days]``), for spec candidates with p > 0 (others: p = 0);
        ``p_asof`` (float64): the same probability computed with the as-of month's
        drivers for every month of the window, i.e. from what can be known at the as-of
        date (``p_true`` also knows how turnover, tax records and life events move inside
        the window). Both integrate the hidden effect over its posterior given the
        customer's applications before the as-of date.
    """
    t0 = time.perf_counter()
    if customers < 1 or months < 1 or horizon_days < 1:
        raise ConfigError(
            f"simulate: customers ({customers}), months ({months}) and horizon_days ({horizon_days}) must be positive"
        )
    try:
        last = np.datetime64(end, "M")
    except ValueError:
        raise ConfigError(f"simulate: end {end!r} is not a month YYYY-MM") from None
    years = range(int(str(last - months + 1)[:4]), int(str(last)[:4]) + 2)
    missing = [y for y in years if y not in P.SPRING_FESTIVAL]
    if missing:
        raise ConfigError(
            f"simulate: no Spring Festival date for {missing[0]} (extend SPRING_FESTIVAL in bankexport/sim_params.py)"
        )
    out = Path(out)
    exp_dir, ora_dir = out / "export", out / "oracle"
    exp_dir.mkdir(parents=True, exist_ok=True)
    ora_dir.mkdir(parents=True, exist_ok=True)
    month_starts = (last - months + 1 + np.arange(months)).astype("datetime64[D]")
    start = month_starts[0]
    export_date = (last + 1).astype("datetime64[D]")
    n_days = [_month_days(ms) for ms in month_starts]
    cal = [_calendar(ms, nd) for ms, nd in zip(month_starts, n_days, strict=True)]

    pop = build_population(customers, start, int((export_date - start).astype(int)), _rng(seed, 1))
    sim = _Simulation(pop, month_starts, n_days, cal, export_date, seed, exp_dir)
    sim.run()
    rows = sim.write_static()
    oracle_rows, labels, expected = sim.write_oracle(ora_dir / "oracle.parquet", horizon_days)
    rows["oracle"] = oracle_rows
    (exp_dir / "manifest.json").write_text(
        json.dumps(
            {
                "format": FORMAT,
                "export_date": str(export_date),
                "encoding": "utf-8",
                "bank": f"simulated county rural commercial bank, central Hunan (nbp simulator, seed {seed})",
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    summary = SimSummary(
        out,
        exp_dir,
        ora_dir / "oracle.parquet",
        customers,
        months,
        str(export_date),
        rows,
        sim.grant_counts,
        labels,
        expected,
        time.perf_counter() - t0,
    )
    log.info("simulate: %s customers x %s months in %.1f s", f"{customers:,}", months, summary.seconds)
    return summary


class _Simulation:
    """State of one run; ``run()`` walks the months, the writers emit the tables."""

    def __init__(
        self,
        pop: Population,
        month_starts: np.ndarray,
        n_days: list[int],
        cal: list[tuple[float, float]],
        export_date: np.datetime64,
        seed: int,
        exp_dir: Path,
    ) -> None:
        self.pop, self.ms, self.nd, self.cal = pop, month_starts, n_days, cal
        self.export_date, self.seed, self.dir = export_date, seed, exp_dir
        self.M = len(month_starts)
        n = pop.n
        self.nodes, self.log_w = gh_grid(P.GH_NODES)
        self.cust_ids = ids("C", n, 9)
        self.cp_ids = _counterparties()
        self.pools = {
            "consumer": np.flatnonzero(~pop.is_biz),
            "business_flow": np.flatnonzero(pop.bf_pool),
            "tax_linked": np.flatnonzero(pop.taxpayer),
        }
        r = _rng(seed, 2)
        self.u = {p: r.standard_normal(len(ix)) for p, ix in self.pools.items()}  # the hidden effects
        self.intercept: dict[str, float] = {}
        M = self.M
        self.eta = {p: np.full((M, len(ix)), -np.inf, np.float32) for p, ix in self.pools.items()}
        self.gp = {p: np.zeros((M, len(ix)), np.float32) for p, ix in self.pools.items()}
        self.at_risk = {p: np.zeros((M, len(ix)), bool) for p, ix in self.pools.items()}
        self.applied = {p: np.zeros((M, len(ix)), bool) for p, ix in self.pools.items()}
        self.grant_day = {p: np.zeros((M, len(ix)), np.int8) for p, ix in self.pools.items()}
        # current (latest) loan per customer and product: grant and end dates
        self.hold_grant = {p: np.full(n, NO_DAY) for p in LOAN_PRODUCTS}
        self.hold_end = {p: np.full(n, NO_DAY) for p in LOAN_PRODUCTS}
        self.loans = _Loans()
        self.grant_counts = {p: 0 for p in PRODUCTS}
        self.contacts: list[tuple[np.ndarray, ...]] = []
        self.last_event = np.full(n, -99, np.int64)
        self.mobile_day = np.full(n, NO_DAY)
        self.tax = self._tax_history(_rng(seed, 3))
        # business-flow pool history
        nb = len(self.pools["business_flow"])
        self.turn = np.zeros((M, nb))
        self.endbal = np.zeros((M, nb))
        rb = _rng(seed, 4)
        mu, sd_mu, self.rho, self.shock = P.BALANCE_RATIO
        self.logr_mu = np.log(mu) + rb.normal(0, sd_mu, nb)
        self.logr = self.logr_mu + rb.normal(0, self.shock / np.sqrt(1 - self.rho**2), nb)
        self.bal_z = np.zeros(n)
        self._accounts(_rng(seed, 5))
        self._initial_services(_rng(seed, 6))
        self.n_txn = 0
        self.n_bal = 0

    # ------------------------------------------------------------ world set-up
    def _tax_history(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Tax records of taxpayers for every tax year published before the export date."""
        pop = self.pop
        y0 = int(self.ms[0].astype("datetime64[Y]").astype(int)) + 1970 - 3
        y1 = int(self.export_date.astype("datetime64[Y]").astype(int)) + 1970 - 1
        years = np.arange(y0, y1 + 1)
        n = pop.n
        grades = np.array(list(P.TAX_GRADE_MIX))
        gp = np.array(list(P.TAX_GRADE_MIX.values()))
        settled = np.flatnonzero(grades != "M")
        gp_settled = gp[settled] / gp[settled].sum()
        grade = np.zeros((len(years), n), np.int8)
        cur = settled[rng.choice(len(settled), n, p=gp_settled)]
        rate = rng.uniform(*P.TAX_RATE, n)
        est_year = pop.established.astype("datetime64[Y]").astype(np.int64) + 1970
        paid = np.zeros((len(years), n))
        filed = np.zeros((len(years), n), np.int64)
        pub = np.full((len(years), n), NO_DAY)
        exists = np.zeros((len(years), n), bool)
        (m1, d1), (m2, d2) = P.TAX_PUBLISH
        for k, y in enumerate(years):
            move = rng.random(n) > P.TAX_GRADE_STAY
            cur = np.where(move, settled[rng.choice(len(settled), n, p=gp_settled)], cur)
            g = np.where(y - est_year < 2, int(np.flatnonzero(grades == "M")[0]), cur)
            grade[k] = g
            yrs = y - (int(self.ms[0].astype("datetime64[Y]").astype(int)) + 1970)
            turnover = 12 * pop.turnover_base * np.exp(pop.turnover_trend * yrs)
            gname = grades[g]
            filed[k] = np.where(
                np.isin(gname, ["A", "B", "M"]),
                12,
                np.where(gname == "C", rng.integers(7, 13, n), rng.integers(0, 9, n)),
            )
            paid[k] = np.round(turnover * rate * filed[k] / 12 * rng.lognormal(0, 0.15, n), 2)
            lo = np.datetime64(f"{y + 1}-{m1:02d}-{d1:02d}")
            hi = np.datetime64(f"{y + 1}-{m2:02d}-{d2:02d}")
            pub[k] = lo + rng.integers(0, int((hi - lo).astype(int)) + 1, n)
            exists[k] = pop.taxpayer & (est_year <= y) & (pub[k] < self.export_date)
        return {
            "years": years,
            "grade": grade,
            "paid": paid,
            "filed": filed,
            "pub": pub,
            "exists": exists,
            "grades": grades,
        }

    def _accounts(self, rng: np.random.Generator) -> None:
        """Main account per customer (position i), then deposits, wealth and credit cards."""
        pop = self.pop
        n = pop.n
        kind = np.where(pop.is_biz, "current", np.where(rng.random(n) < 0.75, "debit_card", "savings"))
        self.main_acct = np.arange(n, dtype=np.int64)
        extras = []
        td = ~pop.is_biz & (pop.wealth > 15_000) & (rng.random(n) < 0.45)
        wm = ~pop.is_biz & (pop.wealth > 40_000) & (rng.random(n) < 0.25)
        cc = ~pop.is_biz & pop.urban & (pop.payroll | pop.bf_pool) & (rng.random(n) < 0.15)
        for typ, mask in (("time_deposit", td), ("wealth", wm), ("credit_card", cc)):
            ix = np.flatnonzero(mask)
            extras.append((np.full(len(ix), typ, dtype=object), ix))
        ex_kind = np.concatenate([e[0] for e in extras])
        ex_cust = np.concatenate([e[1] for e in extras])
        span = (self.export_date - pop.open_day[ex_cust]).astype(np.int64)
        ex_open = pop.open_day[ex_cust] + (rng.random(len(ex_cust)) * np.maximum(span - 1, 0) * 0.6).astype(np.int64)
        life = rng.geometric(P.ACCOUNT_CLOSE_MONTHLY, len(ex_cust)) * 30
        ex_close = ex_open + life
        ex_close = np.where((ex_kind != "credit_card") & (ex_close < self.export_date), ex_close, NO_DAY)
        self.acct_kind = np.concatenate([kind.astype(object), ex_kind])
        self.acct_cust = np.concatenate([np.arange(n), ex_cust])
        self.acct_open = np.concatenate([pop.open_day, ex_open])
        self.acct_close = np.concatenate([np.full(n, NO_DAY), ex_close])
        self.acct_amount = np.concatenate([np.zeros(n), pop.wealth[ex_cust] * rng.uniform(0.8, 3, len(ex_cust))])
        self.card_of = np.full(n, -1, np.int64)
        is_cc = ex_kind == "credit_card"
        self.card_of[ex_cust[is_cc]] = n + np.flatnonzero(is_cc)
        self.acct_ids = ids("A", len(self.acct_kind), 11)

    def _initial_services(self, rng: np.random.Generator) -> None:
        pop = self.pop
        n = pop.n
        p = np.clip(P.MOBILE_START * pop.mobile_prop, 0, 0.9)
        has = (rng.random(n) < p) & (pop.open_day < self.ms[0])
        back = rng.integers(1, 1500, n)
        self.mobile_day[has] = np.maximum(self.ms[0] - back, pop.open_day + 1)[has]

    # ------------------------------------------------------------ drivers
    def _drivers(self, m: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Observable log-hazard (without intercept) and grant probability per product pool."""
        pop, T = self.pop, self.ms[m]
        tenure_ok = pop.open_day <= add_months(np.array([T]), -P.MIN_TENURE_MONTHS)[0]
        out = {}

        ix = self.pools["consumer"]
        age = (T - pop.birth[ix]).astype(np.float64) / 365.25
        occ, emp = pop.occ[ix], pop.emp[ix]
        pay = pop.payroll[ix]
        public = np.isin(emp, [EMP["government"], EMP["public_institution"]])
        soe = emp == EMP["soe"]
        event = (m - self.last_event[ix] >= P.EVENT_LAG[0]) & (m - self.last_event[ix] <= P.EVENT_LAG[1])
        mobile = self.mobile_day[ix] < T
        c = P.CONSUMER_COEF
        eta = (
            c["payroll"] * pay
            + c["public"] * public
            + c["soe"] * soe
            - c["age_curv"] * ((age - 35) / 10) ** 2
            + c["event"] * event
            + c["mobile"] * mobile
            + c["log_salary"] * np.where(pay, np.log(np.maximum(pop.salary[ix], 500) / 4_000), 0)
            + c["farm_or_retired"] * np.isin(occ, [OCC["farmer"], OCC["retired"]])
            + c["migrant"] * (occ == OCC["migrant_worker"])
        )
        elig = (occ != OCC["student"]) & (age >= P.CONSUMER_AGE[0]) & (age <= P.CONSUMER_AGE[1]) & tenure_ok[ix]
        g = np.clip(0.55 + 0.3 * pay + 0.1 * public - 0.2 * (age > 50), 0.2, 0.95)
        out["consumer"] = (np.where(elig, eta, -np.inf), g)

        ix = self.pools["business_flow"]
        if m == 0:
            turn3 = pop.turnover_base[ix] * self.cal[0][0]
        else:
            turn3 = self.turn[max(0, m - 3) : m].mean(axis=0)
        growth = (
            np.clip(np.log(self.turn[m - 3 : m].mean(axis=0) / self.turn[m - 6 : m - 3].mean(axis=0)), -1, 1)
            if m >= 6
            else np.zeros(len(ix))
        )
        squeeze = (self.endbal[m - 1] / turn3 < P.SQUEEZE_RATIO) if m >= 1 else np.zeros(len(ix), bool)
        b = P.BUSINESS_COEF
        eta = (
            b["log_turnover"] * np.log(np.maximum(turn3, 100) / 50_000)
            + b["growth"] * growth
            + b["squeeze"] * squeeze
            + b["stocking"] * self.cal[m][1]
            + b["business"] * pop.is_biz[ix]
        )
        est_ok = pop.established[ix] <= add_months(np.array([T]), -P.MIN_TENURE_MONTHS)[0]
        elig = tenure_ok[ix] & est_ok
        out["business_flow"] = (np.where(elig, eta, -np.inf), 0.75 - 0.15 * squeeze)

        ix = self.pools["tax_linked"]
        rec = self._latest_tax(T, ix)
        tx = self.tax
        k, has = rec
        kk = np.maximum(k, 0)
        gname = tx["grades"][tx["grade"][kk, ix]]
        paid = tx["paid"][kk, ix]
        full = tx["filed"][kk, ix] == 12
        firm_age = (T - pop.established[ix]).astype(np.float64) / 365.25
        t = P.TAX_COEF
        gcoef = np.array([t["grade"].get(g, 0.0) for g in tx["grades"]])[tx["grade"][kk, ix]]
        eta = (
            gcoef
            + t["log_tax"] * np.log(np.maximum(paid, 100) / 10_000)
            + t["full_filing"] * full
            + t["log_firm_age"] * np.log1p(np.maximum(firm_age, 0))
            + t["business"] * pop.is_biz[ix]
        )
        elig = has & (gname != "D") & tenure_ok[ix] & (firm_age >= 1)
        appr = np.array([P.TAX_APPROVAL.get(g, 0.0) for g in tx["grades"]])[tx["grade"][kk, ix]]
        out["tax_linked"] = (np.where(elig, eta, -np.inf), appr)
        return out

    def _latest_tax(self, T: np.datetime64, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row (year index) of each customer's latest tax record published before T; has-record flag."""
        tx = self.tax
        known = tx["exists"][:, ix] & (tx["pub"][:, ix] < T)
        k = np.where(known.any(axis=0), len(tx["years"]) - 1 - np.argmax(known[::-1], axis=0), -1)
        return k, k >= 0

    # ------------------------------------------------------------ months
    def run(self) -> None:
        """Walk the months: loans, services, turnover, transactions, balances."""
        txn_schema = _schema("transactions")
        bal_schema = _schema("balances")
        tw = pq.ParquetWriter(self.dir / "transactions.parquet", txn_schema, compression=COMPRESSION)
        bw = pq.ParquetWriter(self.dir / "balances.parquet", bal_schema, compression=COMPRESSION)
        try:
            for m in tqdm(range(self.M), desc="simulate", unit="month", disable=None):
                day_rng = _rng(self.seed, 100, m)
                drivers = self._drivers(m)
                if m == 0:
                    self._solve_intercepts(drivers)
                    self._preexisting_loans(drivers, _rng(self.seed, 7))
                self._uptake(m, drivers, _rng(self.seed, 200, m))
                self._other_loans(m, _rng(self.seed, 300, m))
                self._services_month(m, _rng(self.seed, 400, m))
                self._turnover_month(m, _rng(self.seed, 500, m))
                tx = self._transactions(m, _rng(self.seed, 600, m))
                tab = tx.table(
                    self.ms[m], day_rng, self.n_txn, self.main_acct, self.cust_ids, self.acct_ids, self.cp_ids
                )
                self.n_txn += tab.num_rows
                tw.write_table(tab.cast(txn_schema))
                bal = self._balances(m, _rng(self.seed, 700, m))
                self.n_bal += bal.num_rows
                bw.write_table(bal.cast(bal_schema))
        finally:
            tw.close()
            bw.close()

    def _solve_intercepts(self, drivers: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for p in PRODUCTS:
            eta, g = drivers[p]
            ok = np.isfinite(eta)
            self.intercept[p] = solve_intercept(eta[ok], g[ok], P.HIDDEN_SD[p], P.GRANT_RATE[p], self.nodes, self.log_w)
        log.debug("uptake intercepts: %s", self.intercept)

    def _holding(self, product: str, T: np.datetime64, ix: np.ndarray | None = None) -> np.ndarray:
        """Active at T by the spec's rule: granted before T and not ended before T."""
        g = self.hold_grant[product] if ix is None else self.hold_grant[product][ix]
        e = self.hold_end[product] if ix is None else self.hold_end[product][ix]
        return (g < T) & ~(e < T)

    def _amounts(self, product: str, cust: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pop = self.pop
        k = len(cust)
        if product == "consumer":
            base = np.where(pop.payroll[cust], pop.salary[cust] * rng.uniform(5, 20, k), rng.uniform(10_000, 80_000, k))
            return np.minimum(base, 300_000)
        if product == "business_flow":
            return np.minimum(pop.turnover_base[cust] * rng.uniform(1, 3, k), 3_000_000)
        if product == "tax_linked":
            return np.minimum(np.maximum(pop.turnover_base[cust] * rng.uniform(1, 4, k), 50_000), 3_000_000)
        if product == "agricultural":
            return rng.uniform(10_000, 100_000, k)
        if product == "mortgage":
            return rng.uniform(200_000, 800_000, k)
        return rng.uniform(5_000, 50_000, k)

    def _record(
        self, product: str, cust: np.ndarray, app: np.ndarray, grant: np.ndarray, rng: np.random.Generator
    ) -> None:
        if len(cust) == 0:
            return
        end = self.loans.add(cust, product, app, grant, self._amounts(product, cust, rng), rng)
        ok = ~np.isnat(grant)
        self.hold_grant[product][cust[ok]] = grant[ok]
        self.hold_end[product][cust[ok]] = np.where(end[ok] >= self.export_date, np.datetime64("9999-12-31"), end[ok])

    def _preexisting_loans(self, drivers: dict[str, tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> None:
        """Loans granted before the first month; drawn from observables only (never the hidden effect)."""
        T = self.ms[0]
        w = np.exp(self.log_w)
        for p in PRODUCTS:
            eta, g = drivers[p]
            ok = np.isfinite(eta)
            ix = self.pools[p][ok]
            monthly = (apply_prob(eta[ok] + self.intercept[p], P.HIDDEN_SD[p], self.nodes) @ w) * g[ok]
            terms, tp = P.TERMS[p]
            mean_term = float(np.dot(terms, tp))
            take = rng.random(len(ix)) < np.clip(monthly * mean_term, 0, 0.5)
            self._backdated(p, ix[take], rng)
        pop = self.pop
        agri = np.flatnonzero((pop.occ == OCC["farmer"]) & (pop.open_day < T))
        self._backdated("agricultural", agri[rng.random(len(agri)) < P.AGRI_RATE * 1.3 * 12], rng)
        mort = np.flatnonzero(self._mortgage_pool() & (pop.open_day < T))
        self._backdated("mortgage", mort[rng.random(len(mort)) < 0.02], rng)
        oth = np.flatnonzero(~pop.is_biz & (pop.open_day < T))
        self._backdated("other", oth[rng.random(len(oth)) < P.OTHER_RATE * 18], rng)

    def _backdated(self, product: str, cust: np.ndarray, rng: np.random.Generator) -> None:
        T = self.ms[0]
        terms, _ = P.TERMS[product]
        back = (rng.random(len(cust)) * max(terms) * 30.4).astype(np.int64) + 1
        grant = np.maximum(T - back, self.pop.open_day[cust] + 30)
        keep = grant < T
        cust, grant = cust[keep], grant[keep]
        app = grant - rng.integers(1, 15, len(cust))
        self._record(product, cust, app, grant, rng)

    def _mortgage_pool(self) -> np.ndarray:
        pop = self.pop
        return ~pop.is_biz & pop.urban & (pop.payroll | pop.bf_pool)

    def _month_dates(self, m: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Grant days uniform over days 2..end of month (never the as-of day), application on/before."""
        nd = self.nd[m]
        gday = rng.integers(2, nd + 1, k)
        aday = rng.integers(1, gday + 1)
        return self.ms[m] + gday - 1, self.ms[m] + aday - 1

    def _uptake(self, m: int, drivers: dict[str, tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> None:
        """Applications and grants of the three modelled products in month m."""
        T = self.ms[m]
        pop = self.pop
        for p in PRODUCTS:
            ix = self.pools[p]
            eta, g = drivers[p]
            eta = (eta + self.intercept[p]).astype(np.float32)
            self.eta[p][m] = eta
            self.gp[p][m] = g
            risk = ~self._holding(p, T, ix)
            self.at_risk[p][m] = risk
            a = -np.expm1(-np.exp(eta.astype(np.float64) + P.HIDDEN_SD[p] * self.u[p]))
            applied = risk & (rng.random(len(ix)) < a)
            granted = applied & (rng.random(len(ix)) < self.gp[p][m])
            self.applied[p][m] = applied
            k = np.flatnonzero(applied)
            gdate, adate = self._month_dates(m, len(k), rng)
            rej = ~granted[k]
            adate[rej] = T + rng.integers(0, self.nd[m], int(rej.sum()))
            gdate = np.where(rej, NO_DAY, gdate)
            self._record(p, ix[k], adate, gdate, rng)
            self.grant_day[p][m, k[~rej]] = (gdate[~rej] - T).astype(np.int64) + 1
            self.grant_counts[p] += int((~rej).sum())
            self._contacts(m, p, ix, eta, risk, applied, adate, k, rng)
        # life events start this month (they show as a spending surge now, raise hazard later)
        age = (T - pop.birth).astype(np.float64) / 365.25
        ev = ~pop.is_biz & (age >= 22) & (age <= 60) & (rng.random(pop.n) < P.LIFE_EVENT_MONTHLY)
        self.last_event[ev] = m

    def _contacts(
        self,
        m: int,
        product: str,
        ix: np.ndarray,
        eta: np.ndarray,
        risk: np.ndarray,
        applied: np.ndarray,
        adate: np.ndarray,
        k: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Marketing touches: managers call at-risk customers, more often the ones the bank scores high."""
        pop = self.pop
        ok = np.isfinite(eta) & risk & (pop.manager[ix] >= 0)
        if not ok.any():
            return
        top = eta >= np.quantile(eta[ok], 0.8)
        touched = ok & (rng.random(len(ix)) < np.where(top, P.CONTACT_TOP_RATE, P.CONTACT_RATE))
        app_day = np.full(len(ix), NO_DAY)
        app_day[k] = adate
        t = np.flatnonzero(touched)
        acc = applied[t]
        nd = self.nd[m]
        latest = np.where(acc, (app_day[t] - self.ms[m]).astype(np.int64), nd - 1)
        cday = self.ms[m] + (rng.random(len(t)) * (np.maximum(latest, 0) + 1)).astype(np.int64)
        outcome = np.where(acc, 0, 1 + rng.choice(3, len(t), p=[0.3, 0.5, 0.2]))
        channel = rng.choice(5, len(t), p=[0.35, 0.2, 0.3, 0.1, 0.05])
        self.contacts.append((ix[t], np.full(len(t), LP[product]), cday, channel, outcome, np.full(len(t), m)))

    def _other_loans(self, m: int, rng: np.random.Generator) -> None:
        """Agricultural, mortgage and other loans (no oracle)."""
        pop, T = self.pop, self.ms[m]
        month = int(T.astype("datetime64[M]").astype(int) % 12) + 1
        old = pop.open_day < T
        for product, pool, rate, approve in (
            (
                "agricultural",
                (pop.occ == OCC["farmer"]) | (pop.occ == OCC["merchant"]) & ~pop.urban,
                P.AGRI_RATE * (2.0 if month in (2, 3, 4) else 0.8),
                0.85,
            ),
            ("mortgage", self._mortgage_pool(), P.MORTGAGE_RATE, 0.7),
            ("other", ~pop.is_biz, P.OTHER_RATE, 0.6),
        ):
            cand = np.flatnonzero(pool & old & ~self._holding(product, T))
            cand = cand[rng.random(len(cand)) < rate / approve]
            ok = rng.random(len(cand)) < approve
            gdate, adate = self._month_dates(m, len(cand), rng)
            self._record(product, cand, adate, np.where(ok, gdate, NO_DAY), rng)

    def _services_month(self, m: int, rng: np.random.Generator) -> None:
        pop, T = self.pop, self.ms[m]
        n = pop.n
        cand = np.isnat(self.mobile_day) & (pop.open_day < T)
        adopt = cand & (rng.random(n) < P.MOBILE_ADOPT_MONTHLY * pop.mobile_prop)
        self.mobile_day[adopt] = T + rng.integers(0, self.nd[m], n)[adopt]

    def _turnover_month(self, m: int, rng: np.random.Generator) -> None:
        pop = self.pop
        ix = self.pools["business_flow"]
        years = m / 12
        mult = self.cal[m][0]
        self.turn[m] = (
            pop.turnover_base[ix]
            * np.exp(pop.turnover_trend[ix] * years)
            * mult
            * rng.lognormal(-(P.TURNOVER_NOISE**2) / 2, P.TURNOVER_NOISE, len(ix))
        )
        self.logr = self.logr_mu + self.rho * (self.logr - self.logr_mu) + rng.normal(0, self.shock, len(ix))
        recent = self.turn[max(0, m - 2) : m + 1].mean(axis=0)
        self.endbal[m] = np.round(recent * np.exp(self.logr), 2)

    # ------------------------------------------------------------ transactions
    def _transactions(self, m: int, rng: np.random.Generator) -> _Txns:
        pop, T, nd = self.pop, self.ms[m], self.nd[m]
        n = pop.n
        month = int(T.astype("datetime64[M]").astype(int) % 12) + 1
        tx = _Txns()
        live = pop.open_day < T
        ind = live & ~pop.is_biz
        away = pop.seasonal & (month >= 4) & (month <= 12)
        act = pop.activity * np.where(away, 0.3, 1.0)
        mobile = self.mobile_day < T
        fest_month = self.cal[m][1] > 0.3  # the weeks before 春节: bonuses, remittances home

        def days(k: int) -> np.ndarray:
            return rng.integers(0, nd, k)

        def poisson_rows(mask: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
            cnt = rng.poisson(np.where(mask, lam, 0.0))
            return np.repeat(np.arange(n), cnt)

        def others(k: int) -> np.ndarray:
            return CP_OTHERS + rng.integers(0, N_PEOPLE, k)

        def mob(c: np.ndarray, otherwise: str) -> np.ndarray:
            return np.where(mobile[c], CH["mobile"], CH[otherwise])

        # payroll (代发工资), pensions, subsidies: batch credits
        c = np.flatnonzero(ind & pop.payroll)
        bonus = np.where(fest_month & np.isin(pop.emp[c], [EMP["government"], EMP["public_institution"]]), 2.0, 1.0)
        tx.add(
            c,
            np.minimum(pop.payroll_day[c] - 1, nd - 1),
            pop.salary[c] * bonus * rng.normal(1, 0.03, len(c)),
            "C",
            "batch",
            "payroll",
            pop.employer_cp[c],
        )
        c = np.flatnonzero(ind & (pop.pension > 0))
        tx.add(c, np.full(len(c), 18), pop.pension[c], "C", "batch", "pension", CP_SOCIAL)
        if month in (5, 6):
            c = np.flatnonzero(ind & pop.subsidy & (rng.random(n) < 0.5))
            tx.add(c, days(len(c)), rng.uniform(300, 2_500, len(c)), "C", "batch", "subsidy", CP_FINANCE)
        # migrant workers' money home, and families receiving it
        mw = ind & (pop.occ == OCC["migrant_worker"])
        c = poisson_rows(mw, np.where(fest_month, 2.5, 0.8))
        tx.add(
            c,
            days(len(c)),
            rng.lognormal(np.log(2_500), 0.6, len(c)),
            "C",
            mob(c, "counter"),
            "transfer",
            others(len(c)),
        )
        c = poisson_rows(ind & pop.family_remit, np.where(fest_month, 1.5, 0.4))
        tx.add(
            c, days(len(c)), rng.lognormal(np.log(1_500), 0.6, len(c)), "C", mob(c, "agent"), "transfer", others(len(c))
        )
        # business-flow pool: turnover as settlements / deposits / transfers in, plus outgoings
        ix = self.pools["business_flow"]
        on = live[ix]
        term = pop.terminal[ix]
        biz = pop.is_biz[ix]
        for mask, lo_hi, ttype, direction in (
            (on & ~biz & (term > 0), P.SETTLEMENT_DAYS, "merchant_settlement", "C"),
            (on & ~biz & (term == 0), (3, 7), "cash", "C"),
            (on & biz, None, "transfer", "C"),
        ):
            j = np.flatnonzero(mask)
            cnt = (
                rng.integers(lo_hi[0], lo_hi[1] + 1, len(j))
                if lo_hi
                else np.maximum(1, rng.poisson(P.BUSINESS_TRANSFERS_IN, len(j)))
            )
            amt = _split(self.turn[m, j], cnt, rng)
            cust = np.repeat(ix[j], cnt)
            if ttype == "merchant_settlement":
                chan = np.where((np.repeat(term[j], cnt) == 2) & (rng.random(len(cust)) < 0.5), CH["pos"], CH["qr"])
                cp: np.ndarray | int = CP_ACQUIRER
            elif ttype == "cash":
                chan, cp = np.full(len(cust), CH["counter"]), -1
            else:
                chan = np.where(rng.random(len(cust)) < 0.6, CH["mobile"], CH["counter"])
                cp = others(len(cust))
            tx.add(cust, days(len(cust)), amt, direction, chan, ttype, cp)
        j = np.flatnonzero(on)
        cnt = np.maximum(1, rng.poisson(np.where(biz[j], P.BUSINESS_TRANSFERS_OUT, 3)))
        amt = _split(self.turn[m, j] * rng.uniform(0.6, 0.9, len(j)), cnt, rng)
        cust = np.repeat(ix[j], cnt)
        tx.add(
            cust,
            days(len(cust)),
            amt,
            "D",
            np.where(rng.random(len(cust)) < 0.6, CH["mobile"], CH["counter"]),
            "transfer",
            others(len(cust)),
        )
        j = np.flatnonzero(on & biz)
        tx.add(ix[j], np.full(len(j), 9), self.turn[m, j] * rng.uniform(0.08, 0.2, len(j)), "D", "batch", "payroll")
        # tax payments of taxpayers (current year's filing pattern)
        y = int(T.astype("datetime64[Y]").astype(int)) + 1970
        k = int(np.clip(y - self.tax["years"][0], 0, len(self.tax["years"]) - 1))
        tp = np.flatnonzero(live & self.pop.taxpayer)
        filed = self.tax["filed"][k, tp]
        pays = rng.random(len(tp)) < filed / 12
        c = tp[pays]
        amt = self.tax["paid"][k, c] / np.maximum(filed[pays], 1) * rng.uniform(0.7, 1.3, len(c))
        tx.add(c, rng.integers(0, min(15, nd), len(c)), np.maximum(amt, 50), "D", mob(c, "counter"), "tax", CP_TAX)
        # everyday life of individuals
        c = poisson_rows(ind, P.RATE_PURCHASE * act)
        chan = np.where(
            mobile[c] & (rng.random(len(c)) < 0.7), CH["qr"], np.where(rng.random(len(c)) < 0.6, CH["pos"], CH["qr"])
        )
        card = self.card_of[c]
        use_card = (card >= 0) & (rng.random(len(c)) < 0.5)
        tx.add(
            c,
            days(len(c)),
            rng.lognormal(np.log(120), 1.0, len(c)),
            "D",
            chan,
            "purchase",
            others(len(c)),
            np.where(use_card, card, -1),
        )
        ev = np.flatnonzero(ind & ((self.last_event == m) | (self.last_event == m - 1)))
        cnt = rng.integers(P.LIFE_EVENT_SURGE[0], P.LIFE_EVENT_SURGE[1] + 1, len(ev))
        c = np.repeat(ev, cnt)
        tx.add(
            c, days(len(c)), rng.lognormal(np.log(12_000), 0.7, len(c)), "D", mob(c, "pos"), "purchase", others(len(c))
        )
        c = poisson_rows(ind, P.RATE_CASH * act)
        chan = np.where(rng.random(len(c)) < 0.2, CH["counter"], np.where(pop.urban[c], CH["atm"], CH["agent"]))
        direction_d = rng.random(len(c)) < 0.8
        amt = np.round(rng.lognormal(np.log(600), 0.8, len(c)), -2).clip(100)
        tx.add(c[direction_d], days(int(direction_d.sum())), amt[direction_d], "D", chan[direction_d], "cash")
        tx.add(c[~direction_d], days(int((~direction_d).sum())), amt[~direction_d], "C", chan[~direction_d], "cash")
        c = poisson_rows(ind, P.RATE_TRANSFER_OUT * act)
        tx.add(
            c, days(len(c)), rng.lognormal(np.log(800), 0.9, len(c)), "D", mob(c, "counter"), "transfer", others(len(c))
        )
        c = poisson_rows(ind, P.RATE_TRANSFER_IN * act)
        tx.add(
            c, days(len(c)), rng.lognormal(np.log(700), 0.9, len(c)), "C", mob(c, "counter"), "transfer", others(len(c))
        )
        c = poisson_rows(ind, P.RATE_UTILITY * act * np.where(pop.urban, 1.5, 0.7))
        tx.add(c, days(len(c)), rng.lognormal(np.log(90), 0.5, len(c)), "D", mob(c, "other"), "utility")
        c = poisson_rows(live, P.RATE_FEE)
        tx.add(c, days(len(c)), rng.uniform(1, 10, len(c)).round(0), "D", "other", "fee")
        if month >= 9:
            c = np.flatnonzero(ind & ~pop.urban & (rng.random(n) < 0.12))
            tx.add(
                c, days(len(c)), rng.uniform(380, 1_000, len(c)), "D", mob(c, "agent"), "social_insurance", CP_SOCIAL
            )
        c = np.flatnonzero(ind & pop.payroll & (rng.random(n) < 0.02))
        tx.add(c, days(len(c)), rng.uniform(5_000, 30_000, len(c)), "C", "counter", "housing_fund", CP_SOCIAL)
        if month in (3, 6, 9, 12):  # quarterly interest on the 21st (结息日)
            c = np.flatnonzero(live)
            tx.add(c, np.full(len(c), 20), np.maximum(pop.wealth[c], 10) * 0.0035 / 4, "C", "other", "interest")
        self._loan_transactions(m, tx)
        return tx

    def _loan_transactions(self, m: int, tx: _Txns) -> None:
        """Disbursements on the grant date, monthly instalments and payoffs, consistent with the loans."""
        L = self.loans.arrays()
        T, nxt = self.ms[m], self.ms[m] + self.nd[m]
        granted = ~np.isnat(L["grant"])
        cust = L["cust"].astype(np.int64)
        new = granted & (L["grant"] >= T) & (L["grant"] < nxt)
        tx.add(cust[new], (L["grant"][new] - T).astype(np.int64), L["amount"][new], "C", "counter", "loan_disbursement")
        end = np.where(np.isnat(L["end"]), np.datetime64("9999-12-31"), L["end"])
        open_ = granted & (L["grant"] < T) & (end >= T)
        gday = (L["grant"] - L["grant"].astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
        due = T + np.minimum(gday, self.nd[m] - 1)
        inst = open_ & (due < end)
        term = np.maximum(L["term"], 1)
        tx.add(
            cust[inst],
            (due[inst] - T).astype(np.int64),
            L["amount"][inst] / term[inst] * 1.05,
            "D",
            "other",
            "loan_repayment",
        )
        payoff = open_ & (end >= T) & (end < nxt) & ~L["written_off"]
        elapsed = ((T - L["grant"]).astype(np.int64) / 30.4)[payoff]
        remaining = L["amount"][payoff] * np.clip(1 - elapsed / term[payoff], 0.02, 1)
        tx.add(cust[payoff], (end[payoff] - T).astype(np.int64), remaining, "D", "counter", "loan_repayment")

    # ------------------------------------------------------------ balances
    def _balances(self, m: int, rng: np.random.Generator) -> pa.Table:
        pop = self.pop
        T, nxt = self.ms[m], self.ms[m] + self.nd[m]
        n = pop.n
        self.bal_z = 0.7 * self.bal_z + rng.normal(0, 0.3, n)
        end_bal = pop.wealth * np.exp(self.bal_z)
        ix = self.pools["business_flow"]
        end_bal[ix] = self.endbal[m]
        avg = end_bal * rng.uniform(0.85, 1.15, n)
        main_ok = pop.open_day < nxt
        na = len(self.acct_kind)
        ex = np.arange(n, na)
        ex_ok = (self.acct_open[ex] < nxt) & ~(self.acct_close[ex] < nxt) & (self.acct_kind[ex] != "credit_card")
        ex_bal = self.acct_amount[ex] * np.exp(0.02 * m)
        acct = np.concatenate([np.flatnonzero(main_ok), ex[ex_ok]])
        endv = np.concatenate([end_bal[main_ok], ex_bal[ex_ok]])
        avgv = np.concatenate([avg[main_ok], ex_bal[ex_ok]])
        label = str(T.astype("datetime64[M]"))
        return pa.table(
            {
                "account_id": self.acct_ids.take(pa.array(acct)),
                "month": pa.array(np.full(len(acct), label, dtype=object), pa.string()),
                "avg_daily_balance": pa.array(np.round(avgv, 2)),
                "end_balance": pa.array(np.round(endv, 2)),
            }
        )

    # ------------------------------------------------------------ static tables
    def write_static(self) -> dict[str, int]:
        """Write every table but transactions and balances; return rows per table."""
        pop = self.pop
        rows = {"transactions": self.n_txn, "balances": self.n_bal}
        tables: dict[str, pa.Table] = {"customers": customers_table(pop, _rng(self.seed, 8))}
        tables["branches"], tables["managers"] = network_tables(pop)
        L = self.loans.arrays()
        order = np.lexsort((L["cust"], L["app"]))
        L = {k: v[order] for k, v in L.items()}
        k = len(order)
        granted = ~np.isnat(L["grant"])
        ended = granted & (L["end"] < self.export_date)
        # a loan cannot be more days overdue than it has had instalments due (first one month in)
        last_seen = np.where(ended, L["end"], self.export_date - 1)
        room = np.where(granted, (last_seen - L["grant"]).astype("timedelta64[D]").astype(np.int64) - 30, 0)
        L["overdue"] = np.where(granted, np.clip(L["overdue"], 0, np.maximum(room, 0)), -1)
        rng = _rng(self.seed, 9)
        status = np.where(
            ~granted,
            "rejected",
            np.where(
                ended,
                np.where(L["written_off"], "written_off", "settled"),
                np.where((L["overdue"] > 0) & (rng.random(k) < P.CURRENTLY_OVERDUE), "overdue", "active"),
            ),
        )
        tables["loans"] = pa.table(
            {
                "loan_id": ids("L", k, 10),
                "customer_id": self.cust_ids.take(pa.array(L["cust"].astype(np.int64))),
                "product": pa.array(np.array(LOAN_PRODUCTS, dtype=object)[L["prod"].astype(np.int64)], pa.string()),
                "application_date": pa.array(L["app"], pa.date32()),
                "grant_date": pa.array(L["grant"], pa.date32(), from_pandas=True),
                "amount": pa.array(L["amount"], pa.float64(), from_pandas=True),
                "term_months": pa.array(L["term"].astype(np.int64), pa.int64(), mask=L["term"] < 0),
                "status": pa.array(status, pa.string()),
                "max_overdue_days": pa.array(L["overdue"].astype(np.int64), pa.int64(), mask=L["overdue"] < 0),
                "end_date": pa.array(np.where(ended, L["end"], NO_DAY), pa.date32(), from_pandas=True),
            }
        )
        # accounts: main + extras, then one loan account per granted loan
        g = np.flatnonzero(granted)
        kinds = np.concatenate([self.acct_kind, np.full(len(g), "loan", dtype=object)])
        tables["accounts"] = pa.table(
            {
                "account_id": pa.concat_arrays([self.acct_ids, ids("D", len(g), 10)]),
                "customer_id": self.cust_ids.take(
                    pa.array(np.concatenate([self.acct_cust, L["cust"][g]]).astype(np.int64))
                ),
                "account_type": pa.array(kinds, pa.string()),
                "open_date": pa.array(np.concatenate([self.acct_open, L["grant"][g]]), pa.date32()),
                "close_date": pa.array(
                    np.concatenate([self.acct_close, np.where(ended[g], L["end"][g], NO_DAY)]),
                    pa.date32(),
                    from_pandas=True,
                ),
            }
        )
        tables["services"] = self._services_table(_rng(self.seed, 10))
        tables["tax_records"] = self._tax_table()
        tables["contacts"] = self._contacts_table()
        for name, tab in tables.items():
            schema = _schema(name)
            pq.write_table(tab.select(schema.names).cast(schema), self.dir / f"{name}.parquet", compression=COMPRESSION)
            rows[name] = tab.num_rows
        return rows

    def _services_table(self, rng: np.random.Generator) -> pa.Table:
        pop = self.pop
        n = pop.n
        E = self.export_date
        parts: list[tuple[np.ndarray, str, np.ndarray, np.ndarray]] = []

        def since_open(mask: np.ndarray, max_days: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
            c = np.flatnonzero(mask)
            span = np.maximum((E - pop.open_day[c]).astype(np.int64) - 1, 1)
            return c, pop.open_day[c] + (rng.random(len(c)) * np.minimum(span, max_days)).astype(np.int64)

        def ending(start: np.ndarray) -> np.ndarray:
            life = rng.geometric(P.SERVICE_END_MONTHLY, len(start)) * 30
            return np.where(start + life < E, start + life, NO_DAY)

        c = np.flatnonzero(~np.isnat(self.mobile_day))
        parts.append((c, "mobile_banking", self.mobile_day[c], np.full(len(c), NO_DAY)))
        c, s = since_open(~pop.is_biz & (rng.random(n) < P.WECHAT_START * pop.mobile_prop))
        parts.append((c, "wechat_banking", s, ending(s)))
        c = np.flatnonzero(pop.payroll)
        parts.append((c, "payroll_agency", pop.open_day[c], np.full(len(c), NO_DAY)))
        c, s = since_open(~pop.is_biz & (rng.random(n) < P.SOCIAL_SECURITY_CARD))
        parts.append((c, "social_security_card", s, np.full(len(c), NO_DAY)))
        for name, mask in (("qr_merchant", pop.terminal >= 1), ("pos_terminal", pop.terminal == 2)):
            c = np.flatnonzero(mask)
            parts.append((c, name, pop.open_day[c], np.full(len(c), NO_DAY)))
        w = np.flatnonzero(self.acct_kind == "wealth")
        parts.append((self.acct_cust[w], "wealth_management", self.acct_open[w], self.acct_close[w]))
        c, s = since_open(~pop.is_biz & (rng.random(n) < P.INSURANCE_SHARE))
        parts.append((c, "insurance_agency", s, ending(s)))
        cust = np.concatenate([p[0] for p in parts])
        return pa.table(
            {
                "customer_id": self.cust_ids.take(pa.array(cust.astype(np.int64))),
                "service": pa.array(
                    np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts]), pa.string()
                ),
                "start_date": pa.array(np.concatenate([p[2] for p in parts]), pa.date32()),
                "end_date": pa.array(np.concatenate([p[3] for p in parts]), pa.date32(), from_pandas=True),
            }
        )

    def _tax_table(self) -> pa.Table:
        tx = self.tax
        k, c = np.nonzero(tx["exists"])
        order = np.lexsort((tx["years"][k], c))
        k, c = k[order], c[order]
        return pa.table(
            {
                "customer_id": self.cust_ids.take(pa.array(c.astype(np.int64))),
                "tax_year": pa.array(tx["years"][k].astype(np.int64)),
                "months_filed": pa.array(tx["filed"][k, c].astype(np.int64)),
                "tax_paid": pa.array(tx["paid"][k, c]),
                "credit_grade": pa.array(tx["grades"][tx["grade"][k, c]].astype(object), pa.string()),
                "published_date": pa.array(tx["pub"][k, c], pa.date32()),
            }
        )

    def _contacts_table(self) -> pa.Table:
        from bankexport.spec import CONTACT_CHANNELS, CONTACT_OUTCOMES

        if self.contacts:
            cust, prod, day, chan, outc, m = (np.concatenate(x) for x in zip(*self.contacts, strict=True))
        else:
            cust = prod = chan = outc = m = np.array([], np.int64)
            day = np.array([], "datetime64[D]")
        months = np.array([str(x).replace("-", "") for x in self.ms.astype("datetime64[M]")], dtype=object)
        code = np.array(["CL", "BF", "TX", "AG", "MG", "OT"], dtype=object)
        campaign = months[m.astype(np.int64)] + code[prod.astype(np.int64)] if len(m) else np.array([], dtype=object)
        return pa.table(
            {
                "customer_id": self.cust_ids.take(pa.array(cust.astype(np.int64))),
                "product": pa.array(np.array(LOAN_PRODUCTS, dtype=object)[prod.astype(np.int64)], pa.string()),
                "contact_date": pa.array(day.astype("datetime64[D]"), pa.date32()),
                "channel": pa.array(np.array(CONTACT_CHANNELS, dtype=object)[chan.astype(np.int64)], pa.string()),
                "outcome": pa.array(np.array(CONTACT_OUTCOMES, dtype=object)[outc.astype(np.int64)], pa.string()),
                "campaign_id": pa.array(
                    np.char.add("CMP", campaign.astype(str)).astype(object) if len(m) else campaign, pa.string()
                ),
            }
        )

    # ------------------------------------------------------------ oracle
    def write_oracle(self, path: Path, horizon_days: int) -> tuple[int, dict[str, int], dict[str, float]]:
        """Write oracle.parquet; return (rows, positive labels, sum of p) per product."""
        pop = self.pop
        H = np.timedelta64(horizon_days, "D")
        parts: list[pa.Table] = []
        labels = {p: 0 for p in PRODUCTS}
        expected = {p: 0.0 for p in PRODUCTS}
        for p in PRODUCTS:
            ix = self.pools[p]
            sd = P.HIDDEN_SD[p]
            loglik = np.tile(self.log_w, (len(ix), 1))
            for m0 in range(self.M):
                T = self.ms[m0]
                if T + H < self.export_date:
                    etas, gs, fracs, gdays = [], [], [], []
                    last_day = T + H
                    for j in range(m0, self.M):
                        if self.ms[j] > last_day:
                            break
                        nd = self.nd[j]
                        inside = min(nd, int((last_day - self.ms[j]).astype(int)) + 1)
                        fracs.append(max(inside - 1, 0) / (nd - 1))
                        etas.append(self.eta[p][j])
                        gs.append(self.gp[p][j])
                        gd = self.grant_day[p][j].astype(np.int64)
                        gdays.append((gd > 0) & (gd <= inside))
                    cand = self.at_risk[p][m0] & (pop.open_day[ix] < T) & np.isfinite(np.stack(etas)).any(axis=0)
                    c = np.flatnonzero(cand)
                    prob = window_prob(loglik[c], [e[c] for e in etas], [g[c] for g in gs], fracs, sd, self.nodes)
                    # the same with the as-of month's drivers over the whole window: what the
                    # bank can know at the as-of date (drivers move within the window)
                    known = window_prob(
                        loglik[c], [etas[0][c]] * len(etas), [gs[0][c]] * len(gs), fracs, sd, self.nodes
                    )
                    keep = prob > 0
                    labels[p] += int(np.stack(gdays).any(axis=0)[c].sum())
                    expected[p] += float(prob.sum())
                    parts.append(
                        pa.table(
                            {
                                "customer_id": self.cust_ids.take(pa.array(ix[c[keep]].astype(np.int64))),
                                "product": pa.array(np.full(int(keep.sum()), p, dtype=object), pa.string()),
                                "as_of": pa.array(np.full(int(keep.sum()), T), pa.date32()),
                                "p_true": pa.array(prob[keep], pa.float64()),
                                "p_asof": pa.array(known[keep], pa.float64()),
                            }
                        )
                    )
                # condition on this month's observed applications before the next as-of date
                r = self.at_risk[p][m0] & np.isfinite(self.eta[p][m0])
                rr = np.flatnonzero(r)
                loglik[rr] += log_lik_update(self.eta[p][m0][rr], self.applied[p][m0][rr], sd, self.nodes)
        schema = pa.schema(
            [
                ("customer_id", pa.string()),
                ("product", pa.string()),
                ("as_of", pa.date32()),
                ("p_true", pa.float64()),
                ("p_asof", pa.float64()),
            ]
        )
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        pq.write_table(table.cast(schema), path, compression=COMPRESSION)
        return table.num_rows, labels, expected


# ---------------------------------------------------------------- schemas and CSV
_ARROW = {
    "string": pa.string(),
    "enum": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "money": pa.float64(),
    "int": pa.int64(),
    "month": pa.string(),
}


def _schema(table: str) -> pa.Schema:
    """Arrow schema of an export table, from the spec (month columns as ``YYYY-MM`` text)."""
    return pa.schema([(c.name, _ARROW[c.type]) for c in TABLES[table].columns])


def _counterparties() -> pa.Array:
    """Pseudonymous counterparty ids: employers, public agencies, then other parties."""
    emp = [f"E{i:05d}" for i in range(N_EMPLOYERS)]
    gov = ["G_SOCIAL", "G_FINANCE", "G_ACQUIRER", "G_TAX"] + [f"G{i:02d}" for i in range(4, 10)]
    return pa.concat_arrays([pa.array(emp + gov), ids("P", N_PEOPLE, 7)])


def write_csv_export(src_dir: Path, dst_dir: Path, encoding: str = "utf-8") -> list[Path]:
    """Convert a Parquet bank export to CSV files plus a manifest naming the encoding.

    Args:
        src_dir: folder with ``<table>.parquet`` (and optionally ``manifest.json``).
        dst_dir: folder to write ``<table>.csv`` and ``manifest.json`` to.
        encoding: ``utf-8`` or ``gbk``.

    Returns:
        The CSV files written. Dates are ``YYYY-MM-DD``, timestamps ``YYYY-MM-DDTHH:MM:SS``,
        money with at most 2 decimals, empty cells for nulls.
    """
    import pyarrow.csv as pacsv

    if encoding not in ("utf-8", "gbk"):
        raise ValueError("encoding must be 'utf-8' or 'gbk'")
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(src_dir.glob("*.parquet")):
        dst = dst_dir / f"{f.stem}.csv"
        pf = pq.ParquetFile(f)
        with open(dst, "wb") as out:
            header = True
            for batch in pf.iter_batches(batch_size=500_000):
                cols = []
                for col in batch.columns:
                    if pa.types.is_timestamp(col.type):
                        col = pc.strftime(col.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
                    elif pa.types.is_date(col.type):
                        col = pc.strftime(col, format="%Y-%m-%d")
                    elif pa.types.is_floating(col.type):
                        col = pc.cast(pc.cast(pc.round(col, 2), pa.decimal128(20, 2)), pa.string())
                    cols.append(col)
                tab = pa.Table.from_arrays(cols, names=batch.schema.names)
                buf = pa.BufferOutputStream()
                pacsv.write_csv(tab, buf, pacsv.WriteOptions(include_header=header, quoting_style="needed"))
                data = buf.getvalue().to_pybytes()
                out.write(data if encoding == "utf-8" else data.decode("utf-8").encode("gbk"))
                header = False
        written.append(dst)
    manifest = {"format": FORMAT, "encoding": encoding}
    if (src_dir / "manifest.json").exists():
        manifest = {**json.loads((src_dir / "manifest.json").read_text(encoding="utf-8")), "encoding": encoding}
    (dst_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return written
