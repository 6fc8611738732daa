"""Managers' visits: the ``profile_updates`` table (spec, ``profile_updates``).

A share of the customers with a manager (``VISIT_SHARE``) is visited once, on a day of the
simulated months. The manager writes down what ECIF does not hold: an individual's monthly
income (salary and pension, where there is one) and a business's monthly turnover (the last
whole month's before the visit), each as told, within ``VISIT_FIGURE_SIGMA`` (log scale).
Drawn from its own stream, so the other tables do not change with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from bankexport import sim_params as P

if TYPE_CHECKING:
    from bankexport.sim_state import SimState


def profile_updates_table(s: SimState, rng: np.random.Generator) -> pa.Table:
    """The ``profile_updates`` table, ordered by visit day then customer."""
    pop = s.pop
    visited = np.flatnonzero((pop.manager >= 0) & (rng.random(pop.n) < P.VISIT_SHARE))
    first, span = s.ms[0], int((s.export_date - s.ms[0]).astype(np.int64))
    # a visit falls after the customer became one and before the export date
    lo = np.maximum((pop.open_day[visited] - first).astype(np.int64) + 1, 0)
    day = first + (lo + rng.random(len(visited)) * np.maximum(span - lo, 0)).astype(np.int64)
    ok = day < s.export_date
    visited, day = visited[ok], day[ok]
    told = rng.lognormal(0.0, P.VISIT_FIGURE_SIGMA, len(visited))
    # business-flow customers report turnover, individuals their income
    pos = np.full(pop.n, -1, np.int64)
    pos[s.pools["business_flow"]] = np.arange(len(s.pools["business_flow"]))
    month = np.searchsorted(s.ms, day, side="right") - 1
    turnover = s.turn[np.maximum(month - 1, 0), np.maximum(pos[visited], 0)]
    income = pop.salary[visited] + pop.pension[visited]
    is_bf = pos[visited] >= 0
    figure = np.round(np.where(is_bf, turnover, income) * told, 2)
    keep = figure > 0
    order = np.lexsort((visited[keep], day[keep]))
    cust, day, figure, is_bf = visited[keep][order], day[keep][order], figure[keep][order], is_bf[keep][order]
    managers = np.array([f"M{i:04d}" for i in range(len(pop.manager_branch))], dtype=object)
    return pa.table(
        {
            "customer_id": s.cust_ids.take(pa.array(cust.astype(np.int64))),
            "field": pa.array(np.where(is_bf, "business_turnover_monthly", "monthly_income"), pa.string()),
            "value": pa.array([f"{v:.2f}" for v in figure], pa.string()),
            "collected_date": pa.array(day.astype("datetime64[D]"), pa.date32()),
            "manager_id": pa.array(managers[pop.manager[cust]], pa.string()),
        }
    )
