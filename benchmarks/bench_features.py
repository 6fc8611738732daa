"""Benchmark of the feature store at the reference bank's size.

Steps, each in its own child process (``benchmarks.report.run_measured``: wall time
and that child's peak RSS), on a workspace whose export was already ingested:

1. ``build``        every monthly feature table (``features.build.build``)
2. ``materialize``  Feast apply + the latest as-of into the SQLite online store
3. ``historical``   Feast point-in-time retrieval of N (customer, as-of) rows
4. ``online``       single-customer online reads (median / p99 latency)

Without ``--home``, the script simulates the bank (``nbp simulate --customers full
--months 24``) and ingests it first (not timed here: see the simulate and ingest
sections). Writes the ``features`` section of docs/benchmarks.md.

Run: ``.venv/bin/python -m benchmarks.bench_features [--home WS] [--rows 1000000]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.report import run_measured, write_section

NBP = str(Path(sys.executable).with_name("nbp"))
TARGETS = {"build": "≤ 300 s", "materialize": "≤ 120 s", "historical": "≤ 60 s", "online": "-"}


def _child(step: str, home: Path, rows: int) -> dict:
    """Run one step in a child process; return its JSON report plus wall time and peak RSS."""
    m = run_measured([sys.executable, "-m", "benchmarks.bench_features", "--step", step, "--home", str(home),
                      "--rows", str(rows)], env={"NBP_HOME": str(home)})
    report = json.loads([line for line in m.stdout.splitlines() if line.startswith("{")][-1])
    return {**report, "wall": m.seconds, "rss": m.peak_rss_gb}


def _step(step: str, home: Path, rows: int) -> dict:
    """The body of one child process (prints one JSON line)."""
    import time

    from nbp import telemetry

    telemetry.disable()
    from features import build as fbuild
    from nbp.config import load_config
    from nbp.workspace import Workspace

    ws, cfg = Workspace(home), load_config()
    t0 = time.perf_counter()
    if step == "build":
        s = fbuild.build(ws)
        return {"seconds": time.perf_counter() - t0, "as_of": len(s.as_of), "rows": max(s.rows.values())}
    from features import store

    if step == "materialize":
        store.apply(cfg, ws)
        t1 = time.perf_counter()
        when = store.materialize(cfg, ws)
        import duckdb

        n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{fbuild.family_path(ws, 'demo')}') "
                                     f"WHERE event_timestamp = TIMESTAMP '{when}'").fetchone()[0]
        return {"seconds": time.perf_counter() - t1, "apply_s": t1 - t0, "customers": n}
    import numpy as np
    import pandas as pd

    demo = pd.read_parquet(fbuild.family_path(ws, "demo"), columns=["customer_id", "event_timestamp"])
    if step == "historical":
        ent = demo.sample(n=min(rows, len(demo)), random_state=0).reset_index(drop=True)
        store.get_store(cfg, ws)  # import and registry load are not the retrieval
        t1 = time.perf_counter()
        got = store.historical(cfg, ws, ent, next(iter(store.service_names(cfg).values())))
        return {"seconds": time.perf_counter() - t1, "rows": len(got), "features": got.shape[1] - 2}
    ids = demo["customer_id"].drop_duplicates().sample(n=300, random_state=0).tolist()
    service = next(iter(store.service_names(cfg).values()))
    store.online(cfg, ws, ids[:1], service)  # warm-up
    lat = []
    for c in ids:
        t1 = time.perf_counter()
        store.online(cfg, ws, [c], service)
        lat.append((time.perf_counter() - t1) * 1000)
    return {"seconds": float(np.sum(lat)) / 1000, "median_ms": float(np.median(lat)),
            "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="workspace with an ingested export (default: simulate one)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="entity rows of the historical retrieval")
    ap.add_argument("--step", choices=list(TARGETS), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.step:
        print(json.dumps(_step(a.step, a.home, a.rows)))
        return
    home = a.home
    if home is None:
        tmp = Path(tempfile.mkdtemp(prefix="nbp_bench_features_"))
        home = tmp / "ws"
        run_measured([NBP, "simulate", "--customers", "full", "--months", "24", "--out", str(tmp / "bank")])
        run_measured([NBP, "ingest", str(tmp / "bank" / "export")], env={"NBP_HOME": str(home)})
    res = {s: _child(s, home, a.rows) for s in TARGETS}
    b, m, h, o = res["build"], res["materialize"], res["historical"], res["online"]
    body = f"""## Features

Feature build, Feast materialisation and retrieval on a bank of
({m['customers']:,} customers at the latest as-of; {b['as_of']} monthly as-of dates,
{b['rows']:,} (customer, as-of) rows per family, 137 features in 8 families).

| step | measured | wall (child) | peak RSS | target |
|---|---|---|---|---|
| build all monthly feature tables | {b['seconds']:.1f} s | {b['wall']:.1f} s | {b['rss']:.2f} GB | {TARGETS['build']} |
| materialise latest as-of (SQLite) | {m['seconds']:.1f} s (apply {m['apply_s']:.1f} s) | {m['wall']:.1f} s | {m['rss']:.2f} GB | {TARGETS['materialize']} |
| historical retrieval, {h['rows']:,} rows × {h['features']} features | {h['seconds']:.1f} s | {h['wall']:.1f} s | {h['rss']:.2f} GB | {TARGETS['historical']} |
| online read, 1 customer × {h['features']} features | median {o['median_ms']:.2f} ms, p99 {o['p99_ms']:.2f} ms | {o['wall']:.1f} s | {o['rss']:.2f} GB | - |

"measured" is the step alone inside the child; "wall" includes starting Python and
importing Feast (about 4 s). Peak memory budget: 12 GB.
"""
    cmd = ".venv/bin/python -m benchmarks.bench_features" + (f" --home {a.home}" if a.home else "")
    write_section("features", body, cmd)


if __name__ == "__main__":
    main()
