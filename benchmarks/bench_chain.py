"""nbp's whole chain from an empty workspace beside a plain reference script, on the same export.

Issue 18, points 3 and 4. On one bank export (``--export DIR``, or simulated with ``nbp simulate
--customers N --months M`` into ``--data``/sim-N-M and reused from there), each run is a child
process of this benchmark:

(a) nbp's chain in a fresh workspace (its own ``NBP_HOME``), stage by stage: ``ingest`` (``nbp
    ingest EXPORT``), ``features`` (``nbp features``), ``train`` (``nbp train``) and ``score``
    (``nbp score --as-of T``, T the latest as-of: the month start of the day after the export
    date, the as-of ``nbp features`` materialises and ``nbp retrain`` scores);
(b) the plain reference script (:mod:`benchmarks.plain_chain`: DuckDB features over the same
    as-of months, one default LightGBM per product, every customer scored at T).

Each command is measured for wall time, CPU seconds (user + sys of the command and its
children) and peak memory of the process tree: the larger of the command's own peak RSS
(``wait4``) and the summed RSS of this benchmark's descendants sampled every second
(:class:`benchmarks.bench_federation.Sampler`). ``--repeat R`` runs R pairs, alternating which
of the two goes first so the machine's load falls on both alike; the section quotes medians and
the median of the per-pair ratio of wall times (nbp / plain). The goal (issue 18): at most 1.5x
(stretch 1.2x), with nbp's peak memory below the plain script's.

``--growth`` runs one pair at each size of ``--sizes`` (default 50,000, 150,000 and the full
388,494 customers) and each history of ``--months-list`` (default 13 and 24 months: 13 is the
shortest export nbp trains on, docs/decisions/030-the-gate-window-embargo.md) and writes
the ``chain_growth`` section: wall time and peak memory per stage and size, and each stage's
growth exponents (slopes of log cost against log input, least squares over the sizes): against
customers x months and transaction rows over every run, against customers at each history, and
from the shorter history to the longer at the same customers.

Every finished run is kept in ``--work``/chain/results.json (``--work``/growth/results.json for
``--growth``), with each command's output and memory samples under its logs/ folder, so
``--report`` writes the section from the runs that finished and ``--resume`` continues.

Run: ``.venv/bin/python -m benchmarks.bench_chain [--export DIR | --customers N|full --months M]
[--repeat R] [--work DIR] [--data DIR] [--code COMMIT] [--resume | --report] [--print]``;
``.venv/bin/python -m benchmarks.bench_chain --growth [--sizes 50000,150000,full] [--months-list 13,24]
[--work DIR] [--data DIR] [--code COMMIT] [--resume | --report] [--print]``.
``--code COMMIT`` runs nbp from that commit's tree (``git archive``, first on ``PYTHONPATH``)
instead of the checkout, which other people may be editing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks.bench_federation import Sampler, export_commit
from benchmarks.report import NBP, run_measured, write_section

SECTION, GROWTH_SECTION = "chain", "chain_growth"
STAGES = ("ingest", "features", "train", "score")
PRODUCTS = ("consumer", "business_flow", "tax_linked")
PLAIN = Path(__file__).with_name("plain_chain.py")
ROOT = Path(__file__).resolve().parents[1]
FULL = 388_494  # customers of the reference bank (`nbp simulate --customers full`)
GOAL, STRETCH = 1.5, 1.2


def _cpu_children() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def measure(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd`` once; its wall and CPU seconds, peak memory of its process tree (GB) and output.

    The output and the memory samples are written to ``log`` (and ``.rss.tsv`` beside it).

    Raises:
        RuntimeError: the command exited non-zero.
    """
    load, cpu0 = os.getloadavg()[0], _cpu_children()
    with Sampler() as s:
        m = run_measured(cmd, env=env)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(cmd)}\n{m.stdout}", encoding="utf-8")
    log.with_suffix(".rss.tsv").write_text("".join(f"{t}\t{gb}\n" for t, gb in s.samples), encoding="utf-8")
    tree = max((gb for _, gb in s.samples), default=0.0)
    return {
        "wall": m.seconds,
        "cpu": _cpu_children() - cpu0,
        "peak": max(m.peak_rss_gb, tree),
        "peak_process": m.peak_rss_gb,
        "peak_tree_sampled": tree,
        "load_before": load,
        "stdout": m.stdout,
    }


