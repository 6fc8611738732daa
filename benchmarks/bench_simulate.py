"""Benchmark of ``nbp simulate --customers full --months 24``: wall time, peak RSS, rows.

Budget: at most 10 minutes on 2 cores and at most 12 GB peak memory.
Run: ``python -m benchmarks.bench_simulate`` (writes its section of docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.report import run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S, BUDGET_GB = 600, 12


def main() -> int:
    nbp = str(ROOT / ".venv" / "bin" / "nbp")
    with tempfile.TemporaryDirectory(prefix="nbp-bench-sim-") as tmp:
        out = Path(tmp) / "bank"
        cmd = [nbp, "simulate", "--customers", "full", "--months", "24", "--out", str(out)]
        m = run_measured(cmd)
        rows = {f.stem: pq.read_metadata(f).num_rows for f in sorted((out / "export").glob("*.parquet"))}
        oracle_rows = pq.read_metadata(out / "oracle" / "oracle.parquet").num_rows
        size_gb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1024**3
    ok = m.seconds <= BUDGET_S and m.peak_rss_gb <= BUDGET_GB
    body = "\n".join(
        [
            "## Simulator, reference bank (388,494 customers x 24 months)",
            "",
            "| measure | value | budget |",
            "|---|---|---|",
            f"| wall time | {m.seconds:.0f} s | {BUDGET_S} s |",
            f"| peak RSS | {m.peak_rss_gb:.2f} GB | {BUDGET_GB} GB |",
            f"| transactions | {rows.get('transactions', 0):,} rows | tens of millions |",
            f"| balances | {rows.get('balances', 0):,} rows | |",
            f"| loans | {rows.get('loans', 0):,} rows | |",
            f"| oracle | {oracle_rows:,} rows | |",
            f"| files on disk | {size_gb:.2f} GB | |",
            f"| within budget | {'yes' if ok else 'NO'} | |",
            "",
            "Summary printed by the run:",
            "",
            "```",
            m.stdout.strip(),
            "```",
        ]
    )
    write_section("simulate", body, " ".join(["nbp", *cmd[1:-1], "<tmp>"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
