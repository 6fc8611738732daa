"""Drift monitoring: PSI and calibration in the large (by hand on small examples), flags and
guardrails, and a retrain on a small simulated bank that writes the report, logs it to MLflow,
exits 1 only on a configured guardrail, and shows its flags in ``/readyz``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nbp.config import GuardrailsConfig, load_config
from training import drift

FLOOR = drift.EMPTY_SHARE


def _psi(e: np.ndarray, a: np.ndarray) -> float:
    e, a = np.maximum(e, FLOOR), np.maximum(a, FLOOR)
    return float(((a - e) * np.log(a / e)).sum())


# ----------------------------------------------------------------------------- PSI
def test_psi_of_identical_samples_is_zero() -> None:
    x = np.random.default_rng(1).normal(size=(5_000, 3))
    x[::7, 2] = np.nan
    assert drift.psi_numeric(x, x.copy()) == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    s = pd.Series(["a", "b", None, "c"] * 50)
    assert drift.psi_categorical(s, s.copy()) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_a_shifted_sample_is_above_the_flag() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=20_000), rng.normal(loc=1.0, size=20_000)
    assert drift.psi_numeric(ref, cur)[0] > 0.25
    assert drift.psi_numeric(ref, rng.normal(size=20_000))[0] < 0.01  # the same population, another sample


def test_psi_matches_a_hand_computation() -> None:
    # reference 1..10: deciles 1.9, 2.8, ..., 9.1, so every value has a bin of its own (share 0.1)
    ref = np.arange(1.0, 11.0)
    cur = np.array([1, 1, 1, 1, 5, 5, 5, 5, np.nan, np.nan])
    e = np.array([0.1] * 10 + [0.0])  # ten value bins, then the missing bin
    a = np.array([0.4, 0, 0, 0, 0.4, 0, 0, 0, 0, 0, 0.2])  # 1 in (-inf, 1.9], 5 in (4.6, 5.5], missing
    assert drift.psi_numeric(ref, cur)[0] == pytest.approx(_psi(e, a), rel=1e-12)
    # categorical: a 2/3 -> 1/3, b 1/3 -> 2/3: 2 * (1/3) ln 2
    assert drift.psi_categorical(pd.Series(list("aab")), pd.Series(list("abb"))) == pytest.approx(
        2 / 3 * math.log(2), rel=1e-12
    )


def test_missing_values_count_as_a_bin_of_their_own() -> None:
    ref = np.arange(100.0)
    cur = ref.copy()
    cur[:30] = np.nan  # the same values, 30 % now unknown
    e = np.array([0.1] * 10 + [0.0])
    a = np.array([0.0] * 3 + [0.1] * 7 + [0.3])
    assert drift.psi_numeric(ref, cur)[0] == pytest.approx(_psi(e, a), rel=1e-12)
    assert drift.psi_categorical(pd.Series(["x"] * 10), pd.Series(["x"] * 7 + [None] * 3)) == pytest.approx(
        _psi(np.array([0.0, 1.0]), np.array([0.3, 0.7])), rel=1e-12
    )


def test_psi_inputs_names_every_input_largest_first() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"same": rng.normal(size=2_000), "moved": rng.normal(size=2_000), "kind": ["a", "b"] * 1_000})
    cur = pd.DataFrame({"same": rng.normal(size=2_000), "moved": rng.normal(2, 1, 2_000), "kind": ["a"] * 2_000})
    got = drift.psi_inputs(ref, cur, ["same", "moved", "kind"], categorical=["kind"])
    assert list(got.index) == ["kind", "moved", "same"] and got.is_monotonic_decreasing
    assert got["same"] < 0.05 and got["moved"] > 0.25


# ----------------------------------------------------------------------------- calibration
def test_calibration_in_the_large_per_month_by_hand() -> None:
    cal = drift.calibration_in_the_large([0, 1, 0, 0, 0, 0], [0.1, 0.2, 0.3, 0.2, 0.2, 0.2], [1, 1, 1, 2, 2, 2])
    first, second = cal.iloc[0], cal.iloc[1]
    assert (first["rows"], first["uptakes"]) == (3, 1)
    assert first["gap"] == pytest.approx(abs(0.2 / (1 / 3) - 1))  # mean predicted 0.2, realised 1/3
    assert second["gap"] == math.inf  # predicted 0.2, nothing realised


def test_calibration_gap_only_for_months_whose_labels_closed() -> None:
    months = list(pd.date_range("2026-01-01", "2026-08-01", freq="MS"))
    closed = drift.closed_months(months, pd.Timestamp("2026-07-01"), 90)
    assert closed == [t for t in months if t <= pd.Timestamp("2026-04-02")]  # as-of + 90 days <= export date
    rng = np.random.default_rng(4)
    rows = pd.DataFrame(
        {
            "as_of": np.repeat(months, 200),
            "x": rng.normal(size=200 * len(months)),
            "score": rng.uniform(0.0, 0.2, 200 * len(months)),
            "label": rng.integers(0, 2, 200 * len(months)),
        }
    )
    fig = drift.product_figures(load_config(), rows, ["x"], [], months[:3], months[-1], closed)
    assert [c["as_of"] for c in fig["calibration"]] == [f"{t:%Y-%m-%d}" for t in closed]
    last = rows[rows["as_of"] == closed[-1]]
    assert fig["calibration_gap_latest"] == pytest.approx(abs(last["score"].mean() / last["label"].mean() - 1))
    assert fig["calibration_latest_as_of"] == f"{closed[-1]:%Y-%m-%d}"
    assert [c["window"] for c in fig["calibration"]] == ["fit"] * 3 + ["out_of_time"] * (len(closed) - 3)
    # labels of about 50 % against scores of about 10 %: flagged, and named in the one-line report
    assert fig["flags"][-1]["name"] == "calibration_gap"
    assert "calibration_gap" in drift.report_lines({"products": {"consumer": fig}})[0]


# ----------------------------------------------------------------------------- flags and guardrails
def _report(**fig: float) -> dict:
    base = {
        "psi_score": 0.1,
        "psi_max_input": 0.4,
        "psi_max_input_name": "age",
        "calibration_gap_latest": 0.3,
        "calibration_latest_as_of": "2026-06-01",
        "psi_inputs": {"age": 0.4, "income": 0.05},
    }
    base |= fig
    base["flags"] = drift.flags(base, 0.25, 0.25)
    return {"bank": None, "products": {"consumer": base}}


def test_flags_name_the_figures_above_their_limit() -> None:
    names = [f["name"] for f in _report()["products"]["consumer"]["flags"]]
    assert names == ["psi:age", "calibration_gap"]
    rows = drift.flag_rows(_report())
    assert list(rows.columns) == list(drift.FLAG_COLUMNS.values()) and "产品" in rows.columns
    assert rows.iloc[0]["产品"] == "consumer" and "psi:age" in rows.iloc[0]["预警"]
    report = _report()
    report["products"]["consumer"]["calibration"] = [
        {
            "as_of": "2026-06-01",
            "window": "out_of_time",
            "rows": 10,
            "uptakes": 2,
            "mean_predicted": 0.1,
            "realised": 0.2,
        }
    ]
    cal = drift.calibration_rows(report)
    assert list(cal.columns) == list(drift.CALIBRATION_COLUMNS.values())
    assert cal.iloc[0]["窗口"] == "训练后月份" and cal.iloc[0]["办理数"] == 2
    assert drift.flag_rows(None).empty and drift.calibration_rows(None).empty


def test_guardrails_fail_only_when_configured_and_exceeded(tmp_path: Path) -> None:
    from nbp.workspace import Workspace

    report = _report()
    assert drift.guardrail_failures(report, GuardrailsConfig()) == []  # flags alone fail nothing
    assert drift.guardrail_failures(report, GuardrailsConfig(max_input_psi=0.5, max_score_psi=0.2)) == []
    (msg,) = drift.guardrail_failures(report, GuardrailsConfig(max_input_psi=0.3))
    assert "consumer" in msg and "max_input_psi" in msg and "0.400" in msg and "0.3" in msg and "age" in msg
    # nothing realised while uptake was predicted: an infinite gap, kept through the JSON report
    ws = Workspace(tmp_path)
    drift.write_report(ws, _report(calibration_gap_latest=math.inf))
    (msg,) = drift.guardrail_failures(drift.read_report(ws), GuardrailsConfig(max_calibration_gap=0.5))
    assert "max_calibration_gap" in msg and "inf > 0.5" in msg and "2026-06-01" in msg
    nan = _report(calibration_gap_latest=float("nan"))
    assert drift.guardrail_failures(nan, GuardrailsConfig(max_calibration_gap=0.1)) == []  # no closed month


# ----------------------------------------------------------------------------- a retrain
def _cli(args: list[str], code: int = 0) -> str:
    from nbp.cli import main

    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 2,000-customer bank retrained once with a PSI flag so low that every product with a
    champion is flagged (flags alone: exit 0), then again with a guardrail it exceeds (exit 1)."""
    from nbp.workspace import Workspace

    root = tmp_path_factory.mktemp("drift")
    home = root / "home"
    flagged, guarded = root / "flagged.yaml", root / "guarded.yaml"
    flagged.write_text("monitoring:\n  psi_flag: 0.000001\n", encoding="utf-8")
    guarded.write_text("monitoring:\n  guardrails:\n    max_score_psi: 0.000001\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBP_HOME", str(home))
        _cli(["simulate", "--out", str(root / "bank"), "--customers", "2000", "--months", "14", "--seed", "7"])
        _cli(["ingest", str(root / "bank" / "export")])
        first = _cli(["retrain", "--config", str(flagged)])
        report = json.loads(Workspace(home).drift_report.read_text(encoding="utf-8"))
        second = _cli(["retrain", "--config", str(guarded)], code=1)
        yield {"home": home, "first": first, "report": report, "second": second}


