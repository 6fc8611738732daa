"""The point-in-time join on Spark gives what the DuckDB path gives, for every feature service.

One statement, two engines (``features/offline.py: point_in_time_sql``): the same entity rows go
through ``features/store.py`` with ``compute.engine: duckdb`` and ``spark``, and the frames must
be identical: columns, dtypes, row order, numbers to 1e-9 relative, nulls in the same cells. The
rows hit the join's edges: exactly an as-of, between as-ofs, with a time of day, before any
feature row, at the TTL's edge and one microsecond beyond it, long after the last as-of, repeated
rows, and a customer without features.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from featurekit import TINY_AS_OF, tiny_bank, write_tables

from features import store
from features.schema import EVENT_TS, JOIN_KEY
from nbp.config import Config, load_config
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = pd.Timestamp
TTL = timedelta(days=45)  # features/repo/definitions.py: TTL


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, spark: object) -> tuple[Config, Config, Workspace]:
    """The tiny bank built at every tiny as-of and applied to Feast; a DuckDB and a Spark config."""
    from features.build import build

    tmp = tmp_path_factory.mktemp("spark_offline")
    ws = Workspace(tmp / "ws")
    write_tables(ws, tiny_bank(), date(2025, 8, 31))
    build(ws, TINY_AS_OF)
    overlay = tmp / "spark.yaml"
    overlay.write_text("compute:\n  engine: spark\n", encoding="utf-8")
    duck, on_spark = load_config(), load_config(overlay)
    assert (duck.compute.engine, on_spark.compute.engine) == ("duckdb", "spark")
    store.apply(duck, ws)
    return duck, on_spark, ws


LAST = T(TINY_AS_OF[-1])
ROWS = [
    ("c1", T("2025-04-01")),  # exactly an as-of
    ("c1", T("2025-06-01")),
    ("c1", T("2025-06-10")),  # between two as-ofs
    ("c1", T("2025-06-15")),  # the mid-month as-of
    ("c2", T("2025-05-01 08:30:00.000001")),  # a time of day
    ("c2", T("2025-03-01")),  # before any feature row
    ("c3", LAST + TTL),  # exactly at the TTL's edge: still the last row
    ("c3", LAST + TTL + pd.Timedelta(microseconds=1)),  # one µs beyond: expired
    ("c4", T("2026-02-01")),  # long after the last as-of
    ("c4", T("2025-07-01")),
    ("c1", T("2025-06-10")),  # repeated entity rows
    ("c4", T("2025-07-01")),
    ("nobody", T("2025-06-01")),  # a customer without features
    ("c2", T("2025-08-01")),
]
ENTITY = pd.DataFrame({JOIN_KEY: [c for c, _ in ROWS], EVENT_TS: [t for _, t in ROWS]})


def _services(cfg: Config) -> list[str]:
    return sorted(store.service_names(cfg).values())


@pytest.fixture(scope="module")
def union(engines: tuple[Config, Config, Workspace]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every service's features for :data:`ENTITY` in one retrieval per engine: (DuckDB, Spark)."""
    duck, on_spark, ws = engines
    services = _services(duck)
    return store.historical_union(duck, ws, ENTITY, services), store.historical_union(on_spark, ws, ENTITY, services)


def test_every_feature_service_gives_the_same_frame_on_both_engines(
    engines: tuple[Config, Config, Workspace], union: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    duck, _, ws = engines
    want, got = union
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=0)
    assert got[JOIN_KEY].tolist() == ENTITY[JOIN_KEY].tolist()  # entity order kept
    for service in _services(duck):
        feats = got[store.service_features(duck, ws, service)].to_numpy()
        assert np.isnan(feats).any() and (~np.isnan(feats)).sum() > len(ENTITY), service  # both kinds compared


def test_one_service_with_utc_timestamps_gives_the_same_frame(engines: tuple[Config, Config, Workspace]) -> None:
    duck, on_spark, ws = engines
    ent = ENTITY.assign(**{EVENT_TS: ENTITY[EVENT_TS].dt.tz_localize("UTC")})
    want = store.historical(duck, ws, ent, "consumer_v1")
    got = store.historical(on_spark, ws, ent, "consumer_v1")
    assert got[EVENT_TS].dt.tz is not None
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=0)


def test_the_join_edges_hold_on_spark(union: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    got = union[1].drop(columns=[JOIN_KEY, EVENT_TS])
    known = got.notna().any(axis=1).tolist()
    assert known[0] and known[2] and known[6]  # an as-of, between as-ofs, at the TTL's edge
    assert not known[5] and not known[7] and not known[8] and not known[12]  # before, beyond TTL, unknown
    pd.testing.assert_series_equal(got.iloc[2], got.iloc[10], check_names=False)  # repeated rows agree
    assert got.iloc[2].equals(got.iloc[1])  # 2025-06-10 reads the 2025-06-01 row


def test_union_left_on_spark_equals_the_duckdb_union(engines: tuple[Config, Config, Workspace]) -> None:
    duck, on_spark, ws = engines
    services = _services(duck)
    want = store.historical_union(duck, ws, ENTITY, services)
    frame = store.historical_union_spark(on_spark, ws, ENTITY, services)
    got = frame.toPandas().sort_values("entity_row").reset_index(drop=True)
    assert got["entity_row"].tolist() == list(range(len(ENTITY)))  # one row per entity row
    feats = [c for c in want.columns if c not in (JOIN_KEY, EVENT_TS)]
    assert sorted(got.columns) == sorted(["entity_row", *feats])
    pd.testing.assert_frame_equal(got[feats], want[feats], check_exact=False, rtol=1e-9, atol=0)


def test_no_entity_rows_gives_an_empty_frame_on_both_engines(engines: tuple[Config, Config, Workspace]) -> None:
    duck, on_spark, ws = engines
    empty = ENTITY.iloc[:0]
    want = store.historical(duck, ws, empty, "consumer_v1")
    got = store.historical(on_spark, ws, empty, "consumer_v1")
    assert len(got) == 0
    pd.testing.assert_frame_equal(got, want)


def test_spark_runs_the_transpiled_duckdb_statement() -> None:
    """The Spark statement is the DuckDB one through nbp.dialect (no second version of the join)."""
    from features import offline

    class View:  # what point_in_time_sql reads of a feature view
        path, ts, keys, features, out, ttl = "/f.parquet", EVENT_TS, [(JOIN_KEY, JOIN_KEY)], ["x"], ["x"], TTL

    duckdb_sql = offline.point_in_time_sql([View()], "e", EVENT_TS, ["TIMESTAMP"], exact_first=False)
    spark_sql = offline.point_in_time_sql(
        [View()], "e", EVENT_TS, ["TIMESTAMP"], exact_first=False, scan=lambda i, _: f"fv{i}"
    )
    scan = offline._scan("/f.parquet", True)
    assert "read_parquet(['/f.parquet'], file_row_number = true)" in scan
    assert duckdb_sql.replace(scan, "fv0") == spark_sql
    from nbp.dialect import to_spark

    assert "MAX_BY(" in to_spark(spark_sql)
