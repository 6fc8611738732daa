"""The whole chain on federations of 1, 2, 4 and 8 member banks, beside the same banks run one by one.

One simulated 8-bank federation (``nbp simulate --federation 8``, fixed seed; kept in ``--data``
and reused when its ``federation.json`` matches). Banks are taken largest first, so the
K-bank workspace holds the K largest banks and the 1-bank run the largest bank. Each run is a
fresh workspace driven through the CLI, stage by stage, each command in a child process
(``benchmarks.report.run_measured``: wall time and peak RSS):

1. ``ingest``  ``nbp ingest DATA/<CODE>/export``, once per bank
2. ``features``  ``nbp features`` (publishes every bank of the workspace, bank by bank)
3. ``train``  ``nbp train`` (every bank's products, bank by bank)
4. ``score``  ``nbp score --bank CODE --as-of T``, once per bank, at the latest as-of (the month
   start of the export date: the as-of ``nbp features`` materialises and ``nbp retrain`` scores)

A stage of several commands reports the sum of their wall times and the largest of their
peaks. Every bank is also run alone (its own one-bank workspace, the same stages) once; the
"one by one" figures of K banks are sums over those runs, and the 1-bank federation is the
largest bank's run alone (the same commands on the same workspace). The rule checked: a
stage's peak memory over K banks stays within the largest of those banks' peaks alone.

Every finished run is saved in ``--work``/results.json (with each command's output and its
memory sampled every second), so ``--report`` can write the section from the runs that
finished, and ``--resume`` continues a run that stopped.

Run: ``.venv/bin/python -m benchmarks.bench_federation [--data DIR] [--work DIR] [--seed S]
[--sizes N,N,... | --scale X] [--ks 1 2 4 8] [--resume | --report] [--print]``
(writes the ``federation_chain`` section of docs/benchmarks.md; ``--print`` prints it only).

Profile of a multi-bank stage: ``.venv/bin/python -m benchmarks.bench_federation --residue train
--home WS [--largest-first]`` prints, after each bank, the memory the process keeps (see
:func:`residue`); on the exported commit instead of the checkout, from outside the checkout:
``cd /tmp && PYTHONPATH=WORK/code /work/main/.venv/bin/python /work/main/benchmarks/bench_federation.py
--residue train --home WS``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.report import NBP, run_measured, write_section

SECTION = "federation_chain"
STAGES = ("ingest", "features", "train", "score")
SEED = 7  # the federation's seed (no quality claim rests on it)
TOLERANCE = 1.10  # a K-bank peak up to this multiple of the largest bank's is within noise
SAMPLE_S = 1.0  # memory sampling interval


class Sampler:
    """The summed RSS of this process's descendants, sampled every :data:`SAMPLE_S` in a thread."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self.samples: list[tuple[float, float]] = []  # (seconds since start, GB)
        self._stop = threading.Event()
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(SAMPLE_S):
            rss = 0
            for p in self._me.children(recursive=True):
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            self.samples.append((round(time.time() - self._t0, 1), round(rss / 1024**3, 3)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_children() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def _stage(cmds: list[list[str]], env: dict[str, str], logs: Path, name: str) -> dict:
    """Run a stage's commands one after the other; summed wall and CPU, largest peak, the load around it.

    Each command runs under ``sh`` (whose peak RSS from ``wait4`` includes the command's), so
    a command that exits non-zero is measured too: a bank too small to train any product
    fails ``nbp train`` alone and ``nbp score`` in every workspace, by design. Its error line
    is kept in ``failed``.
    """
    load_before, c0 = os.getloadavg()[0], _cpu_children()
    wall, peak, started, failed = 0.0, 0.0, time.strftime("%H:%M:%S"), []
    for i, cmd in enumerate(cmds):
        with Sampler() as s:
            m = run_measured(["sh", "-c", '"$0" "$@"; echo "[exit $?]"', *cmd], env=env)
        wall += m.seconds
        peak = max(peak, m.peak_rss_gb)
        if not m.stdout.rstrip().endswith("[exit 0]"):
            errors = [ln for ln in m.stdout.splitlines() if ln.startswith("error:")] or m.stdout.splitlines()[-3:]
            failed.append(f"{' '.join(cmd[1:3])}: {errors[-1][:200]}")
        log = logs / f"{name}-{i}.log"
        log.write_text(f"$ {' '.join(cmd)}\n{m.stdout}", encoding="utf-8")
        log.with_suffix(".rss.tsv").write_text("".join(f"{t}\t{gb}\n" for t, gb in s.samples), encoding="utf-8")
    return {
        "wall": wall,
        "peak": peak,
        "cpu": _cpu_children() - c0,
        "commands": len(cmds),
        "failed": failed,
        "started": started,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def run_chain(banks: list[dict], data: Path, home: Path, logs: Path, as_of: str, code: Path | None) -> dict:
    """The four stages on a fresh workspace ``home`` holding ``banks``; a dict per stage. ``code``:
    the source tree the ``nbp`` commands import (first on their ``PYTHONPATH``; None: the checkout)."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    logs.mkdir(parents=True, exist_ok=True)
    codes = [b["bank_code"] for b in banks]
    plan = {
        "ingest": [[NBP, "ingest", str(data / b["export"])] for b in banks],
        "features": [[NBP, "features"]],
        "train": [[NBP, "train"]],
        "score": [
            [NBP, "score", "--bank", c, "--as-of", as_of, "--out", str(home / f"scores-{c}.parquet")] for c in codes
        ],
    }
    env = {"NBP_HOME": str(home), **({"PYTHONPATH": str(code)} if code else {})}
    out = {}
    for stage in STAGES:
        r = out[stage] = _stage(plan[stage], env, logs, stage)
        print(
            f"  {stage}: {r['wall']:.1f} s, {r['peak']:.2f} GB (load {r['load_before']:.1f})",
            file=sys.stderr,
            flush=True,
        )
    return out


def federation(data: Path, seed: int, sizes: str | None, scale: float | None) -> dict:
    """The simulated federation in ``data``: simulated here unless ``data`` already holds this one."""
    listing = data / "federation.json"
    if not listing.exists():
        shutil.rmtree(data, ignore_errors=True)  # a simulation that stopped half-way
        cmd = [NBP, "simulate", "--federation", "8", "--seed", str(seed), "--out", str(data)]
        cmd += ["--sizes", sizes] if sizes else []
        cmd += ["--scale", str(scale)] if scale else []
        print(f"simulating: {' '.join(cmd)}", file=sys.stderr, flush=True)
        m = run_measured(cmd)
        (data / "simulate.log").write_text(f"{m.seconds:.0f} s, {m.peak_rss_gb:.2f} GB\n{m.stdout}", encoding="utf-8")
    fed = json.loads(listing.read_text(encoding="utf-8"))
    want_sizes = [int(x) for x in sizes.split(",")] if sizes else None
    got_sizes = [b["size"] for b in fed["banks"]]
    if (
        fed["seed"] != seed
        or fed["scale"] != (scale or 1.0)
        or len(got_sizes) != 8
        or (want_sizes and got_sizes != want_sizes)
    ):
        raise SystemExit(
            f"{listing}: seed {fed['seed']}, scale {fed['scale']}, sizes {got_sizes}; not the federation asked for "
            f"(seed {seed}, scale {scale or 1.0}, sizes {want_sizes or 'default'}): give another --data folder"
        )
    return fed


def export_commit(commit: str, dest: Path) -> str:
    """Write the tree of ``commit`` into ``dest`` (``git archive``: the checkout, its index and
    other people's uncommitted work are left alone); return the commit's full hash."""
    root = Path(__file__).resolve().parents[1]
    full = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tar = subprocess.run(["git", "-C", str(root), "archive", full], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return full


def largest_first(fed: dict) -> list[dict]:
    """The federation's banks, largest first (ties: in listing order)."""
    return sorted(fed["banks"], key=lambda b: -b["customers"])


def schedule(banks: list[dict], ks: list[int]) -> list[tuple[str, list[dict]]]:
    """The runs, K in the order given, each K finished as early as possible: every bank of the
    first K not yet run alone, then the K-bank workspace (K = 1 is the largest bank's run alone,
    not repeated). ``--ks 1 8 2 4`` measures 8 banks before 2 and 4 when time is short."""
    runs, alone = [], set()
    for k in ks:
        for b in banks[:k]:
            if b["bank_code"] not in alone:
                alone.add(b["bank_code"])
                runs.append((f"alone/{b['bank_code']}", [b]))
        if k > 1:
            runs.append((f"fed/{k}", banks[:k]))
    return runs


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save(path: Path, results: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
    tmp.replace(path)


def fed_run(results: dict, banks: list[dict], k: int) -> dict | None:
    """The K-bank run's stages (for K = 1, the largest bank's run alone); None if not finished."""
    return results.get(f"alone/{banks[0]['bank_code']}" if k == 1 else f"fed/{k}")


def k_table(results: dict, banks: list[dict], k: int) -> list[str]:
    """The table of one K: each stage over K banks beside the same banks one by one."""
    fed = fed_run(results, banks, k)
    alone = [results[f"alone/{b['bank_code']}"] for b in banks[:k]]
    n = sum(b["customers"] for b in banks[:k])
    lines = [
        f"**{k} bank{'s' if k > 1 else ''}** ({', '.join(b['bank_code'] for b in banks[:k])}; {n:,} customers)"
        + (": the largest bank's run alone" if k == 1 else ""),
        "",
        "| stage | wall s | CPU s | peak GB | load | one by one: sum of wall s | wall ratio | "
        "largest bank's peak GB | peak ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in (*STAGES, "chain"):
        if stage == "chain":
            f = {
                "wall": sum(fed[s]["wall"] for s in STAGES),
                "cpu": sum(fed[s]["cpu"] for s in STAGES),
                "peak": max(fed[s]["peak"] for s in STAGES),
                "load_before": fed["ingest"]["load_before"],
            }
            one_wall = sum(a[s]["wall"] for a in alone for s in STAGES)
            top = max(a[s]["peak"] for a in alone for s in STAGES)
        else:
            f = fed[stage]
            one_wall = sum(a[stage]["wall"] for a in alone)
            top = max(a[stage]["peak"] for a in alone)
        name = "whole chain" if stage == "chain" else f"`{stage}`"
        lines.append(
            f"| {name} | {f['wall']:.0f} | {f['cpu']:.0f} | {f['peak']:.2f} | {f['load_before']:.1f} | {one_wall:.0f} "
            f"| {f['wall'] / one_wall:.2f} | {top:.2f} | {f['peak'] / top:.2f} |"
        )
    return [*lines, ""]


def alone_table(results: dict, banks: list[dict]) -> list[str]:
    """Each bank run alone: wall s / peak GB per stage."""
    lines = [
        "Each bank alone (wall s / peak GB):",
        "",
        "| bank | customers | " + " | ".join(f"`{s}`" for s in STAGES) + " |",
        "|---|---:|" + "---:|" * len(STAGES),
    ]
    for b in banks:
        r = results.get(f"alone/{b['bank_code']}")
        if r is None:
            continue
        cells = " | ".join(f"{r[s]['wall']:.0f} / {r[s]['peak']:.2f}" for s in STAGES)
        lines.append(f"| {b['bank_code']} | {b['customers']:,} | {cells} |")
    return [*lines, ""]


def breaches(results: dict, banks: list[dict], ks: list[int]) -> list[str]:
    """Stages whose K-bank peak exceeds :data:`TOLERANCE` times the largest bank's alone."""
    out = []
    for k in ks:
        fed = fed_run(results, banks, k)
        if fed is None or k == 1:
            continue
        for s in STAGES:
            top = max(results[f"alone/{b['bank_code']}"][s]["peak"] for b in banks[:k])
            if fed[s]["peak"] > TOLERANCE * top:
                out.append(f"`{s}` at {k} banks ({fed[s]['peak']:.2f} GB, {fed[s]['peak'] / top:.2f}×)")
    return out


def failures(results: dict) -> list[str]:
    """The commands that exited non-zero, run by run (measured all the same)."""
    got = [
        f"- {name} `{stage}`: {f}"
        for name, run in results.items()
        if name.startswith(("alone/", "fed/"))
        for stage in STAGES
        for f in run[stage].get("failed", [])
    ]
    return ["", "Commands that exited non-zero (measured all the same):", "", *got] if got else []


def per_bank(logs: Path, stage: str, started: str) -> list[tuple[str, float, float]]:
    """Inside one multi-bank command (``features``, ``train``): each bank's RSS when its work
    began and its peak, in GB, from the memory samples and the command's output. A bank's
    work ends at the line ``bank CODE...`` the CLI prints after it; log lines carry the time."""
    import re

    def secs(hms: str) -> int:
        h, m, s = map(int, hms.split(":"))
        return h * 3600 + m * 60 + s

    t0, now, bounds = secs(started), None, []
    for line in (logs / f"{stage}-0.log").read_text(encoding="utf-8").splitlines():
        if stamp := re.match(r"(\d\d:\d\d:\d\d) ", line):
            now = (secs(stamp.group(1)) - t0) % 86_400
        elif (bank := re.match(r"bank (\S+?)[: ]", line)) and now is not None:
            bounds.append((bank.group(1), now + 1))
    samples = [
        (float(t), float(gb))
        for t, gb in (ln.split("\t") for ln in (logs / f"{stage}-0.rss.tsv").read_text().splitlines())
    ]
    out, begin = [], 0.0
    for code, end in bounds:
        seg = [gb for t, gb in samples if begin <= t <= end]
        if seg:
            out.append((code, seg[0], max(seg)))
        begin = end
    return out


def inside(results: dict, work: Path, k: int) -> list[str]:
    """Per-bank memory inside the K-bank ``features`` and ``train`` commands."""
    lines = []
    for stage in ("features", "train"):
        try:
            got = per_bank(work / "logs" / f"fed/{k}", stage, results[f"fed/{k}"][stage]["started"])
        except (OSError, ValueError, KeyError):
            continue
        if got:
            cells = ", ".join(f"{code} {start:.2f} → {peak:.2f}" for code, start, peak in got)
            lines.append(f"- `{stage}` at {k} banks (in the order worked): {cells}")
    if not lines:
        return []
    return [
        "",
        "Inside the one process of a multi-bank stage, each bank's RSS when its work began → its "
        "peak (GB, sampled every second):",
        "",
        *lines,
    ]


def section(results: dict, fed: dict, banks: list[dict], ks: list[int], note: str, work: Path) -> str:
    """The section's text from the finished runs."""
    done = [k for k in sorted(ks) if fed_run(results, banks, k) is not None]
    missing = [k for k in sorted(ks) if k not in done]
    total = sum(b["customers"] for b in banks)
    lines = [
        "## Federation: the whole chain on 1, 2, 4 and 8 member banks",
        "",
        f"One simulated federation (`nbp simulate --federation 8 --seed {fed['seed']}`"
        + (f", scale {fed['scale']}" if fed["scale"] != 1 else "")
        + f"; {total:,} customers in {len(banks)} banks, 24 months, export date {fed['export_date']}). "
        "The K-bank workspace holds the K largest banks (banks taken largest first), so the 1-bank run is "
        "the largest bank. Stages, each command a child process on these 2 cores: `ingest` (`nbp ingest`, "
        "once per bank), `features` (`nbp features`: every bank, bank by bank), `train` (`nbp train`: "
        f"every bank's three products), `score` (`nbp score --bank CODE --as-of {as_of_of(fed)}`, once per "
        "bank, at the as-of `nbp features` materialises and `nbp retrain` scores). A stage of several "
        "commands: summed wall and CPU, the largest peak RSS. *One by one*: the same stages with each bank "
        "alone in its own workspace, wall times summed (every bank run alone once; sums over the subsets). "
        "*Peak ratio*: the K-bank peak over the largest single-bank peak of that stage among the K banks; "
        "the rule (issue 14): it stays at 1, i.e. memory does not grow with the number of banks. *Load*: the "
        "1-minute load average when the stage started (other engineers' tests share the 2 cores, so wall "
        "times are noisy; figures are as measured)."
        + (f" Code: commit {results['commit'][:7]} (its tree exported, `--code`)." if "commit" in results else ""),
        "",
    ]
    if missing:
        largest = f" (the largest K measured is {max(done)})" if done else ""
        lines += [f"**Not finished in time: K = {', '.join(map(str, missing))}**{largest}.", ""]
    for k in done:
        lines += k_table(results, banks, k)
    lines += alone_table(results, banks)
    found = breaches(results, banks, done)
    lines.append(
        "Peak memory over K banks "
        + (
            f"stays within {TOLERANCE:.2f}× the largest bank's in every stage."
            if not found
            else f"exceeds the largest bank's by more than {TOLERANCE - 1:.0%} in: " + "; ".join(found) + "."
        )
    )
    if done and max(done) > 1:
        lines += inside(results, work, max(done))
    lines += failures(results)
    if note:
        lines += ["", note]
    return "\n".join(lines)


def as_of_of(fed: dict) -> str:
    """The latest as-of: the month start of the export date."""
    return fed["export_date"][:8] + "01"


def residue(stage: str, home: Path, largest_first_order: bool) -> None:
    """Every member bank's ``stage`` (``train`` or ``features``) in this one process, as the CLI
    runs them; after each bank its RSS, after ``gc.collect()``, after glibc's ``malloc_trim(0)``
    (freed heap the allocator kept), and at the end the process's peak. Printed, not written."""
    import ctypes
    import gc

    import psutil

    from features.build import member_banks
    from nbp import log, telemetry
    from nbp.config import load_config
    from nbp.workspace import Workspace

    telemetry.disable()
    log.configure("WARNING")
    cfg, ws, me, libc = load_config(), Workspace(home), psutil.Process(), ctypes.CDLL("libc.so.6")
    codes = member_banks(ws, None)
    if largest_first_order:
        codes.sort(key=lambda c: -_customers(ws.for_bank(c)))
    print(f"start: {me.memory_info().rss / 1024**3:.2f} GB; banks in this order: {', '.join(codes)}")
    for code in codes:
        t0 = time.perf_counter()
        if stage == "train":
            from training.pipeline import train

            train(cfg, ws.for_bank(code), None, None)
        else:
            from features.store import publish

            publish(cfg, ws.for_bank(code), [])
        rss = me.memory_info().rss
        gc.collect()
        after_gc = me.memory_info().rss
        libc.malloc_trim(0)
        after_trim = me.memory_info().rss
        print(
            f"{code:<10} {time.perf_counter() - t0:6.0f} s  RSS {rss / 1024**3:.2f} GB, after gc "
            f"{after_gc / 1024**3:.2f}, after malloc_trim {after_trim / 1024**3:.2f}",
            flush=True,
        )
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB")


def _customers(ws: object) -> int:
    """Rows of a member bank's ingested customers table."""
    import pyarrow.parquet as pq

    return pq.read_metadata(ws.table("customers")).num_rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=Path("/tmp/nbp-bench-federation/export"),
        help="folder of the simulated federation (simulated there unless it already holds it)",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/nbp-bench-federation/work"),
        help="workspaces, command logs and results.json",
    )
    ap.add_argument("--seed", type=int, default=SEED, help="the federation's seed")
    ap.add_argument("--sizes", default=None, help="8 bank sizes, N,N,... (default: 500,000 down to 5,000)")
    ap.add_argument("--scale", type=float, default=None, help="customers per bank = size x scale (default 1)")
    ap.add_argument(
        "--ks", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of banks (1 to 8), measured in this order"
    )
    ap.add_argument(
        "--code",
        metavar="COMMIT",
        default=None,
        help="run the nbp commands on this commit's tree (exported into WORK/code), not the checkout as it is",
    )
    ap.add_argument("--resume", action="store_true", help="keep the runs results.json already holds")
    ap.add_argument("--report", action="store_true", help="write the section from results.json; run nothing")
    ap.add_argument("--keep", action="store_true", help="keep every workspace (a full-scale one holds several GB)")
    ap.add_argument("--note", default="", help="a paragraph appended to the section (a finding)")
    ap.add_argument("--print", action="store_true", help="print the section; do not write docs/benchmarks.md")
    ap.add_argument(
        "--residue",
        choices=["train", "features"],
        help="profile: every bank's stage in one process on the workspace --home (memory left after each bank)",
    )
    ap.add_argument("--home", type=Path, help="with --residue: a federation workspace with features built")
    ap.add_argument("--largest-first", action="store_true", help="with --residue: banks largest first")
    a = ap.parse_args(argv)
    if not all(1 <= k <= 8 for k in a.ks):
        ap.error("--ks: each between 1 and 8")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if a.residue:
        if a.home is None:
            raise SystemExit("--residue needs --home (a federation workspace)")
        residue(a.residue, a.home, a.largest_first)
        return 0
    fed = federation(a.data, a.seed, a.sizes, a.scale)
    banks = largest_first(fed)
    a.work.mkdir(parents=True, exist_ok=True)
    store = a.work / "results.json"
    results = _load(store) if (a.resume or a.report) else {}
    if not a.report:
        code = None
        if a.code:
            code = a.work / "code"
            commit = export_commit(a.code, code)
            if results.get("commit", commit) != commit:
                raise SystemExit(f"{store}: runs of commit {results['commit']}; --resume needs the same --code")
            results["commit"] = commit
        _save(store, results)
        for name, members in schedule(banks, a.ks):
            if name in results:
                continue
            print(f"{time.strftime('%H:%M:%S')} {name}: {len(members)} bank(s)", file=sys.stderr, flush=True)
            home = a.work / "ws" / name
            results[name] = run_chain(members, a.data, home, a.work / "logs" / name, as_of_of(fed), code)
            _save(store, results)
            if not a.keep:
                shutil.rmtree(home, ignore_errors=True)
    body = section(results, fed, banks, a.ks, a.note, a.work)
    command = (
        f".venv/bin/python -m benchmarks.bench_federation --data {a.data} --work {a.work}"
        + (f" --seed {a.seed}" if a.seed != SEED else "")
        + (f" --sizes {a.sizes}" if a.sizes else "")
        + (f" --scale {a.scale}" if a.scale else "")
        + (f" --code {a.code}" if a.code else "")
        + (f" --ks {' '.join(map(str, a.ks))}" if a.ks != [1, 2, 4, 8] else "")
    )
    if a.print:
        print(body)
    else:
        write_section(SECTION, body, command)
    return 0


if __name__ == "__main__":
    for var in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        os.environ.setdefault(var, "true")
    os.environ.setdefault("FEAST_USAGE", "False")
    sys.exit(main(sys.argv[1:]))
