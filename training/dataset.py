"""Point-in-time training sets: entities, labels, candidates, features from Feast.

For product P and as-of dates T1..Tn the rows are (customer_id, as_of) for every
customer whose relationship began before T (``open_date < T``), minus holders of
an active P loan at T; the label follows the spec (``training.labels``). Negatives
may be down-sampled *before* the feature retrieval (that is where the cost is),
with a compensating ``weight`` so probabilities stay calibrated. Features come
only from Feast's point-in-time join (``features.store.historical``); the
product's eligibility rules are then applied to those same feature values.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nbp.config import Config, ProductConfig
from nbp.errors import FeatureStoreError
from nbp.workspace import Workspace
from training.candidates import eligible
from training.labels import holds_active, label

log = logging.getLogger(__name__)

KEYS = ["customer_id", "as_of"]
META = ["customer_id", "as_of", "label", "weight"]


def closed_as_ofs(as_ofs: list[pd.Timestamp], cutoff: pd.Timestamp, horizon_days: int) -> list[pd.Timestamp]:
    """The as-of dates whose label window (T, T+H] closed before ``cutoff``."""
    h = pd.Timedelta(days=horizon_days)
    return [t for t in as_ofs if t + h < cutoff]


def loan_product(key: str, pc: ProductConfig) -> str:
    """The value of ``loans.product`` that counts as uptake of this product."""
    return pc.loan_product or key


def feature_service(key: str, pc: ProductConfig) -> str:
    """The Feast feature service a product's model reads."""
    return pc.feature_service or f"{key}_v1"


def entity_rows(customers: pd.DataFrame, loans: pd.DataFrame, product: str,
                as_ofs: list[pd.Timestamp], horizon_days: int | None) -> pd.DataFrame:
    """Candidate rows before eligibility: known customers minus active holders.

    Args:
        customers: ingested customers (``customer_id``, ``open_date``).
        loans: ingested loans.
        product: ``loans.product`` value.
        as_ofs: as-of dates.
        horizon_days: label horizon; ``None`` leaves the label out (scoring).

    Returns:
        Columns ``customer_id``, ``as_of`` and, with a horizon, ``label``.
    """
    parts = []
    for t in as_ofs:
        ids = customers.loc[customers["open_date"] < t, "customer_id"]
        parts.append(pd.DataFrame({"customer_id": ids.to_numpy(), "as_of": t}))
    ent = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEYS)
    ent["as_of"] = ent["as_of"].astype("datetime64[us]")
    ent = ent[~holds_active(ent, loans, product).to_numpy()].reset_index(drop=True)
    if horizon_days is not None:
        ent["label"] = label(ent, loans, product, horizon_days).to_numpy()
    return ent


def capped_rate(ent: pd.DataFrame, rate: float, max_rows: int) -> float:
    """The share of negatives to keep so that at most ``max_rows`` rows remain (every
    positive kept), and never more than ``rate``."""
    neg = int((ent["label"] == 0).sum())
    pos = len(ent) - neg
    if len(ent) <= max_rows or neg == 0:
        return rate
    return min(rate, max(max_rows - pos, 1) / neg)


def downsample(ent: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    """Keep every positive and a ``rate`` share of negatives, weighted 1/rate."""
    if rate >= 1.0:
        return ent.assign(weight=1.0)
    rng = np.random.default_rng(seed)
    keep = (ent["label"] == 1) | (rng.random(len(ent)) < rate)
    out = ent[keep].copy()
    out["weight"] = np.where(out["label"] == 1, 1.0, 1.0 / rate)
    return out.reset_index(drop=True)


def with_features(cfg: Config, ws: Workspace, ent: pd.DataFrame, service: str) -> pd.DataFrame:
    """Join point-in-time features from Feast onto entity rows (row count checked)."""
    from features import store

    req = ent[KEYS].rename(columns={"as_of": "event_timestamp"})
    got = store.historical(cfg, ws, req, service)
    if len(got) != len(ent):
        raise FeatureStoreError(f"feature service {service}: asked {len(ent)} rows, got {len(got)}")
    got = got.rename(columns={"event_timestamp": "as_of"})
    got["as_of"] = got["as_of"].astype("datetime64[us]")
    ent = ent.copy()
    ent["as_of"] = ent["as_of"].astype("datetime64[us]")
    return ent.merge(got, on=KEYS, how="left", validate="one_to_one")


def training_set(cfg: Config, ws: Workspace, key: str, as_ofs: list[pd.Timestamp],
                 negative_rate: float = 1.0, seed: int = 7) -> pd.DataFrame:
    """The point-in-time training set of one product.

    Returns:
        Columns ``customer_id``, ``as_of``, ``label``, ``weight`` and every feature
        of the product's feature service; eligible candidates only.
    """
    pc = cfg.products[key]
    customers = pd.read_parquet(ws.table("customers"), columns=["customer_id", "open_date"])
    loans = pd.read_parquet(ws.table("loans"))
    ent = entity_rows(customers, loans, loan_product(key, pc), as_ofs, cfg.training.horizon_days)
    rate = capped_rate(ent, negative_rate, cfg.training.max_rows)
    if rate < negative_rate:
        log.info("%s: %s entity rows > training.max_rows %s: negatives kept at %.4f (weights 1/rate)", key,
                 f"{len(ent):,}", f"{cfg.training.max_rows:,}", rate)
    ent = downsample(ent, rate, seed)
    df = with_features(cfg, ws, ent, feature_service(key, pc))
    df = df[eligible(df, pc.eligibility).to_numpy()].reset_index(drop=True)
    log.info("%s: %d rows over %d as-of dates, %d uptakes", key, len(df), len(as_ofs), int(df["label"].sum()))
    return df


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Feature columns of a training set (everything but keys, label, weight)."""
    return [c for c in df.columns if c not in META]
