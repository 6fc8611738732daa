"""Model quality against the simulator's oracle: the recipe's AUC as a share of the best achievable.

A simulated bank with a seed no test or tuning uses (24 months), through the real chain
(simulate -> ingest -> features -> backtest). The backtest trains with the cutoff at the
first of the four latest month-start as-of dates whose 90-day label windows close by the
export date, and pools the four monthly test as-of dates. Per product: AUC of the recipe,
of both oracles (``p_true``, ``p_asof``) on the same rows, the ratios, whether the target
(:data:`TARGET_RATIO`, :data:`MAX_ABOVE`) holds, and LightGBM with default settings on the
same features. With several seeds, the mean ratio over them with its standard error.

Run: ``python -m benchmarks.bench_quality [--customers N|full] [--seed S [S ...]] [--keep DIR
[--skip-data | --reuse]] [--section NAME]``. The full-scale bank writes section ``quality_full``
(``--customers full --seed S``), 50,000 customers section ``quality`` (three seeds by default).
``--keep`` folders are what ``benchmarks.bench_ceiling`` reads (several seeds: ``DIR/<seed>``);
each holds ``backtest.json`` (the table, stage times, commit), which ``--reuse`` reads instead
of rebuilding, e.g. to assemble the section from seeds run one at a time.

Seeds: docs/decisions/003-quality-seeds.md (every seed used so far, and what for).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bankexport.simulate import FULL_CUSTOMERS
from benchmarks.report import run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
# the latest claim's seeds (spent): `make bench` reproduces it; a new claim needs new seeds
SEEDS = (20_261_205, 20_261_206, 20_261_207)
TARGET_RATIO = 0.99  # recipe AUC / oracle AUC, each product, both oracles
MAX_ABOVE = 0.02  # ... and the recipe never this far above the oracle's AUC (a leak)


NOTE = """Seeds: every seed used so far, and what for, is in docs/decisions/003-quality-seeds.md;
a claim uses fresh seeds, run once with the recipe frozen. The recipe: settings and rounds from
rolling time-ordered folds over the fitting months, with the 90-day label horizon as embargo, the
smallest model (leaves over all its trees) within one standard error of the best, that error at least
the fold AUCs' sampling error (docs/decisions/029-cheaper-first-search.md); Platt calibration on the folds' out-of-time
scores; the booster refit on every fitting month with the chosen rounds (docs/training.md).

