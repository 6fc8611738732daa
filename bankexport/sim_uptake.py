"""Uptake of the three modelled products: drivers, applications, grants and marketing contacts.

Each month, drivers known at the month's start give every customer of a product's pool an
observable log-hazard and a grant probability (:func:`drivers`); with the hidden effect
they set who applies and who is granted (:func:`uptake`, arithmetic in
:mod:`bankexport.sim_oracle`). Intercepts are solved once, in the first month, so that
the monthly grant rate among eligible customers matches ``GRANT_RATE``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from bankexport import sim_params as P
from bankexport.sim_loans import LP, month_dates, record
from bankexport.sim_oracle import solve_intercept
from bankexport.sim_population import EMP, NO_DAY, OCC, add_months

if TYPE_CHECKING:
    from bankexport.sim_state import Drivers, SimState

log = logging.getLogger(__name__)


def drivers(s: SimState, m: int) -> Drivers:
    """Observable log-hazard (without intercept; -inf: not eligible) and grant probability per product pool."""
    T = s.ms[m]
    tenure_ok = s.pop.open_day <= add_months(np.array([T]), -P.MIN_TENURE_MONTHS)[0]
    return {
        "consumer": _consumer(s, m, tenure_ok),
        "business_flow": _business_flow(s, m, tenure_ok),
        "tax_linked": _tax_linked(s, m, tenure_ok),
    }


def _consumer(s: SimState, m: int, tenure_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pop, T = s.pop, s.ms[m]
    ix = s.pools["consumer"]
    age = (T - pop.birth[ix]).astype(np.float64) / 365.25
    occ, emp = pop.occ[ix], pop.emp[ix]
    pay = pop.payroll[ix]
    public = np.isin(emp, [EMP["government"], EMP["public_institution"]])
    soe = emp == EMP["soe"]
    event = (m - s.last_event[ix] >= P.EVENT_LAG[0]) & (m - s.last_event[ix] <= P.EVENT_LAG[1])
    mobile = s.mobile_day[ix] < T
    c = P.CONSUMER_COEF
    eta = (
        c["payroll"] * pay
        + c["public"] * public
        + c["soe"] * soe
        - c["age_curv"] * ((age - P.CONSUMER_AGE_PEAK[0]) / P.CONSUMER_AGE_PEAK[1]) ** 2
        + c["event"] * event
        + c["mobile"] * mobile
        + c["log_salary"] * np.where(pay, np.log(np.maximum(pop.salary[ix], P.SALARY_REF[0]) / P.SALARY_REF[1]), 0)
        + c["farm_or_retired"] * np.isin(occ, [OCC["farmer"], OCC["retired"]])
        + c["migrant"] * (occ == OCC["migrant_worker"])
    )
    elig = (occ != OCC["student"]) & (age >= P.CONSUMER_AGE[0]) & (age <= P.CONSUMER_AGE[1]) & tenure_ok[ix]
    a = P.CONSUMER_APPROVAL
    g = np.clip(
        a["base"] + a["payroll"] * pay + a["public"] * public - a["older"] * (age > P.CONSUMER_OLDER_AGE),
        *P.CONSUMER_APPROVAL_RANGE,
    )
    return np.where(elig, eta, -np.inf), g


def _business_flow(s: SimState, m: int, tenure_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pop, T = s.pop, s.ms[m]
    ix = s.pools["business_flow"]
    if m == 0:
        turn3 = pop.turnover_base[ix] * s.cal[0][0]
    else:
        turn3 = s.turn[max(0, m - 3) : m].mean(axis=0)
    growth = (
        np.clip(np.log(s.turn[m - 3 : m].mean(axis=0) / s.turn[m - 6 : m - 3].mean(axis=0)), -1, 1)
        if m >= 6
        else np.zeros(len(ix))
    )
    squeeze = (s.endbal[m - 1] / turn3 < P.SQUEEZE_RATIO) if m >= 1 else np.zeros(len(ix), bool)
    b = P.BUSINESS_COEF
    eta = (
        b["log_turnover"] * np.log(np.maximum(turn3, P.TURNOVER_REF[0]) / P.TURNOVER_REF[1])
        + b["growth"] * growth
        + b["squeeze"] * squeeze
        + b["stocking"] * s.cal[m][1]
        + b["business"] * pop.is_biz[ix]
    )
    est_ok = pop.established[ix] <= add_months(np.array([T]), -P.MIN_TENURE_MONTHS)[0]
    elig = tenure_ok[ix] & est_ok
    return np.where(elig, eta, -np.inf), P.BUSINESS_APPROVAL[0] - P.BUSINESS_APPROVAL[1] * squeeze


def _tax_linked(s: SimState, m: int, tenure_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pop, T = s.pop, s.ms[m]
    ix = s.pools["tax_linked"]
    tx = s.tax
    k, has = tx.latest(T, ix)
    kk = np.maximum(k, 0)
    gname = tx.grades[tx.grade[kk, ix]]
    paid = tx.paid[kk, ix]
    full = tx.filed[kk, ix] == 12
    firm_age = (T - pop.established[ix]).astype(np.float64) / 365.25
    t = P.TAX_COEF
    gcoef = np.array([t["grade"].get(g, 0.0) for g in tx.grades])[tx.grade[kk, ix]]
    eta = (
        gcoef
        + t["log_tax"] * np.log(np.maximum(paid, P.TAX_PAID_REF[0]) / P.TAX_PAID_REF[1])
        + t["full_filing"] * full
        + t["log_firm_age"] * np.log1p(np.maximum(firm_age, 0))
        + t["business"] * pop.is_biz[ix]
    )
    elig = has & (gname != "D") & tenure_ok[ix] & (firm_age >= 1)
    appr = np.array([P.TAX_APPROVAL.get(g, 0.0) for g in tx.grades])[tx.grade[kk, ix]]
    return np.where(elig, eta, -np.inf), appr


def solve_intercepts(s: SimState, drv: Drivers) -> None:
    """Each product's intercept: the mean monthly grant rate among eligible customers is ``GRANT_RATE``."""
    for p in P.PRODUCTS:
        eta, g = drv[p]
        ok = np.isfinite(eta)
        s.intercept[p] = solve_intercept(eta[ok], g[ok], P.HIDDEN_SD[p], P.GRANT_RATE[p], s.nodes, s.log_w)
    log.debug("uptake intercepts: %s", s.intercept)


