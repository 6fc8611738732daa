"""The uptake mechanism's probability arithmetic, shared by the simulation and its oracle.

A customer at risk for a product in month ``m`` applies with probability
``a = 1 - exp(-exp(eta + sd * u))`` (a complementary log-log hazard), where ``eta`` is
the observable part computed from state known at the start of ``m`` and ``u ~ N(0, 1)``
is a hidden per-customer effect. An application is granted with probability ``g``.
Integrals over ``u`` use Gauss-Hermite quadrature; the oracle conditions on each
customer's own application history (which the export shows), so past uptake cannot
reveal more about ``u`` to a model than the oracle already uses.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss


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
