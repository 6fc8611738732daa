"""Monthly activity: turnover, mobile-banking adoption, transactions and balances.

Each month, business-flow customers' turnover and balance ratio move (:func:`turnover_month`),
some customers adopt mobile banking (:func:`services_month`), and the month's transactions
(income, business flows, tax payments, everyday spending, loan cash flows) are drawn
vectorised into a :class:`Txns` buffer, then built as one Arrow table; balances are modelled
directly (:func:`balances`), not summed from the transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bankexport import sim_params as P
from bankexport.sim_calendar import month_of_year
from bankexport.sim_loans import FOREVER
from bankexport.sim_population import EMP, OCC, ids
from bankexport.spec import CHANNELS, TXN_TYPES

if TYPE_CHECKING:
    from bankexport.sim_state import SimState

CH = {name: i for i, name in enumerate(CHANNELS)}
TT = {name: i for i, name in enumerate(TXN_TYPES)}
CP_GOV, N_PEOPLE = P.N_EMPLOYERS, 60_000  # counterparty pool: employers, then agencies, then others
CP_SOCIAL, CP_FINANCE, CP_ACQUIRER, CP_TAX = CP_GOV, CP_GOV + 1, CP_GOV + 2, CP_GOV + 3
CP_OTHERS = CP_GOV + 10
DAY_S = 86_400


def counterparties() -> pa.Array:
    """Pseudonymous counterparty ids: employers, public agencies, then other parties."""
    emp = [f"E{i:05d}" for i in range(P.N_EMPLOYERS)]
    gov = ["G_SOCIAL", "G_FINANCE", "G_ACQUIRER", "G_TAX"] + [f"G{i:02d}" for i in range(4, 10)]
    return pa.concat_arrays([pa.array(emp + gov), ids("P", N_PEOPLE, 7)])


def money(x: np.ndarray) -> np.ndarray:
    """Amounts rounded to the fen, at least 0.01."""
    return np.maximum(np.round(x, 2), 0.01)


def _lognormal(rng: np.random.Generator, median_sigma: tuple[float, float], k: int) -> np.ndarray:
    """``k`` lognormal amounts with the given (median, sigma)."""
    median, sigma = median_sigma
    return rng.lognormal(np.log(median), sigma, k)


def split(total: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split each ``total[i]`` into ``counts[i]`` random positive parts (flattened, in order)."""
    owner = np.repeat(np.arange(len(total)), counts)
    w = rng.exponential(1.0, len(owner)) + 0.05
    s = np.bincount(owner, weights=w, minlength=len(total))
    return total[owner] * w / s[owner]


