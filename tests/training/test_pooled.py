"""Pooled models: the row budget, per-bank calibration, the gate of a window without uptakes,
and the refusal in a single-bank workspace (the chain on a federation: tests/e2e/test_federation_chain.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from training_synth import uptake_frame

from features.catalog import BANK_FEATURES
from nbp.cli import main
from nbp.config import load_config
from nbp.errors import ConfigError
from nbp.workspace import Workspace
from training import evaluate as ev
from training import registry
from training.model import ModelParams, fit_rolling
from training.pipeline import check_federation
from training.pooled import BankRows, cap_rows, fit_pooled, while_offered


def _cfg(**training: object):
    cfg = load_config()
    return cfg.model_copy(update={"training": cfg.training.model_copy(update=training)})


def test_cap_rows_keeps_every_uptake_and_the_weighted_count() -> None:
    rng = np.random.default_rng(3)
    rows = pd.DataFrame({"label": (rng.random(40_000) < 0.02).astype(int), "weight": 2.0})
    got = cap_rows(rows, 5_000)
    assert len(got) < 5_600 and got["label"].sum() == rows["label"].sum()
    assert got["weight"].sum() == pytest.approx(rows["weight"].sum(), rel=0.03)  # negatives weigh 1 / rate more
    assert cap_rows(rows, 50_000) is rows


def _bank(code: str, n: int, intercept: float, seed: int, size: int) -> BankRows:
    df = uptake_frame(n=n, periods=10, seed=seed, intercept=intercept)
    df["as_of"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(df.pop("period") * 31, unit="D")
    df["as_of"] = df["as_of"].dt.to_period("M").dt.to_timestamp()
    df = df.drop(columns="p").assign(customer_id=[f"C{i}" for i in range(len(df))], weight=1.0, bank_code=code)
    for f in BANK_FEATURES:
        df[f] = size if f == "bank_customers_count" else 24
    return BankRows(code, df, df.iloc[:0], "w")


@pytest.mark.slow
def test_a_bank_with_enough_fold_uptakes_gets_its_own_calibration_the_other_the_pooled_one() -> None:
    cfg = _cfg(min_bank_calibration_uptakes=50)
    big, small = _bank("BIG", 20_000, -2.5, 1, 20_000), _bank("SMALL", 1_500, -4.5, 2, 1_500)
    got = fit_pooled(cfg, [big, small])
    kind_big, pos_big = got.calibration["BIG"]
    kind_small, pos_small = got.calibration["SMALL"]
    assert kind_big == "bank" and pos_big >= 50
    assert kind_small == "pooled" and 0 < pos_small < 50
    assert got.models["SMALL"].calibrator == got.fit.model.calibrator
    assert got.models["BIG"].calibrator != got.fit.model.calibrator
    assert got.models["BIG"].booster is got.models["SMALL"].booster is got.fit.model.booster
    assert BANK_FEATURES <= set(got.fit.model.features) and "bank_code" not in got.fit.model.features
    assert got.models["BIG"].info["calibration"] == "bank" and got.models["SMALL"].info["calibration"] == "pooled"


def test_pooled_scope_is_refused_in_a_single_bank_workspace(tmp_path: Path) -> None:
    overlay = tmp_path / "pooled.yaml"
    overlay.write_text("products:\n  consumer: {scope: pooled}\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["train", "--config", str(overlay)], env={"NBP_HOME": str(tmp_path / "home")})
    assert res.exit_code == 1
    assert "consumer: scope pooled" in res.output and "single-bank workspace" in res.output
    with pytest.raises(ConfigError, match="set the scope to bank"):
        check_federation(_cfg(scope="pooled"), Workspace(tmp_path / "home"), ["business_flow"])
    check_federation(_cfg(), Workspace(tmp_path / "home"), ["business_flow"])  # scope bank: fine


@pytest.mark.integration
@pytest.mark.slow
def test_a_window_without_uptakes_promotes_only_a_bank_without_champion(tmp_path: Path) -> None:
    df = uptake_frame(n=6_000)
    fast = ModelParams(max_rounds=50, folds=2, search=False)
    model = fit_rolling(df[df["period"] < 5], ["x1", "x2", "noise"], "label", "period", fast)
    test = df[df["period"] == 5]
    m = ev.metrics(test["label"], model.predict_proba(test))
    ws = Workspace(tmp_path / "home").for_bank("NEW")

    def register() -> int:
        return registry.log_and_register(
            ws, "tax_linked", model, m, {}, {}, {}, ("2026-01-01", "2026-02-01"), "w", test, tags={"nbp.scope": "p"}
        )

    federation = {"auc": 0.7, "n": 1000, "positives": 40}
    v1 = register()
    low = registry.promote_unevaluable(ws, "tax_linked", v1, "no uptake in this bank's window", {"auc": 0.55}, 0.6)
    assert low.alias == "challenger" and "below the floor" in low.reason
    first = registry.promote_unevaluable(ws, "tax_linked", v1, "no uptake in this bank's window", federation, 0.6)
    assert first.promoted and "the bank has no champion" in first.reason
    v2 = register()
    second = registry.promote_unevaluable(ws, "tax_linked", v2, "no uptake in this bank's window", federation, 0.6)
    assert second.alias == "challenger" and f"champion v{v1} cannot be compared" in second.reason
    assert registry.load_champion(ws, "tax_linked")[1] == v1
    client = registry._connect(ws)
    assert client.get_model_version("nbp-NEW-tax_linked", str(v2)).tags["nbp.scope"] == "p"


def test_fitting_rows_start_when_the_label_window_reaches_the_first_application() -> None:
    rows = pd.DataFrame({"as_of": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"]), "label": 0})
    got = while_offered(rows, pd.Timestamp("2026-05-10"), 90)  # 2026-02-01 + 90 days = 2026-05-02
    assert got["as_of"].tolist() == [pd.Timestamp("2026-03-01")]
    assert while_offered(rows, None, 90) is rows
