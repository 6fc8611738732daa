"""Benchmark of the service: ``/hints`` under a steady 100 requests/s, ``/targets`` top 500 of a branch.

Uses a trained workspace (``--home``; default: build one in a temporary folder
with the CLI chain ``nbp simulate → ingest → features → train → score``), starts
``nbp serve`` on 127.0.0.1, waits until its start-up work is done (the server's
processes idle), then:

1. ``/hints`` for random customers, **open loop**: request *i* is due at
   ``t0 + i / rate`` and is written at that moment on an idle keep-alive
   connection (a new one is opened when all are busy, up to ``--connections``),
   whether or not earlier answers came back. Latency is measured from the due
   time, so a late client or a queue in the server both count. The client is one
   asyncio loop writing prepared HTTP/1.1 requests (no HTTP library per request); it
   sleeps until about a millisecond before a due time (the event loop's timers are
   millisecond-coarse) and yields to the answers in flight for the rest (about half
   a millisecond of CPU per request spent on punctuality). It shares the machine's
   cores with the server, and both figures are reported (CPU seconds of the server's process tree per
   request, from ``/proc``; the client's own ``process_time``).
2. ``/hints`` one at a time (the service time without queueing), and the same
   endpoint refused with a wrong token (401): the ASGI server, the gate, auth and audit
   without the recommender, i.e. the floor of the framework on this machine.
3. ``/targets`` top 500 of the largest branch, sequentially (first call and the
   rest reported apart: the first computes the reasons the service caches).
4. Heavy lists against hints (``--mixed-seconds``, after phase 1 on the same
   server): ``/hints`` open loop at ``--rate`` again while ``/targets`` top 500
   arrive at ``--targets-rate`` (2/s), open loop too, each on a connection of its
   own, for the largest branch and the whole bank in turn, each with a new
   campaign (a new control draw). Target: ``/hints`` p99 ≤ 20 ms and no errors;
   the report sets the p99 beside phase 1's (the same load without lists).
5. A federation (``--federation-sizes``, default two banks of 3,000 customers; empty to
   skip): the CLI chain on ``nbp simulate --federation``, every member bank served by one
   ``nbp serve`` with a marketing token per bank; ``/hints`` one at a time for each bank
   and open loop at ``--rate`` alternating the banks, beside the single-bank figures of
   the same run, and the server's resident memory in both.
6. After the server stopped: the in-process cost of ``Recommender.hints`` and of
   the online read (the columnar SQLite path and, for comparison, Feast's
   ``get_online_features``), per call, wall and CPU; and the contact policy at
   scale (``policy_at_scale``: 200,000 synthetic candidates, 500,000 contacts).

With ``--baseline DIR`` (an older checkout, e.g. ``git archive <commit> | tar -x -C
DIR``) the HTTP phases and the in-process ``Recommender.hints`` run first against
that code (``PYTHONPATH=DIR``), on the same workspace, and the comparison is printed (for a
commit message or a decision record; the datasheet holds the current code's figures); then
``--ab-rounds`` rounds run phase 4 (with phase 1 beside it) against both codes in
turn, a fresh server each, so that both see the same drift of a shared machine's load.

Bounded: at most ``rate × seconds`` requests (capped at 12,000), loopback only,
10 s timeout per request; the server gets SIGTERM at the end. Writes the
``serving`` section of docs/benchmarks.md, with the load average (the machine is
shared, so figures are noisy; the CPU per request is the steadier one); ``--no-write``
prints it instead.

Run: ``.venv/bin/python -m benchmarks.bench_serving [--home DIR] [--rate 100] [--seconds 60] [--mixed-seconds 40]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from benchmarks.report import NBP, write_section

MAX_REQUESTS = 12_000
TIMEOUT_S = 10.0
TARGETS_TOP = 500
SPIN_S = 0.0012  # the open-loop client's last stretch before a due time, spent yielding instead of sleeping


def _run(*args: str, env: dict[str, str]) -> None:
    subprocess.run([NBP, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def build_workspace(home: Path, customers: int, months: int, env: dict[str, str], crown: bool) -> None:
    """The CLI chain on a simulated bank, ending with the batch scores the service reads."""
    from nbp.workspace import Workspace
    from training.pipeline import feature_as_ofs

    home.mkdir(parents=True, exist_ok=True)
    _run("simulate", "--out", str(home / "bank"), "--customers", str(customers), "--months", str(months), env=env)
    _run("ingest", str(home / "bank" / "export"), env=env)
    _run("features", env=env)
    _run("train", env=env)
    champions(home, crown_latest=crown)  # a small bank's models rarely pass the gate
    ws = Workspace(home)
    last = feature_as_ofs(ws)[-1]
    _run("score", "--as-of", f"{last:%Y-%m-%d}", "--out", str(ws.latest_scores), env=env)


def champions(home: Path, crown_latest: bool, bank: str | None = None) -> tuple[list[str], list[str]]:
    """Products with a champion in the workspace's registry; with ``crown_latest``, a product
    without one gets its latest version as champion first (this benchmark measures the cost of
    serving every product, not whether a model passed the quality gate).

    Returns:
        (products served, products crowned here).
    """
    from nbp.config import load_config
    from nbp.workspace import Workspace
    from training.registry import _connect, model_name

    client = _connect(Workspace(home))
    served, crowned = [], []
    for product in load_config().products:
        name = model_name(product, bank)
        try:
            client.get_model_version_by_alias(name, "champion")
            served.append(product)
            continue
        except Exception:  # noqa: BLE001 - mlflow raises its own RestException
            pass
        versions = client.search_model_versions(f"name='{name}'") if crown_latest else []
        if versions:
            latest = max(int(v.version) for v in versions)
            client.set_registered_model_alias(name, "champion", str(latest))
            served.append(product)
            crowned.append(product)
    return served, crowned


def build_federation(home: Path, sizes: str, env: dict[str, str]) -> list[str]:
    """The CLI chain on a simulated federation (one member bank per size), then per bank what
    :func:`build_workspace` does: a product without a champion gets its latest version (if training
    fitted one), and the batch scores; returns the bank codes."""
    from nbp.workspace import Workspace
    from training.pipeline import feature_as_ofs

    k = len(sizes.split(","))
    _run("simulate", "--federation", str(k), "--sizes", sizes, "--seed", "5", "--out", str(home / "export"), env=env)
    codes = sorted(p.name for p in (home / "export").iterdir() if (p / "export").is_dir())
    for code in codes:
        _run("ingest", str(home / "export" / code / "export"), env=env)
    _run("features", env=env)
    _run("train", env=env)
    for code in codes:
        bank = Workspace(home).for_bank(code)
        champions(home, crown_latest=True, bank=code)
        last = feature_as_ofs(bank)[-1]
        _run("score", "--bank", code, "--as-of", f"{last:%Y-%m-%d}", "--out", str(bank.latest_scores), env=env)
    return codes


# ------------------------------------------------------------------------------ the client
class Conn:
    """One keep-alive HTTP/1.1 connection sending prepared requests (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = False  # answered a request before (so the server may have closed it since)

    @classmethod
    async def open(cls, port: int) -> Conn:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def send(self, raw: bytes) -> int:
        """Write one request and read the whole answer; returns the HTTP status."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def _post(port: int, token: str, path: str, payload: dict) -> bytes:
    """A raw ``POST`` of ``payload`` as JSON, with the token, as the load loops send it."""
    body = json.dumps(payload).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def hints_request(port: int, token: str, customer_id: str) -> bytes:
    return _post(port, token, "/hints", {"customer_id": customer_id})


async def _open_loop(port: int, requests: list[bytes], rate: float, max_conns: int) -> dict:
    loop = asyncio.get_running_loop()
    n = len(requests)
    due_ms, sent_ms, lag_ms = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    statuses = np.zeros(n, dtype=int)
    idle: deque[Conn] = deque([await Conn.open(port) for _ in range(min(8, max_conns))])  # FIFO: none idles long
    opened, most, retried = len(idle), len(idle), 0
    kinds: Counter[str] = Counter()
    free = asyncio.Condition()

    async def acquire() -> Conn:
        nonlocal opened, most
        async with free:
            while not idle and opened >= max_conns:
                await free.wait()
            if idle:
                return idle.popleft()
            opened += 1
            most = max(most, opened)
        return await Conn.open(port)

    async def one(i: int, due: float) -> None:
        nonlocal opened, retried
        conn: Conn | None = None
        try:
            conn = await acquire()
            sent = loop.time()
            try:
                statuses[i] = await asyncio.wait_for(conn.send(requests[i]), TIMEOUT_S)
            except (asyncio.IncompleteReadError, ConnectionError):
                if not conn.used:
                    raise
                # the server closed an idle keep-alive connection: retry once on a new one, as HTTP clients do
                conn.close()
                retried += 1
                conn = await Conn.open(port)
                statuses[i] = await asyncio.wait_for(conn.send(requests[i]), TIMEOUT_S)
            end = loop.time()
            conn.used = True
            due_ms[i], sent_ms[i], lag_ms[i] = (end - due) * 1e3, (end - sent) * 1e3, (sent - due) * 1e3
            async with free:
                idle.append(conn)
                free.notify()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            statuses[i] = -1
            kinds[type(e).__name__] += 1
            if conn is not None:
                conn.close()
            async with free:
                opened -= 1
                free.notify()

    t0 = loop.time() + 0.2
    tasks = []
    for i in range(n):
        due = t0 + i / rate
        wait = due - loop.time()
        if wait > SPIN_S:  # the selector counts whole milliseconds and wakes up to 1 ms late: wake early...
            await asyncio.sleep(wait - SPIN_S)
        while loop.time() < due:  # ...and yield to the answers in flight until due (never write early)
            await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    wall = loop.time() - t0
    for c in idle:
        c.close()
    kinds.update(str(int(s)) for s in statuses if s > 0 and s != 200)
    return {
        "n": n,
        "wall_s": wall,
        "due": due_ms,
        "sent": sent_ms,
        "lag": lag_ms,
        "errors": int((statuses != 200).sum()),
        "error_kinds": dict(kinds),
        "connections": most,
        "retried": retried,
    }


def targets_request(port: int, token: str, branch: str | None, campaign: str) -> bytes:
    payload = {"product": "consumer", "top": TARGETS_TOP, "campaign_id": campaign}
    if branch is not None:
        payload["branch_id"] = branch
    return _post(port, token, "/targets", payload)


async def _targets_stream(port: int, requests: list[bytes], rate: float, t0: float) -> dict:
    """``/targets`` requests due at ``t0 + i / rate``, each on a connection of its own, whatever the
    earlier ones do (open loop); latency from the due time."""
    loop = asyncio.get_running_loop()
    lat = np.full(len(requests), np.nan)
    statuses = np.zeros(len(requests), dtype=int)

    async def one(i: int, due: float) -> None:
        try:
            conn = await Conn.open(port)
            try:
                statuses[i] = await asyncio.wait_for(conn.send(requests[i]), TIMEOUT_S * 3)
            finally:
                conn.close()
            lat[i] = (loop.time() - due) * 1e3
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            statuses[i] = -1

    tasks = []
    for i in range(len(requests)):
        due = t0 + i / rate
        await asyncio.sleep(max(due - loop.time(), 0.0))
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    return {"lat": lat, "errors": int((statuses != 200).sum())}


def load_mixed(
    port: int, token: str, ids: list[str], branch: str, rate: float, targets_rate: float, seconds: float, max_conns: int
) -> tuple[dict, dict]:
    """The open-loop ``/hints`` load while ``/targets`` top 500 arrive at ``targets_rate`` per second, in
    turn for the largest branch and for the whole bank, each with a campaign of its own (a new control
    draw). Returns the hints' results (as :func:`load_hints`) and the lists' latencies and errors."""
    n = min(int(rate * seconds), MAX_REQUESTS)
    rng = np.random.default_rng(17)
    hints = [hints_request(port, token, ids[i]) for i in rng.integers(0, len(ids), n)]
    lists = [
        targets_request(port, token, branch if i % 2 == 0 else None, f"mixed-{i}")
        for i in range(int(targets_rate * n / rate))
    ]

    async def both() -> tuple[dict, dict]:
        t0 = asyncio.get_running_loop().time() + 0.2  # the hints' own start (see _open_loop)
        return await asyncio.gather(
            _open_loop(port, hints, rate, max_conns),
            _targets_stream(port, lists, targets_rate, t0 + 0.5 / targets_rate),
        )

    c0 = time.process_time()
    h, t = asyncio.run(both())
    h["client_cpu_ms"] = (time.process_time() - c0) / n * 1e3
    return h, t


def load_hints(port: int, token: str, ids: list[str], rate: float, seconds: float, max_conns: int) -> dict:
    """Open-loop load on /hints (module docstring); latencies in ms, error counts, client CPU per request."""
    return load_banks(port, {"": token}, {"": ids}, rate, seconds, max_conns)


def load_banks(
    port: int, tokens: dict[str, str], ids: dict[str, list[str]], rate: float, seconds: float, max_conns: int
) -> dict:
    """:func:`load_hints` with the banks of a federation in turn, each request with its bank's token."""
    n = min(int(rate * seconds), MAX_REQUESTS)
    rng = np.random.default_rng(7)
    banks = list(tokens)
    requests = []
    for k in range(n):
        b = banks[k % len(banks)]
        requests.append(hints_request(port, tokens[b], ids[b][rng.integers(0, len(ids[b]))]))
    c0 = time.process_time()
    out = asyncio.run(_open_loop(port, requests, rate, max_conns))
    out["client_cpu_ms"] = (time.process_time() - c0) / n * 1e3
    return out


async def _sequential(port: int, requests: list[bytes]) -> tuple[np.ndarray, list[int]]:
    conn = await Conn.open(port)
    out, statuses = np.empty(len(requests)), []
    for k, raw in enumerate(requests):
        t = time.perf_counter()
        statuses.append(await conn.send(raw))
        out[k] = (time.perf_counter() - t) * 1e3
    conn.close()
    return out, statuses


def sequential(port: int, token: str, ids: list[str], n: int, expect: int) -> np.ndarray:
    """Latency (ms) of ``n`` /hints requests one after another: the service time without queueing."""
    rng = np.random.default_rng(11)
    lat, statuses = asyncio.run(
        _sequential(port, [hints_request(port, token, ids[i]) for i in rng.integers(0, len(ids), n)])
    )
    if any(s != expect for s in statuses):
        raise RuntimeError(f"/hints answered {sorted(set(statuses))} in the sequential phase, expected {expect}")
    return lat


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                for kid in f.read().split():
                    out += _tree(int(kid))
    except OSError:
        pass
    return out


def rss_mb(pids: list[int]) -> float:
    """Resident memory of processes, MiB (Linux ``/proc/PID/status``; shared pages counted in each)."""
    tot = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                tot += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return tot / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes (Linux ``/proc/PID/stat``)."""
    tot = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return tot / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, timeout_s: float = 300) -> tuple[subprocess.Popen, float]:
    """``nbp serve`` on 127.0.0.1:port; returns the process and the seconds until /readyz said 200."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [NBP, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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


def time_targets(url: str, token: str, branch: str, repeats: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        for i in range(repeats):
            t = time.perf_counter()
            r = c.post(
                "/targets",
                json={"product": "consumer", "branch_id": branch, "top": TARGETS_TOP, "campaign_id": f"bench-{i}"},
            )
            out.append((time.perf_counter() - t) * 1e3)
            if r.status_code != 200:
                raise RuntimeError(f"/targets answered {r.status_code}: {r.text[:300]}")
    return out


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.nanpercentile(a, q))


def _timed(f: Callable[[Any], Any], args: list) -> tuple[np.ndarray, float]:
    """Wall ms of ``f(a)`` for each ``a``, and the mean CPU ms per call."""
    out = np.empty(len(args))
    c0 = time.process_time()
    for k, a in enumerate(args):
        t = time.perf_counter()
        f(a)
        out[k] = (time.perf_counter() - t) * 1e3
    return out, (time.process_time() - c0) / len(args) * 1e3


def in_process(home: Path, ids: list[str], n: int) -> dict[str, tuple[np.ndarray, float]]:
    """Per-call cost of the recommender and of the online read, in this process (no HTTP)."""
    from features.store import online_reader, online_via_feast
    from nbp import telemetry
    from nbp.config import load_config
    from nbp.workspace import Workspace
    from serving.engine import Recommender

    telemetry.disable()
    cfg, ws = load_config(), Workspace(home)
    rec = Recommender.load(cfg, ws)
    service = next(st.service for st in rec.products.values() if st.ready)
    reader = online_reader(cfg, ws, service)
    rng = np.random.default_rng(13)
    picks = [ids[i] for i in rng.integers(0, len(ids), n)]
    for c in picks[:50]:  # warm caches
        rec.hints(c)
        online_via_feast(cfg, ws, [c], service)
    return {
        "Recommender.hints": _timed(rec.hints, picks),
        f"online read, columnar SQLite ({service})": _timed(lambda c: reader.read([c]), picks),
        f"online read, Feast get_online_features ({service})": _timed(
            lambda c: online_via_feast(cfg, ws, [c], service), picks[: max(n // 5, 50)]
        ),
    }


def policy_at_scale(candidates: int = 200_000, contacts: int = 500_000, repeats: int = 10) -> dict[str, float]:
    """The contact policy on a synthetic bank far larger than the workspace (40 branches, 800
    managers of capacity 30, 30 campaigns in the contacts): seconds to prepare it once
    (``TargetPolicy``), and ms per top-500 list of the whole bank, of a branch and of a
    manager, each with a new campaign."""
    from datetime import date

    from nbp.config import load_config
    from serving.policy import TargetPolicy

    cfg = load_config()
    rng = np.random.default_rng(1)
    ids = np.array([f"C{i:09d}" for i in range(candidates)], dtype=object)
    cands = pd.DataFrame(
        {
            "customer_id": ids,
            "branch_id": rng.choice([f"B{i:03d}" for i in range(40)], candidates),
            "manager_id": rng.choice([f"M{i:04d}" for i in range(800)], candidates),
            "product": "consumer",
            "propensity": rng.random(candidates),
        }
    )
    hist = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, contacts),
            "product": rng.choice(["consumer", "tax_linked"], contacts),
            "contact_date": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 300, contacts), "D"),
            "campaign_id": rng.choice([f"c{i}" for i in range(30)], contacts),
        }
    )
    managers = pd.DataFrame(
        {"manager_id": [f"M{i:04d}" for i in range(800)], "branch_id": "B", "capacity_per_month": 30}
    )
    t = time.perf_counter()
    policy = TargetPolicy(cands, hist, set(ids[:1000]), managers, cfg, list_date=date(2026, 10, 1))
    out = {"prepare_s": time.perf_counter() - t}
    for name, scope in (("whole bank", (None, None)), ("a branch", ("B001", None)), ("a manager", (None, "M0001"))):
        t = time.perf_counter()
        for i in range(repeats):
            policy.draw(f"c{i}", TARGETS_TOP, policy.rows(*scope))
        out[name] = (time.perf_counter() - t) / repeats * 1e3
    return out