def latest_as_of(export: Path) -> str:
    """The month start of the day after the export date (manifest; else the latest transaction's day)."""
    manifest = export / "manifest.json"
    day = json.loads(manifest.read_text(encoding="utf-8")).get("export_date") if manifest.exists() else None
    if day is None:
        import duckdb

        src = export / "transactions.parquet"
        read = f"read_parquet('{src}')" if src.exists() else f"read_csv('{export / 'transactions.csv'}')"
        day = str(duckdb.sql(f"SELECT max(CAST(txn_time AS TIMESTAMP))::DATE FROM {read}").fetchall()[0][0])
    return (date.fromisoformat(day) + timedelta(days=1)).replace(day=1).isoformat()


def gate_aucs(train_out: str) -> dict[str, float]:
    """Each product's test-window AUC from ``nbp train``'s result lines (``consumer: v1 ... AUC 0.71 ...``)."""
    out = {}
    for p in PRODUCTS:
        if m := re.search(rf"^{p}: .*?AUC (\d\.\d+)", train_out, re.M):
            out[p] = float(m.group(1))
    return out


def chain_commands(export: Path, scores: Path) -> dict[str, list[str]]:
    """The command of each stage of nbp's chain on ``export`` (the scores written to ``scores``)."""
    return {
        "ingest": [NBP, "ingest", str(export)],
        "features": [NBP, "features"],
        "train": [NBP, "train"],
        "score": [NBP, "score", "--as-of", latest_as_of(export), "--out", str(scores)],
    }


