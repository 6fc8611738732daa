"""The per-request path of /hints gives what the Feast/DataFrame path gives, only cheaper.

``features.store.online`` reads the columnar SQLite store with one joined query
(``OnlineReader``); ``Recommender.hints`` works on numpy rows (``HintPlan``,
``failed_rules_at``, ``ReasonCatalog.top_reasons_at``). Each is checked here against the
slower reference it replaces: Feast's ``get_online_features``, ``rule_mask`` on a
DataFrame, ``FittedModel.contributions`` and ``top_reasons`` on Series
(tests/serving/test_written_once.py: the rules on random rows).
"""

from __future__ import annotations

import itertools
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest
from servingkit import TRAINED, Built, bearer

from features import store
from nbp.errors import FeatureStoreError
from training.candidates import rule_mask

pytestmark = pytest.mark.integration


def _ids(built: Built, n: int) -> list[str]:
    ids = pd.read_parquet(built.ws.table("customers"), columns=["customer_id"])["customer_id"].astype(str)
    return ids.sort_values().tolist()[:n]


# ------------------------------------------------------------------------- online reads
def test_online_read_equals_feasts_get_online_features(built: Built) -> None:
    ids = _ids(built, 120)
    asked = [*ids, "NO-SUCH-CUSTOMER", ids[5], ids[0]]  # unknown and repeated ids too
    for service in ("consumer_v1", "business_flow_v1"):
        reader = store.online_reader(built.cfg, built.ws, service)
        assert reader.fast
        fast = store.online(built.cfg, built.ws, asked, service)
        ref = store.online_via_feast(built.cfg, built.ws, asked, service)
        assert fast["customer_id"].tolist() == asked == ref["customer_id"].tolist()
        assert sorted(fast.columns) == sorted(ref.columns)
        a = fast[ref.columns].drop(columns="customer_id").to_numpy()
        b = ref.drop(columns="customer_id").to_numpy()
        assert a.dtype == b.dtype == np.float64
        np.testing.assert_array_equal(a, b)  # NaN where Feast says None; same values bit for bit
        assert np.isnan(a[len(ids)]).all() and not np.isnan(a[: len(ids)]).all()
        np.testing.assert_array_equal(a[len(ids) + 1], a[5])
        assert store.online(built.cfg, built.ws, [], service).shape == (0, len(ref.columns))


