"""Loading the online store at federation scale: 1,000,000 customers into Redis and SQLite.

The input is one as-of of every feature view of a single bank, scaled up: a small bank is
simulated and built (``--seed-customers``), and its latest as-of rows of each family are
repeated under new customer ids up to ``--customers`` (so the columns, types and share of
nulls are those of real feature tables; values repeat every seed-size rows). The tables are
written as ``nbp features`` writes them (zstd, row groups of 500,000 rows) and applied to a
Feast repo once. Each load is a child process against one local Redis 6.2 server
(``benchmarks.redis_server.local_redis``), emptied before each run:

* ``spark``   the bulk writer from Spark ``local[2]``'s executors (``compute.engine: spark``)
* ``driver``  the bulk writer from the driver (``compute.engine: duckdb``)
* ``feast``   Feast's own ``FeatureStore.materialize`` into Redis, on ``--feast-customers``
  customers (it is too slow for the full size here) and extrapolated linearly
* ``sqlite``  the columnar SQLite store (the default), for reference

Wall time is the median of ``--repeat`` runs (Feast's: one run); the loader's memory is the
peak of the summed RSS of the child's process tree (Spark's JVM is the child's child), sampled
every second; the Redis server's is its ``used_memory`` after the load. Results are kept in
``--work``/results.json (``--add`` adds runs to them; ``--report`` writes the section again).

Run: ``.venv/bin/python -m benchmarks.bench_online_load [--customers 1000000] [--repeat 3]
[--work DIR] [--report] [--print]`` (writes the ``online_load`` section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

SECTION = "online_load"
MODES = ("spark", "driver", "feast", "sqlite")
SIM = {"months": 4, "end": "2026-10", "seed": 3}


def scaled_workspace(work: Path, seed_customers: int, customers: int) -> tuple[Path, date]:
    """A workspace holding one as-of of every feature view for ``customers`` customers, applied to Feast."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bankexport.ingest import ingest
    from bankexport.simulate import simulate
    from features import build as fbuild
    from features import tables as feature_tables
    from features.catalog import modules
    from features.schema import EVENT_TS, JOIN_KEY
    from nbp.config import IngestConfig
    from nbp.workspace import Workspace

    seed = Workspace(work / f"seed-{seed_customers}")
    if not (seed.home / ".done").exists():
        simulate(work / "sim", customers=seed_customers, **SIM)
        ingest(work / "sim" / "export", seed, IngestConfig())
        fbuild.build(seed)
        (seed.home / ".done").touch()
    as_of = max(fbuild.built_as_of(seed))
    home = work / f"scaled-{customers}"
    ws = Workspace(home)
    if (home / ".done").exists():
        return home, as_of
    at = datetime(as_of.year, as_of.month, as_of.day)
    for fam in modules(False):
        rows = pq.read_table(seed.feature_table(fam), filters=[(EVENT_TS, "=", pa.scalar(at, pa.timestamp("us")))])
        table = rows.take(pa.array(np.arange(customers) % rows.num_rows))
        ids = pa.array([f"S{i:010d}" for i in range(customers)], pa.string())
        table = table.set_column(table.column_names.index(JOIN_KEY), JOIN_KEY, ids)
        ws.feature_table(fam).mkdir(parents=True, exist_ok=True)
        out = ws.feature_table(fam) / feature_tables.file_name([as_of])
        pq.write_table(table, out, compression="zstd", row_group_size=500_000)
    _child_apply(home)
    (home / ".done").touch()
    return home, as_of


def _child_apply(home: Path) -> None:
    from features import store
    from nbp.config import load_config
    from nbp.workspace import Workspace

    store.apply(load_config(), Workspace(home))
    store.close_store(Workspace(home))


