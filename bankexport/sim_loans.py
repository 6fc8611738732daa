"""The loan book: every application of every loan product, granted or rejected.

The three modelled products are applied for in :mod:`bankexport.sim_uptake`; this module
records applications (terms, amounts, early repayment, arrears, write-offs), keeps each
customer's current loan per product (who is at risk), draws the loans held before the
first month and the products without an oracle (agricultural, mortgage, other), and
builds the ``loans`` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from bankexport import sim_params as P
from bankexport.sim_calendar import month_of_year
from bankexport.sim_oracle import mean_apply
from bankexport.sim_population import NO_DAY, OCC, Population, add_months, ids
from bankexport.spec import LOAN_PRODUCTS

if TYPE_CHECKING:
    from bankexport.sim_state import Drivers, SimState

LP = {name: i for i, name in enumerate(LOAN_PRODUCTS)}
FOREVER = np.datetime64("9999-12-31")  # end of a loan still open at the export date
_FIELDS = {  # each field of the book and its dtype
    "cust": np.int64,
    "prod": np.int8,
    "app": "datetime64[D]",
    "grant": "datetime64[D]",
    "amount": np.float64,
    "term": np.int64,
    "end": "datetime64[D]",
    "overdue": np.int64,
    "written_off": bool,
}


def draw_terms(product: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Terms in months of ``k`` loans of ``product``, from its term mix."""
    terms, p = P.TERMS[product]
    return np.asarray(terms, np.int64)[rng.choice(len(terms), k, p=p)]