@pytest.mark.integration
@pytest.mark.slow
def test_retrain_writes_the_drift_report_and_flags_alone_exit_zero(retrained: dict) -> None:
    report, out = retrained["report"], retrained["first"]
    assert report["products"], report  # some product has a champion on this bank
    for key, fig in report["products"].items():
        assert fig["reference_rows"] > 0 and fig["latest_rows"] > 0
        assert fig["psi_score"] > 0 and fig["flags"][0]["name"] == "psi_score"
        assert f"drift {key}: " in out and "flag(s)" in out
        closed = drift.closed_months(
            [pd.Timestamp(c["as_of"]) for c in fig["calibration"]], pd.Timestamp(report["export_date"]), 90
        )
        assert len(closed) == len(fig["calibration"]) > 0
        assert set(fig["psi_inputs"]) and fig["psi_max_input"] == max(
            v for v in fig["psi_inputs"].values() if v is not None
        )


@pytest.mark.integration
@pytest.mark.slow
def test_retrain_logs_the_figures_to_the_products_mlflow_run(retrained: dict) -> None:
    from mlflow import MlflowClient

    from nbp.workspace import Workspace
    from training.registry import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri(Workspace(retrained["home"])))
    for fig in retrained["report"]["products"].values():
        run = client.get_run(fig["mlflow_run"])
        assert run.data.metrics["psi_score"] == pytest.approx(fig["psi_score"])
        assert run.data.metrics["psi_max_input"] == pytest.approx(fig["psi_max_input"])
        assert run.data.tags["drift_flags"].split(", ") == [f["name"] for f in fig["flags"]]
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
        assert arts == {"drift/drift.json", "drift/psi_inputs.csv"}


