"""Benchmark of ``nbp ingest``: end-to-end rows per second and peak memory, CSV and Parquet.

Builds a synthetic export with valid references (numpy + pyarrow, no simulator),
plants a few bad rows so the reject path runs too, then runs ``.venv/bin/nbp ingest``
as a child process (``benchmarks.report.run_measured``) and writes the ``ingest``
section of docs/benchmarks.md, but only for a full run (at least 3 runs of every
input, no baseline); quick runs print their table instead.

Run: ``.venv/bin/python -m benchmarks.bench_ingest [--transactions 5000000] [--runs 3]``
Dev: ``... --runs 1 --formats csv --keep /tmp/x --baseline /path/to/old/tree`` (old vs new, interleaved)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bankexport.spec import ACCOUNT_TYPES, CHANNELS, TXN_TYPES
from benchmarks.report import NBP, median, run_measured, write_section

MIN_RUNS_TO_RECORD = 3
FORMATS = "csv,csv-gbk,parquet"


def _ids(prefix: str, n: int) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(np.arange(n)), pa.string()), "")


def _pick(values: tuple[str, ...], idx: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), pa.array(values)).cast(pa.string())


def build_tables(n_txn: int, seed: int = 1) -> dict[str, pa.Table]:
    """A valid export: customers, accounts, transactions, loans (typed Arrow tables)."""
    rng = np.random.default_rng(seed)
    n_cust = max(n_txn // 50, 10)
    n_acc = n_cust * 2
    cust = _ids("C", n_cust)
    start = np.datetime64("2015-01-01", "D")
    customers = pa.table(
        {
            "customer_id": cust,
            "customer_type": _pick(("individual", "business"), (rng.random(n_cust) < 0.1).astype(int)),
            "gender": _pick(("M", "F"), rng.integers(0, 2, n_cust)),
            "birth_date": pa.array(np.datetime64("1950-01-01") + rng.integers(0, 18000, n_cust)),
            "branch_id": _ids("B", 20).take(pa.array(rng.integers(0, 20, n_cust))),
            "open_date": pa.array(start + rng.integers(0, 3000, n_cust)),
        }
    )
    owner = rng.integers(0, n_cust, n_acc)
    accounts = pa.table(
        {
            "account_id": _ids("A", n_acc),
            "customer_id": cust.take(pa.array(owner)),
            "account_type": _pick(ACCOUNT_TYPES, rng.integers(0, len(ACCOUNT_TYPES), n_acc)),
            "open_date": pa.array(start + rng.integers(0, 3000, n_acc)),
        }
    )
    acc_of = rng.integers(0, n_acc, n_txn)
    secs = np.datetime64("2024-01-01T00:00:00", "s") + rng.integers(0, 700 * 86400, n_txn)
    transactions = pa.table(
        {
            "txn_id": _ids("T", n_txn),
            "account_id": accounts["account_id"].combine_chunks().take(pa.array(acc_of)),
            "customer_id": accounts["customer_id"].combine_chunks().take(pa.array(acc_of)),
            "txn_time": pa.array(secs).cast(pa.timestamp("s")),
            "amount": pa.array(rng.integers(1, 5_000_000, n_txn) / 100.0),
            "direction": _pick(("C", "D"), rng.integers(0, 2, n_txn)),
            "channel": _pick(CHANNELS, rng.integers(0, len(CHANNELS), n_txn)),
            "txn_type": _pick(TXN_TYPES, rng.integers(0, len(TXN_TYPES), n_txn)),
            "counterparty_id": _ids("X", 1000).take(pa.array(rng.integers(0, 1000, n_txn))),
        }
    )
    bad = (
        transactions.slice(0, 1).set_column(0, "txn_id", pa.array(["BAD1"])).set_column(4, "amount", pa.array([0.0]))
    )  # non-positive amount: set aside
    transactions = pa.concat_tables([transactions, bad])
    branches = pa.table(
        {  # the one table with Chinese text (names), as a bank's would have
            "branch_id": _ids("B", 20),
            "name": pa.array([f"第{i}支行" for i in range(20)]),
            "area": _pick(("urban", "rural"), np.arange(20) % 2),
        }
    )
    n_loan = max(n_cust // 4, 2)
    app = start + rng.integers(0, 3500, n_loan)
    loans = pa.table(
        {
            "loan_id": _ids("L", n_loan),
            "customer_id": cust.take(pa.array(rng.integers(0, n_cust, n_loan))),
            "product": _pick(("consumer", "business_flow", "tax_linked"), rng.integers(0, 3, n_loan)),
            "application_date": pa.array(app),
            "grant_date": pa.array(app + 5),
            "amount": pa.array(rng.integers(100, 5000, n_loan) * 100.0),
            "term_months": pa.array(rng.integers(6, 37, n_loan)),
            "status": _pick(("active", "settled"), rng.integers(0, 2, n_loan)),
        }
    )
    return {
        "customers": customers,
        "accounts": accounts,
        "transactions": transactions,
        "loans": loans,
        "branches": branches,
    }


def write_export(tables: dict[str, pa.Table], root: Path, fmt: str) -> None:
    """Write as CSV (timestamps as 'YYYY-MM-DD HH:MM:SS'; strings quoted, as pyarrow does),
    as GBK CSV (``csv-gbk``: manifest says gbk; files with Chinese text re-encoded) or as
    typed Parquet."""
    root.mkdir(parents=True)
    for name, t in tables.items():
        if fmt == "parquet":
            pq.write_table(t, root / f"{name}.parquet")
        else:
            path = root / f"{name}.csv"
            pacsv.write_csv(t, path, pacsv.WriteOptions(quoting_style="needed", include_header=True))
            if fmt == "csv-gbk" and not (raw := path.read_bytes()).isascii():
                path.write_bytes(raw.decode("utf-8").encode("gbk"))
    if fmt != "parquet":
        with (root / "transactions.csv").open("a", encoding="utf-8") as f:
            f.write("BAD2,A0,C0,2024-01-01 00:00:00,1.5,C,mobile,fee\n")  # a field short
    manifest = {"format": "bank-export/1", "export_date": "2025-12-01"}
    if fmt == "csv-gbk":
        manifest["encoding"] = "gbk"
    (root / "manifest.json").write_text(json.dumps(manifest))


STEP = re.compile(
    r"transactions: (read\+check|future dates|references|duplicates|counts|write|reports|keys) "
    r"([\d.]+) s \(cpu ([\d.]+) s\)"
)


@dataclass
class _Variant:
    label: str
    fmt: str
    cmd: list[str]
    env: dict[str, str]
    size_gb: float = 0.0  # the export's files on disk
    secs: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    steps: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _run(v: _Variant, exp: Path, home: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = run_measured([*v.cmd, "ingest", str(exp), "--log-level", "DEBUG"], env={**v.env, "NBP_HOME": str(home)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    v.cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    v.secs.append(m.seconds)
    v.rss.append(m.peak_rss_gb)
    v.loads.append(os.getloadavg()[0])
    for step, wall, cpu in STEP.findall(m.stdout):
        v.steps.setdefault(step, []).append((float(wall), float(cpu)))
    shutil.rmtree(home, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build the exports here and keep them")
    ap.add_argument("--formats", default=FORMATS, help=f"comma-separated subset of {FORMATS}")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="also run the ingest of this source tree (PYTHONPATH), interleaved; never written",
    )
    ap.add_argument("--no-write", action="store_true", help="print the table only; never touch docs/benchmarks.md")
    return ap.parse_args()


def variants(formats: str, root: Path, tables: dict[str, pa.Table], baseline: Path | None) -> list[_Variant]:
    """One variant per input format (and per baseline tree), each export written once under ``root``."""
    out: list[_Variant] = []
    for fmt in formats.split(","):
        exp = root / f"export-{fmt}"
        if not exp.exists():
            write_export(tables, exp, fmt)
        out.append(_Variant(fmt, fmt, [NBP], {}, size_gb=sum(p.stat().st_size for p in exp.iterdir()) / 1e9))
        if baseline is not None:
            tree = str(baseline.resolve())  # first on sys.path, before the checkout (cwd)
            code = f"import sys; sys.path.insert(0, {tree!r}); from nbp.cli import main; main()"
            out.append(_Variant(f"{fmt}, baseline", fmt, [sys.executable, "-c", code], {}, size_gb=out[-1].size_gb))
    return out


def runs_table(vs: list[_Variant], n_txn: int, total: int) -> list[str]:
    """Whole-process figures per input: wall and CPU medians, rates, peak memory, load after each run."""
    rows = [
        "| input | transactions | rows (all tables) | median wall s | txn rows/s (wall) | fastest wall s "
        "| median CPU s | txn rows per CPU-s | peak RSS GB | load avg (1 min) after each run | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for v in vs:
        med, cpu = median(v.secs), median(v.cpus)
        rows.append(
            f"| {v.label} ({v.size_gb:.2f} GB) | {n_txn:,} | {total:,} | {med:.1f} | "
            f"{n_txn / med:,.0f} | {min(v.secs):.1f} | {cpu:.1f} | "
            f"{n_txn / cpu:,.0f} | {max(v.rss):.2f} | "
            f"{', '.join(f'{x:.1f}' for x in v.loads)} | {len(v.secs)} |"
        )
    return rows


def steps_table(vs: list[_Variant]) -> list[str]:
    """The transactions table's steps (from the debug log), median wall / CPU s per input."""
    names = [
        n
        for n in ("read+check", "future dates", "references", "duplicates", "write", "reports")
        if any(n in v.steps for v in vs)
    ]
    rows = ["| input | " + " | ".join(f"{n} wall / CPU s" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for v in vs:
        cells = [
            f"{median([w for w, _ in v.steps[n]]):.2f} / {median([c for _, c in v.steps[n]]):.2f}"
            if n in v.steps
            else "-"
            for n in names
        ]
        rows.append(f"| {v.label} | " + " | ".join(cells) + " |")
    return rows


def section(runs: list[str], steps: list[str], load_before: tuple, load_after: tuple) -> str:
    """The ``ingest`` section: what runs on which input, then both tables."""
    return (
        "## Ingest (`nbp ingest`)\n\nInput: a synthetic export with valid references, a `branches` "
        "table with Chinese names, and two planted bad transactions (one in Parquet), so the reject "
        "path (source lines included) runs. CSV cells are written by pyarrow (strings quoted); "
        "`csv-gbk` is the same export with `encoding: gbk` in the manifest (only `branches.csv` holds "
        "non-ASCII bytes, as in a real export where transactions carry no text).\n\n"
        "Measured end to end, process start to exit: validation of every row and reference, typed Parquet "
        "store, reports. CPU s is user+system "
        "time of the `nbp` process (both cores). Runs are interleaved across inputs. The machine is "
        "shared: with other jobs running, wall time is longer than on an idle 2-core machine, where "
        "it is about CPU s / 2 at best; the load average is given after each run "
        f"(1/5/15 min before the benchmark: {', '.join(f'{x:.1f}' for x in load_before)}; after: "
        f"{', '.join(f'{x:.1f}' for x in load_after)}).\n\n"
        + "\n".join(runs)
        + "\n\nTransactions table, median per step (from `--log-level debug`):\n\n"
        + "\n".join(steps)
    )


def main() -> None:
    args = parse_args()
    # A quick dev run (fewer than 3 runs, not every format, a baseline) must not replace the recorded figures.
    record = not args.no_write and args.runs >= MIN_RUNS_TO_RECORD and args.formats == FORMATS and args.baseline is None
    root = args.keep or Path(tempfile.mkdtemp(prefix="nbp-bench-ingest-"))
    load_before = os.getloadavg()
    try:
        tables = build_tables(args.transactions)
        vs = variants(args.formats, root, tables, args.baseline)
        for i in range(args.runs):  # interleaved: every variant sees the same spread of machine load
            for v in vs:
                _run(v, root / f"export-{v.fmt}", root / f"home-{i}")
        runs = runs_table(vs, args.transactions, sum(t.num_rows for t in tables.values()))
        body = section(runs, steps_table(vs), load_before, os.getloadavg())
        if record:
            write_section(
                "ingest",
                body,
                f".venv/bin/python -m benchmarks.bench_ingest --transactions {args.transactions} --runs {args.runs}",
            )
        else:
            print(body)
            print(
                f"(not written to docs/benchmarks.md: needs --runs >= {MIN_RUNS_TO_RECORD}, every format, "
                "no --baseline and no --no-write)"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