def settle(pids: list[int], limit_s: float = 90.0) -> float:
    """Wait until the server's processes use under 10 % of a core (start-up work such as
    warming the reasons cache is done); returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        c0 = cpu_seconds(pids)
        time.sleep(1.0)
        if cpu_seconds(pids) - c0 < 0.1:
            break
    return time.perf_counter() - t0


def measure_server(
    env: dict[str, str], token: str, ids: list[str], branch: str, args: argparse.Namespace, seconds: float
) -> dict:
    """Start ``nbp serve`` with ``env``, run the HTTP phases (module docstring), stop it."""
    port = _free_port()
    proc, ready_s = start_server(env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        pids = _tree(proc.pid)
        settle(pids)
        rss = rss_mb(_tree(proc.pid))
        load_hints(port, token, ids, rate=50, seconds=4, max_conns=args.connections)  # warm-up, not reported
        targets = time_targets(url, token, branch, args.targets_repeats)
        cpu0 = cpu_seconds(pids)
        refused = sequential(port, "wrong-" + token, ids, args.sequential, expect=401)
        cpu1 = cpu_seconds(pids)
        seq = sequential(port, token, ids, args.sequential, expect=200)
        seq_cpu = (cpu_seconds(pids) - cpu1) / len(seq) * 1e3
        refused_cpu = (cpu1 - cpu0) / len(refused) * 1e3
        time.sleep(2)
        load_before = os.getloadavg()
        cpu0 = cpu_seconds(pids)
        res = load_hints(port, token, ids, args.rate, seconds, args.connections)
        server_cpu_ms = (cpu_seconds(pids) - cpu0) / res["n"] * 1e3
        load_after = os.getloadavg()
        mixed = None
        if args.mixed_seconds > 0:
            time.sleep(2)
            mixed = load_mixed(
                port, token, ids, branch, args.rate, args.targets_rate, args.mixed_seconds, args.connections
            )
    finally:
        stop_server(proc)
    return {
        "ready_s": ready_s,
        "targets": targets,
        "refused": refused,
        "seq": seq,
        "res": res,
        "server_cpu_ms": server_cpu_ms,
        "load_before": load_before,
        "load_after": load_after,
        "seq_cpu_ms": seq_cpu,
        "refused_cpu_ms": refused_cpu,
        "mixed": mixed,
        "mixed_load": os.getloadavg(),
        "rss_mb": rss,
    }


def measure_federation(args: argparse.Namespace, home: Path, token: str) -> dict:
    """Phase 5 (module docstring): one server for every member bank of a simulated federation."""
    from nbp.workspace import Workspace

    env = server_env(home, token)
    t = time.perf_counter()
    codes = build_federation(home, args.federation_sizes, env)
    t_build = time.perf_counter() - t
    tokens = {c: f"{token}b{i}" for i, c in enumerate(codes)}
    env["NBP_TOKENS"] = ",".join(f"{tok}:marketing:{c}" for c, tok in tokens.items())
    ids = {
        c: pd.read_parquet(Workspace(home).for_bank(c).table("customers"), columns=["customer_id"])["customer_id"]
        .astype(str)
        .tolist()
        for c in codes
    }
    port = _free_port()
    proc, ready_s = start_server(env, port)
    try:
        pids = _tree(proc.pid)
        settle(pids)
        rss = rss_mb(_tree(proc.pid))
        load_banks(port, tokens, ids, rate=50, seconds=4, max_conns=args.connections)  # warm-up, not reported
        seq = {c: sequential(port, tokens[c], ids[c], args.sequential, expect=200) for c in codes}
        time.sleep(2)
        load = os.getloadavg()
        res = load_banks(port, tokens, ids, args.rate, args.federation_seconds, args.connections)
    finally:
        stop_server(proc)
    sizes = {c: len(v) for c, v in ids.items()}
    return {"t_build": t_build, "ready_s": ready_s, "rss_mb": rss, "seq": seq, "res": res, "sizes": sizes, "load": load}


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server (BentoML stops its workers), SIGKILL it after a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def ab_rounds(
    env_base: dict[str, str], env_now: dict[str, str], token: str, ids: list[str], branch: str, args: argparse.Namespace
) -> list[dict]:
    """Lists against hints, baseline and current code in turn (``--ab-rounds``): in each round, each
    code gets a fresh server, ``/hints`` alone and then with ``/targets`` arriving, ``--ab-seconds``
    each; the code that goes first alternates between rounds. On a shared machine the load drifts
    over minutes: interleaving exposes both codes to the same drift, where one run after the other
    does not."""
    out = []
    for r in range(args.ab_rounds):
        order = [("baseline", env_base), ("now", env_now)]
        for label, env in order if r % 2 == 0 else order[::-1]:
            port = _free_port()
            proc, _ = start_server(env, port)
            try:
                settle(_tree(proc.pid))
                load_hints(port, token, ids, rate=50, seconds=4, max_conns=args.connections)  # warm-up
                alone = load_hints(port, token, ids, args.rate, args.ab_seconds, args.connections)
                h, t = load_mixed(
                    port, token, ids, branch, args.rate, args.targets_rate, args.ab_seconds, args.connections
                )
            finally:
                stop_server(proc)
            out.append(
                {
                    "round": r + 1,
                    "code": label,
                    "alone": _pct(alone["due"], 99),
                    "mixed": _pct(h["due"], 99),
                    "lists50": _pct(t["lat"], 50),
                    "lists99": _pct(t["lat"], 99),
                    "errors": alone["errors"] + h["errors"] + t["errors"],
                    "load": os.getloadavg()[0],
                }
            )
    return out


def _ab_lines(rounds: list[dict], args: argparse.Namespace) -> list[str]:
    if not rounds:
        return []
    lines = [
        "",
        f"Lists against hints, baseline (`{args.baseline.name}`) and current code in turn ({args.ab_rounds} "
        f"rounds, {args.ab_seconds:.0f} s of /hints at {args.rate:.0f}/s alone, then as long with /targets top "
        f"{TARGETS_TOP} at {args.targets_rate:g}/s; a fresh server each time; who goes first alternates):",
        "",
        "| round | code | /hints p99 alone | /hints p99 with lists | ratio | /targets p50 | /targets p99 | errors "
        "| load average after |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {x['round']} | {x['code']} | {x['alone']:.1f} | {x['mixed']:.1f} | {x['mixed'] / x['alone']:.2f} | "
        f"{x['lists50']:.0f} | {x['lists99']:.0f} | {x['errors']} | {x['load']:.1f} |"
        for x in rounds
    ]
    for code in ("baseline", "now"):
        mine = [x for x in rounds if x["code"] == code]
        lines.append(
            f"| median | {code} | {np.median([x['alone'] for x in mine]):.1f} | "
            f"{np.median([x['mixed'] for x in mine]):.1f} | "
            f"{np.median([x['mixed'] / x['alone'] for x in mine]):.2f} | "
            f"{np.median([x['lists50'] for x in mine]):.0f} | {np.median([x['lists99'] for x in mine]):.0f} | "
            f"{sum(x['errors'] for x in mine)} | |"
        )
    return lines


_ELSEWHERE = """
import json, sys, time
import numpy as np
from pathlib import Path
from nbp import telemetry
from nbp.config import load_config
from nbp.workspace import Workspace
from serving.engine import Recommender
telemetry.disable()
rec = Recommender.load(load_config(), Workspace(Path(sys.argv[1])))
ids = json.loads(sys.argv[2])
for c in ids[:30]:
    rec.hints(c)
