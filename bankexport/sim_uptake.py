"""Uptake of the three modelled products: drivers, contact effects, applications and grants.

Each month, drivers known at the month's start give every customer of a product's pool an
observable log-hazard and a grant probability (:func:`drivers`), and a kind that sets what
a contact would add to the log-hazard (:func:`contact_kinds`, :func:`contact_tau`). The
month's touches are decided first (:mod:`bankexport.sim_contact`); then, with the hidden
effect, the hazard sets who applies and who is granted (:func:`uptake`, arithmetic in
:mod:`bankexport.sim_oracle`). Intercepts are solved once, in the first month, so that
the monthly grant rate among eligible customers under the managers' ordinary calls matches
``GRANT_RATE`` (randomised campaigns add to it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bankexport import sim_params as P
from bankexport.sim_contact import expected_reach, record_contacts, touches
from bankexport.sim_loans import month_dates, record
from bankexport.sim_oracle import solve_intercept
from bankexport.sim_population import EMP, NO_DAY, OCC, add_months

if TYPE_CHECKING:
    from bankexport.sim_state import Drivers, SimState

log = logging.getLogger(__name__)


def drivers(s: SimState, m: int) -> Drivers:
    """Observable log-hazard (without intercept; -inf: not eligible) and grant probability per product pool.

    ``m`` may be ``s.M``, the export month: the drivers known at the latest as-of date.
    """
    T = s.month_start(m)
    tenure_ok = s.pop.open_day <= add_months(np.array([T]), -P.MIN_TENURE_MONTHS)[0]
    return {
        "consumer": _consumer(s, m, tenure_ok),
        "business_flow": _business_flow(s, m, tenure_ok),
        "tax_linked": _tax_linked(s, m, tenure_ok),
    }


def _consumer(s: SimState, m: int, tenure_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pop, T = s.pop, s.month_start(m)
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
    pop, T = s.pop, s.month_start(m)
    ix = s.pools["business_flow"]
    turn3, squeeze = _turnover_and_squeeze(s, m)
    growth = (
        np.clip(np.log(s.turn[m - 3 : m].mean(axis=0) / s.turn[m - 6 : m - 3].mean(axis=0)), -1, 1)
        if m >= 6
        else np.zeros(len(ix))
    )
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


def _turnover_and_squeeze(s: SimState, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Business-flow pool: mean turnover of the last 3 months, and whether last month-end's balance is squeezed."""
    if m == 0:
        turn3 = s.pop.turnover_base[s.pools["business_flow"]] * s.cal[0][0]
    else:
        turn3 = s.turn[max(0, m - 3) : m].mean(axis=0)
    squeeze = (s.endbal[m - 1] / turn3 < P.SQUEEZE_RATIO) if m >= 1 else np.zeros(len(turn3), bool)
    return turn3, squeeze


