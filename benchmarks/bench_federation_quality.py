"""Pooled models against per-bank models and the oracle, per member bank and product.

A simulated federation with a seed no test or tuning uses goes through the real chain
(``nbp simulate --federation K``, ``nbp ingest`` per bank, ``nbp features``); then, per
product, :func:`training.pooled.backtest_pooled` fits with the cutoff at the first of four
monthly test as-of dates (label windows closed by the export date) both each bank's own model
(today's recipe, ``scope: bank``) and the pooled model (``scope: pooled``, calibrated per bank),
and scores the same test rows of every bank with both. Per bank × product: the uptakes, each
AUC with its Hanley-McNeil standard error, the oracle's AUC (``p_true``) on the same rows, the
ratios, the paired difference pooled − per-bank with its DeLong standard error, and the pooled
model's ECE. The goals of the federation's quality claim are judged on this table (:func:`goals`).

Run: ``python -m benchmarks.bench_federation_quality [--banks K] [--seed S] [--scale X]
[--cutoff YYYY-MM-DD] [--keep DIR [--skip-data | --reuse]]``. ``--keep`` keeps the workspace;
``--skip-data`` reuses its export, ingest and features; ``--reuse`` re-reads its saved results
(``DIR/results.parquet``) to rewrite the section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.report import NBP, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
SEED = 20_261_215  # the claim's seed; 20_261_214 developed the pooled rules (docs/decisions/017-pooled-models.md)
PRODUCTS = ("consumer", "business_flow", "tax_linked")
LARGE = 200  # goal (a): cells with at least this many test uptakes
RATIO_LARGE, RATIO_SMALL = 0.98, 0.97  # goals (a) and (b)
FEW_FIT = 300  # goal (c): banks with fewer training uptakes than this
NEW_MONTHS = 4  # goal (d): a product live for fewer months than this at the cutoff


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--banks", type=int, default=8)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--scale", type=float, default=0.2, help="customers per bank = size at scale 1 × this")
    ap.add_argument("--cutoff", default="2026-05-01", help="first test as-of (end 2026-10, horizon 90 d)")
    ap.add_argument("--keep", default=None, help="keep the workspace in this folder")
    ap.add_argument("--skip-data", action="store_true", help="--keep holds export, ingest and features already")
    ap.add_argument("--reuse", action="store_true", help="re-read --keep's results.parquet instead of rerunning")
    return ap.parse_args(argv)


def build_data(a: argparse.Namespace, root: Path) -> dict[str, float]:
    """Simulate, ingest every bank, build and publish features; wall seconds per stage."""
    env = {"NBP_HOME": str(root / "home")}
    export = root / "export"
    times = {}
    t0 = time.perf_counter()
    sim = [NBP, "simulate", "--federation", str(a.banks), "--seed", str(a.seed), "--scale", str(a.scale)]
    run_measured([*sim, "--out", str(export)], env=env)
    times["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in json.loads((export / "federation.json").read_text(encoding="utf-8"))["banks"]:
        run_measured([NBP, "ingest", str(export / b["export"])], env=env)
    times["ingest"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_measured([NBP, "features"], env=env)
    times["features"] = time.perf_counter() - t0
    return times


def measure(a: argparse.Namespace, root: Path) -> pd.DataFrame:
    """One row per bank × product: the counts, both models' AUCs and the oracle's (module docstring)."""
    os.environ["NBP_HOME"] = str(root / "home")
    from nbp.config import load_config
    from nbp.workspace import Workspace
    from training.evaluate import auc, auc_difference, auc_se, ece
    from training.pooled import backtest_pooled

    cfg = load_config()
    ws = Workspace(root / "home")
    fed = json.loads((root / "export" / "federation.json").read_text(encoding="utf-8"))
    listing = {b["bank_code"]: b for b in fed["banks"]}
    oracles = {code: pd.read_parquet(root / "export" / b["oracle"]) for code, b in listing.items()}
    cutoff = pd.Timestamp(a.cutoff)
    rows = []
    for key in PRODUCTS:
        t0 = time.perf_counter()
        got, info = backtest_pooled(cfg, ws, cutoff, key, ws.banks(), 4, oracles)
        print(f"{key}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for bank in ws.banks():
            launch = listing[bank]["launch"].get(key)
            live = (cutoff.to_period("M") - pd.Period(launch, "M")).n if launch else None
            row = {"bank": bank, "product": key, "launch": launch or "", "live_at_cutoff": live, **info.get(bank, {})}
            te = got.get(bank)
            if te is not None:
                y, pos = te["label"], int(te["label"].sum())
                neg = len(te) - pos
                row |= {"n": len(te), "uptakes": pos}
                for name, col in (("pooled", "score_pooled"), ("bank", "score_bank"), ("oracle", "p_true")):
                    if te[col].notna().all():
                        row[f"auc_{name}"] = auc(y, te[col])
                        row[f"se_{name}"] = auc_se(row[f"auc_{name}"], pos, neg)
                if te["score_bank"].notna().all():
                    row["diff"], row["diff_se"] = auc_difference(y, te["score_pooled"], te["score_bank"])
                row["ece_pooled"] = ece(y, te["score_pooled"])
                if te["score_bank"].notna().all():
                    row["ece_bank"] = ece(y, te["score_bank"])
                row["mean_p_pooled"], row["rate"] = float(te["score_pooled"].mean()), float(y.mean())
            rows.append(row)
    return pd.DataFrame(rows)


def _f(x: object, d: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def table(df: pd.DataFrame) -> list[str]:
    """The markdown table of every bank × product cell."""
    lines = [
        "| bank | product | test uptakes / rows | bank's fit uptakes | per-bank AUC | pooled AUC | oracle AUC "
        "| pooled / oracle | per-bank / oracle | pooled − per-bank (paired SE) | ECE pooled / per-bank | calibration |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.to_dict("records"):
        if pd.isna(r.get("n")):
            lines.append(f"| {r['bank']} | {r['product']} | – | – | {r.get('skip', '')} |||||||")
            continue
        bank_auc = (
            f"{_f(r.get('auc_bank'))} ± {_f(r.get('se_bank'))}"
            if not pd.isna(r.get("auc_bank"))
            else f"not trained: {r.get('bank_model', '')}"
        )
        ratio = r.get("auc_pooled", math.nan) / r.get("auc_oracle", math.nan)
        bratio = r.get("auc_bank", math.nan) / r.get("auc_oracle", math.nan)
        diff = f"{_f(r.get('diff'))} ± {_f(r.get('diff_se'))}" if not pd.isna(r.get("diff")) else "–"
        lines.append(
            f"| {r['bank']} | {r['product']} | {int(r['uptakes']):,} / {int(r['n']):,} | {int(r['fit_uptakes']):,} "
            f"| {bank_auc} | {_f(r.get('auc_pooled'))} ± {_f(r.get('se_pooled'))} | {_f(r.get('auc_oracle'))} "
            f"| {_f(ratio)} | {_f(bratio)} | {diff} | {_f(r.get('ece_pooled'), 4)} / {_f(r.get('ece_bank'), 4)} "
            f"| {r.get('calibration', '')} ({int(r.get('calibration_uptakes', 0))}) |"
        )
    return lines


def goals(df: pd.DataFrame) -> list[str]:
    """Goals (a)-(d) of the federation's quality claim, each judged on the table."""
    ok = df[df["uptakes"].fillna(0) > 0].copy()
    ok = ok[ok["uptakes"] < ok["n"]]
    ok["ratio"] = ok["auc_pooled"] / ok["auc_oracle"]
    ok["ratio_se"] = ok["se_pooled"] / ok["auc_oracle"]
    out = []
    large = ok[ok["uptakes"] >= LARGE]
    miss = large[large["ratio"] < RATIO_LARGE]
    out.append(
        f"- (a) every cell with at least {LARGE} test uptakes has pooled AUC ≥ {RATIO_LARGE} × the oracle's: "
        f"{'holds' if miss.empty and not large.empty else 'does not hold'} ({len(large)} cells; ratios "
        + ", ".join(f"{r.bank} {r.product} {r.ratio:.3f} ± {r.ratio_se:.3f}" for r in large.itertuples())
        + ")."
    )
    small = ok[ok["uptakes"] < LARGE]
    if not small.empty:
        mean = statistics.fmean(small["ratio"])
        se = math.sqrt(float((small["ratio_se"] ** 2).sum())) / len(small)
        out.append(
            f"- (b) mean pooled / oracle ratio over the {len(small)} cells with fewer test uptakes ≥ {RATIO_SMALL}: "
            f"{mean:.3f} ± {se:.3f}, {'holds' if mean >= RATIO_SMALL else 'does not hold'} (each cell's ratio "
            f"and standard error in the table)."
        )
    both = ok[ok["diff"].notna()]
    worse = both[both["diff"] < -2 * both["diff_se"]]
    few = both[both["fit_uptakes"] < FEW_FIT]
    fmean = statistics.fmean(few["diff"]) if len(few) else math.nan
    fse = math.sqrt(float((few["diff_se"] ** 2).sum())) / len(few) if len(few) else math.nan
    below = ", ".join(f"{r.bank} {r.product}" for r in worse.itertuples())
    out.append(
        f"- (c) the pooled model is never below the per-bank model by more than two paired standard errors: "
        f"{'holds' if worse.empty else 'does not hold: ' + below}"
        f" ({len(both)} cells with both models); on the {len(few)} cells whose bank had fewer than {FEW_FIT} "
        f"fitting uptakes the mean difference is {fmean:+.3f} ± {fse:.3f}: "
        f"{'better on average' if fmean > 0 else 'not better on average'}."
    )
    new = ok[ok["auc_bank"].isna()]
    out.append(
        "- (d) cells where the bank's own model cannot be trained get a pooled, calibrated list: "
        + (
            "; ".join(
                f"{r.bank} {r.product} (launched {r.launch or 'before the data'}, {int(r.uptakes)} test uptakes): "
                f"ECE {r.ece_pooled:.4f}, mean predicted {r.mean_p_pooled:.4f} vs uptake rate {r.rate:.4f}, "
                f"AUC {r.auc_pooled:.3f} (oracle {r.auc_oracle:.3f})"
                for r in new.itertuples()
            )
            or "no such cell"
        )
        + "."
    )
    return out


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="nbp-bench-fedq-"))
    saved, meta_file = root / "results.parquet", root / "results.json"
    if a.reuse and saved.exists():
        df = pd.read_parquet(saved)
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else {"times": {}}
    else:
        commit = subprocess.run(  # the code the measurement starts from
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        times = {} if a.skip_data else build_data(a, root)
        t0 = time.perf_counter()
        df = measure(a, root)
        times["backtests"] = time.perf_counter() - t0
        meta = {"times": times, "commit": commit, "finished": time.strftime("%Y-%m-%d %H:%M")}
        df.to_parquet(saved, index=False)
        meta_file.write_text(json.dumps(meta), encoding="utf-8")
    fed = json.loads((root / "export" / "federation.json").read_text(encoding="utf-8"))
    sizes = ", ".join(f"{b['bank_code']} {b['customers']:,}" for b in fed["banks"])
    lines = [
        f"## Pooled models per member bank ({len(fed['banks'])} banks, seed {fed['seed']}, scale {fed['scale']})",
        "",
        f"Data: `nbp simulate --federation {len(fed['banks'])} --seed {fed['seed']} --scale {fed['scale']}`, "
        "`nbp ingest` of each bank, `nbp features`. "
        f"Banks (customers): {sizes}. Cutoff {a.cutoff}: every model is fitted on as-of dates whose label "
        "windows closed before it and tested on the four monthly as-of dates from it on, pooled. Per-bank: "
        "today's recipe on the bank's own rows (`scope: bank`, no bank features); pooled: one model on every "
        "bank's rows with the bank features, calibrated per bank (`bank`) when the bank has "
        f"`training.min_bank_calibration_uptakes` uptakes in its fold months, else the pooled calibration (`pooled`; "
        "uptakes in brackets). AUCs ± Hanley-McNeil standard error; the difference ± DeLong's paired standard "
        "error on the same rows; oracle = the simulator's `p_true` on the same rows.",
        "",
        *table(df),
        "",
        "Goals (issue 14, point 4):",
        "",
        *goals(df),
        "",
    ]
    if meta["times"]:
        lines.append(
            "Wall times: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in meta["times"].items())
            + f"; finished {meta['finished']}, code at commit {meta['commit']}."
        )
    command = "python -m benchmarks.bench_federation_quality " + " ".join(x for x in argv if x != "--reuse")
    write_section("federation_quality", "\n".join(lines), command)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main(sys.argv[1:]))
