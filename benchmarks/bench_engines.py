"""DuckDB against Spark ``local[2]``: the heavy stages on federations of 1, 2, 4 and 8 member banks.

One simulated 8-bank federation (``nbp simulate --federation 8``, fixed seed, ``--scale``;
kept in ``--data`` and reused). The K-bank workspace holds the K largest banks. Each K is
ingested once (ingest runs on DuckDB whichever the engine) and copied, then each engine runs
the stages on its own copy, each command a child process:

1. ``features``  ``nbp features`` (every bank: build, Feast apply, online-store load)
2. ``train``  ``nbp train`` (every bank's products: point-in-time training sets and fits)
3. ``score``  ``nbp score --bank CODE``, once per bank, at the latest as-of

``compute.engine`` comes from a config overlay (``--config``) written into ``--work``. Wall time
is summed over a stage's commands; memory is the peak of the summed RSS of the command's
process tree, sampled every second (Spark's JVM is a child of the nbp process, so the peak
RSS of one process would miss it). Finished runs are kept in ``--work``/results.json
(``--resume`` continues, ``--report`` writes the section from what finished).

Run: ``.venv/bin/python -m benchmarks.bench_engines [--data DIR] [--work DIR] [--scale X]
[--ks 1 2 4 8] [--engines duckdb spark] [--resume | --report] [--print]``
(writes the ``engines`` section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from benchmarks.bench_federation import Sampler, as_of_of, federation, largest_first
from benchmarks.report import NBP, run_measured, write_section

SECTION = "engines"
STAGES = ("features", "train", "score")
SEED = 7
ENGINES = ("duckdb", "spark")


def _stage(cmds: list[list[str]], env: dict[str, str], log: Path) -> dict:
    """Run a stage's commands in turn: summed wall, the peak of the sampled tree RSS, failures."""
    wall, peak, failed, text = 0.0, 0.0, [], []
    for cmd in cmds:
        with Sampler() as s:
            m = run_measured(["sh", "-c", '"$0" "$@"; echo "[exit $?]"', *cmd], env=env)
        wall += m.seconds
        peak = max([peak, m.peak_rss_gb, *(gb for _, gb in s.samples)])
        if not m.stdout.rstrip().endswith("[exit 0]"):
            errors = [ln for ln in m.stdout.splitlines() if ln.startswith("error:")] or m.stdout.splitlines()[-3:]
            failed.append(f"{' '.join(cmd[1:3])}: {errors[-1][:200] if errors else '?'}")
        text.append(f"$ {' '.join(cmd)}\n{m.stdout}")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("\n".join(text), encoding="utf-8")
    return {"wall": wall, "peak": peak, "failed": failed}


def ingested(data: Path, banks: list[dict], work: Path, k: int) -> Path:
    """A workspace holding the K largest banks, ingested once and reused by both engines."""
    home = work / "ingested" / str(k)
    if (home / ".done").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    for b in banks[:k]:
        m = run_measured(
            [NBP, "ingest", str(data / b["export"]), "--log-level", "WARNING"], env={"NBP_HOME": str(home)}
        )
        if "error:" in m.stdout:
            raise SystemExit(f"ingest of {b['bank_code']} failed:\n{m.stdout[-2000:]}")
    (home / ".done").write_text("", encoding="utf-8")
    return home


