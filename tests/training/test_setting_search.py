"""The monthly job's setting search (training/setting_search.py): a reused setting gives exactly the
model the full search gives when it keeps that setting; each reason sends a product back to the full
search; the registry records which search a run made, and the next month reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from training_synth import FEATURES, uptake_frame

from nbp.config import load_config
from training import setting_search as ss
from training.model import GRID, FittedModel, ModelParams, fit_rolling

# Few rounds and two folds keep the fits short; the point is which settings are cross-validated.
FAST = ModelParams(folds=2, num_threads=1, max_rounds=60, early_stopping_rounds=10, learning_rate=0.2)
CUTOFF = pd.Timestamp("2026-05-01")


def _rows(seed: int = 0) -> pd.DataFrame:
    df = uptake_frame(n=4_800, periods=8, seed=seed, intercept=-2.0)
    months = pd.date_range("2025-06-01", periods=8, freq="MS")
    return df.assign(as_of=months[df["period"].to_numpy()], weight=1.0).drop(columns=["period", "p"])


def _fit(rows: pd.DataFrame, params: ModelParams = FAST, grid: tuple | None = None) -> FittedModel:
    return fit_rolling(rows, FEATURES, "label", "as_of", params, weight="weight", grid=grid)


def _same_model(a: FittedModel, b: FittedModel, rows: pd.DataFrame) -> None:
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert (a.calibrator.a, a.calibrator.b) == (b.calibrator.a, b.calibrator.b)
    assert a.best_iteration == b.best_iteration
    np.testing.assert_array_equal(a.predict_proba(rows, 1), b.predict_proba(rows, 1))


# ----------------------------------------------------------------------------- the fit
def test_a_reused_setting_gives_the_full_searchs_model_when_it_keeps_that_setting() -> None:
    rows = _rows()
    full = _fit(rows)
    kept = full.info["setting"]
    assert len(full.info["search"]) == len(GRID) and kept in [dict(g) for g in GRID]
    reused = _fit(rows, grid=(kept,))
    assert len(reused.info["search"]) == 1  # one setting cross-validated, not the grid
    assert reused.info["search"][0] == full.info["search"][[dict(g) for g in GRID].index(kept)]
    assert reused.info["setting"] == kept and reused.params == full.params
    _same_model(full, reused, rows)


def test_a_reused_setting_equals_a_fit_with_that_setting_forced() -> None:
    """Whatever the setting: the grid of one member is the recipe with that member's settings and no search."""
    rows = _rows(1)
    for g in (GRID[1], GRID[3]):
        reused = _fit(rows, grid=(g,))
        forced = _fit(rows, FAST.model_copy(update={**g, "search": False}))
        assert len(forced.info["search"]) == 1 and reused.info["setting"] == dict(g)
        _same_model(reused, forced, rows)
    assert _fit(rows, grid=(GRID[1],)).booster.model_to_string() != reused.booster.model_to_string()


# ----------------------------------------------------------------------------- the rule
def _record(version: int = 3, latest: int | None = None, **tags: str) -> ss.ChampionRecord:
    base = {
        ss.TAG_FINGERPRINT: "fp",
        ss.TAG_SETTING: ss.setting_text(GRID[2]),
        ss.TAG_MONTH: "2026-02",
        ss.TAG_SEARCH: "full",
    }
    return ss.ChampionRecord(version, base | tags, latest or version)


def _plan(record: ss.ChampionRecord | None, report: dict | None = None, every: int = 6, **kw) -> ss.SearchPlan:
    base = load_config()
    cfg = base.model_copy(update={"training": base.training.model_copy(update={"search_every_months": every})})
    return ss.plan(cfg, "consumer", kw.pop("fp", "fp"), kw.pop("cutoff", CUTOFF), record, report, **kw)


def _report(version: int, *names: str) -> dict:
    flags = [{"name": n, "value": 1.0, "limit": 0.25} for n in names]
    return {"products": {"consumer": {"model_version": version, "flags": flags}}}


def test_nothing_changed_reuses_the_champions_setting_and_the_month_of_its_search() -> None:
    # inputs drift by themselves; the calibration is fitted again whatever the setting
    got = _plan(_record(), _report(3, "psi:age_years", "psi:tenure_months", "calibration_gap"))
    assert (got.mode, got.reason) == ("reused", "reused")
    assert got.grid == (dict(GRID[2]),) and got.month == "2026-02" and got.from_version == 3
    tags = got.tags(dict(GRID[2]), CUTOFF)
    assert tags[ss.TAG_MONTH] == "2026-02" and tags[ss.TAG_FROM] == "3"  # the search's month, carried on
    assert "reused" in got.line("consumer") and "2026-02" in got.line("consumer")