def run_nbp(export: Path, home: Path, logs: Path, code: Path | None) -> dict:
    """nbp's four stages in the fresh workspace ``home``; a dict per stage (and the gate AUCs)."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {"NBP_HOME": str(home), **({"PYTHONPATH": str(code)} if code else {})}
    plan = chain_commands(export, home / "scores.parquet")
    out: dict = {}
    for stage in STAGES:
        out[stage] = measure(plan[stage], env, logs / f"nbp-{stage}.log")
        print(f"  nbp {stage}: {out[stage]['wall']:.1f} s, {out[stage]['peak']:.2f} GB", file=sys.stderr, flush=True)
    out["auc"] = gate_aucs(out["train"]["stdout"])
    for stage in STAGES:  # the whole output is in the logs
        out[stage]["stdout"] = out[stage]["stdout"][-2000:]
    shutil.rmtree(home, ignore_errors=True)
    return out


def run_plain(export: Path, work: Path, logs: Path) -> dict:
    """The plain script in ``work`` (emptied first); its measures plus its own JSON summary."""
    shutil.rmtree(work, ignore_errors=True)
    r = measure([sys.executable, str(PLAIN), str(export), "--work", str(work)], {}, logs / "plain.log")
    r["summary"] = json.loads(next(ln for ln in reversed(r["stdout"].splitlines()) if ln.startswith("{")))
    r["stdout"] = r["stdout"][-2000:]
    print(f"  plain: {r['wall']:.1f} s, {r['peak']:.2f} GB", file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return r


def chain_total(run: dict) -> dict:
    """The whole nbp chain of one run: summed wall and CPU, the largest peak."""
    return {
        "wall": sum(run[s]["wall"] for s in STAGES),
        "cpu": sum(run[s]["cpu"] for s in STAGES),
        "peak": max(run[s]["peak"] for s in STAGES),
    }


def pair(export: Path, work: Path, name: str, nbp_first: bool, code: Path | None) -> dict:
    """One nbp chain and one plain run, in the order given."""
    logs = work / "logs" / name
    out = {"nbp_first": nbp_first, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for which in ("nbp", "plain") if nbp_first else ("plain", "nbp"):
        if which == "nbp":
            out["nbp"] = run_nbp(export, work / "ws", logs, code)
        else:
            out["plain"] = run_plain(export, work / "plain", logs)
    return out


def simulated(data: Path, customers: str, months: int) -> Path:
    """The export of ``nbp simulate --customers N --months M`` in ``data``/sim-N-M, simulated if absent."""
    folder = data / f"sim-{customers}-{months}"
    export = folder / "export"
    if not (export / "manifest.json").exists():
        shutil.rmtree(folder, ignore_errors=True)  # a simulation that stopped half-way
        cmd = [NBP, "simulate", "--customers", str(customers), "--months", str(months), "--out", str(folder)]
        print(f"simulating: {' '.join(cmd)}", file=sys.stderr, flush=True)
        m = run_measured(cmd)
        (data / f"simulate-{customers}-{months}.log").write_text(
            f"{m.seconds:.0f} s, {m.peak_rss_gb:.2f} GB\n{m.stdout}", encoding="utf-8"
        )
    return export


def export_facts(export: Path) -> dict:
    """Customers, transaction rows and months of history of an export (Parquet footers or CSV rows)."""
    import duckdb

    def read(t: str) -> str:
        pq = export / f"{t}.parquet"
        return f"read_parquet('{pq}')" if pq.exists() else f"read_csv('{export / f'{t}.csv'}')"

    customers = duckdb.sql(f"SELECT count(*) FROM {read('customers')}").fetchall()[0][0]
    txns, months = duckdb.sql(
        f"SELECT count(*), count(DISTINCT date_trunc('month', CAST(txn_time AS TIMESTAMP))) FROM {read('transactions')}"
    ).fetchall()[0]
    return {"customers": customers, "transactions": txns, "months": months}


def commit_of(code: Path | None, results: dict) -> str:
    """The commit measured: ``--code``'s, else the checkout's HEAD (marked when the tree has changes)."""
    if code is not None:
        return results["commit"][:7]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    status = ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]
    dirty = subprocess.run(status, capture_output=True, text=True)
    return head.stdout.strip() + (" + uncommitted changes of the checkout" if dirty.stdout.strip() else "")


def _save(path: Path, results: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
    tmp.replace(path)


def _compared(a: float, b: float, tolerance: float = 0.02) -> str:
    """``a`` against ``b`` in words: below, above, or within ``tolerance`` (a share of ``b``) of it."""
    if abs(a - b) <= tolerance * b:
        return f"within {tolerance:.0%} of"
    return "below" if a < b else "above"


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x): the growth exponent (NaN with fewer than two sizes)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    if len(set(lx)) < 2:
        return float("nan")
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def chain_section(results: dict, facts: dict, source: str) -> str:
    """The ``chain`` section from the finished pairs."""
    pairs = [results["pairs"][k] for k in sorted(results["pairs"], key=int)]
    if not pairs:
        return "No finished run yet."
    nbp = [chain_total(p["nbp"]) for p in pairs]
    plain = [p["plain"] for p in pairs]
    ratios = [n["wall"] / q["wall"] for n, q in zip(nbp, plain, strict=True)]
    ratio = _med(ratios)
    lines = [
        "## The whole chain beside a plain script (issue 18)",
        "",
        f"On {source}: {facts['customers']:,} customers, {facts['transactions']:,} transactions, "
        f"{facts['months']} months. nbp's chain from an empty workspace, each stage a child process "
        f"(`nbp ingest EXPORT`, `nbp features`, `nbp train`, `nbp score --as-of {results['as_of']}`), against "
        "`benchmarks/plain_chain.py` (one file: DuckDB features over the same as-of months, one default "
        "`LGBMClassifier` per product on the same candidates and row budget, every customer scored; no "
        f"validation, feature store, tracking, calibration or gate). {len(pairs)} pair(s), alternating which "
        "runs first; medians. Peak: the process tree's resident memory (the command's own `wait4` peak or the "
        "tree's summed RSS sampled every second, whichever is larger). Code: commit "
        f"{results['commit']}.",
        "",
        "| stage | wall s | CPU s | peak GB | share of the chain's wall |",
        "|---|---:|---:|---:|---:|",
    ]
    total = _med([n["wall"] for n in nbp])
    for s in STAGES:
        w = _med([p["nbp"][s]["wall"] for p in pairs])
        cpu = _med([p["nbp"][s]["cpu"] for p in pairs])
        peak = _med([p["nbp"][s]["peak"] for p in pairs])
        lines.append(f"| nbp `{s}` | {w:.1f} | {cpu:.1f} | {peak:.2f} | {w / total:.0%} |")
    lines.append(
        f"| **nbp chain** | **{total:.1f}** | {_med([n['cpu'] for n in nbp]):.1f} | "
        f"{_med([n['peak'] for n in nbp]):.2f} | 100% |"
    )
    for phase in ("features", "train", "score"):
        w = _med([q["summary"]["seconds"][phase] for q in plain])
        lines.append(f"| plain: {phase} (inside its process) | {w:.1f} | | | |")
    lines.append(
        f"| **plain script** | **{_med([q['wall'] for q in plain]):.1f}** | {_med([q['cpu'] for q in plain]):.1f} | "
        f"{_med([q['peak'] for q in plain]):.2f} | |"
    )
    peak_n, peak_q = _med([n["peak"] for n in nbp]), _med([q["peak"] for q in plain])
    plain_wall = _med([q["wall"] for q in plain])
    loads = ", ".join(f"{p['nbp']['ingest']['load_before']:.1f}" for p in pairs)
    verdict = "meets the goal" if ratio <= GOAL else "misses the goal"
    lines += [
        "",
        f"**Wall-time ratio nbp / plain: {ratio:.2f}** (median of the per-pair ratios "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; ratio of the medians {total / plain_wall:.2f}); "
        f"it {verdict} of ≤ {GOAL}× (stretch {STRETCH}×). Peak memory: nbp {peak_n:.2f} GB, plain {peak_q:.2f} GB "
        f"({_compared(peak_n, peak_q)} the plain script's). 1-minute load before each pair's nbp chain: "
        f"{loads}.",
        "",
        "Both are real models: AUC per product on the same held-out months (nbp's champion gate window, "
        "`training.test_months`: the latest closed as-of months; medians over the pairs):",
        "",
        "| product | nbp gate AUC | plain AUC | plain fitting rows | plain uptakes | plain test rows | test uptakes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for prod in PRODUCTS:
        a_n = _med([p["nbp"]["auc"][prod] for p in pairs if prod in p["nbp"]["auc"]])
        got = [q["summary"]["products"][prod] for q in plain]
        a_q = _med([g["auc"] for g in got if g["auc"] is not None])
        g = got[0]
        lines.append(
            f"| {prod} | {a_n:.3f} | {a_q:.3f} | {g['rows']:,} | {g['uptakes']:,} | {g.get('held_out_rows', 0):,} "
            f"| {g.get('held_out_uptakes', 0):,} |"
        )
    lines += ["", "Where the time goes and what would cut it: `docs/decisions/025-where-the-chain-spends-its-time.md`."]
    return "\n".join(lines)


def _cost(r: dict, stage: str, key: str) -> float:
    """One growth run's ``key`` (wall, cpu, peak) of a stage, of the whole nbp chain or of the plain script."""
    if stage == "nbp chain":
        return chain_total(r["pair"]["nbp"])[key]
    return r["pair"]["plain"][key] if stage == "plain" else r["pair"]["nbp"][stage][key]


