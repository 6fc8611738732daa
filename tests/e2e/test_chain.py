"""The whole chain through the CLI, in a temporary workspace, as a user runs it.

simulate -> ingest (nothing set aside) -> features (Feast) -> train (MLflow,
champion) -> score. Small on purpose: it checks the joins between stages, not
model quality (that is benchmarks/bench_quality.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nbp.cli import main
from nbp.config import load_config
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chain")
    home = root / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(home))
    try:
        _run(["simulate", "--out", str(root / "bank"), "--customers", "4000", "--months", "16", "--seed", "11"])
        _run(["ingest", str(root / "bank" / "export")])
        _run(["features"])
        out = _run(["train"])
        _run(["score", "--as-of", "2026-11-01", "--out", str(root / "scores.parquet")])
        yield {"root": root, "home": home, "train_out": out}
    finally:
        mp.undo()


def test_simulated_export_ingests_with_nothing_set_aside(chain: dict) -> None:
    report = json.loads(Workspace(chain["home"]).ingest_report.read_text(encoding="utf-8"))
    for table, r in report["tables"].items():
        assert r["rows_read"] == r["rows_kept"] > 0 or table in {"contacts"}, table
        assert sum(r["set_aside"].values()) == 0, (table, r["set_aside"])


def test_every_product_gets_a_registered_model(chain: dict) -> None:
    out = chain["train_out"]
    for product in load_config().products:
        assert f"| {product} | 1 |" in out


def test_scores_are_probabilities_for_candidates_only(chain: dict) -> None:
    s = pd.read_parquet(chain["root"] / "scores.parquet")
    assert set(s.columns) >= {"customer_id", "product", "as_of", "score", "model_version"}
    assert s["score"].between(0, 1).all() and s["score"].nunique() > 10
    assert not s.duplicated(["customer_id", "product", "as_of"]).any()
    # no holder of an active loan of the product is scored for it
    from training.labels import holds_active

    ws = Workspace(chain["home"])
    loans = pd.read_parquet(ws.table("loans"))
    for product, part in s.groupby("product"):
        ent = part[["customer_id", "as_of"]].astype({"as_of": "datetime64[us]"})
        assert not holds_active(ent, loans, product).any(), product
    # exactly the products that have a champion are scored
    champions = {p for p in load_config().products if f"| {p} | 1 | champion |" in chain["train_out"]}
    assert champions, chain["train_out"]
    assert set(s["product"]) == champions
    # eligibility holds: consumer-loan candidates are individuals aged 18-60 only
    cust = pd.read_parquet(ws.table("customers")).set_index("customer_id")
    if "consumer" in champions:
        cons = s[s["product"] == "consumer"].join(cust, on="customer_id")
        assert (cons["customer_type"] == "individual").all()
        age = (cons["as_of"] - cons["birth_date"]).dt.days / 365.25
        assert age.between(17.9, 61.1).all()
        assert len(cons) < (cust["customer_type"] == "individual").sum()


def test_no_model_beats_the_oracle_beyond_sampling_error(chain: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that sees more than was known at the as-of date would beat the oracle: that is a leak.

    The oracle knows the simulator's mechanism; only the hidden per-customer effect is
    integrated out. The model may exceed it by the leak alarm's margin (``training.leak_margin``)
    plus three standard errors of its AUC on these few rows; a leak of the label shows as AUC near 1.
    """
    from training.dataset import closed_as_ofs
    from training.evaluate import auc_se
    from training.pipeline import backtest, feature_as_ofs

    monkeypatch.setenv("NBP_HOME", str(chain["home"]))
    ws = Workspace.from_env()
    cfg = load_config()
    closed = closed_as_ofs(feature_as_ofs(ws), pd.Timestamp("2026-11-01"), cfg.training.horizon_days)
    oracle = pd.read_parquet(chain["root"] / "bank" / "oracle" / "oracle.parquet")
    rows, report = backtest(cfg, ws, closed[-3], oracle=oracle, n_test=3, baseline=False)
    assert report.exists()
    checked = 0
    for r in rows:
        if r["positives"] < 5 or pd.isna(r["auc"]):
            continue
        se = auc_se(r["auc"], int(r["positives"]), int(r["n"] - r["positives"]))
        assert r["auc"] <= r["oracle_auc"] + cfg.training.leak_margin + 3 * se, r
        checked += 1
    assert checked >= 1, rows


def test_the_eligibility_screen_keeps_exactly_the_eligible_rows(chain: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Screened training sets equal the one-step path: every entity row retrieved from Feast,
    then the rules applied (the screen only saves the retrieval of rows that certainly fail)."""
    from training.candidates import eligible
    from training.dataset import entity_rows, feature_service, read_base, training_set, with_features

    monkeypatch.setenv("NBP_HOME", str(chain["home"]))
    cfg, ws = load_config(), Workspace.from_env()
    # two as-of dates of the feature build and one between them (no stored row at that date:
    # the screen must leave those rows to the retrieval)
    as_ofs = [pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-15"), pd.Timestamp("2026-04-01")]
    customers, loans = read_base(ws)
    for key, pc in cfg.products.items():
        ent = entity_rows(customers, loans, pc.loan_product or key, as_ofs, cfg.training.horizon_days)
        full = with_features(cfg, ws, ent.drop(columns="_cust"), feature_service(key, pc))
        ref = full[eligible(full, pc.eligibility).to_numpy()]
        got = training_set(cfg, ws, key, as_ofs)
        assert 0 < len(got) < len(ent), key
        keys = ["customer_id", "as_of"]
        ref = ref.sort_values(keys).reset_index(drop=True)
        got = got.sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(got[ref.columns.drop("label")], ref.drop(columns="label"))
        assert (got["label"].to_numpy() == ref["label"].to_numpy()).all()