# ---------------------------------------------------------------- transactions buffer
class Txns:
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
        """Append transactions (``acct`` -1 or None: the customer's main account; ``cp`` -1: none)."""
        k = len(cust)
        if k == 0:
            return
        ch = np.full(k, CH[channel], np.int8) if isinstance(channel, str) else channel.astype(np.int8)
        cpa = np.full(k, cp, np.int32) if np.isscalar(cp) else np.asarray(cp, np.int32)
        self.parts.append(
            (
                np.asarray(cust, np.int32),
                np.asarray(day, np.int16),
                money(amount),
                np.full(k, direction == "C"),
                ch,
                np.full(k, TT[ttype], np.int8),
                cpa,
                np.full(k, -1, np.int32) if acct is None else np.asarray(acct, np.int32),
            )
        )

    def table(self, s: SimState, m: int, rng: np.random.Generator, first_id: int) -> pa.Table:
        """The month's ``transactions`` rows in time order, ids from ``first_id``, times of day drawn."""
        if self.parts:
            cols = [np.concatenate(c) for c in zip(*self.parts, strict=True)]
        else:  # a month without any transaction (a bank of a few customers)
            cols = [
                np.array([], t) for t in (np.int32, np.int16, np.float64, bool, np.int8, np.int8, np.int32, np.int32)
            ]
        cust, day, amount, credit, ch, tt, cp, acct = cols
        n = len(cust)
        # counters, agents open in business hours; batch runs early; the rest all day
        staffed = np.isin(ch, [CH["counter"], CH["agent"]])
        lo = np.where(staffed, P.BUSINESS_HOURS[0] * 3600, P.ALL_DAY_HOURS[0] * 3600)
        hi = np.where(staffed, P.BUSINESS_HOURS[1] * 3600, P.ALL_DAY_HOURS[1] * 3600)
        lo = np.where(ch == CH["batch"], P.BATCH_HOURS[0] * 3600, lo)
        hi = np.where(ch == CH["batch"], P.BATCH_HOURS[1] * 3600, hi)
        sec = (lo + rng.random(n) * (hi - lo)).astype(np.int64)
        order = np.lexsort((tt, cust, sec, day))
        cust, day, amount, credit, ch, tt, cp, acct, sec = (
            a[order] for a in (cust, day, amount, credit, ch, tt, cp, acct, sec)
        )
        acct = np.where(acct < 0, s.accounts.main[cust], acct)
        t = s.ms[m].astype("datetime64[s]").astype(np.int64) + day.astype(np.int64) * DAY_S + sec
        tid = pc.binary_join_element_wise(
            pa.scalar("T"), pc.utf8_lpad(pc.cast(pa.array(np.arange(first_id, first_id + n)), pa.string()), 12, "0"), ""
        )
        cpa = pa.array(cp, mask=cp < 0)
        return pa.table(
            {
                "txn_id": tid,
                "account_id": s.accounts.ids.take(pa.array(acct)),
                "customer_id": s.cust_ids.take(pa.array(cust)),
                "txn_time": pa.array((t * 1_000_000).astype("datetime64[us]"), pa.timestamp("us")),
                "amount": pa.array(amount, pa.float64()),
                "direction": pa.array(np.where(credit, "C", "D"), pa.string()),
                "channel": pa.array(np.array(CHANNELS, dtype=object)[ch], pa.string()),
                "txn_type": pa.array(np.array(TXN_TYPES, dtype=object)[tt], pa.string()),
                "counterparty_id": s.cp_ids.take(cpa),
            }
        )


# ---------------------------------------------------------------- month state
def services_month(s: SimState, m: int, rng: np.random.Generator) -> None:
    """Mobile-banking adoption of month ``m`` among customers without it."""
    pop, T = s.pop, s.ms[m]
    n = pop.n
    cand = np.isnat(s.mobile_day) & (pop.open_day < T)
    adopt = cand & (rng.random(n) < P.MOBILE_ADOPT_MONTHLY * pop.mobile_prop)
    s.mobile_day[adopt] = T + rng.integers(0, s.nd[m], n)[adopt]


def turnover_month(s: SimState, m: int, rng: np.random.Generator) -> None:
    """Business-flow pool: the month's turnover and end balance (an AR(1) ratio of recent turnover)."""
    pop = s.pop
    ix = s.pools["business_flow"]
    years = m / 12
    mult = s.cal[m][0]
    s.turn[m] = (
        pop.turnover_base[ix]
        * np.exp(pop.turnover_trend[ix] * years)
        * mult
        * rng.lognormal(-(P.TURNOVER_NOISE**2) / 2, P.TURNOVER_NOISE, len(ix))
    )
    s.logr = s.logr_mu + s.rho * (s.logr - s.logr_mu) + rng.normal(0, s.shock, len(ix))
    recent = s.turn[max(0, m - 2) : m + 1].mean(axis=0)
    s.endbal[m] = np.round(recent * np.exp(s.logr), 2)


