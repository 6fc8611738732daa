"""The project's offline store gives what Feast's stock DuckDB offline store gives.

Both stores read the same registry and Parquet files; the entity rows hit every
edge of the point-in-time join: an exact timestamp, a row inside the TTL, exactly
at the TTL edge (still valid), one microsecond beyond it (null), before any feature
row, an unknown customer, duplicated entity rows, a view without TTL, feature rows
with null values, and an extra entity column carried through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

T = pd.Timestamp


def _store(tmp: Path, offline: dict):
    from feast import FeatureStore
    from feast.repo_config import RegistryConfig, RepoConfig

    return FeatureStore(
        config=RepoConfig(
            project="t",
            provider="local",
            registry=RegistryConfig(path=str(tmp / "registry.db")),
            offline_store=offline,
            online_store={"type": "sqlite", "path": str(tmp / "online.db")},
            entity_key_serialization_version=3,
            repo_path=tmp,
        )
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    tmp = tmp_path_factory.mktemp("offline")
    monthly = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "c"],
            "event_timestamp": [
                T("2025-01-01"),
                T("2025-02-01"),
                T("2025-03-01"),
                T("2025-01-01"),
                T("2025-02-15 12:00"),
                T("2025-03-01"),
            ],
            "m_count": pd.array([1, 2, None, 4, 5, 6], dtype="Int64"),
            "m_amount": [1.5, None, 3.5, 4.5, 5.5, 6.5],
        }
    )
    static = pd.DataFrame(
        {
            "customer_id": ["a", "b", "d"],
            "event_timestamp": [T("2024-06-01"), T("2025-02-01"), T("2025-01-01")],
            "s_code": pd.array([7, 8, None], dtype="Int64"),
        }
    )
    dup = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],  # a repeated (key, timestamp)
            "event_timestamp": [T("2025-01-01"), T("2025-01-01"), T("2025-01-01")],
            "d_value": [1.0, 2.0, 3.0],
        }
    )
    dup.to_parquet(tmp / "dup.parquet", index=False)
    monthly.to_parquet(tmp / "monthly.parquet", index=False)
    static.to_parquet(tmp / "static.parquet", index=False)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    views = [
        FeatureView(
            name="monthly",
            entities=[customer],
            ttl=timedelta(days=10),
            schema=[
                Field(name="customer_id", dtype=String),
                Field(name="m_count", dtype=Int64),
                Field(name="m_amount", dtype=Float64),
            ],
            source=FileSource(name="monthly_src", path=str(tmp / "monthly.parquet"), timestamp_field="event_timestamp"),
        ),
        FeatureView(
            name="static",
            entities=[customer],
            ttl=timedelta(0),  # no TTL
            schema=[Field(name="customer_id", dtype=String), Field(name="s_code", dtype=Int64)],
            source=FileSource(name="static_src", path=str(tmp / "static.parquet"), timestamp_field="event_timestamp"),
        ),
        FeatureView(
            name="dup",
            entities=[customer],
            ttl=timedelta(days=10),
            schema=[Field(name="customer_id", dtype=String), Field(name="d_value", dtype=Float64)],
            source=FileSource(name="dup_src", path=str(tmp / "dup.parquet"), timestamp_field="event_timestamp"),
        ),
    ]
    from features.offline import TYPE  # imports Feast: only when the integration tests run
    from nbp.log import quiet_warnings

    quiet_warnings()  # Feast's import put its "once" filter for every deprecation first

    ours = _store(tmp, {"type": TYPE, "threads": 1})
    ours.apply([customer, *views])
    stock = _store(tmp, {"type": "duckdb"})
    return ours, stock, views


ENTITY = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "a", "a", "b", "b", "b", "c", "c", "zz", "d", "a", "b"],
        "event_timestamp": [
            T("2025-01-01"),  # exact
            T("2025-01-05"),  # inside TTL
            T("2025-01-11"),  # exactly at the TTL edge: still valid
            T("2025-01-11 00:00:00.000001"),  # one µs beyond: null (monthly)
            T("2024-12-31"),  # before any monthly row
            T("2025-02-15 11:59:59"),  # b's mid-month row is one second later: January's row, expired
            T("2025-02-15 12:00"),  # exactly the mid-month row
            T("2025-02-20"),
            T("2025-03-01"),
            T("2025-02-28"),  # before c's only row
            T("2025-03-01"),  # unknown customer
            T("2025-01-02"),  # only in the static view (null feature value)
            T("2025-01-05"),  # duplicate of row 1
            T("2025-01-01"),
        ],
        "label": np.arange(14),
    }
)
ENTITY_UTC = ENTITY.assign(event_timestamp=ENTITY["event_timestamp"].dt.tz_localize("UTC"))


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    feats = [c for c in df.columns if c not in ("customer_id", "event_timestamp", "label")]
    df[feats] = df[feats].astype("float64")
    return df.sort_values("label").reset_index(drop=True)[sorted(df.columns)]


@pytest.mark.parametrize("full_names", [False, True])
def test_point_in_time_join_equals_feasts_duckdb_store(stores: tuple, full_names: bool) -> None:
    from features.offline import ArrowRetrievalJob

    ours, stock, _ = stores
    refs = ["monthly:m_count", "monthly:m_amount", "static:s_code"]
    job = ours.get_historical_features(entity_df=ENTITY_UTC.copy(), features=refs, full_feature_names=full_names)
    assert isinstance(job, ArrowRetrievalJob)  # the fast path ran, not a fallback
    got = _norm(job.to_df())
    want = _norm(
        stock.get_historical_features(entity_df=ENTITY_UTC.copy(), features=refs, full_feature_names=full_names).to_df()
    )
    assert len(got) == len(ENTITY)
    pd.testing.assert_frame_equal(got, want)


def test_point_in_time_edges(stores: tuple) -> None:
    ours, _, _ = stores
    got = ours.get_historical_features(
        entity_df=ENTITY_UTC.copy(), features=["monthly:m_amount", "static:s_code"]
    ).to_df()
    assert got["label"].tolist() == list(range(14))  # entity order kept
    amount = got["m_amount"].tolist()
    assert amount[0] == 1.5 and amount[1] == 1.5 and amount[2] == 1.5
    assert np.isnan(amount[3]) and np.isnan(amount[4])
    assert np.isnan(amount[5]) and amount[6] == 5.5 and amount[7] == 5.5
    assert amount[8] == 6.5 and np.isnan(amount[9]) and np.isnan(amount[10])
    assert got["s_code"].iloc[4] == 7  # no TTL: a's row of 2024-06-01 still serves
    assert np.isnan(got["s_code"].iloc[11])


def test_naive_entity_timestamps_are_utc(stores: tuple) -> None:
    ours, _, _ = stores
    naive = ours.get_historical_features(entity_df=ENTITY.copy(), features=["monthly:m_amount"]).to_df()
    aware = ours.get_historical_features(entity_df=ENTITY_UTC.copy(), features=["monthly:m_amount"]).to_df()
    np.testing.assert_array_equal(naive["m_amount"].to_numpy(), aware["m_amount"].to_numpy())


def test_pull_latest_equals_feasts_duckdb_store(stores: tuple) -> None:
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStore

    from features.offline import ParquetDuckDBOfflineStore

    ours, stock, views = stores
    fv = views[0]
    for start, end in [
        (datetime(2025, 1, 1), datetime(2025, 3, 1)),
        (datetime(2025, 2, 1), datetime(2025, 2, 2)),
        (datetime(2025, 2, 15, 12), datetime(2025, 2, 15, 12)),
        (datetime(2026, 1, 1), datetime(2026, 2, 1)),
    ]:
        kw = dict(
            data_source=fv.batch_source,
            join_key_columns=["customer_id"],
            feature_name_columns=["m_count", "m_amount"],
            timestamp_field="event_timestamp",
            created_timestamp_column=None,
            start_date=start.replace(tzinfo=UTC),
            end_date=end.replace(tzinfo=UTC),
        )
        got = ParquetDuckDBOfflineStore.pull_latest_from_table_or_query(config=ours.config, **kw).to_df()
        want = DuckDBOfflineStore.pull_latest_from_table_or_query(config=stock.config, **kw).to_df()
        got, want = (_norm(d.assign(label=0)).sort_values("customer_id").reset_index(drop=True) for d in (got, want))
        pd.testing.assert_frame_equal(got, want)
    assert len(got) == 0


def test_retrieval_keeps_extra_columns_and_row_count(stores: tuple) -> None:
    ours, _, _ = stores
    big = pd.concat([ENTITY_UTC] * 50, ignore_index=True).assign(label=lambda d: np.arange(len(d)))
    got = ours.get_historical_features(entity_df=big, features=["monthly:m_count"]).to_df()
    assert len(got) == len(big)
    assert got["label"].tolist() == big["label"].tolist()


def test_repeated_feature_rows_give_one_row_per_entity_row(stores: tuple) -> None:
    ours, _, _ = stores
    got = ours.get_historical_features(
        entity_df=ENTITY_UTC.copy(), features=["dup:d_value", "monthly:m_amount"]
    ).to_df()
    assert got["label"].tolist() == list(range(14))
    a_rows = got[(got["customer_id"] == "a") & (got["event_timestamp"] >= T("2025-01-01", tz="UTC"))]
    assert len(a_rows) == 5 and a_rows["d_value"].dropna().isin([1.0, 2.0]).all()
    assert got.loc[got["label"] == 0, "d_value"].item() in (1.0, 2.0)
    assert got.loc[got["label"] == 13, "d_value"].item() == 3.0
