"""The feature build on Spark against the DuckDB build of the same ingested tables.

Every family is built by both engines on a simulated federation of two member banks (through
``build_banks``, so the Spark session serves both banks) and on the hand-made random bank of
:mod:`featurekit` without its optional ``balances`` and ``services`` tables; the tables must be
equal: same rows, numbers equal to 1e-9 relative, nulls in the same cells, same columns and
Arrow types. Parquet's REQUIRED flag is left out: DuckDB sets it from what its statistics
prove about each column, which differs between the two plans while the values do not.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from featurekit import random_bank, write_tables

from bankexport.ingest import ingest
from bankexport.sim_federation import simulate_federation
from features.build import build, build_banks, member_banks
from features.catalog import modules
from features.schema import EVENT_TS, JOIN_KEY
from nbp.config import Config, IngestConfig, load_config
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REL = 1e-9


def _on_spark() -> Config:
    cfg = load_config()
    return cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"engine": "spark"})})


def _frame(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values([JOIN_KEY, EVENT_TS], ignore_index=True)


def assert_same_table(duck: Path, spark: Path) -> None:
    """The two engines' Parquet files of one family hold the same table."""
    types = [[(f.name, f.type) for f in pq.read_schema(p)] for p in (duck, spark)]
    assert types[0] == types[1], duck.name
    a, b = _frame(duck), _frame(spark)
    assert len(a) == len(b) and a[[JOIN_KEY, EVENT_TS]].equals(b[[JOIN_KEY, EVENT_TS]]), duck.name
    for col in a.columns:
        x, y = a[col], b[col]
        assert x.isna().equals(y.isna()), (duck.name, col, "nulls in different cells")
        if pd.api.types.is_numeric_dtype(x):
            xv, yv = x.dropna().to_numpy(float), y.dropna().to_numpy(float)
            bad = ~np.isclose(xv, yv, rtol=REL, atol=0.0)
            assert not bad.any(), (duck.name, col, xv[bad][:3], yv[bad][:3])
        else:
            assert x.equals(y), (duck.name, col)


def assert_same_build(duck: Workspace, spark: Workspace) -> None:
    """Every family's table and ``_build.json`` of two builds of one bank agree."""
    for fam in modules(duck.bank is not None):
        assert_same_table(duck.feature_table(fam), spark.feature_table(fam))
    meta = [json.loads(ws.features_build_meta.read_text(encoding="utf-8")) for ws in (duck, spark)]
    assert meta[0] == meta[1]


@dataclass(frozen=True)
class Homes:
    duck: Workspace
    spark: Workspace


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Homes:
    """Two simulated member banks, built by both engines from one import."""
    tmp = tmp_path_factory.mktemp("sparkfed")
    fed = simulate_federation(tmp / "export", 2, seed=5, sizes=[3000, 1500], months=15, end="2026-10")
    duck = Workspace(tmp / "duck")
    for bank in fed.banks:
        ingest(tmp / "export" / bank.code / "export", duck, IngestConfig(), bank=bank.code)
    shutil.copytree(duck.home, tmp / "spark")
    on_spark = Workspace(tmp / "spark")
    banks = member_banks(duck)
    assert len(banks) == 2
    list(build_banks(duck, banks))
    assert [code for code, _ in build_banks(on_spark, banks, cfg=_on_spark())] == banks
    return Homes(duck, on_spark)


def test_every_member_bank_table_is_the_same_on_spark(federation: Homes) -> None:
    for bank in member_banks(federation.duck):
        duck, spark = federation.duck.for_bank(bank), federation.spark.for_bank(bank)
        assert_same_build(duck, spark)
        demo = pd.read_parquet(spark.feature_table("demo"))
        assert len(demo) > 10_000 and set(demo["bank_code"]) == {bank}
        assert not spark.home.joinpath(".tmp").exists() or not any(spark.home.joinpath(".tmp").rglob("*.parquet"))


@dataclass(frozen=True)
class Rebuilt(Homes):
    first: dict[str, pd.DataFrame]  # the Spark tables after the first build


@pytest.fixture(scope="module")
def random_homes(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Rebuilt:
    """The random bank without balances and services, built by both engines at two as-ofs,
    then rebuilt at the second and a third as-of."""
    tmp = tmp_path_factory.mktemp("sparkrand")
    tables = {k: v for k, v in random_bank(11, n_customers=120).items() if k not in ("balances", "services")}
    duck, on_spark = Workspace(tmp / "duck"), Workspace(tmp / "spark")
    first = {}
    for cfg, ws in ((None, duck), (_on_spark(), on_spark)):
        write_tables(ws, tables, date(2025, 8, 31))
        build(ws, [date(2025, 3, 1), date(2025, 5, 15)], cfg=cfg)
        first = {fam: _frame(ws.feature_table(fam)) for fam in modules(False)}
        build(ws, [date(2025, 5, 15), date(2025, 8, 1)], cfg=cfg)
    return Rebuilt(duck, on_spark, first)


def test_random_bank_with_absent_optional_tables_is_the_same_on_spark(random_homes: Rebuilt) -> None:
    assert_same_build(random_homes.duck, random_homes.spark)
    liquidity = pd.read_parquet(random_homes.spark.feature_table("liquidity"))
    assert liquidity.drop(columns=[JOIN_KEY, EVENT_TS]).isna().all().all()  # no balances: null family
    meta = json.loads(random_homes.spark.features_build_meta.read_text(encoding="utf-8"))
    assert meta["null_families"] == ["liquidity"]


def test_an_incremental_rebuild_on_spark_keeps_the_other_as_ofs_rows(random_homes: Rebuilt) -> None:
    kept = pd.Timestamp("2025-03-01")
    for fam, before in random_homes.first.items():
        after = _frame(random_homes.spark.feature_table(fam))
        assert sorted(after[EVENT_TS].unique()) == [kept, pd.Timestamp("2025-05-15"), pd.Timestamp("2025-08-01")]
        old = before[before[EVENT_TS] == kept].reset_index(drop=True)
        assert len(old) and after[after[EVENT_TS] == kept].reset_index(drop=True).equals(old), fam
    meta = json.loads(random_homes.spark.features_build_meta.read_text(encoding="utf-8"))
    assert meta["as_of"] == ["2025-03-01", "2025-05-15", "2025-08-01"]
    assert meta["last_build"] == ["2025-05-15", "2025-08-01"]
