"""Model quality against the simulator's oracle (issue 4, item 6).

A simulated bank with a seed no test or tuning uses (50,000 customers, 24 months),
through the real chain (simulate -> ingest -> features -> backtest). The backtest
trains with the cutoff at the first of the four latest month-start as-of dates
whose 90-day label windows close by the export date, and pools the four monthly
test as-of dates. Per product: AUC of the recipe, of the oracle on the same rows,
their ratio, and LightGBM with default settings on the same features.

Run: ``python -m benchmarks.bench_quality [--customers N] [--seed S] [--keep DIR [--skip-data]]``.

Seeds: 20261128 was used to diagnose the first recipe (spent); 4242 to develop the
rolling-fold recipe and its cross-fitted calibration; 20261129 was the final benchmark of
the rolling-fold recipe with held-out calibration (spent); 20261130 benchmarked the
cross-fitted calibration (spent); 5101, 5102 and 5103 (with 4242) developed the one-SE
setting choice and patience 50; 20261201, 20261202 and 20261203 were each picked after the
recipe was frozen and run once (sessions 3, 4 and 5; NOTE). A new seed for every new claim.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
SEED = 20_261_201  # session 3's fresh seed, now spent like 20261202 and 20261203: a new claim needs a new --seed


NOTE = """Seeds: 20261128 diagnosed the first recipe (spent); 4242 developed the rolling-fold
recipe and its cross-fitted calibration; 20261129 benchmarked the rolling-fold recipe with
held-out calibration (spent); 20261130 benchmarked the cross-fitted calibration (spent);
4242, 5101, 5102 and 5103 developed the one-SE setting choice and patience 50; 20261201
benchmarked it (spent); in session 4 dev seeds 4242 and 5101-5105 (50,000 customers) and 6150
(150,000) tried an additive member, linear trees, per-product application history and a
Spring Festival calendar feature (none kept, docs/training.md). Seed 20261202 was picked after
that, with the recipe unchanged; its first backtest crashed on a thread bug, fixed without
touching the recipe (docs/training.md). Seed 20261203 was run in session 5, the recipe still
unchanged (session 5 only removed an unused fitting function). Ratios on the three fresh
seeds, consumer / business_flow / tax_linked: 20261201 0.980 / 0.931 / 0.968, 20261202
0.969 / 0.976 / 0.923, 20261203 0.974 / 0.954 / 0.900 (means 0.974 / 0.954 / 0.930); default
LightGBM below the recipe on every product and seed. How close any model gets on tax_linked:
section "ceiling" below, and docs/training.md "Session 5". The recipe: settings and
rounds from rolling time-ordered folds over the fitting months, with the 90-day label horizon
as embargo, the simplest setting within one standard error of the best; Platt calibration on
the folds' out-of-time scores; the booster refit on every fitting month with the chosen rounds
(docs/training.md).

How sampling error bears on the 0.98 target: with about 100 test positives the standard error
of an AUC is about 0.03. Recipe and oracle are scored on the same rows, so their errors are
correlated and the error of their difference is smaller, but still of the order of 0.02, while
0.98 of an oracle AUC of 0.72 is a margin of 0.014. On products with a few hundred test
positives a single benchmark cannot tell a ratio of 0.98 from one of 0.95: a recipe truly at
0.98 misses the point estimate about half of the time. The target is kept as it stands; the
ratio of each product is reported with that caveat, and a claim of meeting it needs more
positives (a larger bank, more test months) or several seeds."""


def _rows(table: str) -> list[dict[str, str]]:
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    if len(lines) < 3:
        return []
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")), strict=False)) for ln in lines[2:]]


def _se_line(r: dict[str, str]) -> str:
    """Hanley-McNeil standard error of the recipe's AUC for one product row."""
    from training.evaluate import auc_se

    try:
        a, pos, n = float(r["auc"]), float(r["positives"].replace(",", "")), float(r["n"].replace(",", ""))
    except (KeyError, ValueError):
        return ""
    se = auc_se(a, int(pos), int(n - pos))
    return f"{r['product']} ±{se:.3f} ({int(pos)} positives);"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--cutoff", default="2026-05-01", help="first test as-of (end 2026-10, horizon 90 d)")
    ap.add_argument("--keep", default=None, help="keep the workspace in this folder")
    ap.add_argument("--skip-data", action="store_true",
                    help="the --keep folder already holds this seed's export, ingest and features: backtest only")
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
    if a.skip_data:
        steps = steps[-1:]
    times, cpu = {}, {}
    out = ""
    for s in steps:
        t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        m = run_measured([nbp, *s], env=env)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        times[s[0]] = time.perf_counter() - t0
        cpu[s[0]] = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        out = m.stdout
    load = os.getloadavg()
    table = "\n".join(line for line in out.splitlines() if line.startswith("|"))
    se = "\n".join(_se_line(r) for r in _rows(table))
    body = "\n".join([
        f"### Model quality against the oracle ({a.customers:,} customers, 24 months, seed {a.seed})",
        "",
        f"Backtest cutoff {a.cutoff}: trained on as-of dates whose label windows closed before it, "
        "tested on the four monthly as-of dates from it on (pooled). `auc_ratio` = recipe AUC / oracle AUC "
        "on the same rows (goal: at least 0.98, and the recipe never more than 0.02 above the oracle). "
        "`asof_oracle_auc` / `asof_ratio`: the oracle recomputed with the as-of month's drivers held over the "
        "whole label window, i.e. from what the bank can know at the as-of date (`p_true` also knows how "
        "turnover, tax records and life events move inside the window); a diagnostic, not the target. "
        "`default_lgbm_auc`: `LGBMClassifier()` with default settings on the same training rows and features.",
        "",
        table,
        "",
        "Sampling error (Hanley-McNeil, from each product's AUC, positives and negatives): " + se,
        "",
        NOTE,
        "",
        "Stage times (wall / CPU): " + ", ".join(f"{k} {v:.0f} s / {cpu[k]:.0f} CPU-s" for k, v in times.items())
        + f"; load average at the end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} (2 cores, shared).",
    ])
    write_section("quality", body, "python -m benchmarks.bench_quality " + " ".join(argv))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main(sys.argv[1:]))
