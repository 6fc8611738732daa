"""The monthly job after one new month: ``nbp retrain`` reusing each champion's setting search
against ``nbp retrain --search`` (every setting cross-validated again, as before the reuse).

One simulated bank (``--export DIR``: a simulator's output folder holding ``export/`` and
``campaigns/``; or ``--customers N|full --months M``, default the full-scale bank, simulated into
``WORK/bank`` and reused when it is there). Its export is month N+1; month N is the same export
cut with DuckDB at the first day of its last month (:func:`cut_export`: rows dated from that day on
are dropped, end dates and statuses of later events forgotten), so both deliveries share their
history row for row. ``nbp simulate --end`` cannot make month N: the same seed with an earlier
end draws different months.

1. ``WORK/home``: ``nbp ingest`` of month N, ``nbp campaign import`` of the randomised campaigns
   listed before the cut, ``nbp retrain`` (no champion yet: the full search). Kept as ``WORK/snapshot``.
2. Each arm, ``--repeat`` times in alternating order so the machine's load weighs on both alike:
   ``WORK/home`` restored from the snapshot (the same path, so every absolute path in the Feast
   repo and the MLflow store still holds), ``nbp ingest`` of month N+1 and the new campaigns, then
   ``nbp retrain`` (arm ``reuse``) or ``nbp retrain --search`` (arm ``search``), timed as a child
   process (wall, peak RSS); its stages (features, train, score, reports) from its own log lines
   (``retrain stage NAME: S s``); each product's gate AUC on its backtest window, with its standard
   error (Hanley & McNeil), and the run's setting search from MLflow.
3. ``--before CODE``: a third arm in each round, ``nbp retrain`` of another checkout (a git archive
   of the commit before issue 18's work, b7bbec8, whose monthly job built every feature and
   searched every setting) on month N+1 in a fresh workspace (``WORK/before``; its ingest and
   campaign import not timed): "today's time" of issue 18, measured beside the other arms.
4. ``--rounds-check``: in the last reuse arm's workspace, each product's fit with the champion's
   setting twice, its rounds early-stopped again (the recipe) and capped at the champion's round
   count (:func:`rounds_check`): fit time and gate AUC of both.

Every figure goes to ``WORK/results.json``; ``--report`` writes the ``retrain`` section of
docs/benchmarks.md from it (``--section``: another one, e.g. ``retrain_150k`` for a smaller
bank). Run the measurement from a snapshot of a commit, so that nobody's uncommitted edits are
measured, then the report from the checkout::

    git -C /work/main archive HEAD | tar -x -C CODE
    cd CODE && NBP_BENCH_COMMIT=$(git -C /work/main rev-parse --short HEAD) PYTHONPATH=CODE \\
        /work/main/.venv/bin/python -m benchmarks.bench_retrain --work WORK --print
    cd /work/main && .venv/bin/python -m benchmarks.bench_retrain --work WORK --report
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report import NBP, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "retrain"
SEED = 7
STAGES = ("features", "train", "score", "reports")
STAGE_LINE = re.compile(r"retrain stage (\w+): ([\d.]+) s")
SEARCH_LINE = re.compile(r"^(\w+): setting search (full|reused) \((.*)\)$", re.M)
TARGET = 1 / 3  # the goal: the monthly job at a third of today's time at most
PARTS = ("data", "fits", "campaign rows", "uplift")
_CLOCK = re.compile(r"^(\d\d):(\d\d):(\d\d) ", re.M)


# ----------------------------------------------------------------------------- the two deliveries
CUTS = {  # table -> (rows kept before the cut, columns whose later values are forgotten)
    "customers": ("open_date < {cut}", {}),
    "accounts": ("open_date < {cut}", {"close_date": "CASE WHEN close_date < {cut} THEN close_date END"}),
    "transactions": ("txn_time < CAST({cut} AS TIMESTAMP)", {}),
    "balances": ("month < {month}", {}),
    "loans": (
        "application_date < {cut} AND (grant_date IS NULL OR grant_date < {cut})",
        {
            "end_date": "CASE WHEN end_date < {cut} THEN end_date END",
            "status": "CASE WHEN end_date >= {cut} AND status IN ('settled', 'written_off') THEN 'active' "
            "ELSE status END",
        },
    ),
    "services": ("start_date < {cut}", {"end_date": "CASE WHEN end_date < {cut} THEN end_date END"}),
    "contacts": ("contact_date < {cut}", {}),
    "tax_records": ("published_date < {cut}", {}),
    "profile_updates": ("collected_date < {cut}", {}),
}


def cut_export(src: Path, dst: Path) -> str:
    """Write the export of one month earlier than ``src``'s to ``dst`` (``export/``, ``campaigns/``).

    The cut is the first day of the last month ``src`` holds (its export date minus one month):
    every row dated from the cut on is dropped, and end dates (with the statuses they set) after it
    are forgotten; tables without dates (branches, managers) are copied. Randomised campaigns
    listed before the cut are copied.

    Returns:
        The cut (``YYYY-MM-DD``), month N's export date.
    """
    import duckdb
    import pandas as pd

    manifest = json.loads((src / "export" / "manifest.json").read_text(encoding="utf-8"))
    cut = (pd.Timestamp(manifest["export_date"]) - pd.DateOffset(months=1)).strftime("%Y-%m-%d")
    out = dst / "export"
    if (out / "manifest.json").exists():
        return cut
    tmp = dst / "export.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = duckdb.connect()
    lit = {"cut": f"DATE '{cut}'", "month": f"'{cut[:7]}'"}
    for f in sorted((src / "export").glob("*.parquet")):
        where, later = CUTS.get(f.stem, ("TRUE", {}))
        replace = ", ".join(f"{sql.format(**lit)} AS {col}" for col, sql in later.items())
        select = f"SELECT * REPLACE ({replace})" if replace else "SELECT *"
        con.execute(
            f"COPY ({select} FROM read_parquet('{f}') WHERE {where.format(**lit)}) "
            f"TO '{tmp / f.name}' (FORMAT parquet, COMPRESSION zstd)"
        )
    (tmp / "manifest.json").write_text(json.dumps(manifest | {"export_date": cut}, indent=1), encoding="utf-8")
    tmp.rename(out)
    (dst / "campaigns").mkdir(exist_ok=True)
    for f in _campaigns(src, before=cut):
        shutil.copy2(f, dst / "campaigns" / f.name)
    return cut


def _campaigns(bank: Path, before: str | None = None, since: str | None = None) -> list[Path]:
    """The assignment files ``RCT-<product>-<YYYYMM>.csv`` listed before ``before`` / from ``since`` on."""
    out = []
    for f in sorted((bank / "campaigns").glob("RCT-*.csv")):
        ym = f.stem.rsplit("-", 1)[-1]
        month = f"{ym[:4]}-{ym[4:]}-01"
        if (before is None or month < before) and (since is None or month >= since):
            out.append(f)
    return out


# ----------------------------------------------------------------------------- runs
def _nbp(args: list[str], env: dict[str, str], log: Path) -> dict:
    """One ``nbp`` command as a child process: wall time, peak RSS and the load average around it."""
    load = os.getloadavg()[0]
    m = run_measured([NBP, *args], env)
    log.write_text(f"$ nbp {' '.join(args)}\n{m.stdout}", encoding="utf-8")
    return {"wall": m.seconds, "peak_gb": m.peak_rss_gb, "load": [load, os.getloadavg()[0]], "out": m.stdout}


def _ingest(bank: Path, env: dict[str, str], logs: Path, name: str, campaigns: list[Path]) -> float:
    """``nbp ingest`` of ``bank``'s export and ``nbp campaign import`` of ``campaigns``; their seconds."""
    took = _nbp(["ingest", str(bank / "export"), "--log-level", "WARNING"], env, logs / f"{name}-ingest.log")["wall"]
    if campaigns:
        args = ["campaign", "import", *map(str, campaigns), "--log-level", "WARNING"]
        took += _nbp(args, env, logs / f"{name}-campaigns.log")["wall"]
    return took