@pytest.mark.parametrize(
    ("record", "report", "kw", "reason"),
    [
        (_record(), None, {"force": True}, "forced"),
        (None, None, {}, "no_champion"),
        (_record(), None, {"fp": "another"}, "config_changed"),
        (_record(**{ss.TAG_FINGERPRINT: ""}), None, {}, "config_changed"),
        (_record(**{ss.TAG_SETTING: json.dumps({"num_leaves": 63})}), None, {}, "config_changed"),  # not in GRID
        (_record(version=3, latest=4), None, {}, "gate_failed"),
        (_record(), _report(3, "psi_score"), {}, "drift"),
        (_record(), _report(3, "calibration_gap", "psi:age_years", "psi_score"), {}, "drift"),
        (_record(), None, {"cutoff": pd.Timestamp("2026-08-01")}, "months_elapsed"),  # 6 months after 2026-02
        (_record(), None, {"every": 0}, "months_elapsed"),
        (_record(**{ss.TAG_MONTH: "2026-09"}), None, {}, "months_elapsed"),  # a search of a later month
    ],
)
def test_each_reason_sends_the_product_to_the_full_search(record, report, kw, reason) -> None:
    got = _plan(record, report, **kw)
    assert (got.mode, got.reason, got.grid) == ("full", reason, None)
    assert got.why and reason in got.line("consumer")


def test_the_drift_of_another_version_and_five_months_do_not_count() -> None:
    assert _plan(_record(version=3), _report(2, "psi_score")).mode == "reused"
    assert _plan(_record(), None, cutoff=pd.Timestamp("2026-07-01")).mode == "reused"  # 5 < 6 months


def test_a_full_search_records_its_own_month_and_the_setting_it_kept() -> None:
    got = _plan(None)
    tags = got.tags(dict(GRID[1]), CUTOFF)
    assert tags[ss.TAG_SEARCH] == "full" and tags[ss.TAG_REASON] == "no_champion"
    assert tags[ss.TAG_MONTH] == "2026-05" and json.loads(tags[ss.TAG_SETTING]) == json.loads(json.dumps(GRID[1]))
    assert ss.TAG_FROM not in tags
    # next month, with this run as champion: its setting is reused
    nxt = _plan(ss.ChampionRecord(1, tags, 1), cutoff=pd.Timestamp("2026-06-01"))
    assert nxt.mode == "reused" and nxt.grid == (dict(GRID[1]),) and nxt.month == "2026-05"


def test_the_fingerprint_follows_what_shapes_the_search_only() -> None:
    cfg = load_config()
    fp = ss.fingerprint(cfg, "consumer", FEATURES, FAST)

    def with_training(**upd: object) -> str:
        c = cfg.model_copy(update={"training": cfg.training.model_copy(update=upd)})
        return ss.fingerprint(c, "consumer", FEATURES, FAST)

    def with_product(**upd: object) -> str:
        pc = cfg.products["consumer"].model_copy(update=upd)
        c = cfg.model_copy(update={"products": {**cfg.products, "consumer": pc}})
        return ss.fingerprint(c, "consumer", FEATURES, FAST)

    assert ss.fingerprint(cfg, "consumer", list(reversed(FEATURES)), FAST) == fp  # order does not matter
    assert with_training(workers=1) == fp and with_training(auc_floor=0.7) == fp
    assert with_product(value=9.0, name_en="another name") == fp
    assert ss.fingerprint(cfg, "consumer", FEATURES[:-1], FAST) != fp
    assert ss.fingerprint(cfg, "consumer", FEATURES, FAST.model_copy(update={"folds": 3})) != fp
    assert with_training(max_rows=99_000) != fp and with_training(horizon_days=60) != fp
    assert with_product(eligibility=cfg.products["consumer"].eligibility[:-1]) != fp


