"""What cheaper setting searches would save in ``nbp train``, and what they would cost in AUC.

For ``docs/decisions/025-where-the-chain-spends-its-time.md``, cut 1: the setting search is most
of a first ``nbp train``. On a workspace whose features are built (``nbp features``), this builds
the training sets once as ``nbp train`` does (:func:`training.pipeline.prepare`) and fits each
product with the recipe (:func:`training.model.fit_rolling`, single-threaded boosters, settings
side by side as in ``nbp train``) under each variant, one product after the other:

* ``full``: the search before decision 029 (every ``GRID`` setting on every one of the
  ``training.rolling_folds`` folds, patience 50, the one-SE rule's simplest by leaves per tree);
* ``2 folds``: that search with 2 folds in all (the search's and the calibration's);
* ``2 settings``: that search of ``GRID``'s first two members (the default and the near-additive one);
* ``patience 20``: that search early-stopped after 20 rounds without a better mean fold AUC;
* ``size``: the full search, the one-SE rule's simplest by size (leaves over all trees);
* ``size, SE floor``: the same, the one-SE rule's standard error at least the fold AUCs' sampling error;
* ``2 search folds``: the 2 latest folds search, every fold calibrates (simplest by leaves per tree);
* ``2 search folds, size, SE floor``: the 2 latest folds search, simplest by size, the one-SE rule's
  standard error at least the fold AUCs' sampling error;
* ``config``: the recipe as ``nbp train`` fits it with the configuration
  (``training.search_folds``, ``training.simplest``, ``training.se_floor``);
* ``default only``: ``config`` with ``GRID``'s first member alone (the ``ModelParams`` settings):
  a first training without a setting search, its rounds still early-stopped on the folds and
  its calibration cross-fitted on them (decision 025, "Where the goal stands").

Each variant's wall time of the fit, its AUC on the test window (the champion gate's rows) with
the AUC's standard error, and its lift in the top 10 %. Printed as a table; nothing is registered.

Run: ``NBP_HOME=WS .venv/bin/python -m benchmarks.recipe_variants [--products consumer ...]
[--variants full "2 folds" ...]``; against another commit's tree (``git archive``):
``NBP_HOME=WS PYTHONPATH=TREE .venv/bin/python benchmarks/recipe_variants.py``.
"""

from __future__ import annotations

import argparse
import sys
import time

VARIANTS = (
    "full",
    "2 folds",
    "2 settings",
    "patience 20",
    "size",
    "size, SE floor",
    "2 search folds",
    "2 search folds, size, SE floor",
    "config",
    "default only",
)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", nargs="+", help="products (default: all)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    a = ap.parse_args(argv)

    from nbp.config import load_config
    from nbp.workspace import Workspace
    from training import evaluate, pipeline
    from training.model import GRID

    cfg = load_config()
    prep = pipeline.prepare(cfg, Workspace.from_env(), products=a.products)
    config = pipeline.model_params(cfg)
    full = config.model_copy(update={"search_folds": config.folds, "simplest": "leaves", "se_floor": False})
    plans = {
        "full": (full, None),
        "2 folds": (full.model_copy(update={"folds": 2, "search_folds": 2}), None),
        "2 settings": (full, GRID[:2]),
        "patience 20": (full.model_copy(update={"early_stopping_rounds": 20}), None),
        "size": (full.model_copy(update={"simplest": "size"}), None),
        "size, SE floor": (full.model_copy(update={"simplest": "size", "se_floor": True}), None),
        "2 search folds": (full.model_copy(update={"search_folds": 2}), None),
        "2 search folds, size, SE floor": (
            full.model_copy(update={"search_folds": 2, "simplest": "size", "se_floor": True}),
            None,
        ),
        "config": (config, None),
        "default only": (config, GRID[:1]),
    }
    print("| product | variant | fit s | test AUC | ± SE | lift@10% | setting kept | rounds |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for key, (rows, te) in prep.data.items():
        for name in a.variants:
            params, grid = plans[name]
            t0 = time.perf_counter()
            model = pipeline.fit_rows(cfg, rows, params, grid)
            seconds = time.perf_counter() - t0
            m = evaluate.metrics(te["label"], model.predict_proba(te, num_threads=1))
            se = evaluate.auc_se(m["auc"], int(m["positives"]), int(m["n"] - m["positives"]))
            kept = model.info.get("setting") or {}
            setting = f"{kept.get('num_leaves', params.num_leaves)} leaves" + (
                ", extra trees" if kept.get("extra_trees") else ""
            )
            print(
                f"| {key} | {name} | {seconds:.0f} | {m['auc']:.4f} | {se:.4f} | {m['lift_10']:.2f} | {setting} "
                f"| {model.info.get('best_iteration')} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    from nbp import telemetry

    telemetry.disable()  # here and in every command run from here
    sys.exit(main(sys.argv[1:]))