How sampling error bears on the target: 0.99 of an oracle AUC of 0.70 is a margin of 0.007.
At 50,000 customers a product has 100-260 test positives and the recipe's AUC a standard error
of 0.015-0.030; recipe and oracle are scored on the same rows, so the error of their difference
is smaller, but of the order of 0.02, three times the margin. One seed cannot tell a ratio of
0.99 from one of 0.95; the mean of three seeds has a standard error of 0.006-0.014 (table).
At full scale (950-1,650 test positives) the AUC's standard error is 0.006-0.009, about the
margin: a recipe truly at 0.99 would still miss the point estimate about half of the time."""


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


def _f(r: dict[str, str], key: str) -> float:
    try:
        return float(r[key].replace(",", ""))
    except (KeyError, ValueError):
        return float("nan")


def verdict(r: dict[str, str]) -> str:
    """The target for one product row, against each oracle (``p_true``, ``p_asof``): the ratio of the
    recipe's AUC to the oracle's at least :data:`TARGET_RATIO`, and at most :data:`MAX_ABOVE` above it."""
    parts = []
    for name, auc_key, ratio_key in (
        ("p_true", "oracle_auc", "auc_ratio"),
        ("p_asof", "asof_oracle_auc", "asof_ratio"),
    ):
        ratio, above = _f(r, ratio_key), _f(r, "auc") - _f(r, auc_key)
        if math.isnan(ratio):
            continue
        if above > MAX_ABOVE:
            parts.append(f"{name} above the oracle by {above:.3f}")
        elif ratio < TARGET_RATIO:
            parts.append(f"{name} missed by {TARGET_RATIO - ratio:.3f}")
        else:
            parts.append(f"{name} met")
    return ", ".join(parts)


def mean_se(xs: list[float]) -> str:
    """``mean ± standard error`` (sample sd / sqrt(k)) over seeds; the mean alone for one seed."""
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs) / math.sqrt(len(xs)):.3f}"


def run_seed(a: argparse.Namespace, seed: int, tmp: Path) -> dict[str, object]:
    """Build one bank and backtest it (or reuse its saved backtest table); stage times and the table."""
    saved = tmp / "backtest.json"
    if a.reuse and saved.exists():
        return json.loads(saved.read_text(encoding="utf-8"))
    nbp = str(ROOT / ".venv" / "bin" / "nbp")
    env = {"NBP_HOME": str(tmp / "home")}
    steps = [
        [
            "simulate",
            "--customers",
            str(a.customers),
            "--months",
            "24",
            "--end",
            "2026-10",
            "--seed",
            str(seed),
            "--out",
            str(tmp / "bank"),
        ],
        ["ingest", str(tmp / "bank" / "export")],
        ["features"],
        ["backtest", "--as-of", a.cutoff, "--months", "4", "--oracle", str(tmp / "bank" / "oracle" / "oracle.parquet")],
    ]
    if a.skip_data:
        steps = steps[-1:]
    times, cpu, rss = {}, {}, {}
    out = ""
    for s in steps:
        t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        m = run_measured([nbp, *s], env=env)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        times[s[0]] = time.perf_counter() - t0
        cpu[s[0]] = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        rss[s[0]] = m.peak_rss_gb
        out = m.stdout
    table = "\n".join(line for line in out.splitlines() if line.startswith("|"))
    res = {
        "table": table,
        "times": times,
        "cpu": cpu,
        "rss": rss,
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", default="50000", help="a number, or 'full' (388,494: the reference bank's size)")
    ap.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="one or more seeds; with several, the mean ± standard error over them is reported",
    )
    ap.add_argument("--cutoff", default="2026-05-01", help="first test as-of (end 2026-10, horizon 90 d)")
    ap.add_argument(
        "--keep", default=None, help="keep the workspace in this folder (several seeds: one subfolder per seed)"
    )
    ap.add_argument(
        "--skip-data",
        action="store_true",
        help="the --keep folder already holds this seed's export, ingest and features: backtest only",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="take a seed's results saved in its --keep folder (backtest.json) instead of rerunning",
    )
    ap.add_argument(
        "--section",
        default=None,
        help="section of docs/benchmarks.md (default: quality, or quality_full for --customers full)",
    )
    return ap.parse_args(argv)


def header(n_customers: int, seeds: list[int], cutoff: str) -> list[str]:
    """The section's title and how to read its tables."""
    return [
        f"## Model quality against the oracle ({n_customers:,} customers, 24 months, "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})",
        "",
        f"Backtest cutoff {cutoff}: trained on as-of dates whose label windows closed before it, "
        "tested on the four monthly as-of dates from it on (pooled). `auc_ratio` = recipe AUC / oracle AUC "
        "on the same rows; `asof_oracle_auc` / `asof_ratio`: the oracle recomputed with the as-of month's "
        "drivers held over the whole label window, i.e. from what the bank can know at the as-of date "
        "(`p_true` also knows how turnover, tax records and life events move inside the window). "
        f"Target: each product's ratio at least {TARGET_RATIO} and the recipe's AUC never "
        f"more than {MAX_ABOVE} above the oracle's, against both oracles. "
        "`default_lgbm_auc`: `LGBMClassifier()` with default settings on the same training rows and features.",
        "",
    ]


