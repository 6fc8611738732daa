"""Run ``nbp retrain`` in this process and SIGKILL it at a named stage (tests/e2e/test_killed_job.py).

Usage: ``python tests/e2e/kill_at.py STAGE [nbp options]``. STAGE is where the process dies:

- ``features``: the feature build has written a family's temporary file, before the rename
- ``train``: a product's model is fitted, nothing is logged yet
- ``register``: an MLflow run is open and its model is being logged
- ``gate``: a version is registered, the champion gate has not decided
- ``score``: the new scores' temporary file is written, before the rename
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(stage: str) -> None:
    if stage == "features":
        real = os.replace

        def replace(src, dst, *a, **k):
            if ".tmp-" in str(src) and "features" in str(dst):
                die()
            return real(src, dst, *a, **k)

        os.replace = replace
    elif stage == "train":
        from training import pipeline

        fit = pipeline._fit_product

        def fit_then_die(*a, **k):
            fit(*a, **k)
            die()

        pipeline._fit_product = fit_then_die
    elif stage == "register":
        import mlflow.pyfunc

        mlflow.pyfunc.log_model = lambda *a, **k: die()
    elif stage == "gate":
        from training import pipeline

        pipeline.registry.promote = lambda *a, **k: die()
    elif stage == "score":
        import pandas as pd

        real = pd.DataFrame.to_parquet

        def to_parquet(self, path, *a, **k):
            real(self, path, *a, **k)
            if ".tmp-" in str(path):
                die()

        pd.DataFrame.to_parquet = to_parquet
    else:
        raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    print(f"KILL_AT pid {os.getpid()}", file=sys.stderr, flush=True)
    arm(sys.argv[1])
    from nbp.cli import main

    main(["retrain", *sys.argv[2:]])