def exponents(runs: list[dict], stage: str) -> dict[str, float]:
    """A stage's growth exponents over the growth runs: against customers × months and against
    transactions (every run), against customers at each history, and from the shortest to the
    longest history (the median over the sizes run at both)."""
    facts = [r["facts"] for r in runs]
    walls = [_cost(r, stage, "wall") for r in runs]
    out = {
        "size": slope([f["customers"] * f["months"] for f in facts], walls),
        "transactions": slope([f["transactions"] for f in facts], walls),
        "cpu": slope([f["customers"] * f["months"] for f in facts], [_cost(r, stage, "cpu") for r in runs]),
        "peak": slope([f["customers"] * f["months"] for f in facts], [_cost(r, stage, "peak") for r in runs]),
    }
    histories = sorted({f["months"] for f in facts})
    for m in histories:
        at = [(f["customers"], w) for f, w in zip(facts, walls, strict=True) if f["months"] == m]
        out[f"customers@{m}"] = slope([c for c, _ in at], [w for _, w in at])
    if len(histories) > 1:
        lo, hi = histories[0], histories[-1]
        by = {(f["customers"], f["months"]): w for f, w in zip(facts, walls, strict=True)}
        pairs = [(by[(c, lo)], by[(c, hi)]) for c, m in by if m == lo and (c, hi) in by]
        ratios = [math.log(b / a) / math.log(hi / lo) for a, b in pairs]
        out["months"] = _med(ratios)
    return out