# ----------------------------------------------------------------------------- registry and pipeline
@pytest.mark.integration
def test_the_next_month_reuses_what_the_registry_recorded_until_the_gate_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Month 1 searches in full (no champion) and records it; month 2 cross-validates the champion's
    setting alone and registers the full search's very model (same rows), which does not beat the
    champion; so month 3 searches in full again (gate_failed)."""
    from mlflow import MlflowClient

    from nbp.workspace import Workspace
    from training import pipeline, registry

    monkeypatch.chdir(tmp_path)  # MLflow must not write ./mlruns into the working directory
    monkeypatch.setattr(pipeline, "model_params", lambda cfg: FAST)
    cfg, ws = load_config(), Workspace(tmp_path / "home")
    rows = _rows(2)
    # the gate's split: fitting months whose label windows closed before the test month
    fit_ofs, test_ofs = pipeline.split_months(sorted(rows["as_of"].unique()), 1, cfg.training.horizon_days)
    fit, test = rows[rows["as_of"].isin(fit_ofs)], rows[rows["as_of"].isin(test_ofs)]
    data = {"consumer": (fit.reset_index(drop=True), test.reset_index(drop=True))}
    uri = registry.tracking_uri(ws)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the registry an earlier test set globally

    def month(cutoff: str, reuse: bool = True) -> tuple[pipeline.ProductResult, FittedModel, dict]:
        at = pd.Timestamp(cutoff)
        plans = pipeline.plan_searches(cfg, ws, at, data, reuse)
        fit_ofs, test_ofs = sorted(fit["as_of"].unique()), sorted(test["as_of"].unique())
        prep = pipeline.Prepared(["consumer"], at, fit_ofs, test_ofs, "w", dict(data), {}, plans)
        fitted = pipeline.fit_prepared(cfg, ws, prep)
        model = fitted["consumer"][0]
        (r,) = pipeline.register(cfg, ws, prep, fitted)
        tags = client.get_run(client.get_model_version("nbp-consumer", str(r.version)).run_id).data.tags
        return r, model, tags

    first, m1, t1 = month("2026-04-01")
    assert first.alias == "champion" and (first.search.mode, first.search.reason) == ("full", "no_champion")
    assert len(m1.info["search"]) == len(GRID)
    assert t1[ss.TAG_SEARCH] == "full" and t1[ss.TAG_MONTH] == "2026-04"
    assert json.loads(t1[ss.TAG_SETTING]) == json.loads(ss.setting_text(m1.info["setting"]))

    second, m2, t2 = month("2026-05-01")
    assert (second.search.mode, t2[ss.TAG_SEARCH], t2[ss.TAG_REASON]) == ("reused", "reused", "reused")
    assert len(m2.info["search"]) == 1 and t2[ss.TAG_MONTH] == "2026-04" and t2[ss.TAG_FROM] == "1"
    assert m2.booster.model_to_string() == m1.booster.model_to_string()  # what the full search gave
    assert second.alias == "challenger"  # the same model does not beat the champion

    third, m3, t3 = month("2026-06-01")
    assert (t3[ss.TAG_SEARCH], t3[ss.TAG_REASON]) == ("full", "gate_failed") and len(m3.info["search"]) == len(GRID)
    assert month("2026-06-01", reuse=False)[2][ss.TAG_REASON] == "forced"  # nbp train, retrain --search


def test_retrain_search_flag_asks_for_the_full_search(monkeypatch: pytest.MonkeyPatch, nbp_home: Path) -> None:
    from click.testing import CliRunner

    from nbp.cli import main
    from training import pipeline

    asked = []
    monkeypatch.setattr(pipeline, "retrain", lambda cfg, ws, reuse: asked.append(reuse) or "done")
    for args in (["retrain"], ["retrain", "--search"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0 and res.output.strip() == "done", res.output
    assert asked == [True, False]


def test_the_spark_stage_fits_the_plans_setting_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``compute.engine: spark`` stages the plan's grid with the bank's rows, and the group's fit
    (``training/spark_fit.py: fit_bank``, here without Spark on the staged files) cross-validates it alone."""
    from nbp.workspace import Workspace
    from training import pipeline, spark_fit

    monkeypatch.setattr(pipeline, "model_params", lambda cfg: FAST)
    cfg, ws = load_config(), Workspace(tmp_path / "home")
    rows = _rows(3)
    fit, test = rows[rows["as_of"] < "2026-01-01"], rows[rows["as_of"] >= "2026-01-01"]
    plans = {"consumer": _plan(_record(**{ss.TAG_FINGERPRINT: "fp"}))}
    assert plans["consumer"].grid == (dict(GRID[2]),)
    prep = pipeline.Prepared(["consumer"], CUTOFF, [], [], "w", {"consumer": (fit, test)}, {}, plans)
    stage = spark_fit.Stage(ws)
    stage.add_bank("B1", prep)
    spec = stage.tasks[("B1", "consumer")]
    staged = pd.concat([pd.read_parquet(stage._file("rows", ("B1", "consumer"), p)) for p in ("fit", "test")])
    model, _, _ = spark_fit.fit_bank(cfg, spec, staged)
    assert len(model.info["search"]) == 1 and model.info["setting"] == dict(GRID[2])
    direct, _, _ = pipeline._fit_product(cfg, fit, test, (dict(GRID[2]),))  # the DuckDB path's fit
    assert model.booster.model_to_string() == direct.booster.model_to_string()
