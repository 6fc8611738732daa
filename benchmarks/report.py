"""Shared plumbing of the benchmarks: run a command, measure it, write a section.

Each benchmark script owns one section of ``docs/benchmarks.md``, fenced by
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; re-running the script
replaces only its own section. Figures are medians of repeated runs where a
run is cheap, and always quote the command that produced them.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
NBP = str(Path(sys.executable).with_name("nbp"))  # the CLI of the interpreter running the benchmark


@dataclass
class Measured:
    """Wall time and peak resident memory of one child process."""

    seconds: float
    peak_rss_gb: float
    stdout: str


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` as a child process; return wall time and its peak RSS.

    Peak RSS comes from ``wait4``'s rusage of that one child (Linux: KiB).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    rss_kb = usage.ru_maxrss
    return Measured(elapsed, rss_kb / 1024 / 1024, out)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    """One line describing where the figures were measured."""
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def write_section(name: str, body: str, command: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md."""
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    block = (
        f"<!-- bench:{name} -->\n{body.rstrip()}\n\n"
        f"_Measured {stamp} on {machine()} with:_ `{command}`\n<!-- /bench:{name} -->"
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\nRun all: `make bench`.\n"
    pat = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")
    print(block, file=sys.stderr)