w = []
c0 = time.process_time()
for c in ids:
    t = time.perf_counter()
    rec.hints(c)
    w.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"wall": w, "cpu": (time.process_time() - c0) / len(ids) * 1e3}))
"""


def in_process_elsewhere(code: Path, home: Path, ids: list[str], n: int) -> tuple[np.ndarray, float]:
    """``Recommender.hints`` per call (wall ms, CPU ms) with the code in another folder, in a child process."""
    rng = np.random.default_rng(13)
    picks = [ids[i] for i in rng.integers(0, len(ids), n)]
    env = {**os.environ, "PYTHONPATH": str(code.resolve()), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _ELSEWHERE, str(home), json.dumps(picks)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=str(code),
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    return np.array(got["wall"]), float(got["cpu"])


def _mixed_rows(m: dict, args: argparse.Namespace) -> list[str]:
    """The rows of the run with /targets arriving during the /hints load (empty when skipped)."""
    if m.get("mixed") is None:
        return []
    h, t = m["mixed"]
    d = h["due"]
    met = _pct(d, 99) <= 20 and h["errors"] == 0 and t["errors"] == 0
    return [
        f"| /hints, {args.rate:.0f}/s open loop for {args.mixed_seconds:.0f} s **while /targets top {TARGETS_TOP} "
        f"arrive at {args.targets_rate:g}/s** (from due time) | {h['n']:,} | {_pct(d, 50):.1f} | {_pct(d, 99):.1f} | "
        f"{np.nanmax(d):.0f} | {h['errors']} | p99 ≤ 20, no errors | {ok(met)} |",
        f"| /targets top {TARGETS_TOP} in that run (largest branch and whole bank in turn, a new campaign each, "
        f"from due time) | {len(t['lat'])} | {_pct(t['lat'], 50):.0f} | {_pct(t['lat'], 99):.0f} | "
        f"{np.nanmax(t['lat']):.0f} | {t['errors']} | | |",
    ]


def ok(b: bool) -> str:
    return "yes" if b else "**no**"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=None, help="trained workspace (default: build one)")
    ap.add_argument("--customers", type=int, default=3_000, help="simulated customers when building")
    ap.add_argument("--months", type=int, default=14)
    ap.add_argument("--rate", type=float, default=100.0, help="/hints requests per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=64, help="most client connections open at once")
    ap.add_argument(
        "--keep-gate",
        action="store_true",
        help="serve only the products whose model passed the champion gate (default: a product "
        "without a champion gets its latest version as champion, so every product is served)",
    )
    ap.add_argument("--targets-repeats", type=int, default=20)
    ap.add_argument(
        "--mixed-seconds",
        type=float,
        default=40.0,
        help="length of the run of /hints at --rate with /targets top 500 arriving at --targets-rate (0: skip it)",
    )
    ap.add_argument("--targets-rate", type=float, default=2.0, help="/targets requests per second in that run")
    ap.add_argument(
        "--ab-rounds",
        type=int,
        default=3,
        help="with --baseline: rounds of /hints alone and with /targets, baseline and current code in turn (0: skip)",
    )
    ap.add_argument("--ab-seconds", type=float, default=30.0, help="length of each load in those rounds")
    ap.add_argument("--sequential", type=int, default=500, help="/hints requests sent one at a time")
    ap.add_argument(
        "--federation-sizes",
        default="3000,3000",
        help="customers of each member bank of the federation phase (comma-separated; empty: skip it)",
    )
    ap.add_argument("--federation-seconds", type=float, default=30.0, help="open-loop run on the federation")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="folder with an older checkout (e.g. `git archive <commit> | tar -x -C DIR`): "
        "run the same HTTP phases against it first; the comparison is printed, not written to the datasheet",
    )
    ap.add_argument(
        "--baseline-seconds",
        type=float,
        default=None,
        help="length of the baseline's open-loop run (default --seconds; a slow baseline queues)",
    )
    ap.add_argument(
        "--no-write",
        action="store_true",
        help="print the section instead of writing it to docs/benchmarks.md (development runs)",
    )
    return ap.parse_args(argv)


def server_env(home: Path, token: str) -> dict[str, str]:
    """The environment of every ``nbp`` child: the workspace, one marketing token, telemetry off."""
    return {
        **os.environ,
        "NBP_HOME": str(home.resolve()),
        "NBP_TOKENS": f"{token}:marketing",
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def measure(args: argparse.Namespace, home: Path, token: str, built: bool) -> dict:
    """Every phase (module docstring) on a workspace: the baseline's first when asked, then the
    current code's HTTP phases, the A/B rounds, the in-process costs and the policy at scale."""
    from nbp.workspace import Workspace

    env = server_env(home, token)
    t_build = None
    if built:
        t = time.perf_counter()
        build_workspace(home, args.customers, args.months, env, crown=not args.keep_gate)
        t_build = time.perf_counter() - t
    served, crowned = champions(home, crown_latest=not args.keep_gate)
    customers = pd.read_parquet(Workspace(home).table("customers"), columns=["customer_id", "branch_id"])
    ids = customers["customer_id"].astype(str).tolist()
    branch = str(customers["branch_id"].value_counts().index[0])
    base, rounds = None, []
    if args.baseline is not None:  # the same phases against the code in another folder, first
        env_base = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        base = measure_server(env_base, token, ids, branch, args, args.baseline_seconds or args.seconds)
        base["inproc"] = in_process_elsewhere(args.baseline, home, ids, 300)
    m = measure_server(env, token, ids, branch, args, args.seconds)
    if args.baseline is not None and args.ab_rounds > 0:
        rounds = ab_rounds(env_base, env, token, ids, branch, args)
    fed = None
    if args.federation_sizes:
        with tempfile.TemporaryDirectory(prefix="nbp-bench-federation-") as tmp:
            fed = measure_federation(args, Path(tmp) / "home", token)
    return {
        **m,
        "t_build": t_build,
        "served": served,
        "crowned": crowned,
        "customers": len(ids),
        "branches": customers["branch_id"].nunique(),
        "branch": branch,
        "inproc": in_process(home, ids, 1000),
        "scale": policy_at_scale(),
        "base": base,
        "rounds": rounds,
        "fed": fed,
    }


