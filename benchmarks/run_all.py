"""Run every benchmark script (benchmarks/bench_*.py) in turn; each writes its own
section of docs/benchmarks.md. ``make bench`` calls this.

Usage: ``python -m benchmarks.run_all [NAME ...]`` (names without ``bench_``, or a name of
:data:`EXTRA`: a second mode of a script that writes a section of its own).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> the module and arguments of a benchmark run that is a mode of a script above
EXTRA = {"chain_growth": ["benchmarks.bench_chain", "--growth"]}


def main(argv: list[str]) -> int:
    runs = {s.stem: [f"benchmarks.{s.stem}"] for s in sorted(HERE.glob("bench_*.py"))}
    runs.update(EXTRA)
    if argv:
        runs = {name: cmd for name, cmd in runs.items() if name.removeprefix("bench_") in argv}
    failed = []
    for name, cmd in runs.items():
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, "-m", *cmd], cwd=HERE.parent)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
