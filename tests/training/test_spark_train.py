"""Training on Spark against training on DuckDB, on one small federation of two banks.

The same prepared rows (retrieved on DuckDB in both runs, so only the fitting engine differs) are
fitted once by ``nbp train`` on DuckDB and once by one grouped Spark job
(:class:`training.spark_fit.FederationJob`): ``consumer`` per bank (BAISHA's rows are refused by
the recipe: one class only) and ``business_flow`` pooled over both banks. Both runs must register
the same model names, versions and aliases, record the same skip, and their models must give the
same probabilities on the test rows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nbp import jobs
from nbp.cli import main
from nbp.config import load_config
from nbp.workspace import Workspace
from training import registry
from training.spark_fit import FederationJob

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BANKS = ["QINGSHAN", "BAISHA"]  # largest first, as nbp train orders them
OWN, POOLED = "consumer", "business_flow"


def _run(args: list[str], home: Path) -> str:
    res = CliRunner().invoke(main, [*args, "--log-level", "WARNING"], env={"NBP_HOME": str(home)})
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, spark: object) -> dict:
    root = tmp_path_factory.mktemp("sparktrain")
    overlay = root / "pooled.yaml"
    # the smaller bank has 8 consumer uptakes in its fitting months: parity needs a fit, not a good one
    overlay.write_text(f"products:\n  {POOLED}: {{scope: pooled}}\ntraining:\n  min_uptakes: 5\n", encoding="utf-8")
    built = root / "built"
    _run(["simulate", "--federation", "2", "--sizes", "6000,3000", "--seed", "5", "--out", str(root / "export")], built)
    for code in BANKS:
        _run(["ingest", str(root / "export" / code / "export"), "--bank", code], built)
    _run(["features"], built)
    shutil.copytree(built, root / "duckdb")
    shutil.copytree(built, root / "spark")
    _run(["train", "--config", str(overlay), "--product", OWN, "--product", POOLED], root / "duckdb")

    cfg = load_config(overlay)
    ws = Workspace(root / "spark")
    job = FederationJob(cfg, ws, BANKS, [OWN], [POOLED])
    with jobs.job(ws):
        try:
            job.prepare()  # on DuckDB: the rows the DuckDB run fitted
            job.fit(cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"engine": "spark"})}))
            tests = {
                (code, OWN): fitted[OWN][1]
                for code in BANKS
                if isinstance((fitted := job.stage.fitted(code))[OWN], tuple)
            }
            read = job.stage.pooled_test(POOLED)
            tests |= {(p.bank, POOLED): read(p) for p in job.parts[POOLED] if p.skip is None and not p.test.empty}
            out = job.register()
        finally:
            job.stage.release()
    return {"duckdb": Workspace(root / "duckdb"), "spark": ws, "out": out, "tests": tests, "job": job}


def _versions(ws: Workspace) -> dict[str, tuple[list[int], dict[str, int]]]:
    """Registered model -> (its versions, its aliases)."""
    client = registry._connect(ws)
    return {
        m.name: (sorted(int(v.version) for v in client.search_model_versions(f"name='{m.name}'")), dict(m.aliases))
        for m in client.search_registered_models()
    }


def test_every_bank_and_pooled_fit_ran_as_one_group_of_the_spark_job(runs: dict) -> None:
    assert runs["job"].stage.on_spark == {("QINGSHAN", OWN), ("BAISHA", OWN), ("*", POOLED)}
    assert set(runs["out"].banks) == set(BANKS) and set(runs["out"].pooled) == {POOLED}


def test_spark_registers_the_same_models_versions_and_aliases(runs: dict) -> None:
    duck, spark = _versions(runs["duckdb"]), _versions(runs["spark"])
    assert duck == spark
    assert "nbp-QINGSHAN-consumer" in duck and "nbp-BAISHA-business_flow" in duck
    assert duck["nbp-QINGSHAN-consumer"] == ([1], {"champion": 1}) and duck["nbp-BAISHA-consumer"] == ([], {})


def test_the_models_give_the_same_probabilities_on_the_test_rows(runs: dict) -> None:
    assert {k[1] for k in runs["tests"]} == {OWN, POOLED}
    for (bank, key), te in runs["tests"].items():
        got = {}
        for engine in ("duckdb", "spark"):
            model, _ = registry.load_version(runs[engine].for_bank(bank), key, 1)
            got[engine] = model.predict_proba(te, num_threads=1)
        assert len(te) > 100 and np.ptp(got["spark"]) > 0
        np.testing.assert_allclose(got["spark"], got["duckdb"], rtol=0, atol=1e-9, err_msg=f"{bank} {key}")
        if key == OWN:  # the scores the Spark group returned are the registered model's
            np.testing.assert_allclose(te["score"].to_numpy(), got["spark"], rtol=0, atol=1e-12)


def test_a_product_the_recipe_refuses_is_reported_the_same_way(runs: dict) -> None:
    skip = {e: registry.skip_of(runs[e].for_bank("BAISHA"), OWN) for e in ("duckdb", "spark")}
    assert skip["spark"] is not None and "cannot be fitted" in skip["spark"]["en"]
    assert skip["spark"] == skip["duckdb"]
    (r,) = [r for r in runs["out"].banks["BAISHA"] if r.product == OWN]
    assert r.version is None and r.skip is not None and r.skip.en == skip["duckdb"]["en"]


def test_staged_rows_come_back_with_their_order_and_dtypes(runs: dict) -> None:
    from training.spark_fit import Layout, _portable, restore

    df = pd.DataFrame(
        {
            "customer_id": ["b", None, "a"],
            "as_of": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"]).astype("datetime64[us]"),
            "label": np.array([1, 0, 0], dtype="int64"),
            "x": [0.5, np.nan, -1.0],
            "flag": [True, False, True],
        }
    )
    staged = _portable(df).assign(nbp_row=np.arange(3)).iloc[::-1]
    back = restore(staged, Layout(list(df.columns), dict(df.dtypes)))
    pd.testing.assert_frame_equal(back, df)
