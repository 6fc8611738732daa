"""How close to the oracle can any model get on tax_linked? A diagnostic beside ``bench_quality``.

The quality target asks the recipe for at least 0.99 × the oracle's AUC on every product
(``bench_quality.TARGET_RATIO``). This benchmark measures, on the same fitting and test rows
as ``bench_quality``'s backtest, three references that know more than a recipe may:

- ``lr_labels``: a logistic regression of the simulator's own tax_linked hazard form
  (``bankexport/sim_uptake.py: _tax_linked``; grade dummies, log tax paid, twelve months
  filed, log firm age in years, business, tenure of six months) on the export's
  features, fitted on the fitting rows' labels. It knows which inputs matter and their
  transforms; no recipe for another bank can.
- ``lr_oracle``: the same model fitted on the oracle's ``p_true`` of the fitting rows
  (soft labels: no sampling noise in the target).
- ``lgbm_hindsight``: the best of :data:`training.model.GRID`'s first three settings
  refit on every fitting row, at the round count (of ``ROUNDS``) that scores best on
  the test rows. It chooses on the test months, which an honest recipe cannot.

Each is reported as the ratio of its AUC to the oracle's on the test rows, with the
recipe's own ratio for comparison when ``bench_quality`` wrote one. The workspaces are
those ``bench_quality --keep DIR`` leaves (``DIR/home`` and ``DIR/bank/oracle``; with several
seeds, ``DIR/<seed>``), named in the table by their folder's name.

Run: ``python -m benchmarks.bench_ceiling DIR [DIR ...] [--cutoff 2026-05-01]``. Without a
DIR (as ``make bench`` runs it) it says what it needs and leaves its section as it was:
building a 50,000-customer bank per seed is ``bench_quality``'s work.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

PRODUCT = "tax_linked"
ROUNDS = (10, 25, 50, 100, 200, 400, 800, 1200)
GRADE_CODES = (0, 1, 2, 3)  # A, B, M, C (features/families/tax.py codes; D = 4 is never a candidate)


def hazard_design(d: pd.DataFrame) -> np.ndarray:
    """The simulator's tax_linked log-hazard inputs, rebuilt from the export's features."""
    g = d["tax_credit_grade_latest"].astype(float)
    cols = [(g == k).astype(float) for k in GRADE_CODES] + [
        np.log(np.maximum(d["tax_paid_latest"].fillna(0).astype(float), 100)),
        (d["tax_months_filed_latest"] == 12).astype(float),
        np.log1p(np.maximum(d["demo_firm_age_months"].fillna(0).astype(float) / 12, 0)),
        (d["demo_customer_type"].astype(float) == 1).astype(float),
        (d["demo_tenure_months"].astype(float) >= 6).astype(float),
    ]
    return np.column_stack(cols)


def rows_of(workdir: Path, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The backtest's fitting and test rows (``training.pipeline._datasets``, as ``nbp backtest
    --as-of CUTOFF --months 4`` builds them), with the oracle's ``p_true``."""
    os.environ["NBP_HOME"] = str(workdir / "home")
    from nbp.config import load_config
    from nbp.workspace import Workspace
    from training.dataset import closed_as_ofs
    from training.pipeline import _datasets, feature_as_ofs, test_as_ofs, with_oracle

    cfg, ws = load_config(None), Workspace.from_env()
    fit_ofs = closed_as_ofs(feature_as_ofs(ws), cutoff, cfg.training.horizon_days)
    test_ofs = test_as_ofs(ws, cutoff, cfg.training.horizon_days, 4)
    fit, test = _datasets(cfg, ws, [PRODUCT], fit_ofs, test_ofs)[PRODUCT]
    oracle = pd.read_parquet(workdir / "bank" / "oracle" / "oracle.parquet")
    return with_oracle(fit, oracle, PRODUCT), with_oracle(test, oracle, PRODUCT)