def _workspace_line(m: dict) -> str:
    lb, la = m["load_before"], m["load_after"]
    crowned = m["crowned"]
    return (
        f"Workspace: {m['customers']:,} customers, {m['branches']} branches"
        + (f" (built in {m['t_build']:.0f} s)" if m["t_build"] else "")
        + f"; server ready in {m['ready_s']:.1f} s. Products served: {', '.join(m['served']) or 'none'}"
        + (
            f" ({', '.join(crowned)}: latest version made champion for this benchmark, see --keep-gate)"
            if crowned
            else ""
        )
        + f". Load average (1/5/15 min) {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} before the 100/s run and "
        f"{la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} after it, on {os.cpu_count()} cores shared with other jobs: "
        "latencies are noisy, CPU per request less so."
    )


def _http_rows(m: dict, args: argparse.Namespace) -> list[str]:
    """The table of the HTTP phases against the current code."""
    res, seq, refused, targets = m["res"], m["seq"], m["refused"], m["targets"]
    due, sent = res["due"], res["sent"]
    tg_rest = np.array(targets[1:]) if len(targets) > 1 else np.array(targets)
    met = _pct(due, 50) <= 5 and _pct(due, 99) <= 15 and res["errors"] == 0
    return [
        "| what | requests | p50 ms | p99 ms | max ms | errors | target | met |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        f"| /hints, {args.rate:.0f}/s open loop for {args.seconds:.0f} s (from due time) | {res['n']:,} | "
        f"{_pct(due, 50):.1f} | {_pct(due, 99):.1f} | {np.nanmax(due):.0f} | {res['errors']} | "
        f"p50 ≤ 5, p99 ≤ 15, no errors | {ok(met)} |",
        f"| same run, from the moment the request was written | {res['n']:,} | {_pct(sent, 50):.1f} | "
        f"{_pct(sent, 99):.1f} | {np.nanmax(sent):.0f} | | | |",
        f"| /hints one at a time | {len(seq)} | {_pct(seq, 50):.1f} | {_pct(seq, 99):.1f} | {seq.max():.0f} | 0 | | |",
        f"| /hints with a wrong token (401: ASGI server + gate + auth + audit, no recommender) | {len(refused)} | "
        f"{_pct(refused, 50):.1f} | {_pct(refused, 99):.1f} | {refused.max():.0f} | | | |",
        f"| /targets top {TARGETS_TOP} of branch {m['branch']}, first call | 1 | {targets[0]:.0f} | | | 0 | | |",
        f"| /targets top {TARGETS_TOP}, later calls | {len(tg_rest)} | {_pct(tg_rest, 50):.0f} | "
        f"{_pct(tg_rest, 99):.0f} | {tg_rest.max():.0f} | 0 | p99 ≤ 300 | {ok(_pct(tg_rest, 99) <= 300)} |",
        *_mixed_rows(m, args),
    ]


