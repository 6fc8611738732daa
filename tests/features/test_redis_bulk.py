"""The bulk Redis load (:mod:`features.redis_bulk`) against a real Redis server.

Two simulated member banks whose customer ids overlap are published with the SQLite online
store (the reference); the same as-of is then loaded into Redis by the bulk writer, from
Spark's executors and from the driver, and every read must give the SQLite store's values,
through Feast's ``get_online_features`` and through nbp's serving read alike.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from bankexport.ingest import ingest
from bankexport.simulate import simulate
from features import build as fbuild
from features import redis_bulk, store
from features.schema import EVENT_TS, JOIN_KEY
from nbp.cli import main
from nbp.config import Config, IngestConfig, load_config
from nbp.workspace import Workspace

ABSENT = "NO-SUCH-CUSTOMER"


@dataclass(frozen=True)
class Fed:
    home: Path
    cfg: Config  # SQLite online store: the reference

    def bank(self, code: str) -> Workspace:
        return Workspace(self.home).for_bank(code)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    tmp = tmp_path_factory.mktemp("redisbulk")
    sim = {"months": 6, "end": "2026-10"}
    simulate(tmp / "a", customers=90, seed=1, **sim)
    simulate(tmp / "b", customers=60, seed=2, **sim)
    home = tmp / "home"
    ingest(tmp / "a" / "export", Workspace(home), IngestConfig(), bank="A")
    ingest(tmp / "b" / "export", Workspace(home), IngestConfig(), bank="B")
    res = CliRunner().invoke(main, ["features", "--log-level", "WARNING"], env={"NBP_HOME": str(home)})
    assert res.exit_code == 0, res.output
    return Fed(home, load_config())


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[object]:
    """A client of the test server's database, emptied before the test."""
    import redis

    host, port = redis_url.split(":")
    client = redis.Redis(host=host, port=int(port))
    client.flushdb()
    yield client
    client.close()


def _on(cfg: Config, url: str, engine: str) -> Config:
    from benchmarks.redis_server import on_redis

    cfg = on_redis(cfg, url)
    return cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"engine": engine})})


def _sample(ws: Workspace, other: Workspace) -> list[str]:
    """Customers of the latest as-of (some with null features), one only the other bank has, one nobody has."""
    as_of = max(fbuild.built_as_of(ws))
    demo = pd.read_parquet(ws.feature_table("demo"))
    ids = sorted(demo.loc[demo[EVENT_TS] == pd.Timestamp(as_of), JOIN_KEY])
    theirs = sorted(set(pd.read_parquet(other.table("customers"))[JOIN_KEY]) - set(ids))
    return ids[::3] + theirs[:1] + [ABSENT]


def _services(cfg: Config) -> list[str]:
    return sorted(store.service_names(cfg).values())[:2]


