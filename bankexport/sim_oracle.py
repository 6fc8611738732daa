"""The uptake mechanism's probability arithmetic, shared by the simulation and its oracle.

A customer at risk for a product in month ``m`` applies with probability
``a = 1 - exp(-exp(eta + sd * u))`` (a complementary log-log hazard), where ``eta`` is
the observable part computed from state known at the start of ``m`` and ``u ~ N(0, 1)``
is a hidden per-customer effect; a month in which a contact reached the customer adds the
customer's ``tau`` to ``eta``. An application is granted with probability ``g``.
Integrals over ``u`` use Gauss-Hermite quadrature; the oracle conditions on each
customer's own application history (which the export shows) under the hazard that
applied, so past uptake cannot reveal more about ``u`` to a model than the oracle already uses.

:func:`oracle_tables` turns a finished run's uptake history into the oracle's rows and
each candidate's true uplift (the effect of a contact in the as-of month).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.polynomial.hermite_e import hermegauss

from bankexport import sim_params as P
from bankexport.sim_calendar import month_days

if TYPE_CHECKING:
    from bankexport.sim_state import SimState
    from bankexport.sim_uptake import MonthHazard


def gh_grid(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log-weights of ``k``-point Gauss-Hermite quadrature for N(0, 1).

    Returns:
        ``(nodes, log_weights)``, each of shape ``(k,)``; ``exp(log_weights)`` sums to 1.
    """
    x, w = hermegauss(k)
    w = w / w.sum()
    return x, np.log(w)


def apply_prob(eta: np.ndarray, sd: float, nodes: np.ndarray) -> np.ndarray:
    """Application probability on the quadrature grid.

    Args:
        eta: observable log-hazard, shape ``(n,)`` (``-inf``: not eligible).
        sd: standard deviation of the hidden effect.
        nodes: quadrature nodes, shape ``(k,)``.

    Returns:
        Array ``(n, k)`` of ``1 - exp(-exp(eta + sd * node))``.
    """
    x = eta.astype(np.float64)[:, None] + sd * nodes[None, :]
    return -np.expm1(-np.exp(x))


def log_lik_update(eta: np.ndarray, applied: np.ndarray, sd: float, nodes: np.ndarray) -> np.ndarray:
    """Log-likelihood contribution of one at-risk month, per quadrature node.

    Args:
        eta: observable log-hazard of the month, shape ``(n,)``.
        applied: whether each customer applied that month, shape ``(n,)``.
        sd: standard deviation of the hidden effect.
        nodes: quadrature nodes.

    Returns:
        ``(n, k)``: ``log a`` where applied, ``log(1 - a) = -exp(eta + sd*u)`` elsewhere.
    """
    x = eta.astype(np.float64)[:, None] + sd * nodes[None, :]
    lam = np.exp(x)
    out = -lam
    if applied.any():
        out[applied] = np.log(-np.expm1(-lam[applied]))
    return out