def _cpu_lines(m: dict, args: argparse.Namespace) -> list[str]:
    """Server and client CPU per request, the client's punctuality, and the mixed run beside the plain one."""
    res, due = m["res"], m["res"]["due"]
    lines = [
        f"Server CPU per request (all its processes, from /proc): {m['seq_cpu_ms']:.2f} ms per /hints one at a "
        f"time, {m['refused_cpu_ms']:.2f} ms per refused request (the framework's share). "
        f"During the {args.rate:.0f}/s run: the server's processes used {m['server_cpu_ms']:.2f} ms per /hints "
        f"request, the load generator {res['client_cpu_ms']:.2f} ms (one asyncio loop, "
        f"{res['connections']} keep-alive connections opened at most). The client wrote requests "
        f"{_pct(res['lag'], 50):.2f} ms (p50) and {_pct(res['lag'], 99):.1f} ms (p99) after their due time; "
        f"achieved rate {res['n'] / res['wall_s']:.1f}/s; {res['retried']} request(s) retried on a new connection "
        "after the server had closed an idle one"
        + (f"; error statuses {res['error_kinds']}" if res["errors"] else "")
        + ".",
        "",
    ]
    if m.get("mixed") is not None:
        mixed99 = _pct(m["mixed"][0]["due"], 99)
        lines += [
            f"With /targets arriving, /hints p99 was {mixed99 / _pct(due, 99):.2f} × its p99 alone ({mixed99:.1f} "
            f"against {_pct(due, 99):.1f} ms, same server, one run after the other; load average "
            f"{m['mixed_load'][0]:.1f} after the mixed run).",
            "",
        ]
    return lines


