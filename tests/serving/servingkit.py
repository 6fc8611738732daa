"""A tiny trained workspace for the service tests (helpers of tests/serving).

:func:`build_workspace` runs the real chain on a simulated bank: simulate
(1,500 customers × 14 months), ingest, build and publish features, train
``consumer`` and ``business_flow`` (``tax_linked`` is left without a champion,
so the service must degrade that product alone), score the latest as-of into
the batch scores file the service reads.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nbp import telemetry
from nbp.config import Config, load_config
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

CUSTOMERS = 1_500
MONTHS = 14
TRAINED = ("consumer", "business_flow")
UNTRAINED = "tax_linked"
TOKENS = {
    "marketing": "mkt-0123456789abcdef0123",
    "branch": "brn-0123456789abcdef0123",
    "admin": "adm-0123456789abcdef0123",
}


@dataclass(frozen=True)
class Built:
    """The built workspace and what the tests need to know about it."""

    ws: Workspace
    cfg: Config
    branch: str  # the branch of the branch token
    customer: str  # a customer of that branch with features online
    other_customer: str  # a customer of another branch

    @property
    def tokens_env(self) -> str:
        return ",".join([f"{TOKENS['marketing']}:marketing", f"{TOKENS['branch']}:branch:{self.branch}",
                         f"{TOKENS['admin']}:admin"])


def build_workspace(home: Path) -> Built:
    """Simulate, ingest, publish features, train, score (module docstring)."""
    from bankexport.ingest import ingest
    from bankexport.simulate import simulate
    from features.store import publish
    from serving.engine import scores_path
    from training.pipeline import feature_as_ofs, score, train, write_scores

    telemetry.disable()
    ws, cfg = Workspace(home), load_config()
    home.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(home)  # nothing (MLflow) may write into the checkout
    try:
        simulate(home / "bank", customers=CUSTOMERS, months=MONTHS, end="2026-10", seed=7)
        ingest(home / "bank" / "export", ws, cfg.ingest)
        publish(cfg, ws)
        train(cfg, ws, products=list(TRAINED))
        write_scores(score(cfg, ws, [feature_as_ofs(ws)[-1]]), scores_path(ws))
    finally:
        os.chdir(cwd)
    customers = pd.read_parquet(ws.table("customers"), columns=["customer_id", "branch_id"])
    branch = str(customers["branch_id"].value_counts().index[0])
    mine = customers.loc[customers["branch_id"] == branch, "customer_id"].astype(str)
    other = customers.loc[customers["branch_id"] != branch, "customer_id"].astype(str)
    return Built(ws=ws, cfg=cfg, branch=branch, customer=mine.iloc[1], other_customer=other.iloc[0])


def bearer(role: str) -> dict[str, str]:
    """The Authorization header of one role's token."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}
