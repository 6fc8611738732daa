"""Batch scoring on Spark (``compute.engine: spark``): every candidate scored on the executors.

The features of every product's candidates are retrieved on Spark in one point-in-time join
(:func:`features.store.historical_union_spark`) and stay there; ``mapInPandas`` then applies
each product's eligibility rules and its champion's :meth:`training.model.FittedModel.predict_proba`
(broadcast once), and only the scores of eligible rows come back to the driver. Rows, rules and
model are the DuckDB path's (:func:`training.pipeline.score`), so the scores are the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from nbp.config import Config, EligibilityRule
from nbp.workspace import Workspace
from training.candidates import eligible
from training.dataset import union_keys
from training.model import FittedModel

log = logging.getLogger(__name__)

_OUT = "product int, pos long, score double"  # which product, which of its rows, calibrated probability


def _predictor(
    products: object,
) -> object:
    """The ``mapInPandas`` function: per batch and product, the rows that meet the product's rules,
    scored with its model. ``products`` is a broadcast list of ``(model, features, rules)``."""

    def predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        table: list[tuple[FittedModel, list[str], list[EligibilityRule]]] = products.value  # type: ignore[attr-defined]
        for batch in batches:
            for p, rows in batch.groupby("product", sort=False):
                model, feats, rules = table[int(p)]
                rows = rows[eligible(rows[feats], rules).to_numpy()]
                if len(rows):
                    # one thread per task: Spark runs the tasks side by side
                    score = model.predict_proba(rows, num_threads=1)
                    yield pd.DataFrame({"product": rows["product"], "pos": rows["pos"], "score": score})

    return predict


def predict_on_spark(
    cfg: Config,
    ws: Workspace,
    parts: list[tuple[pd.DataFrame, str, FittedModel, list[EligibilityRule]]],
) -> list[pd.DataFrame]:
    """Score each part's rows that meet its rules, on Spark.

    Args:
        parts: per product, its candidate rows (``customer_id``, ``as_of``), its feature
            service, its model and its eligibility rules.

    Returns:
        Per part, its eligible rows in their order: ``customer_id``, ``as_of``, ``score``.
    """
    from features import store
    from nbp.spark import session

    spark = session(cfg)
    t0 = time.perf_counter()
    code, uniq = union_keys([rows for rows, *_ in parts])  # each row's entity row; the distinct rows
    services = list(dict.fromkeys(service for _, service, _, _ in parts))
    feats = store.historical_union_spark(cfg, ws, uniq.rename(columns={"as_of": "event_timestamp"}), services)
    sizes = [len(rows) for rows, *_ in parts]
    wanted = spark.createDataFrame(
        pa.table(
            {
                "product": pa.array(np.repeat(np.arange(len(parts), dtype=np.int32), sizes)),
                "pos": pa.array(np.concatenate([np.arange(n, dtype=np.int64) for n in sizes])),
                "entity_row": pa.array(code.astype(np.int64)),
            }
        )
    )
    table = [(model, store.service_features(cfg, ws, service), rules) for _, service, model, rules in parts]
    products = spark.sparkContext.broadcast(table)
    try:
        got = (
            wanted.join(feats, on="entity_row")
            .drop("entity_row")
            .mapInPandas(_predictor(products), _OUT)
            .toArrow()
            .to_pandas()
        )
    finally:
        products.unpersist()
    out = []
    for p, (rows, *_) in enumerate(parts):
        mine = got[got["product"] == p].sort_values("pos")
        pos = mine["pos"].to_numpy()
        out.append(
            pd.DataFrame(
                {
                    "customer_id": rows["customer_id"].to_numpy()[pos],
                    "as_of": rows["as_of"].astype("datetime64[us]").to_numpy()[pos],
                    "score": mine["score"].to_numpy(),
                }
            )
        )
    log.info(
        "spark scoring: %s candidate rows of %d products, %s scored, %.1f s",
        f"{len(code):,}",
        len(parts),
        f"{len(got):,}",
        time.perf_counter() - t0,
    )
    return out