def growth_section(results: dict, note: str = "") -> str:
    """The ``chain_growth`` section from the finished sizes (``note``: a closing paragraph)."""
    runs = sorted(results["runs"].values(), key=lambda r: (r["facts"]["months"], r["facts"]["customers"]))
    if not runs:
        return "No finished run yet."
    lines = [
        "## Growth of the chain with the bank's size (issue 18)",
        "",
        "nbp's chain from an empty workspace (one run per size, stages as in the `chain` section) and the plain "
        f"script, on simulated banks (`nbp simulate --customers N --months M`). Code: commit {results['commit']}. "
        "Wall s / peak GB; load: the 1-minute load average when the nbp chain began (other jobs share the "
        "2 cores):",
        "",
        "| customers | months | transactions | "
        + " | ".join(f"`{s}`" for s in STAGES)
        + " | nbp chain | plain | ratio | load |",
        "|---:|---:|---:|" + "---|" * (len(STAGES) + 2) + "---:|---:|",
    ]
    for r in runs:
        f, n, q = r["facts"], r["pair"]["nbp"], r["pair"]["plain"]
        tot = chain_total(n)
        cells = " | ".join(f"{n[s]['wall']:.0f} / {n[s]['peak']:.2f}" for s in STAGES)
        lines.append(
            f"| {f['customers']:,} | {f['months']} | {f['transactions']:,} | {cells} | "
            f"{tot['wall']:.0f} / {tot['peak']:.2f} | {q['wall']:.0f} / {q['peak']:.2f} | "
            f"{tot['wall'] / q['wall']:.2f} | {n['ingest']['load_before']:.1f} |"
        )
    histories = sorted({r["facts"]["months"] for r in runs})
    exps = {s: exponents(runs, s) for s in (*STAGES, "nbp chain", "plain")}
    per = [f"wall vs customers ({m} months)" for m in histories]
    lines += [
        "",
        "Growth exponents: the least-squares slope of log cost on log input (1 = linear; below 1, fixed costs "
        "still weigh; CPU seconds move less with the machine's load than wall time)"
        + (
            f"; *{histories[0]} → {histories[-1]} months*: the slope from the shorter history to the longer at the "
            "same customers (median over the sizes)"
            if len(histories) > 1
            else ""
        )
        + ":",
        "",
        "| stage | wall vs customers × months | wall vs transactions | "
        + " | ".join(per)
        + (f" | {histories[0]} → {histories[-1]} months" if len(histories) > 1 else "")
        + " | CPU vs customers × months | peak vs customers × months |",
        "|---|" + "---:|" * (4 + len(per) + (len(histories) > 1)),
    ]
    for s, e in exps.items():
        name = s if s in ("nbp chain", "plain") else f"`{s}`"
        cells = [e["size"], e["transactions"], *(e[f"customers@{m}"] for m in histories)]
        cells += [e["months"]] if len(histories) > 1 else []
        cells += [e["cpu"], e["peak"]]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    columns = {"size": "customers × months", **{f"customers@{m}": f"customers at {m} months" for m in histories}}
    if len(histories) > 1:
        columns["months"] = f"{histories[0]} → {histories[-1]} months"
    steepest = max(
        ((s, c) for s in STAGES for c in columns if not math.isnan(exps[s][c])), key=lambda sc: exps[sc[0]][sc[1]]
    )
    overall = max(STAGES, key=lambda s: exps[s]["size"] if not math.isnan(exps[s]["size"]) else -1)
    lines += [
        "",
        f"Fastest-growing stage: `{steepest[0]}`, exponent {exps[steepest[0]][steepest[1]]:.2f} against "
        f"{columns[steepest[1]]}; against customers × months over every run, `{overall}` "
        f"({exps[overall]['size']:.2f}). Why, from the profiles: "
        "`docs/decisions/025-where-the-chain-spends-its-time.md`.",
        *(["", note] if note else []),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, help="a bank export folder (default: simulate one)")
    ap.add_argument("--customers", default="full", help="customers of the simulated bank, or 'full' (388,494)")
    ap.add_argument("--months", type=int, default=24, help="months of history of the simulated bank")
    ap.add_argument("--repeat", type=int, default=3, help="pairs of runs (nbp chain, plain script)")
    ap.add_argument("--growth", action="store_true", help="one pair per size of --sizes x --months-list")
    ap.add_argument("--sizes", default="50000,150000,full", help="--growth: customers, comma-separated")
    ap.add_argument("--months-list", default="13,24", help="--growth: months of history, comma-separated")
    ap.add_argument("--data", type=Path, default=Path("/tmp/nbp-bench-chain/data"), help="simulated exports")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nbp-bench-chain/work"), help="workspaces, logs, results")
    ap.add_argument("--code", help="run nbp from this commit's tree (git archive) instead of the checkout")
    ap.add_argument("--resume", action="store_true", help="keep the finished runs of --work and add the rest")
    ap.add_argument("--report", action="store_true", help="write the section from the finished runs only")
    ap.add_argument("--print", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    ap.add_argument("--note", default="", help="--growth: a closing paragraph of the section (what explains it)")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    work = a.work / ("growth" if a.growth else "chain")
    work.mkdir(parents=True, exist_ok=True)
    store = work / "results.json"
    results = json.loads(store.read_text(encoding="utf-8")) if (a.resume or a.report) and store.exists() else {}
    code = None
    if a.code and not a.report:
        code = work / "code"
        commit = export_commit(a.code, code)
        if results.get("commit_full", commit) != commit:
            raise SystemExit(f"{store}: runs of commit {results['commit_full']}; --resume needs the same --code")
        results.update(commit_full=commit, commit=commit[:7])
    results.setdefault("commit", commit_of(code, results))
    if a.growth:
        results.setdefault("runs", {})
        sizes = [(c, int(m)) for c in a.sizes.split(",") for m in a.months_list.split(",")]
        # the smallest banks first: their figures come in early
        for customers, months in sorted(sizes, key=lambda cm: (FULL if cm[0] == "full" else int(cm[0]), cm[1])):
            name = f"{customers}x{months}"
            if name in results["runs"] or a.report:
                continue
            export = simulated(a.data, customers, months)
            print(f"{time.strftime('%H:%M:%S')} growth {name}", file=sys.stderr, flush=True)
            results["runs"][name] = {"facts": export_facts(export), "pair": pair(export, work, name, True, code)}
            _save(store, results)
        body, name = growth_section(results, a.note), GROWTH_SECTION
        command = f".venv/bin/python -m benchmarks.bench_chain --growth --sizes {a.sizes} --months-list {a.months_list}"
    else:
        export = a.export or simulated(a.data, a.customers, a.months)
        results.setdefault("pairs", {})
        results.setdefault("export", str(export))
        if results["export"] != str(export):
            raise SystemExit(f"{store}: runs of {results['export']}; --resume needs the same export")
        results.setdefault("facts", export_facts(export))
        results["as_of"] = latest_as_of(export)
        for i in range(a.repeat):
            if str(i) in results["pairs"] or a.report:
                continue
            print(f"{time.strftime('%H:%M:%S')} pair {i + 1}/{a.repeat}", file=sys.stderr, flush=True)
            results["pairs"][str(i)] = pair(export, work, f"pair-{i}", i % 2 == 0, code)
            _save(store, results)
        source = (
            f"the export {a.export}"
            if a.export
            else f"a simulated bank (`nbp simulate --customers {a.customers} --months {a.months}`)"
        )
        body, name = chain_section(results, results["facts"], source), SECTION
        command = (
            ".venv/bin/python -m benchmarks.bench_chain "
            + (f"--export {a.export}" if a.export else f"--customers {a.customers} --months {a.months}")
            + f" --repeat {a.repeat}"
        )
    _save(store, results)
    command += (f" --code {a.code}" if a.code else "") + f" --work {a.work}"
    if a.print:
        print(body)
    else:
        write_section(name, body, command)
    return 0


if __name__ == "__main__":
    from nbp import telemetry

    telemetry.disable()  # here and in every command run from here
    sys.exit(main(sys.argv[1:]))