def child(mode: str, home: Path, as_of: date, redis: str) -> dict:
    """One load in this process; returns its in-process seconds."""
    from benchmarks.redis_server import on_redis
    from features import store
    from nbp.config import load_config
    from nbp.workspace import Workspace

    ws, cfg = Workspace(home), load_config()
    if mode != "sqlite":
        cfg = on_redis(cfg, redis)
    engine = "spark" if mode == "spark" else "duckdb"
    cfg = cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"engine": engine})})
    if mode == "spark":
        from nbp.spark import session

        session(cfg)  # started before the clock: a cluster's session outlives one load
    fs = store.get_store(cfg, ws)
    t0 = time.perf_counter()
    if mode == "feast":
        start = store._utc(as_of)
        fs.materialize(start_date=start, end_date=start + timedelta(seconds=1))
    else:
        store.materialize(cfg, ws, as_of)
    return {"seconds": time.perf_counter() - t0}


def _loader_rss_gb(sampler: object) -> float:
    """This process's descendants' summed RSS but the Redis server's (it holds the stored rows)."""
    import psutil

    rss = 0
    for p in sampler._me.children(recursive=True):  # type: ignore[attr-defined]
        try:
            if "redis-server" not in p.name():
                rss += p.memory_info().rss
        except psutil.Error:
            pass
    return rss / 1024**3


def _run(mode: str, home: Path, as_of: date, redis: str, client: object) -> dict:
    import threading

    from benchmarks.bench_federation import SAMPLE_S, Sampler
    from benchmarks.report import run_measured

    client.flushall()  # type: ignore[attr-defined]
    client.config_resetstat()  # type: ignore[attr-defined]
    cmd = [sys.executable, "-m", "benchmarks.bench_online_load", "--child", mode]
    cmd += ["--home", str(home), "--as-of", str(as_of), "--redis", redis]
    peak = [0.0]
    with Sampler() as s:
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_S):
                peak[0] = max(peak[0], _loader_rss_gb(s))

        watch = threading.Thread(target=sample, daemon=True)
        watch.start()
        try:
            m = run_measured(cmd)
        finally:
            done.set()
            watch.join()
    out = json.loads(m.stdout.strip().splitlines()[-1])
    info = client.info("memory")  # type: ignore[attr-defined]
    hset = client.info("commandstats").get("cmdstat_hset", {})  # type: ignore[attr-defined]
    return {
        "seconds": out["seconds"],
        "wall": m.seconds,
        "peak_gb": max([m.peak_rss_gb, *(gb for _, gb in s.samples)]),  # with the Redis server
        "loader_gb": max(m.peak_rss_gb, peak[0]),  # the child's tree alone
        "keys": client.dbsize(),  # type: ignore[attr-defined]
        "redis_gb": info["used_memory"] / 1024**3,
        "hset_us": hset.get("usec_per_call", 0.0),
        "hset_s": hset.get("usec", 0) / 1e6,
    }