def _assert_same_reads(reference: Config, redis_cfg: Config, ws: Workspace, ids: list[str]) -> None:
    """Redis reads (Feast's and nbp's serving read) equal the SQLite store's, value for value."""
    for service in _services(reference):
        want = store.online(reference, ws, ids, service).set_index(JOIN_KEY)
        for read in (store.online, store.online_via_feast):
            got = read(redis_cfg, ws, ids, service).set_index(JOIN_KEY)[want.columns]
            assert list(got.index) == ids
            np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(), err_msg=f"{ws.bank} {service} {read}")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_a_bulk_load_reads_back_what_the_sqlite_store_serves(
    fed: Fed, redis_url: str, redis_db: object, engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "spark":
        request.getfixturevalue("spark")  # the suite's one local[2] session
    a, b = fed.bank("A"), fed.bank("B")
    cfg = _on(fed.cfg, redis_url, engine)
    assert store.materialize(cfg, a) == max(fbuild.built_as_of(a))
    ids = _sample(a, b)
    ref = store.online(fed.cfg, a, ids, _services(fed.cfg)[0]).set_index(JOIN_KEY)
    ints = [f.name for f in store.all_features(a) if f.dtype == "int" and f.name in ref.columns]
    assert ref.loc[ABSENT].isna().all() and ref.drop(index=ABSENT).notna().any(axis=1).all()
    assert ref.isna().any().any() and ref[ints].notna().any().any()  # nulls and ints are both read
    _assert_same_reads(fed.cfg, cfg, a, ids)
    latest = pd.Timestamp(max(fbuild.built_as_of(a)))
    demo = pd.read_parquet(a.feature_table("demo"))
    assert redis_db.dbsize() == (demo[EVENT_TS] == latest).sum()  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.slow
def test_a_later_as_of_overwrites_and_banks_sharing_a_server_never_mix(
    fed: Fed, redis_url: str, redis_db: object, spark: object
) -> None:
    a, b = fed.bank("A"), fed.bank("B")
    earlier, latest = sorted(fbuild.built_as_of(a))[-2:]
    cfg = _on(fed.cfg, redis_url, "spark")
    store.materialize(cfg, a, earlier)
    ids = _sample(a, b)
    service = _services(fed.cfg)[0]
    stale = store.online(cfg, a, ids, service).set_index(JOIN_KEY)
    want = store.online(fed.cfg, a, ids, service).set_index(JOIN_KEY)[stale.columns]
    assert not np.array_equal(stale.to_numpy(), want.to_numpy(), equal_nan=True)  # the as-ofs differ
    driver = _on(fed.cfg, redis_url, "duckdb")
    store.materialize(driver, b)  # bank B between A's loads
    store.materialize(driver, a, latest)  # over the Spark load
    _assert_same_reads(fed.cfg, cfg, a, ids)
    _assert_same_reads(fed.cfg, cfg, b, _sample(b, a))  # B's customers behind A's ids are B's own
    stored: dict[str, set[str]] = {}
    for key in redis_db.scan_iter():  # type: ignore[attr-defined]
        head = 16 + len(JOIN_KEY)  # key count, key type, key length, join key, value type
        (size,) = struct.unpack_from("<I", key, head)
        stored.setdefault(key[head + 4 + size :].decode(), set()).add(key[head + 4 : head + 4 + size].decode())
    assert stored == {store.project(a): _customers(a, earlier, latest), store.project(b): _customers(b, latest)}
    intervals = [fv.materialization_intervals for fv in store.get_store(cfg, a).list_feature_views(allow_cache=False)]
    assert all(any(start.date() == earlier for start, _ in iv) for iv in intervals)


def _customers(ws: Workspace, *as_ofs: date) -> set[str]:
    demo = pd.read_parquet(ws.feature_table("demo"))
    return set(demo.loc[demo[EVENT_TS].isin([pd.Timestamp(t) for t in as_ofs]), JOIN_KEY])


def test_the_encoders_write_the_bytes_feast_writes() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType
    from google.protobuf.timestamp_pb2 import Timestamp

    ints = pa.array([0, 1, None, -5, 127, 128, 2**40, -(2**62)], pa.int64())
    floats = pa.array([0.0, -0.0, 1.5, None, float("nan"), float("inf"), -3e-300, 1e300], pa.float64())
    for col, kind, is_int in ((ints, ValueType.INT64, True), (floats, ValueType.DOUBLE, False)):
        want = [v.SerializeToString() for v in python_values_to_proto_values(col.to_numpy(zero_copy_only=False), kind)]
        assert redis_bulk.value_protos(col, is_int).to_pylist() == want
    assert redis_bulk.value_protos(pa.array([None, None], pa.null()), False).to_pylist() == [b"", b""]
    stored_as_float = pa.array([1.0, None, float("nan"), -2.7, 3e15], pa.float64())  # an int feature read as float
    want = python_values_to_proto_values(stored_as_float.to_numpy(zero_copy_only=False), ValueType.INT64)
    assert redis_bulk.value_protos(stored_as_float, True).to_pylist() == [v.SerializeToString() for v in want]
    ids = ["C000000001", "客户-7", ""]
    want = [
        serialize_entity_key(EntityKey(join_keys=[JOIN_KEY], entity_values=[Value(string_val=c)]), 3) + b"nbp_A"
        for c in ids
    ]
    assert redis_bulk.entity_keys(pa.array(ids), "nbp_A").to_pylist() == want
    when = pd.Timestamp("2026-11-01 00:00:00.000123", tz="UTC")
    ts = Timestamp()
    ts.FromDatetime(when.to_pydatetime())
    got = redis_bulk.timestamp_protos(pa.array([when.tz_convert(None), when.tz_convert(None) + timedelta(days=1)]))
    assert got.to_pylist()[0] == ts.SerializeToString() and got.to_pylist()[1] != got.to_pylist()[0]


@pytest.mark.integration
def test_a_write_redis_refuses_names_the_view_and_the_reason(redis_url: str, redis_db: object) -> None:
    from nbp.errors import FeatureStoreError

    host, port = redis_url.split(":")
    view = redis_bulk.ViewLayout("demo", ("demo_age",), (True,), (b"\x01\x02\x03\x04",))
    rows = pa.table({JOIN_KEY: ["C1", "C2"], EVENT_TS: pa.array([0, 0], pa.timestamp("us")), "demo_age": [40, None]})
    with redis_bulk.Writer(redis_bulk.Target(host, int(port), (), "nbp")) as w:
        assert w.write(view, rows) == 2
        redis_db.set(redis_bulk.entity_keys(pa.array(["C2"]), "nbp")[0].as_py(), b"a string")  # type: ignore[attr-defined]
        with pytest.raises(FeatureStoreError, match="feature view demo: Redis refused a write.*WRONGTYPE"):
            w.write(view, rows)
    key = redis_bulk.entity_keys(pa.array(["C1"]), "nbp")[0].as_py()
    assert redis_db.hgetall(key) == {b"_ts:demo": b"", b"\x01\x02\x03\x04": b" ("}  # type: ignore[attr-defined]