# ---------------------------------------------------------------- transactions
@dataclass
class _Month:
    """What every transaction step of month ``m`` reads, and its shared draws."""

    s: SimState
    m: int
    rng: np.random.Generator
    nd: int
    month: int  # calendar month 1..12
    live: np.ndarray  # customers open before the month
    ind: np.ndarray  # live individuals
    act: np.ndarray  # activity level (seasonal workers away: lower)
    mobile: np.ndarray  # holding mobile banking at the month's start
    fest_month: bool  # the weeks before 春节: bonuses, remittances home

    @classmethod
    def of(cls, s: SimState, m: int, rng: np.random.Generator) -> _Month:
        pop, T = s.pop, s.ms[m]
        month = month_of_year(T)
        live = pop.open_day < T
        away = pop.seasonal & (month >= P.AWAY_MONTHS[0]) & (month <= P.AWAY_MONTHS[1])
        return cls(
            s=s,
            m=m,
            rng=rng,
            nd=s.nd[m],
            month=month,
            live=live,
            ind=live & ~pop.is_biz,
            act=pop.activity * np.where(away, P.AWAY_ACTIVITY, 1.0),
            mobile=s.mobile_day < T,
            fest_month=s.cal[m][1] > P.FESTIVAL_MONTH_STOCKING,
        )

    def days(self, k: int) -> np.ndarray:
        """Days of the month (0-based), uniform."""
        return self.rng.integers(0, self.nd, k)

    def poisson_rows(self, mask: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
        """Customer positions, each repeated by a Poisson(lam) count (0 outside ``mask``)."""
        cnt = self.rng.poisson(np.where(mask, lam, 0.0))
        return np.repeat(np.arange(self.s.pop.n), cnt)

    def others(self, k: int) -> np.ndarray:
        """Random other parties as counterparties."""
        return CP_OTHERS + self.rng.integers(0, N_PEOPLE, k)

    def mob(self, c: np.ndarray, otherwise: str) -> np.ndarray:
        """Mobile for customers holding mobile banking, else ``otherwise``."""
        return np.where(self.mobile[c], CH["mobile"], CH[otherwise])

    def with_others(
        self,
        tx: Txns,
        c: np.ndarray,
        amount: tuple[float, float],
        direction: str,
        otherwise: str,
        ttype: str = "transfer",
    ) -> None:
        """One transaction per entry of ``c`` with another party: a random day, a lognormal
        (median, sigma) amount, by mobile where held, else ``otherwise``."""
        k = len(c)
        tx.add(
            c, self.days(k), _lognormal(self.rng, amount, k), direction, self.mob(c, otherwise), ttype, self.others(k)
        )


def transactions(s: SimState, m: int, rng: np.random.Generator) -> Txns:
    """All transactions of month ``m`` (steps in a fixed order: the random stream depends on it)."""
    mo = _Month.of(s, m, rng)
    tx = Txns()
    _income(mo, tx)
    _business_flows(mo, tx)
    _tax_payments(mo, tx)
    _everyday(mo, tx)
    _public_and_interest(mo, tx)
    loan_transactions(s, m, tx)
    return tx


def _income(mo: _Month, tx: Txns) -> None:
    """Payroll (代发工资), pensions and subsidies as batch credits; remittances of migrant workers."""
    pop, rng, nd, n = mo.s.pop, mo.rng, mo.nd, mo.s.pop.n
    c = np.flatnonzero(mo.ind & pop.payroll)
    bonus = np.where(
        mo.fest_month & np.isin(pop.emp[c], [EMP["government"], EMP["public_institution"]]), P.FESTIVAL_BONUS, 1.0
    )
    tx.add(
        c,
        np.minimum(pop.payroll_day[c] - 1, nd - 1),
        pop.salary[c] * bonus * rng.normal(1, P.SALARY_NOISE, len(c)),
        "C",
        "batch",
        "payroll",
        pop.employer_cp[c],
    )
    c = np.flatnonzero(mo.ind & (pop.pension > 0))
    tx.add(c, np.full(len(c), P.PENSION_DAY - 1), pop.pension[c], "C", "batch", "pension", CP_SOCIAL)
    if mo.month in P.SUBSIDY_MONTHS:
        c = np.flatnonzero(mo.ind & pop.subsidy & (rng.random(n) < P.SUBSIDY_MONTHLY))
        tx.add(c, mo.days(len(c)), rng.uniform(*P.SUBSIDY_AMOUNT, len(c)), "C", "batch", "subsidy", CP_FINANCE)
    # migrant workers' money home, and families receiving it
    mw = mo.ind & (pop.occ == OCC["migrant_worker"])
    c = mo.poisson_rows(mw, np.where(mo.fest_month, *P.REMIT_RATE["migrant"]))
    mo.with_others(tx, c, P.REMIT_AMOUNT["migrant"], "C", "counter")
    c = mo.poisson_rows(mo.ind & pop.family_remit, np.where(mo.fest_month, *P.REMIT_RATE["family"]))
    mo.with_others(tx, c, P.REMIT_AMOUNT["family"], "C", "agent")


def _business_flows(mo: _Month, tx: Txns) -> None:
    """Business-flow pool: turnover as settlements / deposits / transfers in, plus outgoings."""
    s, rng, m = mo.s, mo.rng, mo.m
    pop = s.pop
    ix = s.pools["business_flow"]
    on = mo.live[ix]
    term = pop.terminal[ix]
    biz = pop.is_biz[ix]
    for mask, lo_hi, ttype, direction in (
        (on & ~biz & (term > 0), P.SETTLEMENT_DAYS, "merchant_settlement", "C"),
        (on & ~biz & (term == 0), P.CASH_DEPOSIT_DAYS, "cash", "C"),
        (on & biz, None, "transfer", "C"),
    ):
        j = np.flatnonzero(mask)
        cnt = (
            rng.integers(lo_hi[0], lo_hi[1] + 1, len(j))
            if lo_hi
            else np.maximum(1, rng.poisson(P.BUSINESS_TRANSFERS_IN, len(j)))
        )
        amt = split(s.turn[m, j], cnt, rng)
        cust = np.repeat(ix[j], cnt)
        if ttype == "merchant_settlement":
            chan = np.where(
                (np.repeat(term[j], cnt) == 2) & (rng.random(len(cust)) < P.POS_SETTLEMENT_SHARE), CH["pos"], CH["qr"]
            )
            cp: np.ndarray | int = CP_ACQUIRER
        elif ttype == "cash":
            chan, cp = np.full(len(cust), CH["counter"]), -1
        else:
            chan = np.where(rng.random(len(cust)) < P.BUSINESS_MOBILE_SHARE, CH["mobile"], CH["counter"])
            cp = mo.others(len(cust))
        tx.add(cust, mo.days(len(cust)), amt, direction, chan, ttype, cp)
    j = np.flatnonzero(on)
    cnt = np.maximum(1, rng.poisson(np.where(biz[j], P.BUSINESS_TRANSFERS_OUT, P.MERCHANT_TRANSFERS_OUT)))
    amt = split(s.turn[m, j] * rng.uniform(*P.OUTGOINGS_SHARE, len(j)), cnt, rng)
    cust = np.repeat(ix[j], cnt)
    tx.add(
        cust,
        mo.days(len(cust)),
        amt,
        "D",
        np.where(rng.random(len(cust)) < P.BUSINESS_MOBILE_SHARE, CH["mobile"], CH["counter"]),
        "transfer",
        mo.others(len(cust)),
    )
    j = np.flatnonzero(on & biz)
    tx.add(
        ix[j],
        np.full(len(j), P.BUSINESS_PAYROLL_DAY - 1),
        s.turn[m, j] * rng.uniform(*P.BUSINESS_PAYROLL, len(j)),
        "D",
        "batch",
        "payroll",
    )


def _tax_payments(mo: _Month, tx: Txns) -> None:
    """Tax payments of taxpayers, following the current year's filing pattern."""
    s, rng = mo.s, mo.rng
    tax = s.tax
    y = int(s.ms[mo.m].astype("datetime64[Y]").astype(int)) + 1970
    k = int(np.clip(y - tax.years[0], 0, len(tax.years) - 1))
    tp = np.flatnonzero(mo.live & s.pop.taxpayer)
    filed = tax.filed[k, tp]
    pays = rng.random(len(tp)) < filed / 12
    c = tp[pays]
    amt = tax.paid[k, c] / np.maximum(filed[pays], 1) * rng.uniform(*P.TAX_PAYMENT_SPREAD, len(c))
    tx.add(
        c,
        rng.integers(0, min(P.TAX_PAYMENT_DAYS, mo.nd), len(c)),
        np.maximum(amt, P.TAX_PAYMENT_MIN),
        "D",
        mo.mob(c, "counter"),
        "tax",
        CP_TAX,
    )


def _everyday(mo: _Month, tx: Txns) -> None:
    """Everyday life of individuals: purchases (a surge after a life event), cash, transfers, utilities, fees."""
    s, rng, ind, act = mo.s, mo.rng, mo.ind, mo.act
    pop = s.pop
    c = mo.poisson_rows(ind, P.RATE_PURCHASE * act)
    chan = np.where(
        mo.mobile[c] & (rng.random(len(c)) < P.PURCHASE_QR_MOBILE),
        CH["qr"],
        np.where(rng.random(len(c)) < P.PURCHASE_POS, CH["pos"], CH["qr"]),
    )
    card = s.accounts.card_of[c]
    use_card = (card >= 0) & (rng.random(len(c)) < P.CREDIT_CARD_USE)
    tx.add(
        c,
        mo.days(len(c)),
        _lognormal(rng, P.PURCHASE_AMOUNT, len(c)),
        "D",
        chan,
        "purchase",
        mo.others(len(c)),
        np.where(use_card, card, -1),
    )
    ev = np.flatnonzero(ind & ((s.last_event == mo.m) | (s.last_event == mo.m - 1)))
    cnt = rng.integers(P.LIFE_EVENT_SURGE[0], P.LIFE_EVENT_SURGE[1] + 1, len(ev))
    c = np.repeat(ev, cnt)
    mo.with_others(tx, c, P.LIFE_EVENT_AMOUNT, "D", "pos", "purchase")
    c = mo.poisson_rows(ind, P.RATE_CASH * act)
    chan = np.where(
        rng.random(len(c)) < P.CASH_AT_COUNTER, CH["counter"], np.where(pop.urban[c], CH["atm"], CH["agent"])
    )
    direction_d = rng.random(len(c)) < P.CASH_WITHDRAWAL
    amt = np.round(_lognormal(rng, P.CASH_AMOUNT, len(c)), -2).clip(100)
    tx.add(c[direction_d], mo.days(int(direction_d.sum())), amt[direction_d], "D", chan[direction_d], "cash")
    tx.add(c[~direction_d], mo.days(int((~direction_d).sum())), amt[~direction_d], "C", chan[~direction_d], "cash")
    c = mo.poisson_rows(ind, P.RATE_TRANSFER_OUT * act)
    mo.with_others(tx, c, P.TRANSFER_OUT_AMOUNT, "D", "counter")
    c = mo.poisson_rows(ind, P.RATE_TRANSFER_IN * act)
    mo.with_others(tx, c, P.TRANSFER_IN_AMOUNT, "C", "counter")
    c = mo.poisson_rows(ind, P.RATE_UTILITY * act * np.where(pop.urban, *P.UTILITY_AREA))
    tx.add(c, mo.days(len(c)), _lognormal(rng, P.UTILITY_AMOUNT, len(c)), "D", mo.mob(c, "other"), "utility")
    c = mo.poisson_rows(mo.live, P.RATE_FEE)
    tx.add(c, mo.days(len(c)), rng.uniform(*P.FEE_AMOUNT, len(c)).round(0), "D", "other", "fee")


def _public_and_interest(mo: _Month, tx: Txns) -> None:
    """Rural social insurance premiums, housing-fund withdrawals and quarterly interest."""
    pop, rng, n = mo.s.pop, mo.rng, mo.s.pop.n
    if mo.month >= P.SOCIAL_INSURANCE_FROM:
        c = np.flatnonzero(mo.ind & ~pop.urban & (rng.random(n) < P.SOCIAL_INSURANCE_MONTHLY))
        tx.add(
            c,
            mo.days(len(c)),
            rng.uniform(*P.SOCIAL_INSURANCE_AMOUNT, len(c)),
            "D",
            mo.mob(c, "agent"),
            "social_insurance",
            CP_SOCIAL,
        )
    c = np.flatnonzero(mo.ind & pop.payroll & (rng.random(n) < P.HOUSING_FUND_MONTHLY))
    tx.add(c, mo.days(len(c)), rng.uniform(*P.HOUSING_FUND_AMOUNT, len(c)), "C", "counter", "housing_fund", CP_SOCIAL)
    if mo.month in P.INTEREST_MONTHS:  # quarterly interest on the 21st (结息日)
        c = np.flatnonzero(mo.live)
        amount = np.maximum(pop.wealth[c], 10) * P.DEMAND_DEPOSIT_RATE / 4
        tx.add(c, np.full(len(c), P.INTEREST_DAY - 1), amount, "C", "other", "interest")


def loan_transactions(s: SimState, m: int, tx: Txns) -> None:
    """Disbursements on the grant date, monthly instalments and payoffs, consistent with the loans."""
    L = s.loans.arrays()
    T, nxt = s.ms[m], s.ms[m] + s.nd[m]
    granted = ~np.isnat(L["grant"])
    cust = L["cust"].astype(np.int64)
    new = granted & (L["grant"] >= T) & (L["grant"] < nxt)
    tx.add(cust[new], (L["grant"][new] - T).astype(np.int64), L["amount"][new], "C", "counter", "loan_disbursement")
    end = np.where(np.isnat(L["end"]), FOREVER, L["end"])
    open_ = granted & (L["grant"] < T) & (end >= T)
    gday = (L["grant"] - L["grant"].astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    due = T + np.minimum(gday, s.nd[m] - 1)
    inst = open_ & (due < end)
    term = np.maximum(L["term"], 1)
    tx.add(
        cust[inst],
        (due[inst] - T).astype(np.int64),
        L["amount"][inst] / term[inst] * P.INSTALMENT_LOADING,
        "D",
        "other",
        "loan_repayment",
    )
    payoff = open_ & (end >= T) & (end < nxt) & ~L["written_off"]
    elapsed = ((T - L["grant"]).astype(np.int64) / 30.4)[payoff]
    remaining = L["amount"][payoff] * np.clip(1 - elapsed / term[payoff], P.PAYOFF_MIN_SHARE, 1)
    tx.add(cust[payoff], (end[payoff] - T).astype(np.int64), remaining, "D", "counter", "loan_repayment")


# ---------------------------------------------------------------- balances
def balances(s: SimState, m: int, rng: np.random.Generator) -> pa.Table:
    """The month's ``balances`` rows: main accounts (wealth x an AR(1) shock; turnover ratio for
    the business-flow pool) and open deposit and wealth accounts."""
    pop, acc = s.pop, s.accounts
    T, nxt = s.ms[m], s.ms[m] + s.nd[m]
    n = pop.n
    s.bal_z = P.BALANCE_AR[0] * s.bal_z + rng.normal(0, P.BALANCE_AR[1], n)
    end_bal = pop.wealth * np.exp(s.bal_z)
    ix = s.pools["business_flow"]
    end_bal[ix] = s.endbal[m]
    avg = end_bal * rng.uniform(*P.AVG_BALANCE_SPREAD, n)
    main_ok = pop.open_day < nxt
    na = len(acc.kind)
    ex = np.arange(n, na)
    ex_ok = (acc.open[ex] < nxt) & ~(acc.close[ex] < nxt) & (acc.kind[ex] != "credit_card")
    ex_bal = acc.amount[ex] * np.exp(P.EXTRA_BALANCE_GROWTH * m)
    acct = np.concatenate([np.flatnonzero(main_ok), ex[ex_ok]])
    endv = np.concatenate([end_bal[main_ok], ex_bal[ex_ok]])
    avgv = np.concatenate([avg[main_ok], ex_bal[ex_ok]])
    label = str(T.astype("datetime64[M]"))
    return pa.table(
        {
            "account_id": acc.ids.take(pa.array(acct)),
            "month": pa.array(np.full(len(acct), label, dtype=object), pa.string()),
            "avg_daily_balance": pa.array(np.round(avgv, 2)),
            "end_balance": pa.array(np.round(endv, 2)),
        }
    )
