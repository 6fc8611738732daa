"""The uptake mechanism's probability arithmetic, shared by the simulation and its oracle.

A customer at risk for a product in month ``m`` applies with probability
``a = 1 - exp(-exp(eta + sd * u))`` (a complementary log-log hazard), where ``eta`` is
the observable part computed from state known at the start of ``m`` and ``u ~ N(0, 1)``
is a hidden per-customer effect. An application is granted with probability ``g``.
Integrals over ``u`` use Gauss-Hermite quadrature; the oracle conditions on each
customer's own application history (which the export shows), so past uptake cannot
reveal more about ``u`` to a model than the oracle already uses.

:func:`oracle_tables` turns a finished run's uptake history into the oracle's rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.polynomial.hermite_e import hermegauss

from bankexport import sim_params as P

if TYPE_CHECKING:
    from bankexport.sim_state import SimState


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
) -> np.ndarray:
    """P(a grant falls in the window) with the hidden effect integrated out.

    The customer is at risk at the window's start. In each window month ``j`` still at
    risk, a grant happens with probability ``a_j * g_j`` and its day falls inside the
    window with probability ``fracs[j]`` (grant days are uniform over days 2..end of
    the month, so only the last month is partial).

    Args:
        log_post: unnormalised log posterior weights of the nodes, ``(n, k)``.
        etas: per window month, the observable log-hazard ``(n,)``.
        grants: per window month, the grant probability ``(n,)``.
        fracs: per window month, the share of its grant days inside the window.
        sd: standard deviation of the hidden effect.
        nodes: quadrature nodes.

    Returns:
        ``(n,)`` probabilities.
    """
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    surv = np.ones_like(post)
    p = np.zeros_like(post)
    for eta, g, f in zip(etas, grants, fracs, strict=True):
        q = apply_prob(eta, sd, nodes) * g.astype(np.float64)[:, None]
        p += surv * q * f
        surv *= 1.0 - q
    return (p * post).sum(axis=1)


def solve_intercept(
    eta: np.ndarray, grant: np.ndarray, sd: float, target: float, nodes: np.ndarray, log_w: np.ndarray
) -> float:
    """The shift ``b`` so that the mean monthly grant probability of ``eta + b`` is ``target``.

    Args:
        eta: observable log-hazard of the eligible customers (finite), ``(n,)``.
        grant: their grant probabilities, ``(n,)``.
        sd: standard deviation of the hidden effect.
        target: wanted mean of ``E_u[a] * g``.
        nodes, log_w: the quadrature grid.

    Returns:
        The intercept shift (bisection to 1e-6).
    """
    if len(eta) == 0:
        return 0.0
    w = np.exp(log_w)
    # customers with the same eta (to 1e-3) share one evaluation: same answer, far fewer rows
    values, inverse = np.unique(np.round(eta, 3), return_inverse=True)
    weight = np.bincount(inverse, weights=grant, minlength=len(values)) / len(eta)
    lo, hi = -30.0, 10.0
    for _ in range(45):
        mid = (lo + hi) / 2
        m = float((apply_prob(values + mid, sd, nodes) @ w) @ weight)
        lo, hi = (mid, hi) if m < target else (lo, mid)
    return (lo + hi) / 2


def oracle_tables(s: SimState, horizon_days: int) -> tuple[list[pa.Table], dict[str, int], dict[str, float]]:
    """The oracle's rows of a finished run, per product and as-of month start.

    A row is a candidate at the as-of date T (at risk, opened before T, eligible in some
    window month, the product launched by T) whose window ``(T, T + horizon_days]`` ends
    before the export date.
    The hidden effect's posterior is updated with each month's applications after that
    month's rows, so a row conditions only on applications before its as-of date.

    Returns:
        ``(tables, positive labels, sum of p_true)``; the last two per product.
    """
    H = np.timedelta64(horizon_days, "D")
    parts: list[pa.Table] = []
    labels = {p: 0 for p in P.PRODUCTS}
    expected = {p: 0.0 for p in P.PRODUCTS}
    for p in P.PRODUCTS:
        sd = P.HIDDEN_SD[p]
        loglik = np.tile(s.log_w, (len(s.pools[p]), 1))
        for m0 in range(s.M):
            # no row before the product's launch: nobody is its candidate
            if s.ms[m0] + H < s.export_date and s.live(p, s.ms[m0]):
                table, n_labels, p_sum = _as_of_rows(s, p, m0, H, loglik)
                parts.append(table)
                labels[p] += n_labels
                expected[p] += p_sum
            # condition on this month's observed applications before the next as-of date
            r = s.at_risk[p][m0] & np.isfinite(s.eta[p][m0])
            rr = np.flatnonzero(r)
            loglik[rr] += log_lik_update(s.eta[p][m0][rr], s.applied[p][m0][rr], sd, s.nodes)
    return parts, labels, expected


def _as_of_rows(s: SimState, p: str, m0: int, H: np.timedelta64, loglik: np.ndarray) -> tuple[pa.Table, int, float]:
    """Rows of product ``p`` at the start of month ``m0``: (table, positive labels, sum of p_true)."""
    ix = s.pools[p]
    sd = P.HIDDEN_SD[p]
    T = s.ms[m0]
    etas, gs, fracs, gdays = [], [], [], []
    last_day = T + H
    for j in range(m0, s.M):
        if s.ms[j] > last_day:
            break
        nd = s.nd[j]
        inside = min(nd, int((last_day - s.ms[j]).astype(int)) + 1)
        fracs.append(max(inside - 1, 0) / (nd - 1))
        etas.append(s.eta[p][j])
        gs.append(s.gp[p][j])
        gd = s.grant_day[p][j].astype(np.int64)
        gdays.append((gd > 0) & (gd <= inside))
    cand = s.at_risk[p][m0] & (s.pop.open_day[ix] < T) & np.isfinite(np.stack(etas)).any(axis=0)
    c = np.flatnonzero(cand)
    prob = window_prob(loglik[c], [e[c] for e in etas], [g[c] for g in gs], fracs, sd, s.nodes)
    # the same with the as-of month's drivers over the whole window: what the
    # bank can know at the as-of date (drivers move within the window)
    known = window_prob(loglik[c], [etas[0][c]] * len(etas), [gs[0][c]] * len(gs), fracs, sd, s.nodes)
    keep = prob > 0
    table = pa.table(
        {
            "customer_id": s.cust_ids.take(pa.array(ix[c[keep]].astype(np.int64))),
            "product": pa.array(np.full(int(keep.sum()), p, dtype=object), pa.string()),
            "as_of": pa.array(np.full(int(keep.sum()), T), pa.date32()),
            "p_true": pa.array(prob[keep], pa.float64()),
            "p_asof": pa.array(known[keep], pa.float64()),
        }
    )
    return table, int(np.stack(gdays).any(axis=0)[c].sum()), float(prob.sum())