def ceilings(fit: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """The three references' AUC ratios to the oracle on ``test`` (module docstring)."""
    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression

    from training import evaluate
    from training.model import GRID, ModelParams, category_mapping, encode

    oracle_auc = evaluate.auc(test["label"], test["p_true"])
    w = fit["weight"].to_numpy(dtype=float) if "weight" in fit.columns else np.ones(len(fit))
    xf, xt = hazard_design(fit), hazard_design(test)
    lr = LogisticRegression(C=1e3, max_iter=5000).fit(xf, fit["label"], sample_weight=w)
    out = {"lr_labels": evaluate.auc(test["label"], lr.predict_proba(xt)[:, 1]) / oracle_auc}
    p = fit["p_true"].to_numpy(dtype=float)
    soft = LogisticRegression(C=1e3, max_iter=5000).fit(
        np.r_[xf, xf], np.r_[np.ones(len(fit)), np.zeros(len(fit))], sample_weight=np.r_[w * p, w * (1 - p)]
    )
    out["lr_oracle"] = evaluate.auc(test["label"], soft.predict_proba(xt)[:, 1]) / oracle_auc

    feats = [c for c in fit.columns if c not in ("customer_id", "as_of", "label", "weight", "p_true", "p_asof")]
    cats = category_mapping(fit, feats)
    cat_idx = [i for i, f in enumerate(feats) if f in cats]
    xfit, xtest = encode(fit, feats, cats), encode(test, feats, cats)
    best = 0.0
    for setting in GRID[:3]:
        lp = ModelParams().model_copy(update=setting).lgb_params() | {"num_threads": 2}
        booster = lgb.train(
            lp,
            lgb.Dataset(xfit, fit["label"].to_numpy(dtype=float), weight=w, categorical_feature=cat_idx),
            num_boost_round=max(ROUNDS),
        )
        for k in ROUNDS:
            s = booster.predict(xtest, num_iteration=k, raw_score=True, num_threads=2)
            best = max(best, evaluate.auc(test["label"], s) / oracle_auc)
    out["lgbm_hindsight"] = best
    out["oracle_auc"] = oracle_auc
    out["test_positives"] = float(test["label"].sum())
    out["fit_positives"] = float(fit["label"].sum())
    return out


def main(argv: list[str]) -> int:
    from benchmarks.report import write_section

    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="*", help="bench_quality --keep folders (each with home/ and bank/oracle/)")
    ap.add_argument("--cutoff", default="2026-05-01")
    a = ap.parse_args(argv)
    if not a.dirs:
        print(
            "bench_ceiling: skipped, no workspace given. Build one per seed with "
            "`python -m benchmarks.bench_quality --seed S --keep DIR`, then pass the DIRs.",
            file=sys.stderr,
        )
        return 0
    lines = [
        "| workspace | fit positives | test positives | oracle AUC | lr_labels | lr_oracle | lgbm_hindsight |",
        "|---|---|---|---|---|---|---|",
    ]
    res = []
    t0 = time.perf_counter()
    for d in a.dirs:
        fit, test = rows_of(Path(d), pd.Timestamp(a.cutoff))
        r = ceilings(fit, test)
        res.append(r)
        lines.append(
            f"| {Path(d).name} | {r['fit_positives']:,.0f} | {r['test_positives']:,.0f} | "
            f"{r['oracle_auc']:.3f} | {r['lr_labels']:.3f} | {r['lr_oracle']:.3f} | "
            f"{r['lgbm_hindsight']:.3f} |"
        )
        print(lines[-1], flush=True)
    mean = {k: float(np.mean([r[k] for r in res])) for k in ("lr_labels", "lr_oracle", "lgbm_hindsight")}
    lines.append(f"| mean | | | | {mean['lr_labels']:.3f} | {mean['lr_oracle']:.3f} | {mean['lgbm_hindsight']:.3f} |")
    body = "\n".join(
        [
            f"## tax_linked: how close any model gets to the oracle ({len(res)} banks)",
            "",
            "Ratios of AUC to the oracle's on the four pooled test months (cutoff " + a.cutoff + "), on the fitting "
            "and test rows of `bench_quality`'s backtest. `lr_labels`: a logistic regression of the simulator's own "
            "tax_linked hazard form fitted on the fitting labels; `lr_oracle`: the same fitted on the oracle's "
            "`p_true` (no label noise); `lgbm_hindsight`: the best of GRID's first three settings at the round "
            "count that scores best on the test months. All three know more than a recipe may; the target asks "
            "the recipe for 0.99 on every product. Each workspace is a `bench_quality --keep` folder, named by "
            "its folder (here the seed). The recipe's own ratios on these seeds: docs/training.md.",
            "",
            *lines,
            "",
            f"Wall time {time.perf_counter() - t0:.0f} s.",
        ]
    )
    write_section("ceiling", body, "python -m benchmarks.bench_ceiling " + " ".join(argv))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main(sys.argv[1:]))
