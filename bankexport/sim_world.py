"""The rest of the world drawn before the months run: accounts, tax history, mobile banking.

Each is drawn once from the population (:mod:`bankexport.sim_population`) with its own
random stream; the months then read them (tax records feed the tax-linked hazard, accounts
carry transactions and balances) and the writers export them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bankexport import sim_params as P
from bankexport.sim_population import NO_DAY, Population, ids


@dataclass
class Accounts:
    """Every deposit-side account: customer ``i``'s main account is account ``i``, extras follow."""

    kind: np.ndarray  # object: account_type
    cust: np.ndarray  # int64 customer position
    open: np.ndarray  # datetime64[D]
    close: np.ndarray  # datetime64[D], NaT: open at the export date
    amount: np.ndarray  # float64 typical balance of an extra account (0 for main accounts)
    card_of: np.ndarray  # int64 account of each customer's credit card, -1: none
    ids: pa.Array  # account_id strings, by account position

    @property
    def main(self) -> np.ndarray:
        """The main account of each customer (its position)."""
        return np.arange(len(self.card_of), dtype=np.int64)


def draw_accounts(pop: Population, export_date: np.datetime64, rng: np.random.Generator) -> Accounts:
    """Main account per customer (position i), then deposits, wealth and credit cards."""
    n = pop.n
    kind = np.where(pop.is_biz, "current", np.where(rng.random(n) < P.DEBIT_CARD_SHARE, "debit_card", "savings"))
    extras = []
    td = ~pop.is_biz & (pop.wealth > P.TIME_DEPOSIT_WEALTH) & (rng.random(n) < P.TIME_DEPOSIT_SHARE)
    wm = ~pop.is_biz & (pop.wealth > P.WEALTH_ACCOUNT_WEALTH) & (rng.random(n) < P.WEALTH_ACCOUNT_SHARE)
    cc = ~pop.is_biz & pop.urban & (pop.payroll | pop.bf_pool) & (rng.random(n) < P.CREDIT_CARD_SHARE)
    for typ, mask in (("time_deposit", td), ("wealth", wm), ("credit_card", cc)):
        ix = np.flatnonzero(mask)
        extras.append((np.full(len(ix), typ, dtype=object), ix))
    ex_kind = np.concatenate([e[0] for e in extras])
    ex_cust = np.concatenate([e[1] for e in extras])
    span = (export_date - pop.open_day[ex_cust]).astype(np.int64)
    ex_open = pop.open_day[ex_cust] + (
        rng.random(len(ex_cust)) * np.maximum(span - 1, 0) * P.EXTRA_ACCOUNT_OPEN_SPAN
    ).astype(np.int64)
    life = rng.geometric(P.ACCOUNT_CLOSE_MONTHLY, len(ex_cust)) * 30
    ex_close = ex_open + life
    ex_close = np.where((ex_kind != "credit_card") & (ex_close < export_date), ex_close, NO_DAY)
    kinds = np.concatenate([kind.astype(object), ex_kind])
    amount = np.concatenate([np.zeros(n), pop.wealth[ex_cust] * rng.uniform(*P.EXTRA_ACCOUNT_BALANCE, len(ex_cust))])
    card_of = np.full(n, -1, np.int64)
    is_cc = ex_kind == "credit_card"
    card_of[ex_cust[is_cc]] = n + np.flatnonzero(is_cc)
    return Accounts(
        kind=kinds,
        cust=np.concatenate([np.arange(n), ex_cust]),
        open=np.concatenate([pop.open_day, ex_open]),
        close=np.concatenate([np.full(n, NO_DAY), ex_close]),
        amount=amount,
        card_of=card_of,
        ids=ids("A", len(kinds), 11),
    )


@dataclass
class TaxHistory:
    """Tax records per (tax year index k, customer position c); ``exists`` marks the exported ones."""

    years: np.ndarray  # int64 tax years
    grade: np.ndarray  # int8 (k, c) index into ``grades``
    paid: np.ndarray  # float64 (k, c)
    filed: np.ndarray  # int64 (k, c) months filed
    pub: np.ndarray  # datetime64[D] (k, c) published date
    exists: np.ndarray  # bool (k, c)
    grades: np.ndarray  # grade letters

    def latest(self, T: np.datetime64, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row (year index) of each customer's latest tax record published before T; has-record flag."""
        known = self.exists[:, ix] & (self.pub[:, ix] < T)
        k = np.where(known.any(axis=0), len(self.years) - 1 - np.argmax(known[::-1], axis=0), -1)
        return k, k >= 0


def draw_tax_history(
    pop: Population, first_month: np.datetime64, export_date: np.datetime64, rng: np.random.Generator
) -> TaxHistory:
    """Tax records of taxpayers for every tax year published before the export date."""
    y_first = int(first_month.astype("datetime64[Y]").astype(int)) + 1970
    y0 = y_first - P.TAX_YEARS_BEFORE
    y1 = int(export_date.astype("datetime64[Y]").astype(int)) + 1970 - 1
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
        g = np.where(y - est_year < P.TAX_NEW_FIRM_YEARS, int(np.flatnonzero(grades == "M")[0]), cur)
        grade[k] = g
        turnover = 12 * pop.turnover_base * np.exp(pop.turnover_trend * (y - y_first))
        gname = grades[g]
        filed[k] = np.where(
            np.isin(gname, ["A", "B", "M"]),
            12,
            np.where(
                gname == "C",
                rng.integers(P.TAX_FILED_C[0], P.TAX_FILED_C[1] + 1, n),
                rng.integers(P.TAX_FILED_D[0], P.TAX_FILED_D[1] + 1, n),
            ),
        )
        paid[k] = np.round(turnover * rate * filed[k] / 12 * rng.lognormal(0, P.TAX_PAID_NOISE, n), 2)
        lo = np.datetime64(f"{y + 1}-{m1:02d}-{d1:02d}")
        hi = np.datetime64(f"{y + 1}-{m2:02d}-{d2:02d}")
        pub[k] = lo + rng.integers(0, int((hi - lo).astype(int)) + 1, n)
        exists[k] = pop.taxpayer & (est_year <= y) & (pub[k] < export_date)
    return TaxHistory(years=years, grade=grade, paid=paid, filed=filed, pub=pub, exists=exists, grades=grades)


def initial_mobile(pop: Population, first_month: np.datetime64, rng: np.random.Generator) -> np.ndarray:
    """Mobile-banking start day of the customers holding it before the first month (NaT: none)."""
    n = pop.n
    mobile_day = np.full(n, NO_DAY)
    p = np.clip(P.MOBILE_START * pop.mobile_prop, 0, P.MOBILE_START_CAP)
    has = (rng.random(n) < p) & (pop.open_day < first_month)
    back = rng.integers(1, P.MOBILE_START_BACK_DAYS, n)
    mobile_day[has] = np.maximum(first_month - back, pop.open_day + 1)[has]
    return mobile_day
