"""Benchmark of ``nbp ingest`` appending a re-delivered export's new month against a full ingest.

Month N is the export cut one month earlier (``benchmarks/bench_retrain.py: cut_export``), month
N+1 the export itself. Once: ``nbp ingest`` N into a workspace kept as the base. Then, in pairs
with the order alternating: the append (a copy of the base workspace, ``nbp ingest`` N+1) and the
full ingest (an empty workspace, ``nbp ingest`` N+1: what an import from nothing costs). Each run is
a child process (wall time, peak RSS). The two stores are compared after every pair: each stored
table row by row in order (a sum of hashes of row and position), the rejects and cells files
byte for byte, the report's counts and the quality snapshot. Writes section ``ingest_append`` of
docs/benchmarks.md (medians and the median of the per-pair ratios, all from the same run).

Run: ``.venv/bin/python -m benchmarks.bench_ingest_append [--export /tmp/nbp/full/export] [--runs 3]``
(``--export``: a simulator's output folder holding ``export/``; default the full-scale bank's, else one
is simulated into ``WORK/bank`` with ``--customers``, default ``full``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from benchmarks.bench_retrain import cut_export
from benchmarks.report import NBP, median, run_measured, write_section

SECTION = "ingest_append"
DEFAULT_EXPORT = "/tmp/nbp/full/export"
DEFAULT_WORK = "/tmp/nbp/ia"


def _ingest(src: Path, home: Path, *more: str) -> dict:
    """``nbp ingest`` as a child process: wall, peak RSS and the report's append record."""
    m = run_measured([NBP, "ingest", *more, str(src)], {"NBP_HOME": str(home)})
    report = json.loads((home / "ingest" / "report.json").read_text(encoding="utf-8"))
    return {"seconds": m.seconds, "peak_gb": m.peak_rss_gb, "append": report.get("append", {}), "report": report}