def run_engine(engine: str, base: Path, banks: list[dict], work: Path, k: int, as_of: str) -> dict:
    """The three stages with ``compute.engine: engine`` on a fresh copy of the ingested workspace."""
    home = work / "runs" / engine / str(k)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base, home)
    overlay = work / f"{engine}.yaml"
    overlay.write_text(f"compute:\n  engine: {engine}\n", encoding="utf-8")
    cfg = ["--config", str(overlay)]
    plan = {
        "features": [[NBP, "features", *cfg]],
        "train": [[NBP, "train", *cfg]],
        "score": [
            [
                NBP,
                "score",
                "--bank",
                b["bank_code"],
                "--as-of",
                as_of,
                "--out",
                str(home / f"s-{b['bank_code']}.parquet"),
                *cfg,
            ]
            for b in banks[:k]
        ],
    }
    out = {}
    for stage in STAGES:
        r = out[stage] = _stage(plan[stage], {"NBP_HOME": str(home)}, work / "logs" / engine / str(k) / f"{stage}.log")
        print(f"  {engine} K={k} {stage}: {r['wall']:.1f} s, {r['peak']:.2f} GB", file=sys.stderr, flush=True)
    shutil.rmtree(home, ignore_errors=True)  # keep the disk: results and logs stay
    return out


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line ``y = a + b x``: (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def crossing(results: dict, banks: list[dict], ks: list[int], stage: str) -> str:
    """Where Spark's line (wall against customers) meets DuckDB's, from least-squares lines."""
    lines = {}
    for e in ENGINES:
        pts = [
            (sum(b["customers"] for b in banks[:k]), results[f"{e}/{k}"][stage]["wall"])
            for k in ks
            if f"{e}/{k}" in results
        ]
        if len(pts) < 2:
            return "too few points"
        lines[e] = _fit([p[0] for p in pts], [p[1] for p in pts])
    (a_d, b_d), (a_s, b_s) = lines["duckdb"], lines["spark"]
    per = (
        f"DuckDB {b_d * 1e3:.2f} s, Spark {b_s * 1e3:.2f} s per 1,000 customers; "
        f"fixed cost DuckDB {a_d:.0f} s, Spark {a_s:.0f} s"
    )
    if b_d <= 0 or b_s <= 0:
        return (
            f"{per}: a cost per customer that is not positive means the sizes measured are too close "
            "for the noise (the time is fixed cost per bank and per job, not per customer); no crossing is read"
        )
    if b_s >= b_d:
        return f"{per}: on this machine the lines do not cross (Spark's cost per customer is not lower)"
    at = (a_s - a_d) / (b_d - b_s)
    return f"{per}: the lines cross at about {at:,.0f} customers"


def section(results: dict, fed: dict, banks: list[dict], ks: list[int], note: str = "") -> str:
    done = [k for k in ks if all(f"{e}/{k}" in results for e in ENGINES)]
    lines = [
        "## DuckDB against Spark local[2]: features, training and scoring on 1–8 member banks",
        "",
        f"One simulated federation (`nbp simulate --federation 8 --seed {fed['seed']} --scale {fed['scale']}`; "
        f"banks taken largest first). Each K ingested once, then each engine runs `nbp features`, `nbp train` "
        f"and `nbp score --bank CODE --as-of {as_of_of(fed)}` (every bank) on its own copy, with `compute.engine` "
        "from a config overlay. Wall: summed over a stage's commands. Peak: the summed RSS of the command's "
        "process tree (nbp and Spark's JVM), sampled every second. 2 shared cores; Spark runs `local[2]` "
        "inside the nbp process (its start, about 6–10 s, is in every Spark figure).",
        "",
        "| K | customers | stage | DuckDB wall s | Spark wall s | Spark / DuckDB | DuckDB peak GB | Spark peak GB |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for k in done:
        n = sum(b["customers"] for b in banks[:k])
        d, s = results[f"duckdb/{k}"], results[f"spark/{k}"]
        for st in STAGES:
            lines.append(
                f"| {k} | {n:,} | `{st}` | {d[st]['wall']:.0f} | {s[st]['wall']:.0f} | "
                f"{s[st]['wall'] / d[st]['wall']:.2f} | {d[st]['peak']:.2f} | {s[st]['peak']:.2f} |"
            )
    lines += ["", "Cost per customer and where the lines cross (least squares over the K measured):", ""]
    for st in STAGES:
        lines.append(f"- `{st}`: {crossing(results, banks, done, st)}.")
    bad = [
        f"- {e} K={k} `{st}`: {f}"
        for e in ENGINES
        for k in done
        for st in STAGES
        for f in results[f"{e}/{k}"][st]["failed"]
    ]
    if bad:
        lines += ["", "Commands that exited non-zero (measured all the same):", "", *bad]
    if note:
        lines += ["", note]
    missing = [k for k in ks if k not in done]
    if missing:
        lines += ["", f"Not measured in time: K = {', '.join(map(str, missing))}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/nbp-bench-engines/export"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/nbp-bench-engines/work"))
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--print", action="store_true")
    ap.add_argument("--note", default="", help="a paragraph added to the section (e.g. the machine's load)")
    a = ap.parse_args()
    fed = federation(a.data, SEED, None, a.scale)
    banks = largest_first(fed)
    a.work.mkdir(parents=True, exist_ok=True)
    path = a.work / "results.json"
    results = json.loads(path.read_text(encoding="utf-8")) if (a.resume or a.report) and path.exists() else {}
    if not a.report:
        for k in a.ks:
            base = ingested(a.data, banks, a.work, k)
            for e in a.engines:
                if f"{e}/{k}" in results:
                    continue
                results[f"{e}/{k}"] = run_engine(e, base, banks, a.work, k, as_of_of(fed))
                path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    body = section(results, fed, banks, sorted(a.ks), a.note)
    if a.print:
        print(body)
        return
    cmd = f".venv/bin/python -m benchmarks.bench_engines --scale {a.scale} --ks {' '.join(map(str, a.ks))}"
    write_section(SECTION, body, cmd)


if __name__ == "__main__":
    main()
