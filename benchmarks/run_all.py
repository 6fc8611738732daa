"""Run every benchmark script (benchmarks/bench_*.py) in turn; each writes its own
section of docs/benchmarks.md. ``make bench`` calls this.

Usage: ``python -m benchmarks.run_all [NAME ...]`` (names without ``bench_``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for s in scripts:
        print(f"== {s.stem}", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{s.stem}"], cwd=HERE.parent)
        if rc:
            failed.append(s.stem)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
