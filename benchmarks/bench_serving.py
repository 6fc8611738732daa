"""Benchmark of the service: ``/hints`` under a steady 100 requests/s, ``/targets`` top 500 of a branch.

Uses a trained workspace (``--home``; default: build one in a temporary folder
with the CLI chain ``nbp simulate → ingest → features → train → score``), starts
``nbp serve`` on 127.0.0.1, then:

1. ``/hints`` for random customers, open loop: request *i* is due at
   ``t0 + i / rate`` and is sent by one of a fixed pool of threads (one
   keep-alive connection each). Latency is measured from the moment it was due
   (so queueing behind a slow request counts) and from the moment it was sent.
2. ``/targets`` top 500 of the largest branch, sequentially (first call and the
   rest reported apart: the first computes the reasons the service caches).

Bounded: at most ``rate × seconds`` requests (capped at 12,000), loopback only,
10 s timeout per request; the server gets SIGTERM at the end. Writes the
``serving`` section of docs/benchmarks.md.

Run: ``.venv/bin/python -m benchmarks.bench_serving [--home DIR] [--rate 100] [--seconds 60]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from benchmarks.report import write_section

NBP = str(Path(sys.executable).with_name("nbp"))
MAX_REQUESTS = 12_000
TIMEOUT_S = 10.0
TARGETS_TOP = 500


def _run(*args: str, env: dict[str, str]) -> None:
    subprocess.run([NBP, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def build_workspace(home: Path, customers: int, months: int, env: dict[str, str]) -> None:
    """The CLI chain on a simulated bank, ending with the batch scores the service reads."""
    from training.pipeline import scores_path
    from training.pipeline import feature_as_ofs
    from nbp.workspace import Workspace

    home.mkdir(parents=True, exist_ok=True)
    _run("simulate", "--out", str(home / "bank"), "--customers", str(customers), "--months", str(months), env=env)
    _run("ingest", str(home / "bank" / "export"), env=env)
    _run("features", env=env)
    _run("train", env=env)
    last = feature_as_ofs(Workspace(home))[-1]
    _run("score", "--as-of", f"{last:%Y-%m-%d}", "--out", str(scores_path(Workspace(home))), env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, timeout_s: float = 300) -> tuple[subprocess.Popen, float]:
    """``nbp serve`` on 127.0.0.1:port; returns the process and the seconds until /readyz said 200."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([NBP, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"nbp serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    raise RuntimeError(f"nbp serve not ready after {timeout_s:.0f} s")


def load_hints(url: str, token: str, ids: list[str], rate: float, seconds: float, threads: int) -> dict:
    """Open-loop load on /hints (module docstring); returns latencies (ms) and error counts."""
    n = min(int(rate * seconds), MAX_REQUESTS)
    rng = np.random.default_rng(7)
    picks = [ids[i] for i in rng.integers(0, len(ids), n)]
    due_ms = np.full(n, np.nan)
    sent_ms = np.full(n, np.nan)
    statuses: list[int] = [0] * n
    nxt = iter(range(n))
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.5

    def worker() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S) as c:
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                due = t0 + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                sent = time.perf_counter()
                try:
                    statuses[i] = c.post("/hints", json={"customer_id": picks[i]}).status_code
                except httpx.HTTPError:
                    statuses[i] = -1
                end = time.perf_counter()
                due_ms[i], sent_ms[i] = (end - due) * 1e3, (end - sent) * 1e3

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    errors = sum(s != 200 for s in statuses)
    return {"n": n, "wall_s": wall, "due": due_ms, "sent": sent_ms, "errors": errors,
            "error_kinds": sorted({s for s in statuses if s != 200})}


