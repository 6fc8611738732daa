"""Model quality against the simulator's oracle (issue 4, item 6).

A simulated bank with a seed no test or tuning uses (50,000 customers, 24 months),
through the real chain (simulate -> ingest -> features -> backtest). The backtest
trains with the cutoff at the first of the four latest month-start as-of dates
whose 90-day label windows close by the export date, and pools the four monthly
test as-of dates. Per product: AUC of the recipe, of the oracle on the same rows,
their ratio, and LightGBM with default settings on the same features.

Run: ``python -m benchmarks.bench_quality [--customers N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
SEED = 20_261_128  # used by no test and no tuning


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--cutoff", default="2026-05-01", help="first test as-of (end 2026-10, horizon 90 d)")
    ap.add_argument("--keep", default=None, help="keep the workspace in this folder")
    a = ap.parse_args(argv)
    nbp = str(ROOT / ".venv" / "bin" / "nbp")
    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="nbp-bench-quality-"))
    env = {"NBP_HOME": str(tmp / "home")}
    steps = [
        ["simulate", "--customers", str(a.customers), "--months", "24", "--end", "2026-10",
         "--seed", str(a.seed), "--out", str(tmp / "bank")],
        ["ingest", str(tmp / "bank" / "export")],
        ["features"],
        ["backtest", "--as-of", a.cutoff, "--months", "4", "--oracle", str(tmp / "bank" / "oracle" / "oracle.parquet")],
    ]
    times = {}
    out = ""
    for s in steps:
        t0 = time.perf_counter()
        m = run_measured([nbp, *s], env=env)
        times[s[0]] = time.perf_counter() - t0
        out = m.stdout
    table = "\n".join(line for line in out.splitlines() if line.startswith("|"))
    body = "\n".join([
        f"### Model quality against the oracle ({a.customers:,} customers, 24 months, seed {a.seed})",
        "",
        f"Backtest cutoff {a.cutoff}: trained on as-of dates whose label windows closed before it, "
        "tested on the four monthly as-of dates from it on (pooled). `auc_ratio` = recipe AUC / oracle AUC "
        "on the same rows (goal: at least 0.98, and the recipe never more than 0.02 above the oracle). "
        "`default_lgbm_auc`: `LGBMClassifier()` with default settings on the same training rows and features.",
        "",
        table,
        "",
        "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ".",
    ])
    write_section("quality", body, "python -m benchmarks.bench_quality " + " ".join(argv))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main(sys.argv[1:]))