def window_prob(
    log_post: np.ndarray,
    etas: list[np.ndarray],
    grants: list[np.ndarray],
    fracs: list[float],
    sd: float,
    nodes: np.ndarray,
    contacts: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """P(a grant falls in the window) with the hidden effect integrated out.

    The customer is at risk at the window's start. In each window month ``j`` still at
    risk, a grant happens with probability ``a_j * g_j`` and its day falls inside the
    window with probability ``fracs[j]`` (grant days are uniform over days 2..end of
    the month, so only the last month is partial). With ``contacts``, a contact reaches
    the customer in month ``j`` with probability ``r_j`` and then ``a_j`` is taken at
    ``eta_j + tau_j``.

    Args:
        log_post: unnormalised log posterior weights of the nodes, ``(n, k)``.
        etas: per window month, the observable log-hazard ``(n,)``.
        grants: per window month, the grant probability ``(n,)``.
        fracs: per window month, the share of its grant days inside the window.
        sd: standard deviation of the hidden effect.
        nodes: quadrature nodes.
        contacts: per window month, ``(tau, r)``, each ``(n,)``; None: no contact.

    Returns:
        ``(n,)`` probabilities.
    """
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    surv = np.ones_like(post)
    p = np.zeros_like(post)
    for j, (eta, g, f) in enumerate(zip(etas, grants, fracs, strict=True)):
        a = apply_prob(eta, sd, nodes)
        if contacts is not None:
            tau, reach = contacts[j]
            r = reach.astype(np.float64)[:, None]
            a = (1.0 - r) * a + r * apply_prob(eta + tau, sd, nodes)
        q = a * g.astype(np.float64)[:, None]
        p += surv * q * f
        surv *= 1.0 - q
    return (p * post).sum(axis=1)


def mean_apply(
    eta: np.ndarray, tau: np.ndarray, reach: np.ndarray, sd: float, nodes: np.ndarray, log_w: np.ndarray
) -> np.ndarray:
    """``E_u[a]`` under a contact policy: with probability ``reach`` the month's hazard is at ``eta + tau``.

    Args:
        eta: observable log-hazard (finite), ``(n,)``.
        tau: what a contact that reaches adds, ``(n,)``.
        reach: the chance that a contact reaches, ``(n,)``.
        sd, nodes, log_w: the hidden effect's sd and the quadrature grid.

    Returns:
        ``(n,)`` mean application probabilities.
    """
    w = np.exp(log_w)
    return (1.0 - reach) * (apply_prob(eta, sd, nodes) @ w) + reach * (apply_prob(eta + tau, sd, nodes) @ w)


def solve_intercept(
    eta: np.ndarray,
    grant: np.ndarray,
    sd: float,
    target: float,
    nodes: np.ndarray,
    log_w: np.ndarray,
    tau: np.ndarray,
    reach: np.ndarray,
) -> float:
    """The shift ``b`` so that the mean monthly grant probability of ``eta + b`` is ``target``.

    Args:
        eta: observable log-hazard of the eligible customers (finite), ``(n,)``.
        grant: their grant probabilities, ``(n,)``.
        sd: standard deviation of the hidden effect.
        target: wanted mean of ``E_u[a] * g``, contacts included (:func:`mean_apply`).
        nodes, log_w: the quadrature grid.
        tau, reach: each customer's contact effect and the policy's chance that a contact reaches.

    Returns:
        The intercept shift (bisection to 1e-6).
    """
    if len(eta) == 0:
        return 0.0
    # customers alike to rounding share one evaluation: the same answer, far fewer rows
    key = np.stack([np.round(eta, 3), np.round(tau, 2), np.round(reach, 4)], axis=1)
    values, inverse = np.unique(key, axis=0, return_inverse=True)
    weight = np.bincount(inverse.ravel(), weights=grant, minlength=len(values)) / len(eta)
    lo, hi = -30.0, 10.0
    for _ in range(45):
        mid = (lo + hi) / 2
        m = float(mean_apply(values[:, 0] + mid, values[:, 1], values[:, 2], sd, nodes, log_w) @ weight)
        lo, hi = (mid, hi) if m < target else (lo, mid)
    return (lo + hi) / 2


@dataclass
class OracleParts:
    """What :func:`oracle_tables` returns: the rows of both files and the summary's sums per product."""

    oracle: list[pa.Table]
    uplift: list[pa.Table]
    labels: dict[str, int]  # positive labels over the oracle's rows
    expected: dict[str, float]  # sum of p_true over the oracle's rows


def oracle_tables(s: SimState, horizon_days: int, latest: dict[str, MonthHazard]) -> OracleParts:
    """The oracle's and the true uplift's rows of a finished run, per product and as-of month start.

    An oracle row is a candidate at the as-of date T (at risk, opened before T, eligible in
    some window month, the product launched by T) whose window ``(T, T + horizon_days]`` ends
    before the export date; the uplift file has the same rows, plus the candidates at the
    export date (the latest as-of nbp scores), from ``latest`` (the export month's hazard
    inputs). The hidden effect's posterior is updated with each month's applications under
    the hazard that applied (tau where a contact reached) after that month's rows, so a row
    conditions only on applications before its as-of date.
    """
    H = np.timedelta64(horizon_days, "D")
    out = OracleParts([], [], {p: 0 for p in P.PRODUCTS}, {p: 0.0 for p in P.PRODUCTS})
    for p in P.PRODUCTS:
        sd = P.HIDDEN_SD[p]
        loglik = np.tile(s.log_w, (len(s.pools[p]), 1))
        for m0 in range(s.M):
            # no row before the product's launch: nobody is its candidate
            if s.ms[m0] + H < s.export_date and s.live(p, s.ms[m0]):
                oracle, uplift, n_labels, p_sum = _as_of_rows(s, p, m0, H, loglik)
                out.oracle.append(oracle)
                out.uplift.append(uplift)
                out.labels[p] += n_labels
                out.expected[p] += p_sum
            # condition on this month's observed applications before the next as-of date
            r = s.at_risk[p][m0] & np.isfinite(s.eta[p][m0])
            rr = np.flatnonzero(r)
            loglik[rr] += log_lik_update(s.effective_eta(p, m0)[rr], s.applied[p][m0][rr], sd, s.nodes)
        if s.live(p, s.export_date):
            out.uplift.append(_latest_rows(s, p, H, loglik, latest[p]))
    return out


def window_months(T: np.datetime64, H: np.timedelta64) -> list[tuple[int, float]]:
    """The months the window ``(T, T + H]`` touches, from the month starting ``T``.

    Returns:
        Per month: the days of the month up to the window's last day (``inside``), and the
        share of its grant days (2..end) inside the window.
    """
    last_day = T + H
    out = []
    start = T
    while start <= last_day:
        nd = month_days(start)
        inside = min(nd, int((last_day - start).astype(int)) + 1)
        out.append((inside, max(inside - 1, 0) / (nd - 1)))
        start = (start.astype("datetime64[M]") + 1).astype("datetime64[D]")
    return out


def as_of_probs(
    log_post: np.ndarray,
    eta: np.ndarray,
    grant: np.ndarray,
    tau: np.ndarray,
    fracs: list[float],
    sd: float,
    nodes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Window probabilities with the as-of month's drivers over the whole window: without a
    contact, and with a contact that reaches in the as-of month (tau added to that month only).

    Returns:
        ``(p_base, p_contacted)``, each ``(n,)``.
    """
    k = len(fracs)
    base = window_prob(log_post, [eta] * k, [grant] * k, fracs, sd, nodes)
    contacted = window_prob(log_post, [eta + tau] + [eta] * (k - 1), [grant] * k, fracs, sd, nodes)
    return base, contacted


def _as_of_rows(
    s: SimState, p: str, m0: int, H: np.timedelta64, loglik: np.ndarray
) -> tuple[pa.Table, pa.Table, int, float]:
    """Rows of product ``p`` at the start of month ``m0``: (oracle, uplift, positive labels, sum of p_true)."""
    ix = s.pools[p]
    sd = P.HIDDEN_SD[p]
    T = s.ms[m0]
    months = window_months(T, H)
    fracs = [f for _, f in months]
    js = range(m0, m0 + len(months))
    # the drivers of each window month (p_true knows how they move in the window) and its
    # contacts as the policy draws them (each month's chance that a contact reaches)
    etas = [s.eta[p][j] for j in js]
    gs = [s.gp[p][j] for j in js]
    gdays = [(s.grant_day[p][j] > 0) & (s.grant_day[p][j] <= inside) for j, (inside, _) in zip(js, months, strict=True)]
    cand = s.at_risk[p][m0] & (s.pop.open_day[ix] < T) & np.isfinite(np.stack(etas)).any(axis=0)
    c = np.flatnonzero(cand)
    contacts = [(s.tau[p][j][c], s.reach_prob[p][j][c]) for j in js]
    prob = window_prob(loglik[c], [e[c] for e in etas], [g[c] for g in gs], fracs, sd, s.nodes, contacts)
    # what can be known at the as-of date (drivers move within the window): under the same
    # contact policy (p_asof), without a contact, and with one in the as-of month
    e0, g0, tau0 = s.eta[p][m0][c], s.gp[p][m0][c], s.tau[p][m0][c]
    k = len(months)
    known = window_prob(loglik[c], [e0] * k, [g0] * k, fracs, sd, s.nodes, [(tau0, r) for _, r in contacts])
    base, contacted = as_of_probs(loglik[c], e0, g0, tau0, fracs, sd, s.nodes)
    keep = prob > 0
    rows = c[keep]
    oracle = pa.table(
        {
            **_keys(s, p, T, ix[rows]),
            "p_true": pa.array(prob[keep], pa.float64()),
            "p_asof": pa.array(known[keep], pa.float64()),
        }
    )
    uplift = _uplift_table(s, p, T, ix[rows], base[keep], contacted[keep], s.kind[p][m0][rows])
    return oracle, uplift, int(np.stack(gdays).any(axis=0)[c].sum()), float(prob.sum())


def _latest_rows(s: SimState, p: str, H: np.timedelta64, loglik: np.ndarray, h: MonthHazard) -> pa.Table:
    """Uplift rows of product ``p`` at the export date: candidates then, the export month's drivers."""
    T = s.export_date
    c = np.flatnonzero(h.risk & (s.pop.open_day[s.pools[p]] < T) & np.isfinite(h.eta))
    fracs = [f for _, f in window_months(T, H)]
    base, contacted = as_of_probs(loglik[c], h.eta[c], h.grant[c], h.tau[c], fracs, P.HIDDEN_SD[p], s.nodes)
    return _uplift_table(s, p, T, s.pools[p][c], base, contacted, h.kind[c])


def _keys(s: SimState, p: str, T: np.datetime64, cust: np.ndarray) -> dict[str, pa.Array]:
    """The key columns of rows of product ``p`` at ``T`` for customers ``cust`` (positions)."""
    return {
        "customer_id": s.cust_ids.take(pa.array(cust.astype(np.int64))),
        "product": pa.array(np.full(len(cust), p, dtype=object), pa.string()),
        "as_of": pa.array(np.full(len(cust), T), pa.date32()),
    }


def _uplift_table(
    s: SimState,
    p: str,
    T: np.datetime64,
    cust: np.ndarray,
    base: np.ndarray,
    contacted: np.ndarray,
    kind: np.ndarray,
) -> pa.Table:
    """Rows of ``uplift.parquet``: ``uplift_true = p_contacted - p_base`` and the customer's kind."""
    return pa.table(
        {
            **_keys(s, p, T, cust),
            "p_base": pa.array(base, pa.float64()),
            "p_contacted": pa.array(contacted, pa.float64()),
            "uplift_true": pa.array(contacted - base, pa.float64()),
            "kind": pa.array(np.array(P.CONTACT_KINDS, dtype=object)[kind.astype(np.int64)], pa.string()),
        }
    )
