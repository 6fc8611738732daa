"""Synthetic uptake data with known probabilities, shared by the training tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["x1", "x2", "segment", "noise"]


def uptake_frame(n: int = 12_000, periods: int = 6, seed: int = 0, intercept: float = -2.5) -> pd.DataFrame:
    """Rows in time order with a known uptake probability.

    Returns:
        Columns ``period`` (0..periods-1, ascending), ``x1``, ``x2`` (numeric signal),
        ``segment`` (categorical signal: "a" takes up more), ``noise`` (no signal),
        ``p`` (true probability) and ``label`` (0/1 drawn from ``p``).
    """
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "period": np.repeat(np.arange(periods), n // periods),
            "x1": rng.normal(size=n // periods * periods),
            "x2": rng.normal(size=n // periods * periods),
            "segment": rng.choice(["a", "b", "c"], n // periods * periods),
            "noise": rng.normal(size=n // periods * periods),
        }
    )
    logit = intercept + 1.2 * df["x1"] - 0.6 * df["x2"] + 0.9 * (df["segment"] == "a")
    df["p"] = 1 / (1 + np.exp(-logit))
    df["label"] = (rng.random(len(df)) < df["p"]).astype(int)
    return df


def time_slices(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train (first half of the periods), validation (next two), test (the rest)."""
    k = df["period"].max() + 1
    train = df[df["period"] < k // 2]
    valid = df[(df["period"] >= k // 2) & (df["period"] < k // 2 + 2)]
    return train, valid, df[df["period"] >= k // 2 + 2]
