"""Marketing contacts as a cause of uptake: who is touched each month, and the randomised campaigns.

Touches are decided at the month's start, before anyone applies (:func:`touches`): managers
call at-risk customers with a manager, more often those the bank scores high; in a campaign
month (:func:`campaign_month`) a random sample of the product's at-risk eligible candidates is
split at random into treatment and control, and the branch calls the treatment arm. A touch
that reaches the customer adds the customer's tau to that month's log-hazard
(:mod:`bankexport.sim_uptake` sets the kinds and applies it); :func:`record_contacts` then
writes the month's contact rows, an accepted one on or before that month's application.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bankexport import sim_params as P
from bankexport.sim_loans import LP
from bankexport.spec import CONTACT_OUTCOMES

if TYPE_CHECKING:
    from bankexport.sim_state import SimState

_ACCEPTED, _DECLINED, _UNREACHABLE = (CONTACT_OUTCOMES.index(o) for o in ("accepted", "declined", "unreachable"))


@dataclass
class Touches:
    """One product's touches of one month, per pool member."""

    attempted: np.ndarray  # a contact row this month
    reached: np.ndarray  # the contact reached the customer: tau applies
    campaign: np.ndarray  # the attempt is the randomised campaign's (else a manager's ordinary call)
    reach_prob: np.ndarray  # the chance, before the draws, that a touch reaches the customer


def campaign_month(s: SimState, product: str, m: int) -> bool:
    """Whether the bank runs a randomised campaign of ``product`` in month ``m``."""
    first = P.CAMPAIGN_FIRST[product]
    return m >= first and (m - first) % P.CAMPAIGN_EVERY == 0 and s.live(product, s.ms[m])


def campaign_id(s: SimState, product: str, m: int) -> str:
    """``RCT-<product>-<YYYYMM>``: unlike nbp's own default ``<product>-<YYYYMM>``."""
    return f"{P.CAMPAIGN_PREFIX}-{product}-{str(s.ms[m].astype('datetime64[M]')).replace('-', '')}"


def touches(s: SimState, m: int, product: str, eta: np.ndarray, risk: np.ndarray, rng: np.random.Generator) -> Touches:
    """The month's touches of ``product``; a campaign month also records its arms in ``s.campaigns``.

    Args:
        eta: the month's observable log-hazard of the pool (``-inf``: not eligible or not offered).
        risk: at risk at the month's start (no active loan of the product).
    """
    ix = s.pools[product]
    n = len(ix)
    eligible = np.isfinite(eta) & risk
    ordinary, p_ordinary = np.zeros(n, bool), ordinary_rate(s, product, eta, eligible)
    if p_ordinary.any():
        ordinary = rng.random(n) < p_ordinary
    campaign, p_campaign = np.zeros(n, bool), np.zeros(n)
    cand = np.flatnonzero(eligible & (s.pop.open_day[ix] < s.ms[m]))
    size = round(len(cand) * P.CAMPAIGN_SAMPLE[product])
    if campaign_month(s, product, m) and size >= 2:  # a campaign needs a customer in each arm
        chosen = np.sort(rng.choice(cand, size, replace=False))
        treat = np.zeros(len(chosen), bool)
        treat[rng.permutation(len(chosen))[: round(len(chosen) * P.CAMPAIGN_TREATMENT_SHARE)]] = True
        s.campaigns.append((product, m, chosen, treat))
        arm = chosen[treat]
        campaign[arm[rng.random(len(arm)) < P.CAMPAIGN_ATTEMPTED]] = True
        p_campaign[cand] = len(arm) / len(cand) * P.CAMPAIGN_ATTEMPTED
    attempted = ordinary | campaign
    reached = attempted & (rng.random(n) >= P.CONTACT_UNREACHABLE)
    reach_prob = (1.0 - (1.0 - p_ordinary) * (1.0 - p_campaign)) * (1.0 - P.CONTACT_UNREACHABLE)
    return Touches(attempted, reached, campaign, reach_prob)


def ordinary_rate(s: SimState, product: str, eta: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Each pool member's chance of a manager's ordinary call this month: eligible customers
    with a manager, the top fifth by the observable score more often."""
    managed = eligible & (s.pop.manager[s.pools[product]] >= 0)
    if not managed.any():
        return np.zeros(len(eta))
    top = eta >= np.quantile(eta[managed], P.CONTACT_TOP_QUANTILE)
    return np.where(managed, np.where(top, P.CONTACT_TOP_RATE, P.CONTACT_RATE), 0.0)


def expected_reach(s: SimState, product: str, eta: np.ndarray) -> np.ndarray:
    """The chance that a manager's ordinary call reaches each eligible pool member in a month:
    the bank's business as usual. Randomised campaigns come on top of it."""
    return ordinary_rate(s, product, eta, np.isfinite(eta)) * (1.0 - P.CONTACT_UNREACHABLE)


def record_contacts(
    s: SimState,
    m: int,
    product: str,
    t: Touches,
    applied: np.ndarray,
    app_day: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """The month's contact rows of ``product``.

    A reached customer who applied that month accepted, and the contact falls on or before
    the application; a reached one who did not declined or did not respond; an attempt that
    did not reach is ``unreachable``.

    Args:
        applied: applied this month, per pool member.
        app_day: application day of those who applied, per pool member (``NaT`` elsewhere).
    """
    ix = s.pools[product]
    k = np.flatnonzero(t.attempted)
    accepted = t.reached[k] & applied[k]
    T = s.ms[m]
    latest = np.where(accepted, (app_day[k] - T).astype(np.int64), s.nd[m] - 1)
    day = T + (rng.random(len(k)) * (np.maximum(latest, 0) + 1)).astype(np.int64)
    other = _DECLINED + rng.choice(len(P.CONTACT_OUTCOME_MIX), len(k), p=P.CONTACT_OUTCOME_MIX)
    outcome = np.where(accepted, _ACCEPTED, np.where(t.reached[k], other, _UNREACHABLE))
    channel = rng.choice(len(P.CONTACT_CHANNEL_MIX), len(k), p=P.CONTACT_CHANNEL_MIX)
    s.contacts.append((ix[k], np.full(len(k), LP[product]), day, channel, outcome, np.full(len(k), m), t.campaign[k]))
