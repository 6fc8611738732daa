"""Benchmark of ``nbp ingest``: end-to-end rows per second and peak memory, CSV and Parquet.

Builds a synthetic export with valid references (numpy + pyarrow, no simulator),
plants a few bad rows so the reject path runs too, then runs ``.venv/bin/nbp ingest``
as a child process (``benchmarks.report.run_measured``) and writes the ``ingest``
section of docs/benchmarks.md.

Run: ``.venv/bin/python -m benchmarks.bench_ingest [--transactions 5000000] [--runs 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.report import median, run_measured, write_section
from bankexport.spec import ACCOUNT_TYPES, CHANNELS, TXN_TYPES

NBP = str(Path(sys.executable).with_name("nbp"))
MIN_RUNS_TO_RECORD = 3


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
    customers = pa.table({
        "customer_id": cust,
        "customer_type": _pick(("individual", "business"), (rng.random(n_cust) < 0.1).astype(int)),
        "gender": _pick(("M", "F"), rng.integers(0, 2, n_cust)),
        "birth_date": pa.array(np.datetime64("1950-01-01") + rng.integers(0, 18000, n_cust)),
        "branch_id": _ids("B", 20).take(pa.array(rng.integers(0, 20, n_cust))),
        "open_date": pa.array(start + rng.integers(0, 3000, n_cust)),
    })
    owner = rng.integers(0, n_cust, n_acc)
    accounts = pa.table({
        "account_id": _ids("A", n_acc),
        "customer_id": cust.take(pa.array(owner)),
        "account_type": _pick(ACCOUNT_TYPES, rng.integers(0, len(ACCOUNT_TYPES), n_acc)),
        "open_date": pa.array(start + rng.integers(0, 3000, n_acc)),
    })
    acc_of = rng.integers(0, n_acc, n_txn)
    secs = np.datetime64("2024-01-01T00:00:00", "s") + rng.integers(0, 700 * 86400, n_txn)
    transactions = pa.table({
        "txn_id": _ids("T", n_txn),
        "account_id": accounts["account_id"].combine_chunks().take(pa.array(acc_of)),
        "customer_id": accounts["customer_id"].combine_chunks().take(pa.array(acc_of)),
        "txn_time": pa.array(secs).cast(pa.timestamp("s")),
        "amount": pa.array(rng.integers(1, 5_000_000, n_txn) / 100.0),
        "direction": _pick(("C", "D"), rng.integers(0, 2, n_txn)),
        "channel": _pick(CHANNELS, rng.integers(0, len(CHANNELS), n_txn)),
        "txn_type": _pick(TXN_TYPES, rng.integers(0, len(TXN_TYPES), n_txn)),
        "counterparty_id": _ids("X", 1000).take(pa.array(rng.integers(0, 1000, n_txn))),
    })
    bad = transactions.slice(0, 1).set_column(0, "txn_id", pa.array(["BAD1"])).set_column(
        4, "amount", pa.array([0.0]))  # non-positive amount: set aside
    transactions = pa.concat_tables([transactions, bad])
    n_loan = max(n_cust // 4, 2)
    app = start + rng.integers(0, 3500, n_loan)
    loans = pa.table({
        "loan_id": _ids("L", n_loan),
        "customer_id": cust.take(pa.array(rng.integers(0, n_cust, n_loan))),
        "product": _pick(("consumer", "business_flow", "tax_linked"), rng.integers(0, 3, n_loan)),
        "application_date": pa.array(app),
        "grant_date": pa.array(app + 5),
        "amount": pa.array(rng.integers(100, 5000, n_loan) * 100.0),
        "term_months": pa.array(rng.integers(6, 37, n_loan)),
        "status": _pick(("active", "settled"), rng.integers(0, 2, n_loan)),
    })
    return {"customers": customers, "accounts": accounts, "transactions": transactions, "loans": loans}


def write_export(tables: dict[str, pa.Table], root: Path, fmt: str) -> None:
    """Write as CSV (timestamps as 'YYYY-MM-DD HH:MM:SS') or as typed Parquet."""
    root.mkdir(parents=True)
    for name, t in tables.items():
        if fmt == "parquet":
            pq.write_table(t, root / f"{name}.parquet")
        else:
            pacsv.write_csv(t, root / f"{name}.csv",
                            pacsv.WriteOptions(quoting_style="needed", include_header=True))
    if fmt == "csv":
        with (root / "transactions.csv").open("a", encoding="utf-8") as f:
            f.write("BAD2,A0,C0,2024-01-01 00:00:00,1.5,C,mobile,fee\n")  # a field short
    (root / "manifest.json").write_text(json.dumps({"format": "bank-export/1", "export_date": "2025-12-01"}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build the exports here and keep them")
    ap.add_argument("--formats", default="csv,parquet", help="comma-separated: csv, parquet")
    ap.add_argument("--no-write", action="store_true",
                    help="print the table only; never touch docs/benchmarks.md")
    args = ap.parse_args()
    # A quick dev run (fewer than 3 runs, or one format only) must not replace the recorded figures.
    record = not args.no_write and args.runs >= MIN_RUNS_TO_RECORD and args.formats == "csv,parquet"
    root = args.keep or Path(tempfile.mkdtemp(prefix="nbp-bench-ingest-"))
    rows = ["| input | transactions | rows (all tables) | median wall s | txn rows/s (wall) | median CPU s "
            "| txn rows per CPU-s | peak RSS GB | load avg (1 min) | runs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    try:
        tables = build_tables(args.transactions)
        total = sum(t.num_rows for t in tables.values())
        for fmt in args.formats.split(","):
            exp = root / f"export-{fmt}"
            if not exp.exists():
                write_export(tables, exp, fmt)
            size = sum(p.stat().st_size for p in exp.iterdir()) / 1e9
            secs, cpus, rss, loads = [], [], [], []
            for i in range(args.runs):
                home = root / f"home-{fmt}-{i}"
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                m = run_measured([NBP, "ingest", str(exp), "--log-level", "WARNING"], env={"NBP_HOME": str(home)})
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                secs.append(m.seconds)
                rss.append(m.peak_rss_gb)
                loads.append(os.getloadavg()[0])
                shutil.rmtree(home, ignore_errors=True)
            med, cpu = median(secs), median(cpus)
            rows.append(f"| {fmt} ({size:.2f} GB) | {args.transactions:,} | {total:,} | {med:.1f} | "
                        f"{args.transactions / med:,.0f} | {cpu:.1f} | {args.transactions / cpu:,.0f} | "
                        f"{max(rss):.2f} | {median(loads):.1f} | {len(secs)} |")
        body = ("### Ingest (`nbp ingest`)\n\nEnd to end: process start to exit, validation of every row and "
                "reference, typed Parquet store, reports. Synthetic export with valid references and two "
                "planted bad transactions (one in Parquet). CPU s is user+system time of the `nbp` process "
                "(both cores); the load average shows how busy the shared machine was: with other jobs "
                "running, wall time is longer than on an idle 2-core machine, where it is about CPU s / 2 "
                "at best.\n\n" + "\n".join(rows))
        if record:
            write_section("ingest", body, f".venv/bin/python -m benchmarks.bench_ingest --transactions "
                                          f"{args.transactions} --runs {args.runs}")
        else:
            print(body)
            print(f"(not written to docs/benchmarks.md: needs --runs >= {MIN_RUNS_TO_RECORD}, both formats "
                  "and no --no-write)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
