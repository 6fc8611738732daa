"""Online/offline parity: the online store serves what historical retrieval gives at the same as-of."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from featurekit import random_bank, write_tables

from features import store
from features.schema import EVENT_TS, JOIN_KEY
from nbp.config import load_config
from nbp.workspace import Workspace


@pytest.mark.integration
@pytest.mark.parametrize("online_store", ["sqlite", "redis"])
def test_online_features_equal_offline_features_at_the_materialised_as_of(
    tmp_path: Path, online_store: str, request: pytest.FixtureRequest
) -> None:
    ws = Workspace(tmp_path / "ws")
    write_tables(ws, random_bank(11, n_customers=40), date(2025, 8, 31))
    cfg = load_config()
    if online_store == "redis":  # a real Redis server; the SQLite store is the columnar fast path
        from benchmarks.redis_server import on_redis

        cfg = on_redis(cfg, request.getfixturevalue("redis_url"))
    as_of = store.publish(cfg, ws, [date(2025, 3, 1), date(2025, 4, 1)]).materialized
    assert as_of == date(2025, 4, 1)
    if online_store == "redis":  # the rows went to the server, not to a SQLite file
        import redis as redis_client

        host, port = cfg.features.redis_connection.split(":")
        assert redis_client.Redis(host=host, port=int(port)).dbsize() > 0
        assert not list(ws.home.rglob("online_store.db"))
    demo = pd.read_parquet(ws.feature_table("demo"))
    ids = demo.loc[demo[EVENT_TS] == pd.Timestamp(as_of), JOIN_KEY]
    sample = sorted(ids.sample(n=min(25, len(ids)), random_state=0))
    for service in ("consumer_v1", "tax_linked_v1"):
        offline = (
            store.historical(cfg, ws, pd.DataFrame({JOIN_KEY: sample, EVENT_TS: pd.Timestamp(as_of)}), service)
            .set_index(JOIN_KEY)
            .drop(columns=[EVENT_TS])
            .sort_index()
        )
        online = store.online(cfg, ws, sample, service).set_index(JOIN_KEY).sort_index()[offline.columns]
        assert len(online) == len(sample)
        assert offline.notna().sum().sum() > 0
        np.testing.assert_allclose(online.to_numpy(), offline.to_numpy(), rtol=1e-12, equal_nan=True)