def seed_lines(seed: int, res: dict[str, object], several: bool) -> list[str]:
    """One seed's table, the AUC's sampling error, the verdict per product and the stage times."""
    rows = _rows(str(res["table"]))
    lines = [f"Seed {seed}:", ""] if several else []
    lines += [
        str(res["table"]),
        "",
        "Sampling error (Hanley-McNeil): " + " ".join(_se_line(r) for r in rows),
        "Target: " + "; ".join(f"{r['product']} {verdict(r)}" for r in rows) + ".",
        "",
    ]
    t = res["times"]
    if t:
        stages = ", ".join(
            f"{k} {v:.0f} s / {res['cpu'][k]:.0f} CPU-s" + (f" / {res['rss'][k]:.1f} GB" if res["rss"] else "")
            for k, v in t.items()
        )
        lines += [
            f"Stage times (wall / CPU{' / peak RSS' if res['rss'] else ''}): {stages}; finished "
            f"{res.get('finished', '?')}, code at commit {res.get('commit', '?')}."
            + (f" {res['note']}" if res.get("note") else ""),
            "",
        ]
    return lines


def over_seeds(per_seed: dict[int, dict[str, object]]) -> list[str]:
    """The mean ± standard error of each product's ratios and AUC differences over the seeds."""
    summary: dict[str, dict[str, list[float]]] = {}
    for res in per_seed.values():
        for r in _rows(str(res["table"])):
            s = summary.setdefault(r["product"], {"auc_ratio": [], "asof_ratio": [], "above": [], "asof_above": []})
            s["auc_ratio"].append(_f(r, "auc_ratio"))
            s["asof_ratio"].append(_f(r, "asof_ratio"))
            s["above"].append(_f(r, "auc") - _f(r, "oracle_auc"))
            s["asof_above"].append(_f(r, "auc") - _f(r, "asof_oracle_auc"))
    k = len(per_seed)
    lines = [
        f"Over the {k} seeds (mean ± standard error, sample sd / √{k}):",
        "",
        "| product | ratio to p_true | ratio to p_asof | AUC − p_true AUC | AUC − p_asof AUC | "
        + " | ".join(f"ratio {s}" for s in per_seed)
        + " | target on the means |",
        "|---|---|---|---|---|" + "---|" * k + "---|",
    ]
    for prod, s in summary.items():
        means = {key: statistics.fmean(v) for key, v in s.items()}
        on_means = verdict(
            {
                "auc": "0",
                "oracle_auc": f"{-means['above']}",
                "auc_ratio": f"{means['auc_ratio']}",
                "asof_oracle_auc": f"{-means['asof_above']}",
                "asof_ratio": f"{means['asof_ratio']}",
            }
        )
        lines.append(
            f"| {prod} | {mean_se(s['auc_ratio'])} | {mean_se(s['asof_ratio'])} | {mean_se(s['above'])} "
            f"| {mean_se(s['asof_above'])} | " + " | ".join(f"{x:.3f}" for x in s["auc_ratio"]) + f" | {on_means} |"
        )
    return [*lines, ""]


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    full = a.customers == "full"
    n_customers = FULL_CUSTOMERS if full else int(a.customers)
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="nbp-bench-quality-"))
    per_seed = {}
    for seed in a.seed:
        ws = root / str(seed) if len(a.seed) > 1 else root
        per_seed[seed] = run_seed(a, seed, ws)
        print(f"seed {seed}:\n{per_seed[seed]['table']}", file=sys.stderr, flush=True)
    load = os.getloadavg()
    lines = header(n_customers, a.seed, a.cutoff)
    for seed, res in per_seed.items():
        lines += seed_lines(seed, res, len(a.seed) > 1)
    if len(a.seed) > 1:
        lines += over_seeds(per_seed)
    lines += [NOTE]
    if not a.reuse:
        lines += ["", f"Load average at the end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} (2 cores, shared)."]
    command = "python -m benchmarks.bench_quality " + " ".join(x for x in argv if x != "--reuse")
    if a.reuse:  # the section's backticks wrap both commands: the runs, then the assembly
        command += "` (the runs), then `" + command + " --reuse"
    write_section(a.section or ("quality_full" if full else "quality"), "\n".join(lines), command)
    if not a.keep:  # a full-scale workspace holds about 4 GB
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main(sys.argv[1:]))
