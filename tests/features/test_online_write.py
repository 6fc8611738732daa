"""The columnar online store's bulk write (``write_arrow``) stores what it was given."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("made_before", [False, True])
def test_write_arrow_round_trip_keeps_nulls_ints_and_replaces_rows(tmp_path: Path, made_before: bool) -> None:
    """Also on a table made by an earlier version (with a rowid), which is kept as it is."""
    from feast import Entity, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.types import Float64, Int64, String

    from features.online import TYPE, ColumnarSqliteOnlineStore

    config = RepoConfig(
        project="t",
        provider="local",
        registry=str(tmp_path / "registry.db"),
        online_store={"type": TYPE, "path": str(tmp_path / "online.db")},
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=tmp_path,
    )
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    fv = FeatureView(
        name="v",
        entities=[customer],
        ttl=timedelta(days=1),
        schema=[
            Field(name="customer_id", dtype=String),
            Field(name="n", dtype=Int64),
            Field(name="big", dtype=Int64),
            Field(name="x", dtype=Float64),
        ],
        source=FileSource(path=str(tmp_path / "x.parquet"), timestamp_field="event_timestamp"),
    )
    if made_before:
        with sqlite3.connect(tmp_path / "online.db") as old:
            old.execute(
                'CREATE TABLE "t__v" (_entity_key TEXT PRIMARY KEY, _event_ts TEXT, n INTEGER, big INTEGER, x REAL)'
            )
    store = ColumnarSqliteOnlineStore()
    store.update(config, [], [fv], [], [customer], partial=False)
    layout = store._conn(config).execute("SELECT sql FROM sqlite_master WHERE name = 't__v'").fetchall()[0][0]
    assert layout.endswith("WITHOUT ROWID") is not made_before
    t1, t2 = datetime(2025, 1, 1), datetime(2025, 2, 1)
    first = pa.table(
        {
            "customer_id": ["b", "a", "c"],
            "event_timestamp": pa.array([t1, t1, t1], pa.timestamp("us")),
            "n": pa.array([1, None, 3], pa.int64()),
            "big": pa.array([2**60 + 1, None, -5], pa.int64()),
            "x": pa.array([0.5, None, float("nan")], pa.float64()),
        }
    )
    assert store.write_arrow(config, fv, first, "customer_id", "event_timestamp") == 3
    second = pa.table(
        {
            "customer_id": ["c"],
            "event_timestamp": pa.array([t2], pa.timestamp("us")),
            "n": pa.array([30], pa.int64()),
            "big": pa.array([7], pa.int64()),
            "x": pa.array([2.25], pa.float64()),
        }
    )
    store.write_arrow(config, fv, second, "customer_id", "event_timestamp")

    keys = [EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=k)]) for k in ["a", "b", "c", "d"]]
    got = store.online_read(config, fv, keys)
    a, b, c, d = got
    assert d == (None, None)
    assert b[0] == t1.replace(tzinfo=UTC) and c[0] == t2.replace(tzinfo=UTC)
    assert b[1]["n"].int64_val == 1 and b[1]["big"].int64_val == 2**60 + 1 and b[1]["x"].double_val == 0.5
    assert a[1]["n"].WhichOneof("val") is None and a[1]["big"].WhichOneof("val") is None
    assert a[1]["x"].WhichOneof("val") is None
    assert c[1]["n"].int64_val == 30 and c[1]["big"].int64_val == 7 and c[1]["x"].double_val == 2.25
    conn = store._conn(config)
    assert conn.execute("SELECT typeof(n), typeof(big) FROM \"t__v\" WHERE _entity_key = 'b'").fetchone() == (
        "integer",
        "integer",
    )
    assert conn.execute('SELECT count(*) FROM "t__v"').fetchone()[0] == 3