def uptake(s: SimState, m: int, drv: Drivers, rng: np.random.Generator) -> None:
    """Applications, grants and contacts of the three modelled products in month m, then life events."""
    T = s.ms[m]
    pop = s.pop
    for p in P.PRODUCTS:
        ix = s.pools[p]
        eta, g = drv[p]
        eta = (eta + s.intercept[p]).astype(np.float32)
        if not s.live(p, T):
            eta = np.full_like(eta, -np.inf)  # not launched yet: nobody applies, nobody is contacted
        s.eta[p][m] = eta
        s.gp[p][m] = g
        risk = ~s.loans.holding(p, T, ix)
        s.at_risk[p][m] = risk
        a = -np.expm1(-np.exp(eta.astype(np.float64) + P.HIDDEN_SD[p] * s.u[p]))
        applied = risk & (rng.random(len(ix)) < a)
        granted = applied & (rng.random(len(ix)) < s.gp[p][m])
        s.applied[p][m] = applied
        k = np.flatnonzero(applied)
        gdate, adate = month_dates(s, m, len(k), rng)
        rej = ~granted[k]
        adate[rej] = T + rng.integers(0, s.nd[m], int(rej.sum()))
        gdate = np.where(rej, NO_DAY, gdate)
        record(s, p, ix[k], adate, gdate, rng)
        s.grant_day[p][m, k[~rej]] = (gdate[~rej] - T).astype(np.int64) + 1
        s.grant_counts[p] += int((~rej).sum())
        _contacts(s, m, p, eta, risk, applied, adate, k, rng)
    # life events start this month (they show as a spending surge now, raise hazard later)
    age = (T - pop.birth).astype(np.float64) / 365.25
    ev = (
        ~pop.is_biz
        & (age >= P.LIFE_EVENT_AGE[0])
        & (age <= P.LIFE_EVENT_AGE[1])
        & (rng.random(pop.n) < P.LIFE_EVENT_MONTHLY)
    )
    s.last_event[ev] = m


def _contacts(
    s: SimState,
    m: int,
    product: str,
    eta: np.ndarray,
    risk: np.ndarray,
    applied: np.ndarray,
    adate: np.ndarray,
    k: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Marketing touches: managers call at-risk customers, more often the ones the bank scores high.

    An accepted contact falls on or before the application of that month (contacts never
    reveal a later application).
    """
    ix = s.pools[product]
    ok = np.isfinite(eta) & risk & (s.pop.manager[ix] >= 0)
    if not ok.any():
        return
    top = eta >= np.quantile(eta[ok], P.CONTACT_TOP_QUANTILE)
    touched = ok & (rng.random(len(ix)) < np.where(top, P.CONTACT_TOP_RATE, P.CONTACT_RATE))
    app_day = np.full(len(ix), NO_DAY)
    app_day[k] = adate
    t = np.flatnonzero(touched)
    acc = applied[t]
    nd = s.nd[m]
    latest = np.where(acc, (app_day[t] - s.ms[m]).astype(np.int64), nd - 1)
    cday = s.ms[m] + (rng.random(len(t)) * (np.maximum(latest, 0) + 1)).astype(np.int64)
    outcome = np.where(acc, 0, 1 + rng.choice(3, len(t), p=P.CONTACT_OUTCOME_MIX))
    channel = rng.choice(5, len(t), p=P.CONTACT_CHANNEL_MIX)
    s.contacts.append((ix[t], np.full(len(t), LP[product]), cday, channel, outcome, np.full(len(t), m)))