def time_targets(url: str, token: str, branch: str, repeats: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        for i in range(repeats):
            t = time.perf_counter()
            r = c.post("/targets", json={"product": "consumer", "branch_id": branch, "top": TARGETS_TOP,
                                         "campaign_id": f"bench-{i}"})
            out.append((time.perf_counter() - t) * 1e3)
            if r.status_code != 200:
                raise RuntimeError(f"/targets answered {r.status_code}: {r.text[:300]}")
    return out


def sequential_hints(url: str, token: str, ids: list[str], n: int) -> np.ndarray:
    """Latency (ms) of ``n`` /hints requests one after another: the service time without queueing."""
    rng = np.random.default_rng(11)
    out = np.empty(n)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S) as c:
        for k, i in enumerate(rng.integers(0, len(ids), n)):
            t = time.perf_counter()
            if c.post("/hints", json={"customer_id": ids[i]}).status_code != 200:
                raise RuntimeError("/hints failed in the sequential phase")
            out[k] = (time.perf_counter() - t) * 1e3
    return out


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.nanpercentile(a, q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=None, help="trained workspace (default: build one)")
    ap.add_argument("--customers", type=int, default=3_000, help="simulated customers when building")
    ap.add_argument("--months", type=int, default=14)
    ap.add_argument("--rate", type=float, default=100.0, help="/hints requests per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=8, help="client threads (each one connection)")
    ap.add_argument("--targets-repeats", type=int, default=20)
    ap.add_argument("--sequential", type=int, default=300, help="/hints requests sent one at a time")
    args = ap.parse_args(argv)

    token = secrets.token_urlsafe(24)
    tmp = None
    home = args.home
    if home is None:
        tmp = tempfile.TemporaryDirectory(prefix="nbp-bench-serving-")
        home = Path(tmp.name) / "home"
    env = {**os.environ, "NBP_HOME": str(home.resolve()), "NBP_TOKENS": f"{token}:marketing",
           "BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    t_build = None
    if args.home is None:
        t = time.perf_counter()
        build_workspace(home, args.customers, args.months, env)
        t_build = time.perf_counter() - t
    customers = pd.read_parquet(home / "data" / "ingested" / "customers.parquet", columns=["customer_id", "branch_id"])
    ids = customers["customer_id"].astype(str).tolist()
    branch = str(customers["branch_id"].value_counts().index[0])
    load1 = os.getloadavg()[0]

    port = _free_port()
    proc, ready_s = start_server(env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        load_hints(url, token, ids, rate=50, seconds=2, threads=args.threads)  # warm-up, not reported
        targets = time_targets(url, token, branch, args.targets_repeats)
        seq = sequential_hints(url, token, ids, args.sequential)
        res = load_hints(url, token, ids, args.rate, args.seconds, args.threads)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if tmp is not None:
            tmp.cleanup()

    due, sent = res["due"], res["sent"]
    achieved = res["n"] / res["wall_s"]
    tg_rest = np.array(targets[1:]) if len(targets) > 1 else np.array(targets)
    ok = lambda b: "yes" if b else "**no**"  # noqa: E731
    body = "\n".join([
        "## Serving (`nbp serve`, BentoML, one worker per core)",
        "",
        f"Workspace: {len(ids):,} customers, {customers['branch_id'].nunique()} branches"
        + (f" (built in {t_build:.0f} s)" if t_build else "") + f"; server ready in {ready_s:.1f} s. "
        f"Load average before the run: {load1:.1f} (machine shared with other jobs).",
        "",
        "| what | requests | p50 ms | p99 ms | max ms | errors | target | met |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        f"| /hints, {args.rate:.0f}/s for {args.seconds:.0f} s (from due time) | {res['n']:,} | {_pct(due, 50):.1f} | "
        f"{_pct(due, 99):.1f} | {np.nanmax(due):.0f} | {res['errors']} | p50 ≤ 5, p99 ≤ 15, no errors | "
        f"{ok(_pct(due, 50) <= 5 and _pct(due, 99) <= 15 and res['errors'] == 0)} |",
        f"| /hints one at a time | {len(seq)} | {_pct(seq, 50):.1f} | {_pct(seq, 99):.1f} | {seq.max():.0f} | 0 "
        f"| p50 ≤ 5, p99 ≤ 15 | {ok(_pct(seq, 50) <= 5 and _pct(seq, 99) <= 15)} |",
        f"| /hints at {args.rate:.0f}/s (from send) | {res['n']:,} | {_pct(sent, 50):.1f} | {_pct(sent, 99):.1f} "
        f"| {np.nanmax(sent):.0f} | | | |",
        f"| /targets top {TARGETS_TOP} of branch {branch}, first call | 1 | {targets[0]:.0f} | | | 0 | | |",
        f"| /targets top {TARGETS_TOP}, later calls | {len(tg_rest)} | {_pct(tg_rest, 50):.0f} | {_pct(tg_rest, 99):.0f} "
        f"| {tg_rest.max():.0f} | 0 | p99 ≤ 300 | {ok(_pct(tg_rest, 99) <= 300)} |",
        "",
        f"The service answered {achieved:.1f} /hints per second at most with {args.threads} client threads, so at "
        f"{args.rate:.0f}/s requests queue and the open-loop latency (from the due time) grows with the run"
        + (f"; error statuses {res['error_kinds']}" if res["errors"] else "") + ".",
    ])
    cmd = "python -m benchmarks.bench_serving " + " ".join(argv if argv is not None else sys.argv[1:])
    write_section("serving", body, cmd.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