def section(results: dict, a: argparse.Namespace) -> str:
    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    rows = []
    labels = {
        "spark": "bulk writer, Spark `local[2]` executors",
        "driver": "bulk writer, driver (`compute.engine: duckdb`)",
        "feast": f"Feast `materialize` ({a.feast_customers:,} customers, × {a.customers / a.feast_customers:.0f})",
        "sqlite": "columnar SQLite (default store)",
    }
    for mode in MODES:
        if mode not in results:
            continue
        n = a.feast_customers if mode == "feast" else a.customers
        scale = a.customers / n
        secs = med(mode, "seconds") * scale
        extra = " (extrapolated)" if scale != 1 else ""
        store = "-"
        if mode != "sqlite":
            hset = f"{med(mode, 'hset_s') * scale:.0f} s in HSET, {med(mode, 'hset_us'):.1f} µs each"
            store = f"{med(mode, 'redis_gb') * scale:.2f} GB; {hset}"
        loader = max((r["loader_gb"] for r in results[mode] if "loader_gb" in r), default=float("nan"))
        rows.append(
            f"| {labels[mode]} | {len(results[mode])} | {secs:.1f} s{extra} | {med(mode, 'wall'):.1f} s | "
            f"{a.customers / secs:,.0f}/s | {loader:.2f} GB{f' (at {n:,})' if scale != 1 else ''} | {store} |"
        )
    from features.catalog import CATALOG, modules

    return f"""## Online store load at federation scale

{a.customers:,} customers × {len(CATALOG)} features in {len(modules(False))} feature views (one as-of of a
simulated bank of {a.seed_customers:,} customers, repeated under new ids: real columns, types and nulls) loaded
into a local Redis 6.2 server (`benchmarks.redis_server.local_redis`, emptied before each run)
and, for reference, into the columnar SQLite store. The bulk writer (`features/redis_bulk.py`)
writes Feast's own key/field/value layout (Feast's `get_online_features` reads it back; tests
in `tests/features/test_redis_bulk.py`); Feast's own `materialize` was run on
{a.feast_customers:,} customers and scaled linearly to {a.customers:,} (not measured at full size).

| load | runs | load time ({a.customers:,}) | child wall | customers/s | peak RSS of the loader | Redis memory, HSET |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Load time is measured inside the child around `store.materialize` (Spark's session already
running, as on a cluster); the child's wall adds start-up (Python, Feast, and for Spark the JVM).
Both cores are shared with the Redis server, which executes every HSET on one thread; its own
time per HSET (`INFO commandstats`, one HSET per customer and feature view) bounds any writer:
about two thirds of the bulk loads' time here, so a Redis Cluster's shards, not more executors,
are what shortens it. Other jobs shared the machine (load average 8 to 17 during the runs).
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--feast-customers", type=int, default=50_000)
    p.add_argument("--seed-customers", type=int, default=5_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--work", type=Path, default=Path("/tmp/nbp-bench-online-load"))
    p.add_argument("--print", action="store_true", help="print the section instead of writing it")
    p.add_argument("--report", action="store_true", help="write the section from --work/results.json")
    p.add_argument("--add", action="store_true", help="add these runs to those in --work/results.json")
    p.add_argument("--as-run", help="with --report: the commands that made results.json, for the section")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--as-of", type=date.fromisoformat, help=argparse.SUPPRESS)
    p.add_argument("--redis", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.home, a.as_of, a.redis)))
        return
    from benchmarks.report import write_section

    a.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    kept = a.work / "results.json"
    if a.report:
        results = json.loads(kept.read_text(encoding="utf-8"))
    else:
        results = measure(a)
        if a.add and kept.exists():
            for mode, runs in json.loads(kept.read_text(encoding="utf-8")).items():
                results[mode] = runs + results.get(mode, [])
        kept.write_text(json.dumps(results, indent=1), encoding="utf-8")
    body = section(results, a)
    cmd = ".venv/bin/python -m benchmarks.bench_online_load" + (
        f" --customers {a.customers}" if a.customers != 1_000_000 else ""
    )
    cmd = a.as_run or cmd + (f" --repeat {a.repeat}" if a.repeat != 3 else "") + (" --add" if a.add else "")
    if a.print:
        print(body)
    else:
        write_section(SECTION, body, cmd)


def measure(a: argparse.Namespace) -> dict[str, list[dict]]:
    """Every mode's runs, against one local Redis server; kept in ``--work``/results.json."""
    import redis as redis_client

    from benchmarks.redis_server import local_redis

    full, as_of = scaled_workspace(a.work, a.seed_customers, a.customers)
    small, _ = scaled_workspace(a.work, a.seed_customers, a.feast_customers)
    results: dict[str, list[dict]] = {}
    with local_redis() as url:
        host, port = url.split(":")
        client = redis_client.Redis(host=host, port=int(port))
        for mode in a.modes:
            for _ in range(1 if mode == "feast" else a.repeat):
                r = _run(mode, small if mode == "feast" else full, as_of, url, client)
                results.setdefault(mode, []).append(r)
                print(mode, json.dumps(r), file=sys.stderr, flush=True)
        client.close()
    return results


if __name__ == "__main__":
    main()
