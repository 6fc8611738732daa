"""What cheaper setting searches would save in ``nbp train``, and what they would cost in AUC.

For ``docs/decisions/025-where-the-chain-spends-its-time.md``, cut 1: the setting search is most
of a first ``nbp train``. On a workspace whose features are built (``nbp features``), this builds
the training sets once as ``nbp train`` does (:func:`training.pipeline.prepare`) and fits each
product with the recipe (:func:`training.model.fit_rolling`, single-threaded boosters, settings
side by side as in ``nbp train``) under each variant, one product after the other:

* ``full``: today's search (every ``GRID`` setting, ``training.rolling_folds`` folds, patience 50);
* ``2 folds``: the same settings on the 2 latest folds;
* ``2 settings``: ``GRID``'s first two members (the default and the near-additive one);
* ``patience 20``: early stopping after 20 rounds without a better mean fold AUC.

Each variant's wall time of the fit and its AUC on the test window (the champion gate's rows),
with the AUC's standard error. Printed as a table; nothing is registered.

Run: ``NBP_HOME=WS .venv/bin/python -m benchmarks.recipe_variants [--products consumer ...]
[--variants full "2 folds" ...]``; against another commit's tree (``git archive``):
``NBP_HOME=WS PYTHONPATH=TREE .venv/bin/python benchmarks/recipe_variants.py``.
"""

from __future__ import annotations

import argparse
import sys
import time

VARIANTS = ("full", "2 folds", "2 settings", "patience 20")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", nargs="+", help="products (default: all)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    a = ap.parse_args(argv)

    import pandas as pd

    from nbp.config import load_config
    from nbp.workspace import Workspace
    from training import evaluate, pipeline
    from training.model import GRID, fit_rolling

    cfg = load_config()
    prep = pipeline.prepare(cfg, Workspace.from_env(), products=a.products)
    base = pipeline.model_params(cfg)
    plans = {
        "full": (base, None),
        "2 folds": (base.model_copy(update={"folds": 2}), None),
        "2 settings": (base, GRID[:2]),
        "patience 20": (base.model_copy(update={"early_stopping_rounds": 20}), None),
    }
    print("| product | variant | fit s | test AUC | ± SE | setting kept | rounds |")
    print("|---|---|---:|---:|---:|---|---:|")
    for key, (rows, te) in prep.data.items():
        for name in a.variants:
            params, grid = plans[name]
            t0 = time.perf_counter()
            model = fit_rolling(
                rows,
                pipeline.own_features(rows),
                "label",
                "as_of",
                params,
                weight="weight",
                embargo=pd.Timedelta(days=cfg.training.horizon_days),
                grid=grid,
            )
            seconds = time.perf_counter() - t0
            m = evaluate.metrics(te["label"], model.predict_proba(te, num_threads=1))
            se = evaluate.auc_se(m["auc"], int(m["positives"]), int(m["n"] - m["positives"]))
            kept = model.info.get("setting") or {}
            setting = f"{kept.get('num_leaves', params.num_leaves)} leaves" + (
                ", extra trees" if kept.get("extra_trees") else ""
            )
            print(
                f"| {key} | {name} | {seconds:.0f} | {m['auc']:.4f} | {se:.4f} | {setting} "
                f"| {model.info.get('best_iteration')} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    from nbp import telemetry

    telemetry.disable()  # here and in every command run from here
    sys.exit(main(sys.argv[1:]))