def test_the_reader_is_resolved_once_and_again_after_apply(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    r1 = store.online_reader(built.cfg, built.ws, "consumer_v1")
    assert store.online_reader(built.cfg, built.ws, "consumer_v1") is r1
    monkeypatch.setattr(store, "_SERVICES", {})  # what apply() does: the next read resolves the service again
    r2 = store.online_reader(built.cfg, built.ws, "consumer_v1")
    assert r2 is not r1 and r2.columns == r1.columns


def test_a_store_other_than_the_columnar_sqlite_goes_through_feast(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    import features.online

    monkeypatch.setattr(features.online, "ColumnarSqliteOnlineStore", type("NotThisStore", (), {}))
    reader = store.OnlineReader(built.cfg, built.ws, "consumer_v1")  # e.g. Redis
    assert not reader.fast
    ids = _ids(built, 10)
    ref = store.online_via_feast(built.cfg, built.ws, ids, "consumer_v1")
    np.testing.assert_array_equal(reader.read(ids), ref[list(reader.columns)].to_numpy())


def test_an_unreadable_online_store_raises(built: Built, tmp_path: Any) -> None:
    import sqlite3
    from types import SimpleNamespace

    from features.online import ColumnarSqliteOnlineStore

    view = store.get_store(built.cfg, built.ws).get_feature_view("demo")
    views = [(view, [view.features[0].name])]

    def config(path: Any) -> Any:
        return SimpleNamespace(project="nbp", repo_path=None, online_store=SimpleNamespace(path=str(path)))

    with pytest.raises(FileNotFoundError):  # never created: not opened (that would create an empty file)
        ColumnarSqliteOnlineStore().read_matrix(config(tmp_path / "missing.db"), views, ["x"])
    assert not (tmp_path / "missing.db").exists()
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(sqlite3.OperationalError):  # not materialised: no table
        ColumnarSqliteOnlineStore().read_matrix(config(tmp_path / "empty.db"), views, ["x"])


def test_hints_answer_503_when_the_online_store_fails(
    client: Any, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = bentoml.get_current_service().recommender
    reader = rec.products["consumer"].fast.reader

    def broken(_: Any) -> None:
        raise FeatureStoreError("online store of /x cannot be read (OperationalError: no such table)")

    monkeypatch.setattr(reader, "read", broken)
    r = client.post("/hints", json={"customer_id": built.customer}, headers=bearer("marketing"))
    assert r.status_code == 503 and "cannot be read" in r.json()["error"]


# ------------------------------------------------------------------------- the recommender
def test_hints_equal_the_dataframe_path(client: Any, built: Built) -> None:
    rec = bentoml.get_current_service().recommender
    ids = _ids(built, 60)
    for cid, lang in itertools.product(ids, ("zh", "en")):
        got = {r.product: r for r in rec.hints(cid, lang).products}
        for key in TRAINED:
            st = rec.products[key]
            x = store.online_via_feast(built.cfg, built.ws, [cid], st.service)
            contrib = st.model.contributions(x).iloc[0]
            row = got[key]
            assert row.propensity == pytest.approx(float(st.model.predict_proba(x)[0]), rel=1e-9, abs=1e-12)
            # a product not offered shows why, never reasons to offer it
            assert row.reasons == (rec.catalog.top_reasons(contrib, x.iloc[0], lang) if row.eligible else [])
            failed = [r for r in built.cfg.products[key].eligibility if not bool(rule_mask(x, r).iloc[0])]
            if cid in st.holders:
                assert row.eligible is False
            elif failed:
                assert row.eligible is False
                assert all((r.zh if lang == "zh" else r.en) in row.reason_not_offered for r in failed)
            else:
                assert row.reason_not_offered is None or (cid, key) in rec._recent


def test_top_reasons_at_equals_top_reasons() -> None:
    from features.catalog import catalog_frame
    from serving.reasons import ReasonCatalog

    cat = ReasonCatalog(catalog_frame())
    names = sorted(n for n in catalog_frame()["name"][:12])
    rng = np.random.default_rng(3)
    for _ in range(200):
        c = rng.normal(size=len(names)).round(1)  # rounding makes ties
        c[rng.integers(0, len(names))] = 0.0
        v = rng.integers(0, 5000, len(names)).astype(float)
        for lang in ("zh", "en"):
            ref = cat.top_reasons(pd.Series(c, index=names), pd.Series(v, index=names), lang)
            assert cat.top_reasons_at(names, c, v, lang) == ref
    assert cat.top_reasons_at(names, -np.ones(len(names)), np.zeros(len(names))) == []


def test_single_row_contributions_equal_booster_predict(client: Any, built: Built) -> None:
    """LightGBM's single-row fast path gives exactly what ``Booster.predict(pred_contrib=True)`` gives."""
    from serving.engine import SingleRowContrib

    rec = bentoml.get_current_service().recommender
    for key in TRAINED:
        st = rec.products[key]
        plan = st.fast
        assert plan is not None and plan.single_row is not None
        for cid in _ids(built, 40):
            x = plan.reader.read([cid])[0]
            m = x[plan.features]
            ref = st.model.booster.predict(
                m.reshape(1, -1), pred_contrib=True, num_iteration=st.model.best_iteration, num_threads=1
            )[0]
            np.testing.assert_array_equal(plan.contributions(st.model, x), ref)
        with pytest.raises(ValueError, match="features"):
            plan.single_row(m[:-1])
        every_tree = SingleRowContrib(st.model.booster, 0)
        np.testing.assert_array_equal(
            every_tree(m),
            st.model.booster.predict(m.reshape(1, -1), pred_contrib=True, num_iteration=0, num_threads=1)[0],
        )