def _tax_linked(s: SimState, m: int, tenure_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pop, T = s.pop, s.month_start(m)
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
    """Each product's intercept: the mean monthly grant rate among eligible customers is
    ``GRANT_RATE`` under the managers' ordinary calls (each customer's tau in the first month and
    the chance that such a call reaches, kept in ``s.policy`` for the loans held at the start);
    the randomised campaigns' incremental uptakes come on top of it."""
    kinds = contact_kinds(s, 0)
    for p in P.PRODUCTS:
        eta, g = drv[p]
        ok = np.isfinite(eta)
        s.policy[p] = (contact_tau(s, p, kinds[p]), expected_reach(s, p, eta))
        tau, reach = (x[ok] for x in s.policy[p])
        s.intercept[p] = solve_intercept(eta[ok], g[ok], P.HIDDEN_SD[p], P.GRANT_RATE[p], s.nodes, s.log_w, tau, reach)
    log.debug("uptake intercepts: %s", s.intercept)


def contact_kinds(s: SimState, m: int) -> dict[str, np.ndarray]:
    """Each pool member's kind for a contact in month ``m`` (index into ``CONTACT_KINDS``).

    The first rule of the product that holds (``sim_params``, block "contacts and their
    effect"), from traits known at the month's start: payroll, age, occupation, recent
    turnover and squeeze, the latest published tax grade.
    ``m`` may be ``s.M`` (the latest as-of).
    """
    T = s.month_start(m)
    pop = s.pop
    K = {k: i for i, k in enumerate(P.CONTACT_KINDS)}
    out = {}
    for p, ix in s.pools.items():
        biz = pop.is_biz[ix]
        age = np.where(biz, np.nan, (T - pop.birth[ix]).astype(np.float64) / 365.25)
        if p == "consumer":
            occ = pop.occ[ix]
            rules = [
                (pop.payroll[ix], "sure_thing"),
                (age >= P.CONSUMER_SLEEPING_AGE, "sleeping_dog"),
                (np.isin(occ, [OCC["farmer"], OCC["retired"]]), "lost_cause"),
                ((age >= P.CONSUMER_PERSUADABLE_AGE[0]) & (age < P.CONSUMER_PERSUADABLE_AGE[1]), "persuadable"),
            ]
        elif p == "business_flow":
            turn3, squeeze = _turnover_and_squeeze(s, m)
            rules = [
                (biz, "lost_cause"),
                (squeeze | (turn3 >= P.BUSINESS_SURE_TURNOVER), "sure_thing"),
                (age >= P.OWNER_SLEEPING_AGE, "sleeping_dog"),
                (turn3 < P.BUSINESS_LOST_TURNOVER, "lost_cause"),
                (np.ones(len(ix), bool), "persuadable"),
            ]
        else:
            k, has = s.tax.latest(T, ix)
            grade = np.where(has, s.tax.grades[s.tax.grade[np.maximum(k, 0), ix]], "")
            rules = [
                (biz, "lost_cause"),
                (age >= P.OWNER_SLEEPING_AGE, "sleeping_dog"),
                (grade == "A", "sure_thing"),
                (np.isin(grade, ["B", "M"]), "persuadable"),
            ]
        conditions = [r for r, _ in rules]
        choices = [K[k] for _, k in rules]
        out[p] = np.select(conditions, choices, default=K["lost_cause"]).astype(np.int8)
    return out


def contact_tau(s: SimState, product: str, kind: np.ndarray) -> np.ndarray:
    """tau of each pool member: the effect of its kind plus its hidden part."""
    effect = np.array([P.CONTACT_TAU[product][k] for k in P.CONTACT_KINDS])
    return (effect[kind] + s.tau_hidden[product]).astype(np.float32)


@dataclass
class MonthHazard:
    """One product's hazard inputs at a month's start, per pool member."""

    eta: np.ndarray  # observable log-hazard with the intercept (-inf: not eligible or not offered)
    grant: np.ndarray  # grant probability of an application
    risk: np.ndarray  # at risk: no active loan of the product
    kind: np.ndarray  # index into CONTACT_KINDS
    tau: np.ndarray  # what a contact that reaches adds to the month's log-hazard


def month_hazards(s: SimState, m: int, drv: Drivers) -> dict[str, MonthHazard]:
    """Every product's hazard inputs in month ``m`` (``s.M``: at the export date, the latest as-of)."""
    T = s.month_start(m)
    kinds = contact_kinds(s, m)
    out = {}
    for p in P.PRODUCTS:
        eta, g = drv[p]
        eta = (eta + s.intercept[p]).astype(np.float32)
        if not s.live(p, T):
            eta = np.full_like(eta, -np.inf)  # not launched yet: nobody applies, nobody is contacted
        risk = ~s.loans.holding(p, T, s.pools[p])
        out[p] = MonthHazard(eta, g, risk, kinds[p], contact_tau(s, p, kinds[p]))
    return out


def uptake(s: SimState, m: int, drv: Drivers, rng: np.random.Generator, touch_rng: np.random.Generator) -> None:
    """Touches, applications, grants and contact rows of the three modelled products in month m, then life events.

    Touches are decided first (``touch_rng``, :func:`bankexport.sim_contact.touches`); a touch that
    reaches the customer adds tau to the month's log-hazard.
    """
    T = s.ms[m]
    pop = s.pop
    for p, h in month_hazards(s, m, drv).items():
        ix = s.pools[p]
        s.eta[p][m] = h.eta
        s.gp[p][m] = h.grant
        s.at_risk[p][m] = risk = h.risk
        s.kind[p][m] = h.kind
        s.tau[p][m] = h.tau
        touched = touches(s, m, p, h.eta, risk, touch_rng)
        s.reached[p][m] = touched.reached
        s.reach_prob[p][m] = touched.reach_prob
        a = -np.expm1(-np.exp(s.effective_eta(p, m).astype(np.float64) + P.HIDDEN_SD[p] * s.u[p]))
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
        app_day = np.full(len(ix), NO_DAY)
        app_day[k] = adate
        record_contacts(s, m, p, touched, applied, app_day, touch_rng)
    # life events start this month (they show as a spending surge now, raise hazard later)
    age = (T - pop.birth).astype(np.float64) / 365.25
    ev = (
        ~pop.is_biz
        & (age >= P.LIFE_EVENT_AGE[0])
        & (age <= P.LIFE_EVENT_AGE[1])
        & (rng.random(pop.n) < P.LIFE_EVENT_MONTHLY)
    )
    s.last_event[ev] = m