def _in_process_lines(m: dict) -> list[str]:
    scale = m["scale"]
    return [
        "In process, after the server stopped (no HTTP; 1,000 random customers):",
        "",
        "| call | calls | p50 ms | p99 ms | CPU ms per call |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {name} | {len(w)} | {_pct(w, 50):.3f} | {_pct(w, 99):.3f} | {cpu:.3f} |"
            for name, (w, cpu) in m["inproc"].items()
        ],
        "",
        f"The contact policy at scale, in process (synthetic: 200,000 candidates in 40 branches, 500,000 contacts "
        f"in 30 campaigns): prepared once in {scale['prepare_s']:.2f} s (the service does it at load), then a "
        f"top-{TARGETS_TOP} list in {scale['whole bank']:.1f} ms for the whole bank, {scale['a branch']:.1f} ms for "
        f"a branch, {scale['a manager']:.1f} ms for a manager (mean of 10, a new campaign each).",
    ]


def _federation_lines(m: dict, args: argparse.Namespace) -> list[str]:
    """The federation phase beside the single-bank figures of the same run."""
    f = m["fed"]
    if f is None:
        return []
    banks = ", ".join(f"{c} {n:,}" for c, n in f["sizes"].items())
    seq, due = m["seq"], f["res"]["due"]
    return [
        f"One server for a federation of {len(f['sizes'])} member banks ({banks} customers; built in "
        f"{f['t_build']:.0f} s, ready in {f['ready_s']:.1f} s, one recommender per bank, a marketing token per "
        f"bank), beside the single bank above (load average {f['load'][0]:.1f} before the open-loop run):",
        "",
        "| what | requests | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
        f"| single bank: /hints one at a time | {len(seq)} | {_pct(seq, 50):.1f} | {_pct(seq, 99):.1f} | 0 |",
        *[
            f"| federation, bank {c}: /hints one at a time | {len(s)} | {_pct(s, 50):.1f} | {_pct(s, 99):.1f} | 0 |"
            for c, s in f["seq"].items()
        ],
        f"| single bank: /hints {args.rate:.0f}/s open loop (from due time) | {m['res']['n']:,} | "
        f"{_pct(m['res']['due'], 50):.1f} | {_pct(m['res']['due'], 99):.1f} | {m['res']['errors']} |",
        f"| federation: /hints {args.rate:.0f}/s open loop for {args.federation_seconds:.0f} s, the banks in turn | "
        f"{f['res']['n']:,} | {_pct(due, 50):.1f} | {_pct(due, 99):.1f} | {f['res']['errors']} |",
        "",
        f"Resident memory of the server's processes after start-up (summed over them, shared pages counted in "
        f"each): {m['rss_mb']:,.0f} MiB for the single bank, {f['rss_mb']:,.0f} MiB for the federation.",
        "",
    ]


