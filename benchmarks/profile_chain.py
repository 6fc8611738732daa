"""Where nbp's chain spends its time: each stage once under py-spy, and a summary of the samples.

For ``docs/decisions/025-where-the-chain-spends-its-time.md``. py-spy is a tool, not a dependency
of nbp: install it into a venv of its own (``python3.11 -m venv /tmp/spy && /tmp/spy/bin/pip
install py-spy``) and pass its path. Each stage (``nbp ingest EXPORT``, ``nbp features``, ``nbp
train``, ``nbp score --as-of T``) runs in a fresh workspace under ``py-spy record --native
--subprocesses --format raw``; the summary reads the raw stacks (one line per distinct stack,
with its sample count) and reports per stage:

* the samples by *nbp step*: the innermost frame of nbp's own packages (``bankexport``,
  ``features``, ``training``, ``nbp``), so a DuckDB statement, a Feast call or a LightGBM fit
  counts for the nbp function that issued it;
* the samples by *component*: imports, Feast, MLflow, LightGBM, DuckDB, pandas, numpy,
  pyarrow, other Python (the first that matches the stack, in that order);
* the top functions by self samples (the leaf frame) and by total samples (anywhere in the stack).

py-spy samples Python threads only while they run (idle threads are left out): DuckDB's own
worker threads are not Python threads, so a DuckDB statement counts once, for the thread that
waits on it; LightGBM fits on training's worker threads count once per thread. Samples are
therefore thread-seconds x the rate, close to wall time where one thread works at a time.

Run: ``.venv/bin/python -m benchmarks.profile_chain --py-spy /tmp/spy/bin/py-spy --export DIR
--work DIR [--code COMMIT] [--stages ingest features train score]``; ``--summarize DIR`` prints
the summary of the ``<stage>.raw`` files already in DIR.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

from benchmarks.bench_chain import STAGES, chain_commands
from benchmarks.bench_federation import export_commit
from benchmarks.report import run_measured

RATE = 50  # samples per second
TRUNK = 0.9  # a frame in this share of a stage's samples is the trunk every sample shares
NAME_CHARS = 80  # C++ template names are cut to this
OWN = ("bankexport/", "features/", "training/", "nbp/", "serving/")
# component of a stack: the first rule whose pattern occurs in any of its frames (imports first:
# an import's cost is the import's whatever module it runs)
COMPONENTS = (
    ("imports", re.compile(r"<frozen importlib\._bootstrap")),
    ("Feast", re.compile(r"\((feast|features/offline\.py|features/online\.py)")),
    ("MLflow", re.compile(r"\((mlflow|sqlalchemy|alembic)/")),
    ("LightGBM", re.compile(r"\(lightgbm/|lib_lightgbm")),
)
LEAF = (
    ("DuckDB", re.compile(r"_duckdb|\(duckdb/")),
    ("pandas", re.compile(r"\(pandas/|pandas/_libs")),
    ("numpy", re.compile(r"\(numpy/|_multiarray|numpy\.libs")),
    ("pyarrow", re.compile(r"\(pyarrow/|libarrow|libparquet")),
)
SYSTEM = re.compile(r"\((libc|libstdc\+\+|libgcc|libgomp|libm|ld-linux|libpthread)[.-]|^0x[0-9a-f]+$")
FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]+?)(?::\d+)?\)$")


def parse(raw: Path) -> list[tuple[list[str], int]]:
    """The stacks of a py-spy raw file (root first, the ``process N:"cmd"`` frame dropped) and their counts."""
    out = []
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        out.append((frames, int(n)))
    return out


def _key(frame: str) -> str:
    """A frame without its line number: ``name (file)``; native frames by their library."""
    m = FRAME.match(frame)
    if m is None:
        return frame
    if m["name"].startswith("0x"):
        return f"native ({m['file']})"
    name = m["name"] if len(m["name"]) <= NAME_CHARS else m["name"][: NAME_CHARS - 1] + "…"
    return f"{name} ({m['file'].split('.cpython')[0]})"


def _own(frame: str) -> bool:
    m = FRAME.match(frame)
    return m is not None and m["file"].startswith(OWN)


def component(frames: list[str]) -> str:
    """The component a stack's time belongs to (:data:`COMPONENTS`, else the leaf's library)."""
    for name, pat in COMPONENTS:
        if any(pat.search(f) for f in frames):
            return name
    for f in reversed(frames):  # the leaf, or the nearest caller of a system library's frames
        if SYSTEM.search(f):
            continue
        for name, pat in LEAF:
            if pat.search(f):
                return name
        return "other Python" if FRAME.match(f) and not f.startswith("0x") else "other native"
    return "system libraries"


def summarize(raw: Path, top: int = 10) -> dict:
    """Sample counts of one stage: total, by nbp step, by component, top self and total functions."""
    stacks = parse(raw)
    total = sum(n for _, n in stacks)
    by_step, by_comp, self_, incl = Counter(), Counter(), Counter(), Counter()
    step_comp: dict[str, Counter] = {}
    for frames, n in stacks:
        own = [f for f in frames if _own(f)]
        step = _key(own[-1]) if own else "(outside nbp: start-up)"
        comp = component(frames)
        by_step[step] += n
        by_comp[comp] += n
        step_comp.setdefault(step, Counter())[comp] += n
        self_[_key(frames[-1])] += n
        for k in {_key(f) for f in frames}:
            incl[k] += n
    return {
        "samples": total,
        "seconds": total / RATE,
        "by_step": by_step.most_common(top),
        "step_components": {s: c.most_common(3) for s, c in step_comp.items()},
        "by_component": by_comp.most_common(),
        "self": self_.most_common(top),
        # frames in nearly every sample (the CLI's trunk) say nothing
        "total": [(k, n) for k, n in incl.most_common() if n < TRUNK * total][:top],
    }


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%"


def report(folder: Path, stages: tuple[str, ...] = STAGES, top: int = 10) -> str:
    """The markdown summary of every ``<stage>.raw`` in ``folder``."""
    lines = []
    for stage in stages:
        raw = folder / f"{stage}.raw"
        if not raw.exists():
            continue
        s = summarize(raw, top)
        t = s["samples"]
        lines += [f"### `{stage}`: {t:,} samples ({s['seconds']:.0f} thread-seconds at {RATE} Hz)", ""]
        lines += ["By component: " + ", ".join(f"{c} {_pct(n, t)}" for c, n in s["by_component"]), ""]
        lines += ["| nbp step (innermost nbp frame) | share | its components |", "|---|---:|---|"]
        for step, n in s["by_step"]:
            comps = ", ".join(f"{c} {_pct(m, n)}" for c, m in s["step_components"][step])
            lines.append(f"| `{step}` | {_pct(n, t)} | {comps} |")
        lines += ["", "| top self | share | top total | share |", "|---|---:|---|---:|"]
        for (a, na), (b, nb) in zip(s["self"], s["total"], strict=False):
            lines.append(f"| `{a}` | {_pct(na, t)} | `{b}` | {_pct(nb, t)} |")
        lines.append("")
    return "\n".join(lines)


def record(spy: str, export: Path, work: Path, code: Path | None, stages: list[str]) -> None:
    """Run ``stages`` of the chain, each under py-spy, in the workspace ``work``/ws (fresh when
    ingest is among them); raw profiles and outputs into ``work``."""
    home = work / "ws"
    if "ingest" in stages:
        shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    env = {"NBP_HOME": str(home), **({"PYTHONPATH": str(code)} if code else {})}
    plan = chain_commands(export, work / "scores.parquet")
    for stage in stages:
        spied = [spy, "record", "--native", "--subprocesses", "-r", str(RATE), "--format", "raw"]
        spied += ["-o", str(work / f"{stage}.raw"), "--", *plan[stage]]
        m = run_measured(spied, env=env)
        (work / f"{stage}.log").write_text(m.stdout, encoding="utf-8")
        print(f"{stage}: {m.seconds:.1f} s under py-spy, peak {m.peak_rss_gb:.2f} GB", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--py-spy", help="the py-spy executable (its own venv)")
    ap.add_argument("--export", type=Path, help="the bank export to run the chain on")
    ap.add_argument("--work", type=Path, help="workspace, raw profiles and logs")
    ap.add_argument("--code", help="run nbp from this commit's tree (git archive) instead of the checkout")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--summarize", type=Path, help="only print the summary of the raw profiles in this folder")
    ap.add_argument("--top", type=int, default=10, help="functions per table")
    a = ap.parse_args(argv)
    if a.summarize:
        print(report(a.summarize, top=a.top))
        return 0
    if not (a.py_spy and a.export and a.work):
        ap.error("--py-spy, --export and --work are needed to record")
    a.work.mkdir(parents=True, exist_ok=True)
    code = None
    if a.code:
        code = a.work / "code"
        export_commit(a.code, code)
    record(a.py_spy, a.export, a.work, code, a.stages)
    text = report(a.work, top=a.top)
    (a.work / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    from nbp import telemetry

    telemetry.disable()  # here and in every command run from here
    sys.exit(main(sys.argv[1:]))
