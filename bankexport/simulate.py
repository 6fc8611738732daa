"""The bank simulator behind ``nbp simulate``: a county rural bank's export plus its oracle.

``simulate(out, ...)`` writes ``out/export/`` (every table of the bank export spec as
``<table>.parquet`` plus ``manifest.json``) and, beside it, ``out/oracle/oracle.parquet``
with each candidate's true probability of uptake, ``out/oracle/uplift.parquet`` with what a
contact would change, and ``out/campaigns/<campaign_id>.csv``, the assignment file of each
randomised campaign the bank ran. The world is drawn once
(:mod:`bankexport.sim_population`, :mod:`bankexport.sim_world`, gathered in
:class:`bankexport.sim_state.SimState`), then months run one by one (:func:`run_months`):
drivers known at the month's start set each product's application hazard and contacts
change it (:mod:`bankexport.sim_uptake`, :mod:`bankexport.sim_contact`, arithmetic in
:mod:`bankexport.sim_oracle`), loans are
recorded (:mod:`bankexport.sim_loans`), and the month's transactions and balances
(:mod:`bankexport.sim_activity`) are appended to the Parquet files as one row group
(:mod:`bankexport.sim_writers`). ``write_csv_export`` converts a written export to CSV
(UTF-8 or GBK). A :class:`BankProfile` (:mod:`bankexport.sim_profile`) makes the bank differ
from the reference one; :mod:`bankexport.sim_federation` simulates several such banks.
``docs/simulator.md`` documents the mechanism.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from bankexport import sim_params as P
from bankexport.sim_activity import balances, services_month, transactions, turnover_month
from bankexport.sim_calendar import calendar, month_days, rng
from bankexport.sim_loans import other_loans, preexisting_loans
from bankexport.sim_oracle import oracle_tables
from bankexport.sim_population import build_population
from bankexport.sim_profile import BankProfile
from bankexport.sim_state import SimState
from bankexport.sim_uptake import drivers, month_hazards, solve_intercepts, uptake
from bankexport.sim_writers import (
    MonthWriter,
    write_campaigns,
    write_manifest,
    write_oracle,
    write_static,
    write_uplift,
)
from bankexport.spec import ALL_TABLES, FORMAT
from nbp.errors import ConfigError

__all__ = [
    "FULL_CUSTOMERS",
    "PRODUCTS",
    "BankProfile",
    "SimSummary",
    "last_month",
    "run_months",
    "simulate",
    "write_csv_export",
]

log = logging.getLogger(__name__)

FULL_CUSTOMERS = P.FULL_CUSTOMERS
PRODUCTS = P.PRODUCTS


@dataclass
class SimSummary:
    """What one run wrote."""

    out: Path
    export_dir: Path
    oracle_path: Path
    customers: int
    months: int
    export_date: str
    rows: dict[str, int]  # per table written (a table the bank does not have is absent), and "oracle"
    grants: dict[str, int]  # loans granted during the simulated months, per product
    labels: dict[str, int]  # positive (customer, as-of) labels pooled over the oracle's as-of dates
    expected: dict[str, float]  # sum of p_true over oracle rows, per product
    seconds: float
    uplift_path: Path  # oracle/uplift.parquet: each candidate's true uplift of a contact
    campaigns_dir: Path  # campaigns/<campaign_id>.csv: the randomised campaigns' assignments
    campaigns: int  # randomised campaigns run
    randomised: dict[str, int]  # customers randomised, per product (summed over its campaigns)
    uplift: dict[str, float]  # sum of uplift_true at the latest as-of, per product

    def describe(self) -> str:
        """A short multi-line text for people."""
        lines = [
            f"simulated bank: {self.customers:,} customers x {self.months} months, "
            f"export date {self.export_date}, {self.seconds:.0f} s",
            f"export: {self.export_dir}",
        ]
        lines += [
            f"  {t:<15} {self.rows[t]:>12,} rows" if t in self.rows else f"  {t:<15} {'absent':>12}" for t in ALL_TABLES
        ]
        lines.append("uptake (grants during the simulation; positive labels pooled over as-of; oracle sum p):")
        lines += [
            f"  {p:<13} {self.grants[p]:>8,} grants {self.labels[p]:>8,} labels {self.expected[p]:>10,.1f} expected"
            for p in PRODUCTS
        ]
        lines.append(f"oracle: {self.oracle_path} ({self.rows.get('oracle', 0):,} rows; omitted rows have p=0)")
        lines.append(
            f"true uplift of a contact: {self.uplift_path} ({self.rows.get('uplift', 0):,} rows); "
            "summed over the candidates at the export date: "
            + ", ".join(f"{p} {self.uplift[p]:+.1f}" for p in PRODUCTS)
        )
        lines.append(
            f"randomised campaigns: {self.campaigns} in {self.campaigns_dir} ("
            + ", ".join(f"{p} {self.randomised[p]:,}" for p in PRODUCTS)
            + " customers)"
        )
        return "\n".join(lines)


def simulate(
    out: Path,
    customers: int = 20_000,
    months: int = 24,
    end: str = "2026-10",
    seed: int = 7,
    horizon_days: int = 90,
    profile: BankProfile | None = None,
) -> SimSummary:
    """Simulate a county rural bank and write its export and oracle.

    Args:
        out: folder to write to; ``out/export/`` gets the export, ``out/oracle/`` the oracle.
        customers: number of customers (``FULL_CUSTOMERS`` is the reference bank).
        months: number of simulated months, ending with ``end``.
        end: last simulated month, ``YYYY-MM``.
        seed: random seed; the same seed gives byte-identical files.
        horizon_days: label horizon of the oracle's probability.
        profile: how the bank differs from the reference bank (population shares, tax
            data, product launches, name and code); None: the reference bank.

    Returns:
        A :class:`SimSummary`. ``oracle.parquet`` has columns ``customer_id`` (string),
        ``product`` (consumer | business_flow | tax_linked), ``as_of`` (date, a month start),
        ``p_true`` (float64): P(a loan of that product is granted in
        ``(as_of, as_of + horizon_days]``), for spec candidates with p > 0 (others: p = 0);
        ``p_asof`` (float64): the same probability computed with the as-of month's
        drivers for every month of the window, i.e. from what can be known at the as-of
        date (``p_true`` also knows how turnover, tax records, life events and a
        customer's kind move inside the window). Both take each window month's contacts
        as the bank's policy draws them (the chance that a touch reaches the customer)
        and integrate the hidden effect over its posterior given the customer's
        applications before the as-of date.
        ``uplift.parquet`` has the oracle's rows and the candidates at the export date (the
        latest as-of nbp scores), columns ``customer_id``, ``product``, ``as_of``,
        ``p_base`` (as ``p_asof`` but without any contact), ``p_contacted`` (the same with a
        contact that reaches the customer in the as-of month),
        ``uplift_true = p_contacted - p_base`` and ``kind``
        (persuadable | sure_thing | lost_cause | sleeping_dog). ``campaigns/`` has one
        assignment file per randomised campaign (``campaign_id, product, list_date,
        customer_id, arm``).
    """
    t0 = time.perf_counter()
    last = _check_arguments(customers, months, end, horizon_days)
    month_starts = (last - months + 1 + np.arange(months)).astype("datetime64[D]")
    start = month_starts[0]
    export_date = (last + 1).astype("datetime64[D]")
    profile = profile or BankProfile()
    profile.check(start, export_date)
    out = Path(out)
    exp_dir, ora_dir = out / "export", out / "oracle"
    exp_dir.mkdir(parents=True, exist_ok=True)
    ora_dir.mkdir(parents=True, exist_ok=True)
    n_days = [month_days(ms) for ms in month_starts]
    cal = [calendar(ms, nd) for ms, nd in zip(month_starts, n_days, strict=True)]
    cal.append(calendar(export_date, month_days(export_date)))  # the export month: the latest as-of's drivers

    pop = build_population(customers, start, int((export_date - start).astype(int)), rng(seed, 1), profile)
    state = SimState(pop, month_starts, n_days, cal, export_date, seed, profile)
    run_months(state, exp_dir)
    rows = write_static(state, exp_dir)
    randomised = write_campaigns(state, out / "campaigns")
    parts = oracle_tables(state, horizon_days, month_hazards(state, state.M, drivers(state, state.M)))
    rows["oracle"] = write_oracle(parts.oracle, ora_dir / "oracle.parquet")
    rows["uplift"] = write_uplift(parts.uplift, ora_dir / "uplift.parquet")
    write_manifest(exp_dir, export_date, seed, profile.bank, profile.bank_code)
    summary = SimSummary(
        out,
        exp_dir,
        ora_dir / "oracle.parquet",
        customers,
        months,
        str(export_date),
        rows,
        state.grant_counts,
        parts.labels,
        parts.expected,
        time.perf_counter() - t0,
        ora_dir / "uplift.parquet",
        out / "campaigns",
        len(state.campaigns),
        randomised,
        latest_uplift(ora_dir / "uplift.parquet", export_date),
    )
    log.info("simulate: %s customers x %s months in %.1f s", f"{customers:,}", months, summary.seconds)
    return summary


def latest_uplift(path: Path, export_date: np.datetime64) -> dict[str, float]:
    """Per product, the sum of ``uplift_true`` over the candidates at the export date."""
    table = pq.read_table(path, columns=["product", "as_of", "uplift_true"])
    table = table.filter(pc.equal(table["as_of"], pa.scalar(export_date.astype(object), pa.date32())))
    sums = table.group_by("product").aggregate([("uplift_true", "sum")]).to_pydict()
    found = dict(zip(sums["product"], sums["uplift_true_sum"], strict=True))
    return {p: float(found.get(p, 0.0)) for p in PRODUCTS}


def last_month(end: str) -> np.datetime64:
    """``end`` (``YYYY-MM``) as a month; a ``ConfigError`` naming it when it is not one."""
    try:
        return np.datetime64(end, "M")
    except ValueError:
        raise ConfigError(f"simulate: end {end!r} is not a month YYYY-MM") from None


def _check_arguments(customers: int, months: int, end: str, horizon_days: int) -> np.datetime64:
    """The last simulated month; a ``ConfigError`` for sizes below 1, a bad month or an uncovered year."""
    if customers < 1 or months < 1 or horizon_days < 1:
        raise ConfigError(
            f"simulate: customers ({customers}), months ({months}) and horizon_days ({horizon_days}) must be positive"
        )
    last = last_month(end)
    years = range(int(str(last - months + 1)[:4]), int(str(last)[:4]) + 2)
    missing = [y for y in years if y not in P.SPRING_FESTIVAL]
    if missing:
        raise ConfigError(
            f"simulate: no Spring Festival date for {missing[0]} (extend SPRING_FESTIVAL in bankexport/sim_params.py)"
        )
    return last


def run_months(s: SimState, exp_dir: Path) -> None:
    """Walk the months: loans, services, turnover, transactions, balances.

    Every step draws from its own stream ``(seed, step, month)``; the order of the steps
    within a month is the order in which they read each other's results.
    """
    writer = MonthWriter(exp_dir)
    try:
        for m in tqdm(range(s.M), desc="simulate", unit="month", disable=None):
            drv = drivers(s, m)
            if m == 0:
                solve_intercepts(s, drv)
                preexisting_loans(s, drv, rng(s.seed, 7))
            uptake(s, m, drv, rng(s.seed, 200, m), rng(s.seed, 210, m))
            other_loans(s, m, rng(s.seed, 300, m))
            services_month(s, m, rng(s.seed, 400, m))
            turnover_month(s, m, rng(s.seed, 500, m))
            txn = transactions(s, m, rng(s.seed, 600, m)).table(s, m, rng(s.seed, 100, m), s.n_txn)
            s.n_txn += txn.num_rows
            bal = balances(s, m, rng(s.seed, 700, m))
            s.n_bal += bal.num_rows
            writer.write(txn, bal)
    finally:
        writer.close()


def write_csv_export(src_dir: Path, dst_dir: Path, encoding: str = "utf-8") -> list[Path]:
    """Convert a Parquet bank export to CSV files plus a manifest naming the encoding.

    Args:
        src_dir: folder with ``<table>.parquet`` (and optionally ``manifest.json``).
        dst_dir: folder to write ``<table>.csv`` and ``manifest.json`` to.
        encoding: ``utf-8`` or ``gbk``.

    Returns:
        The CSV files written. Dates are ``YYYY-MM-DD``, timestamps ``YYYY-MM-DDTHH:MM:SS``,
        money with at most 2 decimals, empty cells for nulls.
    """
    import pyarrow.csv as pacsv

    if encoding not in ("utf-8", "gbk"):
        raise ValueError("encoding must be 'utf-8' or 'gbk'")
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(src_dir.glob("*.parquet")):
        dst = dst_dir / f"{f.stem}.csv"
        pf = pq.ParquetFile(f)
        with open(dst, "wb") as out:
            header = True
            for batch in pf.iter_batches(batch_size=500_000):
                tab = pa.Table.from_arrays([_csv_column(col) for col in batch.columns], names=batch.schema.names)
                buf = pa.BufferOutputStream()
                pacsv.write_csv(tab, buf, pacsv.WriteOptions(include_header=header, quoting_style="needed"))
                data = buf.getvalue().to_pybytes()
                out.write(data if encoding == "utf-8" else data.decode("utf-8").encode("gbk"))
                header = False
        written.append(dst)
    manifest = {"format": FORMAT, "encoding": encoding}
    if (src_dir / "manifest.json").exists():
        manifest = {**json.loads((src_dir / "manifest.json").read_text(encoding="utf-8")), "encoding": encoding}
    (dst_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return written


def _csv_column(col: pa.Array) -> pa.Array:
    """A column as CSV text: ISO dates and times to the second, money with 2 decimals."""
    if pa.types.is_timestamp(col.type):
        return pc.strftime(col.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
    if pa.types.is_date(col.type):
        return pc.strftime(col, format="%Y-%m-%d")
    if pa.types.is_floating(col.type):
        return pc.cast(pc.cast(pc.round(col, 2), pa.decimal128(20, 2)), pa.string())
    return col