def section(m: dict, args: argparse.Namespace) -> list[str]:
    """The ``serving`` section: the current code's figures only."""
    return [
        "## Serving (`nbp serve`, BentoML, one worker per core)",
        "",
        _workspace_line(m),
        "",
        *_http_rows(m, args),
        "",
        *_cpu_lines(m, args),
        *_federation_lines(m, args),
        *_in_process_lines(m),
    ]


def baseline_lines(m: dict, args: argparse.Namespace) -> list[str]:
    """The comparison with ``--baseline``'s code (for a commit message or a decision record)."""
    base, res, seq, refused, inproc = m["base"], m["res"], m["seq"], m["refused"], m["inproc"]
    due = res["due"]
    tg_rest = np.array(m["targets"][1:]) if len(m["targets"]) > 1 else np.array(m["targets"])
    bd, bs, br, bt = base["res"]["due"], base["seq"], base["refused"], base["targets"][1:] or base["targets"]
    bw, bcpu = base["inproc"]
    mixed = base.get("mixed") is not None and m.get("mixed") is not None
    return [
        f"Baseline, the same phases against the code in `{args.baseline.name}` (run just before, load average "
        f"{base['load_before'][0]:.1f} before its 100/s run and {base['load_after'][0]:.1f} after):",
        "",
        "| what | baseline p50 ms | baseline p99 ms | now p50 ms | now p99 ms |",
        "|---|---:|---:|---:|---:|",
        f"| /hints {args.rate:.0f}/s open loop, from due time ({base['res']['n']:,} requests and "
        f"{base['res']['errors']} errors then, {res['n']:,} and {res['errors']} now) | {_pct(bd, 50):.1f} | "
        f"{_pct(bd, 99):.1f} | {_pct(due, 50):.1f} | {_pct(due, 99):.1f} |",
        f"| /hints one at a time | {_pct(bs, 50):.1f} | {_pct(bs, 99):.1f} | {_pct(seq, 50):.1f} | "
        f"{_pct(seq, 99):.1f} |",
        f"| /hints refused (401) | {_pct(br, 50):.1f} | {_pct(br, 99):.1f} | {_pct(refused, 50):.1f} | "
        f"{_pct(refused, 99):.1f} |",
        f"| /targets top {TARGETS_TOP}, later calls | {_pct(np.array(bt), 50):.0f} | {_pct(np.array(bt), 99):.0f} | "
        f"{_pct(tg_rest, 50):.0f} | {_pct(tg_rest, 99):.0f} |",
        *(
            [
                f"| /hints {args.rate:.0f}/s with /targets at {args.targets_rate:g}/s ({base['mixed'][0]['errors']} "
                f"errors then, {m['mixed'][0]['errors']} now) | {_pct(base['mixed'][0]['due'], 50):.1f} | "
                f"{_pct(base['mixed'][0]['due'], 99):.1f} | {_pct(m['mixed'][0]['due'], 50):.1f} | "
                f"{_pct(m['mixed'][0]['due'], 99):.1f} |",
                f"| /targets top {TARGETS_TOP} in that run | {_pct(base['mixed'][1]['lat'], 50):.0f} | "
                f"{_pct(base['mixed'][1]['lat'], 99):.0f} | {_pct(m['mixed'][1]['lat'], 50):.0f} | "
                f"{_pct(m['mixed'][1]['lat'], 99):.0f} |",
            ]
            if mixed
            else []
        ),
        f"| Recommender.hints in process ({len(bw)} calls) | {_pct(bw, 50):.2f} | {_pct(bw, 99):.2f} | "
        f"{_pct(inproc['Recommender.hints'][0], 50):.2f} | {_pct(inproc['Recommender.hints'][0], 99):.2f} |",
        "",
        f"Server CPU per /hints request at {args.rate:.0f}/s: {base['server_cpu_ms']:.2f} ms then, "
        f"{m['server_cpu_ms']:.2f} ms now; one at a time {base['seq_cpu_ms']:.2f} ms then, {m['seq_cpu_ms']:.2f} ms "
        f"now; per refused (401) request {base['refused_cpu_ms']:.2f} ms then, {m['refused_cpu_ms']:.2f} ms now; "
        f"Recommender.hints in process {bcpu:.2f} ms then, {inproc['Recommender.hints'][1]:.2f} ms now. "
        f"The baseline answered at most {base['res']['n'] / base['res']['wall_s']:.1f} requests/s.",
        *_ab_lines(m["rounds"], args),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="nbp-bench-serving-") as tmp:
        home = args.home if args.home is not None else Path(tmp) / "home"
        m = measure(args, home, token, built=args.home is None)
    lines = section(m, args)
    cmd = "python -m benchmarks.bench_serving " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.no_write:
        print("\n".join(lines))
    else:
        write_section("serving", "\n".join(lines), cmd.strip())
    if m["base"] is not None:
        print("\n".join(baseline_lines(m, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