def _table_digest(path: Path) -> tuple[int, int]:
    """Rows and an order-sensitive sum of row hashes of a Parquet file."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    n, s = con.execute(
        f"SELECT count(*), CAST(sum(CAST(hash(t) AS HUGEINT)) % 18446744073709551616 AS UBIGINT) "
        f"FROM read_parquet('{path}', file_row_number = true) t"
    ).fetchone()
    con.close()
    return int(n), int(s or 0)


def digest(home: Path, export_date: str) -> dict[str, object]:
    """What must be identical between the appended and the full store."""
    out: dict[str, object] = {}
    for p in sorted((home / "data" / "ingested").glob("*.parquet")):
        out[p.name] = _table_digest(p)
    for kind in ("rejects", "cells"):
        for p in sorted((home / "ingest" / kind).glob("*.csv")):
            out[f"{kind}/{p.name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    out["report"] = json.loads((home / "ingest" / "report.json").read_text(encoding="utf-8"))["tables"]
    out["quality"] = _table_digest(home / "quality" / f"{export_date}.parquet")
    return out


def measure(args: argparse.Namespace) -> dict:
    src = Path(args.export)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cut = cut_export(src, work / "monthN")
    later = src / "export"
    base = work / "base"
    if not (base / "ingest" / "report.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        first = _ingest(work / "monthN" / "export", base)
        print(f"month N ({cut}) ingested in {first['seconds']:.0f} s", file=sys.stderr, flush=True)
    export_date = json.loads((later / "manifest.json").read_text(encoding="utf-8"))["export_date"]
    pairs = []
    for i in range(args.runs):
        runs = {}
        for arm in ("append", "full") if i % 2 == 0 else ("full", "append"):
            home = work / arm
            shutil.rmtree(home, ignore_errors=True)
            if arm == "append":
                shutil.copytree(base, home)
            runs[arm] = _ingest(later, home)
            print(f"pair {i + 1} {arm}: {runs[arm]['seconds']:.1f} s", file=sys.stderr, flush=True)
        same = digest(work / "append", export_date) == digest(work / "full", export_date)
        pairs.append(
            {
                arm: {k: v for k, v in r.items() if k != "report"} | {"load": os.getloadavg()[0]}
                for arm, r in runs.items()
            }
            | {"identical": same}
        )
        if not same:
            raise SystemExit(f"pair {i + 1}: the appended store differs from the full ingest's ({work})")
    rows = {t: r["rows_read"] for t, r in runs["full"]["report"]["tables"].items()}
    return {"cut": cut, "export_date": export_date, "pairs": pairs, "rows": rows, "source": str(src)}


def section(res: dict) -> str:
    pairs = res["pairs"]
    app = [p["append"]["seconds"] for p in pairs]
    full = [p["full"]["seconds"] for p in pairs]
    ratios = [a / f for a, f in zip(app, full, strict=True)]
    tx = pairs[0]["append"]["append"]["transactions"]
    bal = pairs[0]["append"]["append"].get("balances", {})
    loads = [p[a]["load"] for p in pairs for a in ("append", "full")]
    lines = [
        "## Ingest: appending a re-delivered export's new month",
        "",
        f"Month N+1: `{res['source']}/export` ({res['rows']['transactions']:,} transactions, "
        f"{res['rows'].get('balances', 0):,} balances; export date {res['export_date']}); month N: the same "
        f"export cut at {res['cut']} (`bench_retrain.py: cut_export`), ingested once into the base workspace. "
        f"Append: `nbp ingest` N+1 into a copy of that workspace; full: `nbp ingest` N+1 into an empty one "
        f"(every row checked). {len(pairs)} pairs, order alternating; 1-minute load {min(loads):.1f}-{max(loads):.1f} "
        "(a shared 2-core machine: read the ratios).",
        "",
        "| run | wall (median) | wall per pair | peak RSS (median) |",
        "|---|---:|---|---:|",
        f"| append N+1 | {median(app):.1f} s | {', '.join(f'{x:.1f}' for x in app)} | "
        f"{median([p['append']['peak_gb'] for p in pairs]):.2f} GB |",
        f"| full N+1 | {median(full):.1f} s | {', '.join(f'{x:.1f}' for x in full)} | "
        f"{median([p['full']['peak_gb'] for p in pairs]):.2f} GB |",
        "",
        f"Append / full: median of the per-pair ratios **{median(ratios):.2f}** "
        f"({', '.join(f'{r:.2f}' for r in ratios)}). Reused without a check: transactions "
        f"{tx.get('reused_rows', 0):,} rows ({' to '.join(tx.get('reused_months', []))}), balances "
        f"{bal.get('reused_rows', 0):,} rows. The two stores were identical after every pair (each table row by "
        "row in order, the rejects and cells files, the report's counts, the quality snapshot).",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", default=DEFAULT_EXPORT, help="A simulator's output folder holding export/ (month N+1).")
    ap.add_argument("--work", default=DEFAULT_WORK, help="Working folder (month N, the workspaces).")
    ap.add_argument("--customers", default="full", help="Without the export: simulate a bank of this size.")
    ap.add_argument("--runs", type=int, default=3, help="Pairs of runs (append, full), order alternating.")
    ap.add_argument("--print", action="store_true", help="Print the section instead of writing it.")
    ap.add_argument("--report", action="store_true", help="Write the section from WORK/results.json only.")
    args = ap.parse_args(argv)
    results = Path(args.work, "results.json")
    if args.report:
        res = json.loads(results.read_text(encoding="utf-8"))
        write_section(SECTION, section(res), res["command"])
        return 0
    command = f".venv/bin/python -m benchmarks.bench_ingest_append --export {args.export} --runs {args.runs}"
    if not (Path(args.export) / "export" / "manifest.json").exists():  # simulate the bank (make bench)
        bank = Path(args.work) / "bank"
        if not (bank / "export" / "manifest.json").exists():
            shutil.rmtree(bank, ignore_errors=True)
            run_measured([NBP, "simulate", "--out", str(bank), "--customers", args.customers, "--months", "24"])
        args.export = str(bank)
    res = measure(args) | {"command": command}
    results.write_text(json.dumps(res, indent=1), encoding="utf-8")
    body = section(res)
    if args.print:
        print(body)
    else:
        write_section(SECTION, body, res["command"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