@pytest.mark.integration
@pytest.mark.slow
def test_a_failed_guardrail_exits_one_naming_product_guardrail_value_and_limit(retrained: dict) -> None:
    out = retrained["second"]
    line = next(x for x in out.splitlines() if "guardrail failed" in x)
    product = next(iter(retrained["report"]["products"]))
    assert f"{product}: monitoring.guardrails.max_score_psi: PSI of the scores" in line and "> 1e-06" in line
    assert "drift report ->" in out  # the report was printed and written before the exit


@pytest.mark.integration
@pytest.mark.slow
def test_readyz_shows_the_flags_per_product(retrained: dict, tmp_path: Path) -> None:
    from nbp.workspace import Workspace
    from serving.engine import Recommender

    ws = Workspace(retrained["home"])
    report = drift.read_report(ws)
    key = next(iter(report["products"]))
    report["products"][key]["flags"] = [{"name": "psi:age_years", "value": 0.42, "limit": 0.25}]
    drift.write_report(ws, report)
    rec = Recommender.load(load_config(), ws)
    public = rec.public_readiness()
    assert public["products"][key]["drift_flags"] == [{"name": "psi:age_years", "value": 0.42}]
    assert "/" not in json.dumps(public) and "limit" not in json.dumps(public)
    admin = rec.readiness()
    assert admin["products"][key]["drift_flags"][0]["limit"] == 0.25 and admin["drift_report_date"]
    report["products"][key]["flags"] = []
    drift.write_report(ws, report)
    assert "drift_flags" not in rec.public_readiness()["products"][key]  # read again on every call
