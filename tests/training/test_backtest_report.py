"""The backtest's comparison with the simulator's oracle and its written report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbp.config import load_config
from training.pipeline import Skip, _write_backtest_report, oracle_ratios


def test_oracle_ratios_divide_the_recipe_auc_by_each_oracle_present() -> None:
    te = pd.DataFrame({"label": [0, 0, 1, 1], "p_true": [0.1, 0.2, 0.3, 0.4], "p_asof": [0.1, 0.3, 0.2, 0.4]})
    got = oracle_ratios(te, 0.6)
    assert list(got) == ["oracle_auc", "auc_ratio", "asof_oracle_auc", "asof_ratio"]
    assert got["oracle_auc"] == 1.0 and got["auc_ratio"] == pytest.approx(0.6)
    assert got["asof_oracle_auc"] == 0.75 and got["asof_ratio"] == pytest.approx(0.8)
    assert oracle_ratios(te.drop(columns=["p_true", "p_asof"]), 0.6) == {}


def test_report_names_the_fitting_calibration_and_test_months_and_every_skip(tmp_path: Path) -> None:
    months = list(pd.date_range("2025-01-01", periods=12, freq="MS"))
    fits = {
        "consumer": {
            "train_periods": [f"{m:%Y-%m-%d} 00:00:00" for m in months[:8]],
            "calibration_periods": [f"{m:%Y-%m-%d} 00:00:00" for m in months[4:8]],
            "calibrate_on": "folds",
            "search": [{"num_leaves": 4, "rounds": 30}],
        }
    }
    rows = [{"product": "consumer", "test": "x", "auc": 0.71, "oracle_auc": 0.8, "rounds": 30}]
    skip = {"tax_linked": Skip(zh="无", en="no candidates")}
    path = _write_backtest_report(load_config(), tmp_path / "bt", months[9], months[:8], months[9:], rows, fits, skip)
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "bt" / "report.md"
    assert "booster refit on the months up to 2025-08-01" in text
    assert "Platt calibration on out-of-time fold scores of 2025-05, 2025-06, 2025-07, 2025-08; tested on" in text
    assert "2025-10-01..2025-12-01" in text and "| auc | oracle_auc |" in text and "default_lgbm_auc" not in text
    assert '- consumer: fold search [{"num_leaves": 4, "rounds": 30}]' in text
    assert "- tax_linked: skipped: no candidates" in text and "![gain](consumer/gain.png)" in text