def _before(name: str, code: Path, work: Path, bank: Path, env: dict[str, str]) -> dict:
    """The ``before`` arm: ``code``'s ``nbp retrain`` on month N+1 in a fresh workspace."""
    home, logs = work / "before", work / "logs"
    shutil.rmtree(home, ignore_errors=True)
    env = {**env, "NBP_HOME": str(home), "PYTHONPATH": str(code)}
    ingest = _ingest(bank, env, logs, name, _campaigns(bank))
    got = _nbp(["retrain"], env, logs / f"{name}-retrain.log")
    print(f"{name}: retrain {got['wall']:.1f} s", file=sys.stderr, flush=True)
    return {
        "name": name,
        "arm": "before",
        "ingest_s": ingest,
        "wall": got["wall"],
        "peak_gb": got["peak_gb"],
        "load": got["load"],
        "stages": {},
        "code": str(code),
    }


def gate_figures(home: Path) -> dict[str, dict]:
    """Each product's latest version in ``home``'s registry: gate AUC, its standard error, the gate's
    alias and the run's setting search (read with the code under test, from MLflow). Called in a
    child process (:func:`_child`): MLflow keeps one database connection per URI in a process, which
    would go on reading a workspace after it was moved or replaced."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from nbp.config import load_config
    from nbp.workspace import Workspace
    from training import registry, setting_search
    from training.evaluate import auc_se

    uri = registry.tracking_uri(Workspace(home))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = {}
    for key in load_config().products:
        name = registry.model_name(key)
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            continue
        mv = max(versions, key=lambda v: int(v.version))
        run = client.get_run(mv.run_id)
        m, tags = run.data.metrics, run.data.tags
        auc, pos, n = m.get("auc", float("nan")), int(m.get("positives", 0)), int(m.get("n", 0))
        try:
            champion = int(client.get_model_version_by_alias(name, registry.CHAMPION).version)
        except MlflowException:
            champion = None
        out[key] = {
            "version": int(mv.version),
            "alias": "champion" if champion == int(mv.version) else "challenger",
            "auc": auc,
            "se": auc_se(auc, pos, n - pos),
            "positives": pos,
            "n": n,
            "search": tags.get(setting_search.TAG_SEARCH),
            "reason": tags.get(setting_search.TAG_REASON),
            "setting": tags.get(setting_search.TAG_SETTING),
            "search_month": tags.get(setting_search.TAG_MONTH),
            "rounds": int(float(run.data.params.get("fit_best_iteration", "nan"))),
        }
    return out


def _retrain(name: str, search: bool, work: Path, bank: Path, cut: str, env: dict[str, str]) -> dict:
    """One arm: the workspace restored from the snapshot, month N+1 ingested, the retrain measured."""
    home, logs = work / "home", work / "logs"
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.perf_counter()
    shutil.copytree(work / "snapshot", home, symlinks=True)
    restored = time.perf_counter() - t0
    ingest = _ingest(bank, env, logs, name, _campaigns(bank, since=cut))
    got = _nbp(["retrain", *(["--search"] if search else [])], env, logs / f"{name}-retrain.log")
    stages = {k: float(v) for k, v in STAGE_LINE.findall(got["out"])}
    lines = {k: {"mode": mode, "detail": d} for k, mode, d in SEARCH_LINE.findall(got["out"])}
    print(f"{name}: retrain {got['wall']:.1f} s {stages} {lines}", file=sys.stderr, flush=True)
    return {
        "name": name,
        "arm": "search" if search else "reuse",
        "restore_s": restored,
        "ingest_s": ingest,
        "wall": got["wall"],
        "peak_gb": got["peak_gb"],
        "load": got["load"],
        "stages": stages,
        "search_lines": lines,
        "train_parts": train_parts(got["out"]),
        "uplift": uplift_figures(got["out"]),
        "products": _child("--gate-home", home, env, work / "logs" / f"{name}-gate.log"),
    }


def train_parts(out: str) -> dict[str, float]:
    """The train stage split by the retrain's log lines (their HH:MM:SS clock): ``data`` (features
    stage's end to the last setting-search plan), ``fits`` (to the last propensity model registered,
    MLflow included), ``campaign rows`` (to the first uplift plan) and ``uplift`` (to the last uplift
    model registered or kept). Empty when a line is missing."""

    def last(pattern: str) -> int | None:
        found = [m for m in re.finditer(pattern, out, re.M)]
        return _at(out, found[-1].start()) if found else None

    def first(pattern: str) -> int | None:
        m = re.search(pattern, out, re.M)
        return _at(out, m.start()) if m else None

    marks = [
        first(r"retrain stage features:"),
        last(r"training\.pipeline: \w+: setting search (full|reused)"),
        last(r"registered nbp-(?!.*-uplift version)\S+ version"),
        first(r"training\.uplift: \w+: uplift search"),
        last(r"(?:registered|kept) nbp-\S+-uplift version"),
    ]
    if any(m is None for m in marks):
        return {}
    return {k: float((b - a) % 86400) for k, a, b in zip(PARTS, marks, marks[1:], strict=False)}


def uplift_figures(out: str) -> dict[str, dict[str, float]]:
    """Each uplift model's held-out Qini and AUUC, from the retrain's lines registering a model or
    keeping its champion (its rows unchanged)."""
    pat = r"(?:registered|kept) nbp-(\S+)-uplift version \d+ \(run \w+, window [^,]*, qini ([-\d.]+), auuc ([-\d.]+)"
    return {k: {"qini": float(q), "auuc": float(a)} for k, q, a in re.findall(pat, out)}


def _at(out: str, pos: int) -> int:
    """Seconds of the day of the log line holding ``pos``."""
    line = out[out.rfind("\n", 0, pos) + 1 :]
    m = _CLOCK.match(line)
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) if m else 0


def rounds_check(home: Path, versions: dict[str, int]) -> dict[str, dict]:
    """Each product's fit on this month's rows with the setting of its month-N champion (``versions``),
    rounds early-stopped again (the recipe) against capped at that champion's round count: fit
    seconds and gate AUC (on the same rows)."""

    from nbp.config import load_config
    from nbp.workspace import Workspace
    from training import evaluate, pipeline, registry

    cfg, ws = load_config(), Workspace(home)
    prep = pipeline.prepare(cfg, ws)
    params = pipeline.model_params(cfg)
    out = {}
    for key, (rows, te) in prep.data.items():
        if key not in versions:
            continue
        previous, _ = registry.load_version(ws, key, versions[key])
        setting, cap = previous.info["setting"], previous.best_iteration
        variants = {
            "early_stopped": params,
            "capped": params.model_copy(update={"max_rounds": cap, "early_stopping_rounds": cap}),
        }
        out[key] = {"champion_rounds": cap, "setting": setting, "champion": versions[key]}
        for name, p in variants.items():
            t0 = time.perf_counter()
            model = pipeline.fit_rows(cfg, rows, p, (setting,))
            took = time.perf_counter() - t0
            auc = evaluate.auc(te["label"], model.predict_proba(te, num_threads=model.info["threads"]))
            out[key][name] = {"fit_s": took, "rounds": model.best_iteration, "auc": auc}
            print(f"rounds check {key} {name}: {out[key][name]}", file=sys.stderr, flush=True)
    return out


def measure(args: argparse.Namespace) -> dict:
    """Steps 1-3 of the module docstring; returns (and writes) the results."""
    work = Path(args.work).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    env = {"NBP_HOME": str(work / "home")}
    if args.export:
        bank = Path(args.export).resolve()
    else:
        bank = work / "bank"
        if not (bank / "export" / "manifest.json").exists():
            shutil.rmtree(bank, ignore_errors=True)
            cmd = ["simulate", "--out", str(bank), "--customers", args.customers, "--months", str(args.months)]
            _nbp([*cmd, "--seed", str(args.seed)], env, work / "logs" / "simulate.log")
    month_n = work / "month_n"
    cut = cut_export(bank, month_n)
    commit = (
        os.environ.get("NBP_BENCH_COMMIT")
        or subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    results_path = work / "results.json"
    res = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() and args.resume else {}
    res["meta"] = {
        "bank": str(bank),
        "customers": _customers(bank),
        "cut": cut,
        "export_date": json.loads((bank / "export" / "manifest.json").read_text())["export_date"],
        "commit": commit,
        "command": " ".join(["python -m benchmarks.bench_retrain", *sys.argv[1:]]),
    }
    if "base" not in res:
        home = work / "home"
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work / "snapshot", ignore_errors=True)
        ingest = _ingest(month_n, env, work / "logs", "base", _campaigns(month_n))
        got = _nbp(["retrain"], env, work / "logs" / "base-retrain.log")
        res["base"] = {
            "commit": commit,
            "ingest_s": ingest,
            "wall": got["wall"],
            "peak_gb": got["peak_gb"],
            "stages": {k: float(v) for k, v in STAGE_LINE.findall(got["out"])},
            "products": _child("--gate-home", home, env, work / "logs" / "base-gate.log"),
        }
        home.rename(work / "snapshot")
        results_path.write_text(json.dumps(res, indent=1), encoding="utf-8")
    res.setdefault("arms", [])
    order = [("reuse", False), ("search", True)] + ([("before", None)] if args.before else [])
    if args.before:
        res["meta"]["before"] = os.environ.get("NBP_BENCH_BEFORE") or args.before
    for i in range(len(res["arms"]) // len(order), args.repeat):
        for name, search in order if i % 2 == 0 else order[::-1]:
            if search is None:
                res["arms"].append(_before(f"{name}-{i}", Path(args.before).resolve(), work, bank, env))
                results_path.write_text(json.dumps(res, indent=1), encoding="utf-8")
                continue
            res["arms"].append(_retrain(f"{name}-{i}", search, work, bank, cut, env))
            results_path.write_text(json.dumps(res, indent=1), encoding="utf-8")
            if name == "reuse" and args.rounds_check and i == args.repeat - 1:  # in the reuse arm's workspace
                base = {k: v["version"] for k, v in res["base"]["products"].items() if v["alias"] == "champion"}
                log = work / "logs" / "rounds.log"
                res["rounds_check"] = _child("--rounds-check-home", work / "home", env, log, json.dumps(base))
                results_path.write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


def _child(option: str, home: Path, env: dict[str, str], log: Path, *extra: str) -> dict:
    """:func:`gate_figures` (``--gate-home``) or :func:`rounds_check` (``--rounds-check-home``) of
    ``home`` in a child process running this module: its JSON answer."""
    got = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_retrain", option, str(home), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    log.write_text(got.stderr, encoding="utf-8")
    if got.returncode != 0:
        raise RuntimeError(f"{option} {home} failed:\n{got.stderr[-3000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def _customers(bank: Path) -> int:
    import duckdb

    path = bank / "export" / "customers.parquet"
    return int(duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0])


# ----------------------------------------------------------------------------- the section
def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _s(v: float) -> str:
    return "–" if v != v else f"{v:.1f} s"


def section(res: dict) -> str:
    """The ``retrain`` section of docs/benchmarks.md from the results."""
    meta, base = res["meta"], res["base"]
    arms = {a: [r for r in res["arms"] if r["arm"] == a] for a in ("reuse", "search")}
    med = {
        a: {"wall": _med([r["wall"] for r in rs]), **{k: _med([r["stages"].get(k, 0.0) for r in rs]) for k in STAGES}}
        for a, rs in arms.items()
    }
    pairs = list(zip(arms["reuse"], arms["search"], strict=False))
    ratio = {k: _med([r[k] / s[k] for r, s in pairs]) for k in ("wall",)}
    ratio |= {k: _med([r["stages"][k] / s["stages"][k] for r, s in pairs if s["stages"].get(k)]) for k in STAGES}
    lines = [
        "## The monthly job after one new month: reused against full setting search",
        "",
        f"One simulated bank of {meta['customers']:,} customers (`{meta['bank']}`, export date "
        f"{meta['export_date']}); month N is the same export cut at {meta['cut']} (rows from that day on "
        "dropped, later end dates forgotten), ingested and retrained once (no champion: full search). "
        f"Then, {len(pairs)} time(s) each in alternating order, that workspace restored, month N+1 ingested "
        "(not timed below) and `nbp retrain` (**reuse**: each champion's setting, its rounds early-stopped "
        "again) or `nbp retrain --search` (**search**: every setting of GRID, as before the reuse) run; the "
        "stages from the retrain's own log lines. Median seconds (wall); ratio: median of reuse / search "
        "over the pairs.",
        "",
        "| arm | retrain | features | train | score | reports | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in ("reuse", "search"):
        peak = max((r["peak_gb"] for r in arms[a]), default=float("nan"))
        lines.append(
            f"| {a} | {_s(med[a]['wall'])} | " + " | ".join(_s(med[a][k]) for k in STAGES) + f" | {peak:.1f} GB |"
        )
    lines.append(
        f"| reuse / search | **{ratio['wall']:.2f}** | "
        + " | ".join(f"{ratio.get(k, float('nan')):.2f}" for k in STAGES)
        + " | |"
    )
    parts = {a: [r["train_parts"] for r in rs if r.get("train_parts")] for a, rs in arms.items()}
    if parts["reuse"] and parts["search"]:
        lines += [
            "",
            "Within the train stage (from the retrain's log lines; median seconds): the training rows, the "
            "propensity fits with their MLflow records, the campaign rows of the uplift models and the uplift "
            "models (searched or reused, judged, registered):",
            "",
            "| arm | " + " | ".join(PARTS) + " |",
            "|---|" + "---|" * len(PARTS),
        ]
        for a in ("reuse", "search"):
            lines.append(f"| {a} | " + " | ".join(_s(_med([p[k] for p in parts[a]])) for k in PARTS) + " |")
        both = [(r["train_parts"], s["train_parts"]) for r, s in pairs if r.get("train_parts") and s.get("train_parts")]
        lines.append(
            "| reuse / search | "
            + " | ".join(f"{_med([r[k] / s[k] for r, s in both if s[k]]):.2f}" for k in PARTS)
            + " |"
        )
    up_r, up_s = arms["reuse"][-1].get("uplift") or {}, arms["search"][-1].get("uplift") or {}
    if up_r and up_s:
        lines += [
            "",
            "Uplift models (held-out Qini coefficient in incremental uptakes, and AUUC, on the held-out "
            "campaign; the last run of each arm): the reused choice against the full search's.",
            "",
            "| uplift model | Qini reuse | Qini search | AUUC reuse | AUUC search |",
            "|---|---:|---:|---:|---:|",
        ]
        for key in sorted(up_r):
            r, q = up_r[key], up_s.get(key, {"qini": float("nan"), "auuc": float("nan")})
            lines.append(f"| {key} | {r['qini']:.2f} | {q['qini']:.2f} | {r['auuc']:.2f} | {q['auuc']:.2f} |")
    first = base["stages"]
    if meta.get("note"):
        lines += ["", meta["note"]]
    lines += [
        "",
        f"Month N's first retrain (features of every month built from nothing, full search): "
        f"{_s(base['wall'])} (" + ", ".join(f"{k} {_s(first.get(k, float('nan')))}" for k in STAGES) + "; "
        f"commit {base.get('commit', meta['commit'])}); "
        f"ingest of month N+1 {_s(_med([r['ingest_s'] for a in ('reuse', 'search') for r in arms[a]]))} (median, "
        "with the campaign import). "
        f"The reused retrain against it (this commit's code doing what the monthly job did before issue 18: "
        f"every feature built, every setting searched): {med['reuse']['wall'] / base['wall']:.2f} × (one month "
        "longer, other loads).",
        "",
    ]
    before = [r for r in res["arms"] if r["arm"] == "before"]
    if before:
        reuse_by_round = {r["name"].split("-")[-1]: r for r in arms["reuse"]}
        rounds = [(reuse_by_round.get(b["name"].split("-")[-1]), b) for b in before]
        per = [r["wall"] / b["wall"] for r, b in rounds if r is not None]
        lines += [
            f"Issue 18's \"today's time\": `nbp retrain` as it was when the issue was filed (commit "
            f"{meta.get('before', '?')}: every feature built and every setting searched each month), on month "
            f"N+1 in a fresh workspace, run {len(before)} time(s) in the same rounds as the arms above: "
            f"{_s(_med([b['wall'] for b in before]))} (median; runs "
            + ", ".join(f"{b['wall']:.1f}" for b in before)
            + f"; peak RSS {max(b['peak_gb'] for b in before):.1f} GB). The reused retrain against it: **"
            + f"{_med(per):.3f} ×** (median of the per-round ratios "
            + ", ".join(f"{x:.3f}" for x in per)
            + f"; target {TARGET:.3f}).",
            "",
        ]
    lines += [
        "Each product's gate (backtest window of month N+1, AUC ± its standard error; the last run of each arm):",
        "",
        "| product | reuse: search (reason) | setting | rounds | gate AUC reuse | gate AUC search | setting | rounds "
        "| difference | within one SE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    last_r, last_s = arms["reuse"][-1]["products"], arms["search"][-1]["products"]
    for key in sorted(last_r):
        r, s = last_r[key], last_s.get(key, {"auc": float("nan"), "se": float("nan")})
        diff = r["auc"] - s["auc"]
        se = max(r["se"], s["se"])
        lines.append(
            f"| {key} | {r['search']} ({r['reason']}) | `{r['setting']}` | {r['rounds']} "
            f"| {r['auc']:.4f} ± {r['se']:.4f} ({r['alias']}) | {s['auc']:.4f} ± {s['se']:.4f} ({s.get('alias')}) "
            f"| `{s.get('setting')}` | {s.get('rounds')} | {diff:+.4f} | {'yes' if abs(diff) <= se else 'no'} |"
        )
    lines += [
        "",
        "A reused fit is exactly the full search's model when both keep the same setting on the same rows "
        "(`tests/training/test_setting_search.py`). Where the arms kept the same setting and still differ "
        "(rounds, AUC), their rows did: each arm builds month N+1's features again, and two builds of one "
        "export differ in the last bits of floating-point sums (docs/decisions/026-reusing-the-setting-search.md).",
    ]
    if res.get("rounds_check"):
        lines += [
            "",
            "Rounds of a reused setting (`--rounds-check`, in the reuse arm's workspace after its retrain: each "
            "product's fitting rows of month N+1 with the setting of its month-N champion): early-stopped again on "
            "this month's folds (what `nbp retrain` does) against capped at that champion's round count (fold "
            "boosters trained that many rounds):",
            "",
            "| product | champion rounds | early-stopped: fit, rounds, gate AUC | capped: fit, rounds, gate AUC |",
            "|---|---|---|---|",
        ]
        for key, c in sorted(res["rounds_check"].items()):
            e, k = c["early_stopped"], c["capped"]
            lines.append(
                f"| {key} | {c['champion_rounds']} | {_s(e['fit_s'])}, {e['rounds']}, {e['auc']:.4f} "
                f"| {_s(k['fit_s'])}, {k['rounds']}, {k['auc']:.4f} |"
            )
    met = ratio["wall"] <= TARGET
    against_before = ""
    if before:
        b_met = _med(per) <= TARGET
        against_before = (
            f"against the retrain as it was when the issue was filed ({meta.get('before', '?')}), "
            f"{_med(per):.3f} × — {'met' if b_met else 'not met'}; "
        )
    lines += [
        "",
        f"Target of issue 18 (the monthly job at most a third of today's time): {against_before}against "
        f"`nbp retrain --search` on the same commit, {ratio['wall']:.2f} × — {'met' if met else 'not met'} "
        f"(its train stage {ratio.get('train', float('nan')):.2f} ×). "
        "Load averages around the runs: "
        + ", ".join(f"{r['name']} {r['load'][0]:.1f}→{r['load'][1]:.1f}" for r in res["arms"])
        + f". Code at commit {meta['commit']}; why and how the setting is reused: "
        "docs/decisions/026-reusing-the-setting-search.md.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", default=None, help="A simulator's output folder (export/, campaigns/): month N+1.")
    ap.add_argument("--customers", default="full", help="Simulate a bank of this size (or 'full') into WORK/bank.")
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--work", default=None, help="Working folder (default: a temporary one).")
    ap.add_argument("--repeat", type=int, default=1, help="Runs of each arm, alternating their order.")
    ap.add_argument("--resume", action="store_true", help="Keep WORK/results.json's base and arms, add the rest.")
    ap.add_argument("--before", default=None, help="A checkout of an older commit: its nbp retrain as a third arm.")
    ap.add_argument("--rounds-check", action="store_true", help="Also fit early-stopped against capped rounds.")
    ap.add_argument("--rounds-check-home", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--gate-home", default=None, help=argparse.SUPPRESS)
    ap.add_argument("versions", nargs="?", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true", help="Write the section from WORK/results.json only.")
    ap.add_argument("--print", action="store_true", help="Print the section instead of writing it.")
    ap.add_argument("--section", default=SECTION, help=f"Section of docs/benchmarks.md (default {SECTION}).")
    args = ap.parse_args(argv)
    if args.rounds_check_home:
        print(json.dumps(rounds_check(Path(args.rounds_check_home), json.loads(args.versions))))
        return 0
    if args.gate_home:
        print(json.dumps(gate_figures(Path(args.gate_home))))
        return 0
    if args.work is None:
        import tempfile

        args.work = tempfile.mkdtemp(prefix="bench-retrain-")
    res = json.loads((Path(args.work) / "results.json").read_text(encoding="utf-8")) if args.report else measure(args)
    for r in res["arms"]:  # results measured before the split was recorded: from the kept logs
        log = Path(args.work) / "logs" / f"{r['name']}-retrain.log"
        if not r.get("train_parts") and log.exists():
            text = log.read_text(encoding="utf-8", errors="replace")
            r["train_parts"], r["uplift"] = train_parts(text), uplift_figures(text)
    body = section(res)
    if args.print:
        print(body)
    else:
        write_section(args.section, body, res["meta"]["command"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