@dataclass
class LoanBook:
    """All loan applications as growing parallel arrays (customer positions, not ids),
    and each customer's latest granted loan per product (grant and end dates)."""

    n: int
    export_date: np.datetime64
    parts: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in _FIELDS})
    hold_grant: dict[str, np.ndarray] = field(init=False)
    hold_end: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.hold_grant = {p: np.full(self.n, NO_DAY) for p in LOAN_PRODUCTS}
        self.hold_end = {p: np.full(self.n, NO_DAY) for p in LOAN_PRODUCTS}

    def add(
        self,
        cust: np.ndarray,
        product: str,
        app: np.ndarray,
        grant: np.ndarray,
        amount: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Record applications (grant NaT: rejected) with their term, end date and arrears."""
        k = len(cust)
        granted = ~np.isnat(grant)
        term = draw_terms(product, k, rng)
        start = np.where(granted, grant, app)
        planned = add_months(start, term)
        early = rng.geometric(P.EARLY_REPAY_MONTHLY, k)
        end = np.where(early < term, add_months(start, early), planned)
        bounds = np.array([b for b, _ in P.OVERDUE_MIX])
        shares = np.array([s for _, s in P.OVERDUE_MIX])
        band = rng.choice(len(bounds), k, p=shares / shares.sum())
        lows = np.r_[0, bounds[:-1]][band] + 1
        od = np.where(band == 0, 0, rng.integers(lows, np.maximum(bounds[band], lows) + 1))
        off = (od > P.WRITE_OFF_OVERDUE) & (rng.random(k) < P.WRITE_OFF_SHARE)
        off_at = add_months(start, np.minimum(term, rng.integers(P.WRITE_OFF_MONTHS[0], P.WRITE_OFF_MONTHS[1] + 1, k)))
        end = np.where(off, np.minimum(off_at, end), end)
        end = np.where(granted, end, NO_DAY)
        for name, values in (
            ("cust", np.asarray(cust, np.int64)),
            ("prod", np.full(k, LP[product], np.int8)),
            ("app", app.astype("datetime64[D]")),
            ("grant", grant.astype("datetime64[D]")),
            ("amount", np.where(granted, np.round(amount, -2).clip(1_000), np.nan)),
            ("term", np.where(granted, term, -1)),
            ("end", end),
            ("overdue", np.where(granted, od, -1)),
            ("written_off", off & granted),
        ):
            self.parts[name].append(values)
        self.hold_grant[product][cust[granted]] = grant[granted]
        self.hold_end[product][cust[granted]] = np.where(end[granted] >= self.export_date, FOREVER, end[granted])

    def holding(self, product: str, T: np.datetime64, ix: np.ndarray | None = None) -> np.ndarray:
        """Active at T by the spec's rule: granted before T and not ended before T."""
        g = self.hold_grant[product] if ix is None else self.hold_grant[product][ix]
        e = self.hold_end[product] if ix is None else self.hold_end[product][ix]
        return (g < T) & ~(e < T)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every application so far, one array per field."""
        return {k: np.concatenate(v) if v else np.array([], _FIELDS[k]) for k, v in self.parts.items()}


def amounts(pop: Population, product: str, cust: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Requested amounts (CNY) of applications of ``product`` by customers ``cust``."""
    k = len(cust)
    if product == "consumer":
        base = np.where(
            pop.payroll[cust],
            pop.salary[cust] * rng.uniform(*P.CONSUMER_SALARY_MULTIPLE, k),
            rng.uniform(*P.CONSUMER_AMOUNT, k),
        )
        return np.minimum(base, P.CONSUMER_MAX)
    if product == "business_flow":
        return np.minimum(pop.turnover_base[cust] * rng.uniform(*P.TURNOVER_MULTIPLE[product], k), P.BUSINESS_MAX)
    if product == "tax_linked":
        base = pop.turnover_base[cust] * rng.uniform(*P.TURNOVER_MULTIPLE[product], k)
        return np.minimum(np.maximum(base, P.TAX_LINKED_MIN), P.BUSINESS_MAX)
    return rng.uniform(*P.LOAN_AMOUNT[product], k)


def record(
    s: SimState, product: str, cust: np.ndarray, app: np.ndarray, grant: np.ndarray, rng: np.random.Generator
) -> None:
    """Draw amounts and record applications of ``product`` (grant NaT: rejected)."""
    if len(cust) == 0:
        return
    s.loans.add(cust, product, app, grant, amounts(s.pop, product, cust, rng), rng)


def month_dates(s: SimState, m: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Grant days uniform over days 2..end of month (never the as-of day), application on/before."""
    nd = s.nd[m]
    gday = rng.integers(2, nd + 1, k)
    aday = rng.integers(1, gday + 1)
    return s.ms[m] + gday - 1, s.ms[m] + aday - 1


def mortgage_pool(pop: Population) -> np.ndarray:
    """Customers who may take a mortgage: urban individuals with payroll or a business."""
    return ~pop.is_biz & pop.urban & (pop.payroll | pop.bf_pool)


def preexisting_loans(s: SimState, drivers: Drivers, rng: np.random.Generator) -> None:
    """Loans granted before the first month; drawn from observables only (never the hidden
    effect), under the contact policy the intercepts were solved with."""
    T = s.ms[0]
    for p in P.PRODUCTS:
        eta, g = drivers[p]
        ok = np.isfinite(eta)
        ix = s.pools[p][ok]
        tau, reach = (x[ok] for x in s.policy[p])
        monthly = mean_apply(eta[ok] + s.intercept[p], tau, reach, P.HIDDEN_SD[p], s.nodes, s.log_w) * g[ok]
        terms, tp = P.TERMS[p]
        mean_term = float(np.dot(terms, tp))
        take = rng.random(len(ix)) < np.clip(monthly * mean_term, 0, P.PREEXISTING_CAP)
        if s.launch[p] is not None:
            take[:] = False  # launched during the simulation: nobody holds it before
        _backdated(s, p, ix[take], rng)
    pop = s.pop
    agri = np.flatnonzero((pop.occ == OCC["farmer"]) & (pop.open_day < T))
    _backdated(s, "agricultural", agri[rng.random(len(agri)) < P.AGRI_RATE * P.PREEXISTING_AGRI * 12], rng)
    mort = np.flatnonzero(mortgage_pool(pop) & (pop.open_day < T))
    _backdated(s, "mortgage", mort[rng.random(len(mort)) < P.PREEXISTING_MORTGAGE], rng)
    oth = np.flatnonzero(~pop.is_biz & (pop.open_day < T))
    _backdated(s, "other", oth[rng.random(len(oth)) < P.OTHER_RATE * P.PREEXISTING_OTHER_MONTHS], rng)


def _backdated(s: SimState, product: str, cust: np.ndarray, rng: np.random.Generator) -> None:
    """Record loans of ``cust`` granted at a random day within one longest term before the first month."""
    T = s.ms[0]
    terms, _ = P.TERMS[product]
    back = (rng.random(len(cust)) * max(terms) * 30.4).astype(np.int64) + 1
    grant = np.maximum(T - back, s.pop.open_day[cust] + 30)
    keep = grant < T
    cust, grant = cust[keep], grant[keep]
    app = grant - rng.integers(1, 15, len(cust))
    record(s, product, cust, app, grant, rng)


def other_loans(s: SimState, m: int, rng: np.random.Generator) -> None:
    """Agricultural, mortgage and other loans of month ``m`` (no oracle)."""
    pop, T = s.pop, s.ms[m]
    month = month_of_year(T)
    old = pop.open_day < T
    for product, pool, rate, approve in (
        (
            "agricultural",
            (pop.occ == OCC["farmer"]) | (pop.occ == OCC["merchant"]) & ~pop.urban,
            P.AGRI_RATE * (P.AGRI_PEAK_FACTOR if month in P.AGRI_PEAK_MONTHS else P.AGRI_OFF_FACTOR),
            P.OTHER_APPROVAL["agricultural"],
        ),
        ("mortgage", mortgage_pool(pop), P.MORTGAGE_RATE, P.OTHER_APPROVAL["mortgage"]),
        ("other", ~pop.is_biz, P.OTHER_RATE, P.OTHER_APPROVAL["other"]),
    ):
        cand = np.flatnonzero(pool & old & ~s.loans.holding(product, T))
        cand = cand[rng.random(len(cand)) < rate / approve]
        ok = rng.random(len(cand)) < approve
        gdate, adate = month_dates(s, m, len(cand), rng)
        record(s, product, cand, adate, np.where(ok, gdate, NO_DAY), rng)


def loans_table(s: SimState, rng: np.random.Generator) -> tuple[pa.Table, dict[str, np.ndarray], np.ndarray]:
    """The ``loans`` table, with the loans' arrays in its row order and which loans ended.

    A loan's arrears are capped by the instalments it has had due (the first one month
    after the grant); an open loan that was ever overdue is currently overdue with
    probability ``CURRENTLY_OVERDUE``.
    """
    L = s.loans.arrays()
    order = np.lexsort((L["cust"], L["app"]))
    L = {k: v[order] for k, v in L.items()}
    k = len(order)
    granted = ~np.isnat(L["grant"])
    ended = granted & (L["end"] < s.export_date)
    last_seen = np.where(ended, L["end"], s.export_date - 1)
    room = np.where(granted, (last_seen - L["grant"]).astype("timedelta64[D]").astype(np.int64) - 30, 0)
    L["overdue"] = np.where(granted, np.clip(L["overdue"], 0, np.maximum(room, 0)), -1)
    status = np.where(
        ~granted,
        "rejected",
        np.where(
            ended,
            np.where(L["written_off"], "written_off", "settled"),
            np.where((L["overdue"] > 0) & (rng.random(k) < P.CURRENTLY_OVERDUE), "overdue", "active"),
        ),
    )
    table = pa.table(
        {
            "loan_id": ids("L", k, 10),
            "customer_id": s.cust_ids.take(pa.array(L["cust"].astype(np.int64))),
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
    return table, L, ended
