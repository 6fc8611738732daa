"""The feature build on Spark against the DuckDB build of the same ingested tables.

One federation of two member banks, built by both engines through ``build_banks`` (one Spark
session serves both banks): ``SIM``, a simulated bank, and ``RND``, the hand-made random bank
of :mod:`featurekit` (nulls in every optional column) without its optional ``balances`` and
``services`` tables. Every family's table must be equal: same rows, numbers equal to 1e-9
relative, nulls in the same cells, same columns and Arrow types. Parquet's REQUIRED flag is
left out: DuckDB sets it from what its statistics prove about each column, which differs
between the two plans while the values do not. ``RND`` is then rebuilt at a later as-of for
two families, on both engines.
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
from bankexport.simulate import simulate
from features.build import build, build_banks, member_banks
from features.catalog import modules
from features.schema import EVENT_TS, JOIN_KEY
from nbp.config import Config, IngestConfig, load_config
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REL = 1e-9
AS_OF = [date(2025, 3, 1), date(2025, 5, 15)]  # a month start and a mid-month date
LATER = [date(2025, 5, 15), date(2025, 8, 1)]  # the incremental rebuild: one as-of again, one new
REBUILT = ["income", "holdings"]  # a family of windows and one of dated rows


def _on_spark() -> Config:
    cfg = load_config()
    return cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"engine": "spark"})})


def _frame(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values([JOIN_KEY, EVENT_TS], ignore_index=True)


def assert_same_table(duck: Path, spark: Path) -> None:
    """The two engines' Parquet files of one family hold the same table, every file one schema."""
    types = [{tuple((f.name, f.type) for f in pq.read_schema(f)) for f in p.glob("*.parquet")} for p in (duck, spark)]
    assert len(types[0]) == 1 and types[0] == types[1], duck.name
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
    first: dict[str, pd.DataFrame]  # RND's Spark tables of REBUILT before the rebuild


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Homes:
    """The federation imported once, copied, built by each engine at :data:`AS_OF`, then
    ``RND``'s :data:`REBUILT` families rebuilt at :data:`LATER`."""
    tmp = tmp_path_factory.mktemp("sparkbuild")
    simulate(tmp / "sim", customers=600, months=14, end="2025-08", seed=5)
    duck = Workspace(tmp / "duck")
    ingest(tmp / "sim" / "export", duck, IngestConfig(), bank="SIM")
    tables = {k: v for k, v in random_bank(11, n_customers=120).items() if k not in ("balances", "services")}
    write_tables(duck.for_bank("RND"), tables, date(2025, 8, 31), bank="RND")
    shutil.copytree(duck.home, tmp / "spark")
    on_spark = Workspace(tmp / "spark")
    assert member_banks(duck) == ["RND", "SIM"]
    first: dict[str, pd.DataFrame] = {}
    for ws, cfg in ((duck, None), (on_spark, _on_spark())):
        assert [code for code, _ in build_banks(ws, ["RND", "SIM"], AS_OF, cfg=cfg)] == ["RND", "SIM"]
        if cfg is not None:
            first = {fam: _frame(ws.for_bank("RND").feature_table(fam)) for fam in REBUILT}
        build(ws.for_bank("RND"), LATER, families=REBUILT, cfg=cfg)
    return Homes(duck, on_spark, first)


def test_every_family_of_every_member_bank_is_the_same_on_spark(homes: Homes) -> None:
    for bank in ("RND", "SIM"):
        duck, spark = homes.duck.for_bank(bank), homes.spark.for_bank(bank)
        assert_same_build(duck, spark)
        demo = pd.read_parquet(spark.feature_table("demo"))
        assert set(demo["bank_code"]) == {bank} and len(demo) > (1000 if bank == "SIM" else 150)
    scratch = homes.spark.home / ".tmp"  # Spark's parts are removed with the job's scratch
    assert not scratch.exists() or not any(scratch.rglob("*.parquet"))


def test_absent_optional_tables_give_the_same_null_features_on_spark(homes: Homes) -> None:
    rnd = homes.spark.for_bank("RND")
    liquidity = pd.read_parquet(rnd.feature_table("liquidity"))
    assert liquidity.drop(columns=["bank_code", JOIN_KEY, EVENT_TS]).isna().all().all()  # no balances
    holdings = pd.read_parquet(rnd.feature_table("holdings"))
    assert holdings["holdings_services_count"].isna().all() and holdings["holdings_loans_active_count"].notna().all()


def test_an_incremental_rebuild_on_spark_keeps_the_other_as_ofs_rows(homes: Homes) -> None:
    rnd = homes.spark.for_bank("RND")
    kept = pd.Timestamp(AS_OF[0])
    for fam, before in homes.first.items():
        after = _frame(rnd.feature_table(fam))
        assert sorted(after[EVENT_TS].unique()) == [pd.Timestamp(d) for d in (*AS_OF, LATER[-1])]
        old = before[before[EVENT_TS] == kept].reset_index(drop=True)
        assert len(old) and after[after[EVENT_TS] == kept].reset_index(drop=True).equals(old), fam
    demo = pd.read_parquet(rnd.feature_table("demo"))  # not rebuilt: as the first build left it
    assert sorted(demo[EVENT_TS].unique()) == [pd.Timestamp(d) for d in AS_OF]
    meta = json.loads(rnd.features_build_meta.read_text(encoding="utf-8"))
    assert meta["as_of"] == [d.isoformat() for d in (*AS_OF, LATER[-1])]
    assert meta["last_build"] == [d.isoformat() for d in LATER]
