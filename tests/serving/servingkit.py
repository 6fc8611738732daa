"""A tiny trained workspace for the service tests (helpers of tests/serving).

:func:`build_workspace` runs the real chain on a simulated bank: simulate
(1,500 customers × 14 months), ingest, build and publish features (Feast,
online store materialised), then registers one small LightGBM model for
``consumer`` and ``business_flow`` through ``training.registry.log_and_register``
and makes it champion (``tax_linked`` gets none, so the service must degrade
that product alone), and scores the latest as-of with ``training.pipeline.score``
into the batch scores file the service reads.

:func:`build_federation` does the same for two member banks of a simulated federation
(6,000 and 3,000 customers whose ids overlap), each with its own store, models
``nbp-<bank>-<product>`` and batch scores.

The models are fitted on real point-in-time features from the store but on a
synthetic label (a noisy function of three features): a bank this small has a
handful of uptakes, too few for trees and SHAP reasons, and these tests are
about serving, not model quality (tests/training covers that).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        return ",".join(
            [f"{TOKENS['marketing']}:marketing", f"{TOKENS['branch']}:branch:{self.branch}", f"{TOKENS['admin']}:admin"]
        )


@contextmanager
def _inside(home: Path) -> Iterator[None]:
    """Work in ``home`` (created): nothing (MLflow) may write into the checkout."""
    telemetry.disable()
    home.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(home)
    try:
        yield
    finally:
        os.chdir(cwd)


def serve_ready(cfg: Config, ws: Workspace) -> None:
    """Publish one bank's features, register and crown the :data:`TRAINED` models, write its batch scores."""
    from features.store import publish
    from training.pipeline import feature_as_ofs, score, write_scores

    publish(cfg, ws)
    register_models(cfg, ws, TRAINED)
    force_champions(ws, TRAINED)
    write_scores(score(cfg, ws, [feature_as_ofs(ws)[-1]]), ws.latest_scores)


def build_workspace(home: Path) -> Built:
    """Simulate, ingest, publish features, train, score (module docstring)."""
    from bankexport.ingest import ingest
    from bankexport.simulate import simulate

    ws, cfg = Workspace(home), load_config()
    with _inside(home):
        simulate(home / "bank", customers=CUSTOMERS, months=MONTHS, end="2026-10", seed=7)
        ingest(home / "bank" / "export", ws, cfg.ingest)
        serve_ready(cfg, ws)
    customers = pd.read_parquet(ws.table("customers"), columns=["customer_id", "branch_id"])
    branch = str(customers["branch_id"].value_counts().index[0])
    scores = pd.read_parquet(ws.latest_scores).query("product == 'consumer'").sort_values("score", ascending=False)
    mine = set(customers.loc[customers["branch_id"] == branch, "customer_id"].astype(str))
    other = customers.loc[customers["branch_id"] != branch, "customer_id"].astype(str)
    # the branch's best consumer-loan candidate: offered, and its score has positive reasons
    customer = next(c for c in scores["customer_id"].astype(str) if c in mine)
    return Built(ws=ws, cfg=cfg, branch=branch, customer=customer, other_customer=other.iloc[0])


FED_BANKS = ("QINGSHAN", "BAISHA")  # the codes simulate --federation 2 gives, largest bank first
FED_SIZES = (6_000, 3_000)


def build_federation(home: Path) -> tuple[Workspace, Config]:
    """Simulate a two-bank federation, ingest and publish each bank, then per bank register,
    crown and score the :data:`TRAINED` models as :func:`build_workspace` does.

    Returns:
        The federation workspace (no bank) and the config.
    """
    from bankexport.ingest import ingest
    from bankexport.sim_federation import simulate_federation

    ws, cfg = Workspace(home), load_config()
    with _inside(home):
        simulate_federation(home / "export", len(FED_BANKS), seed=5, sizes=list(FED_SIZES))
        for code in FED_BANKS:
            ingest(home / "export" / code / "export", ws, cfg.ingest)
        assert sorted(ws.banks()) == sorted(FED_BANKS), ws.banks()
        for code in FED_BANKS:
            serve_ready(cfg, ws.for_bank(code))
    return ws, cfg


def register_models(cfg: Config, ws: Workspace, products: tuple[str, ...], seed: int = 7) -> None:
    """Fit and register one small model per product on store features (module docstring)."""
    import numpy as np

    from training import evaluate, registry
    from training.dataset import feature_service, with_features
    from training.model import ModelParams, fit_rolling
    from training.pipeline import feature_as_ofs

    as_ofs = feature_as_ofs(ws)[-4:-1]
    customers = pd.read_parquet(ws.table("customers"), columns=["customer_id", "open_date"])
    ent = pd.concat(
        [
            pd.DataFrame(
                {"customer_id": customers.loc[customers["open_date"] < t, "customer_id"].to_numpy(), "as_of": t}
            )
            for t in as_ofs
        ],
        ignore_index=True,
    )
    params = ModelParams(
        learning_rate=0.1,
        max_rounds=80,
        early_stopping_rounds=15,
        min_child_samples=20,
        folds=1,
        search=False,
        calib_periods=1,
    )
    rng = np.random.default_rng(seed)
    for key in products:
        service = feature_service(key, cfg.products[key])
        df = with_features(cfg, ws, ent, service)
        feats = [c for c in df.columns if c not in ("customer_id", "as_of")]
        signal = df[feats].nunique().sort_values(ascending=False).index[:3]
        z = df[list(signal)].rank(pct=True).fillna(0.0).sum(axis=1) + rng.normal(0.0, 0.4, len(df))
        df["label"] = (z >= z.quantile(0.9)).astype(int)
        valid = df[df["as_of"] == as_ofs[-1]]
        model = fit_rolling(df, feats, "label", "as_of", params)  # the last month validates the one fold
        m = evaluate.metrics(valid["label"], model.predict_proba(valid))
        registry.log_and_register(
            ws,
            key,
            model,
            m,
            params=params.model_dump(),
            plots={},
            feature_info={"feature_service": service, "label": "synthetic (tests)"},
            as_of_range=(f"{as_ofs[0]:%Y-%m-%d}", f"{as_ofs[-2]:%Y-%m-%d}"),
            backtest_window=f"{as_ofs[-1]:%Y-%m-%d}",
            input_example=valid.head(5),
        )


def force_champions(ws: Workspace, products: tuple[str, ...]) -> None:
    """Make each product's latest version its champion, whatever the gate decided.

    The tests are about serving, not about whether a tiny bank's model passes the
    AUC floor; the gate itself is tested in tests/training.
    """
    import mlflow

    from training.registry import CHAMPION, model_name, tracking_uri

    uri = tracking_uri(ws)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for p in products:
        name = model_name(p, ws.bank)
        latest = max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        client.set_registered_model_alias(name, CHAMPION, str(latest))


def bearer(role: str) -> dict[str, str]:
    """The Authorization header of one role's token."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}


async def asgi_post(app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: Any) -> tuple[int, bytes, int]:
    """POST ``path`` to the ASGI ``app`` directly: ``chunks`` feeds the body; returns status, body and how many
    body messages the app asked for."""
    asked = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        chunk = next(chunks, None)
        if chunk is None:
            raise AssertionError("the app read past the body it was given")
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(msg: dict) -> None:
        sent.append(msg)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 3000),
        "state": {},
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, asked
