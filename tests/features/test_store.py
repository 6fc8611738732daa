"""The Feast store: apply, historical retrieval through the point-in-time join, export."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from featurekit import tiny_bank, write_tables

from features import store, tiers
from features.catalog import feature_names
from features.schema import EVENT_TS, JOIN_KEY, PROFILE_SERVICE
from nbp.config import Config, load_config
from nbp.errors import FeatureStoreError
from nbp.workspace import Workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Workspace]:
    ws = Workspace(tmp_path_factory.mktemp("store") / "ws")
    write_tables(ws, tiny_bank(), date(2025, 8, 31))
    cfg = load_config()
    store.publish(cfg, ws, [date(2025, 6, 1), date(2025, 7, 1)])
    return cfg, ws


def test_one_feature_service_per_product(published: tuple[Config, Workspace]) -> None:
    cfg, ws = published
    names = {s.name for s in store.get_store(cfg, ws).list_feature_services()}
    assert names == {f"{k}_v1" for k in cfg.products} | {PROFILE_SERVICE}


def test_the_profile_service_reads_tiers_online(published: tuple[Config, Workspace]) -> None:
    cfg, ws = published
    got = store.online(cfg, ws, ["c1", "c2"], PROFILE_SERVICE)
    latest = tiers.read(ws, as_of=max(tiers.read(ws)["as_of"])).set_index(JOIN_KEY)
    assert got["tier_level"].tolist() == latest.loc[["c1", "c2"], "tier_level"].tolist()
    assert "demo_tenure_months" in got.columns


def test_historical_is_point_in_time_and_keeps_every_row(published: tuple[Config, Workspace]) -> None:
    cfg, ws = published
    ent = pd.DataFrame(
        {
            JOIN_KEY: ["c1", "c1", "c1", "c4", "nobody"],
            EVENT_TS: pd.to_datetime(["2025-06-01", "2025-06-20", "2025-07-01", "2025-06-01", "2025-06-01"]),
        }
    )
    got = store.historical(cfg, ws, ent, "consumer_v1")
    assert len(got) == len(ent)
    assert got[EVENT_TS].dtype == "datetime64[us]"
    assert set(feature_names()) <= set(got.columns)
    got = got.set_index([JOIN_KEY, EVENT_TS]).sort_index()
    col = "holdings_loans_active_consumer_count"
    # the loan granted 2025-06-02 is unknown at the 2025-06-01 row and at 2025-06-20 (still June's row)
    assert got.loc[("c1", pd.Timestamp("2025-06-01")), col] == 0
    assert got.loc[("c1", pd.Timestamp("2025-06-20")), col] == 0
    assert got.loc[("c1", pd.Timestamp("2025-07-01")), col] == 1
    assert got.loc[("nobody", pd.Timestamp("2025-06-01"))].isna().all()
    assert got.dtypes.eq(np.float64).all()


def test_historical_rejects_missing_columns_and_unknown_services(published: tuple[Config, Workspace]) -> None:
    cfg, ws = published
    with pytest.raises(FeatureStoreError, match="event_timestamp"):
        store.historical(cfg, ws, pd.DataFrame({JOIN_KEY: ["c1"]}), "consumer_v1")
    with pytest.raises(FeatureStoreError, match="nope_v1"):
        store.historical(cfg, ws, pd.DataFrame({JOIN_KEY: ["c1"], EVENT_TS: [pd.Timestamp("2025-06-01")]}), "nope_v1")


def test_export_writes_one_row_per_known_customer(published: tuple[Config, Workspace], tmp_path: Path) -> None:
    cfg, ws = published
    out = tmp_path / "f.parquet"
    assert store.export(cfg, ws, date(2025, 6, 1), out) == 4
    df = pd.read_parquet(out)
    assert list(df.columns) == [JOIN_KEY, *feature_names()]
    assert df[JOIN_KEY].tolist() == ["c1", "c2", "c3", "c4"]
    with pytest.raises(FeatureStoreError, match="not built"):
        store.export(cfg, ws, date(2025, 5, 1), out)


def test_exact_grid_agrees_with_the_point_in_time_join_where_found(published: tuple[Config, Workspace]) -> None:
    cfg, ws = published
    customers = ["c1", "c2", "c4", "nobody"]
    as_ofs = [datetime(2025, 6, 1), datetime(2025, 6, 20), datetime(2025, 7, 1)]
    names = ["demo_age_years", "holdings_loans_active_consumer_count", "tax_credit_grade_latest"]
    grids = store.exact_grid(ws, customers, as_ofs, names)
    ent = pd.DataFrame([(c, t) for t in as_ofs for c in customers], columns=[JOIN_KEY, EVENT_TS])
    ref = store.historical(cfg, ws, ent, "consumer_v1")
    ref = ent.merge(ref, on=[JOIN_KEY, EVENT_TS], how="left")
    for n in names:
        values, found = grids[n]
        assert values.shape == found.shape == (3, 4)
        # as-of dates of the feature tables are found for known customers, and hold what Feast returns
        assert found[[0, 2]][:, :3].all()
        # between as-of dates (Feast takes the earlier row) and for unknown customers: nothing claimed
        assert not found[1].any() and not found[:, 3].any()
        assert np.isnan(values[1]).all() and np.isnan(values[:, 3]).all()
        want = ref[n].to_numpy().reshape(3, 4)
        np.testing.assert_array_equal(values[found], want[found])
    assert grids["holdings_loans_active_consumer_count"][0][2, 0] == 1  # c1 at 2025-07-01
    with pytest.raises(FeatureStoreError, match="no_such_feature"):
        store.exact_grid(ws, customers, as_ofs, ["no_such_feature"])


def test_one_retrieval_for_several_services_matches_each(published: tuple[Config, Workspace]) -> None:
    cfg, ws = published
    ent = pd.DataFrame({JOIN_KEY: ["c1", "c2", "c4"], EVENT_TS: pd.to_datetime(["2025-07-01"] * 3)})
    services = [f"{k}_v1" for k in cfg.products]
    both = store.historical_union(cfg, ws, ent, services).set_index(JOIN_KEY)
    for s in services:
        one = store.historical(cfg, ws, ent, s).set_index(JOIN_KEY)
        feats = [c for c in one.columns if c != EVENT_TS]
        pd.testing.assert_frame_equal(both.loc[one.index, feats], one[feats])


def test_a_half_written_registry_is_rebuilt_and_writes_are_whole(tiny_ws: Workspace) -> None:
    """A registry cut short (a job killed while Feast's own file store wrote it in place) is removed and rebuilt."""
    from features.registry_file import AtomicFileRegistryStore

    cfg = load_config()
    store.publish(cfg, tiny_ws, [date(2025, 7, 1)])
    reg = tiny_ws.feast_registry
    whole = reg.read_bytes()
    reg.write_bytes(whole[: len(whole) // 2])
    assert store.repair_registry(tiny_ws) and not reg.exists()
    store.publish(cfg, tiny_ws, [date(2025, 7, 1)])  # rebuilt by apply
    fs = store.get_store(cfg, tiny_ws)
    assert isinstance(fs.registry._registry_store, AtomicFileRegistryStore)
    assert {fv.name for fv in fs.list_feature_views()} >= {"demo", "tax"}
    assert not store.repair_registry(tiny_ws)
    assert not list(tiny_ws.feast_dir.glob(".*.tmp-*"))  # the registry's temporary file was renamed


def test_feast_ui_shows_the_chinese_and_english_descriptions(published: tuple[Config, Workspace]) -> None:
    """The app ``feast -c <feast dir> ui`` serves, opened from the workspace's feature_store.yaml."""
    from fastapi.testclient import TestClient
    from feast import FeatureStore
    from feast.ui_server import get_app

    from features.catalog import CATALOG

    cfg, ws = published
    fs = FeatureStore(fs_yaml_file=ws.feast_yaml)
    client = TestClient(get_app(fs, store.project(ws)))
    assert client.get("/").status_code == 200
    got = client.get(f"/api/v1/feature_views/income?project={store.project(ws)}").json()
    shown = {f["name"]: f for f in got["spec"]["features"]}
    want = {f.name: f for f in CATALOG if f.family == "income"}
    assert set(shown) == set(want)
    for name, f in want.items():
        assert shown[name]["description"] == f.description
        assert (shown[name]["tags"]["zh"], shown[name]["tags"]["en"]) == (f.zh, f.en)
