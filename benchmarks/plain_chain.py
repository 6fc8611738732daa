"""A plain reference chain for ``benchmarks/bench_chain.py``: one file, DuckDB and LightGBM, no nbp.

What an engineer would write by hand to get next-best-product scores out of a bank export
(``/work/shared/spec/bank-export.md``), to measure nbp's chain against. It reads the export
folder with DuckDB (each table ``<table>.parquet`` or ``<table>.csv``, UTF-8), builds about 130
features per customer and as-of month over the as-of months nbp builds (every month start
from the second full month of transactions to the export date), labels them per the spec,
fits one default ``lightgbm.LGBMClassifier()`` per product and scores every customer at the
latest as-of. It imports nothing from nbp: what it shares with nbp is written out here.

Features at T use records dated strictly before T (spec, "Point in time"):

* transactions per customer and month (money in and out, amounts by direction and type,
  counts by channel), summed over the 1, 3, 6 and 12 whole months before T with window
  functions over a dense customer x month grid;
* balances: the month-end and average daily balances of the months before T;
* holdings at T: accounts open by type, services held, loans active by product, loans
  applied for and granted, the worst delinquency of loans ended before T;
* contacts in the 12 months before T by product and outcome; the latest tax record
  published before T; the customer's own columns (enums as codes in the spec's order),
  age, tenure and the branch's area.

Labels (spec, "Labels"): for product P at T, 1 when a loan of P is granted in (T, T + 90 days];
customers holding an active P loan at T are not candidates. A product's candidates also meet
its eligibility rules, the bank's definitions of who may be offered it (the same three rules
as ``configs/products.yaml``, written out as SQL). Each model is fitted on the candidates of
the closed months whose label windows ended before the last ``--test-months`` (2, as nbp's
``training.test_months``) begin: the same fitting months as nbp's, with negatives
down-sampled to ``--max-rows`` rows (every uptake kept, negatives weighted back; nbp's
``training.max_rows`` is the same budget), and its AUC is printed on every candidate of the
held-out months, the window of nbp's champion gate. There is no validation of the input, no
feature store, no tracking, no calibration and no gate.

LightGBM's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` in the process's
environment unless set): on a loaded 2-core machine the default spinning made a default fit of
100,000 rows 12.4 s instead of 4.8 s, which would flatter nbp (its boosters are single-threaded).

Run: ``python benchmarks/plain_chain.py EXPORT_DIR --work DIR [--max-rows 150000] [--test-months 2]
[--json FILE]``.
Writes ``DIR/plain.duckdb`` (the feature table) and ``DIR/scores.parquet`` (``customer_id``,
``as_of`` and one score column per product); prints one line per phase and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np

HORIZON_DAYS = 90
PRODUCTS = ("consumer", "business_flow", "tax_linked")
LOAN_PRODUCTS = ("consumer", "business_flow", "tax_linked", "agricultural", "mortgage", "other")
# Who may be offered each product (configs/products.yaml's rules on the same facts).
ELIGIBLE = {
    "consumer": "customer_type = 0 AND age_years BETWEEN 18 AND 60 AND coalesce(worst_overdue_ended, 0) <= 30",
    "business_flow": "out_settle_n_3m >= 1",
    "tax_linked": "tax_grade IN (0, 1, 2)",
}

# The columns each table is read with (a CSV's text is cast to them; a missing optional table is empty).
TABLES = {
    "customers": {
        "customer_id": "VARCHAR",
        "customer_type": "VARCHAR",
        "gender": "VARCHAR",
        "birth_date": "DATE",
        "occupation": "VARCHAR",
        "employer_type": "VARCHAR",
        "marital_status": "VARCHAR",
        "education": "VARCHAR",
        "residence": "VARCHAR",
        "industry": "VARCHAR",
        "established_date": "DATE",
        "branch_id": "VARCHAR",
        "open_date": "DATE",
        "risk_tolerance": "VARCHAR",
    },
    "accounts": {
        "account_id": "VARCHAR",
        "customer_id": "VARCHAR",
        "account_type": "VARCHAR",
        "open_date": "DATE",
        "close_date": "DATE",
    },
    "transactions": {
        "customer_id": "VARCHAR",
        "txn_time": "TIMESTAMP",
        "amount": "DOUBLE",
        "direction": "VARCHAR",
        "channel": "VARCHAR",
        "txn_type": "VARCHAR",
    },
    "loans": {
        "customer_id": "VARCHAR",
        "product": "VARCHAR",
        "application_date": "DATE",
        "grant_date": "DATE",
        "amount": "DOUBLE",
        "term_months": "INTEGER",
        "max_overdue_days": "INTEGER",
        "end_date": "DATE",
    },
    "balances": {"account_id": "VARCHAR", "month": "VARCHAR", "avg_daily_balance": "DOUBLE", "end_balance": "DOUBLE"},
    "tax_records": {
        "customer_id": "VARCHAR",
        "tax_year": "INTEGER",
        "months_filed": "INTEGER",
        "tax_paid": "DOUBLE",
        "credit_grade": "VARCHAR",
        "published_date": "DATE",
    },
    "services": {"customer_id": "VARCHAR", "service": "VARCHAR", "start_date": "DATE", "end_date": "DATE"},
    "contacts": {"customer_id": "VARCHAR", "product": "VARCHAR", "contact_date": "DATE", "outcome": "VARCHAR"},
    "branches": {"branch_id": "VARCHAR", "area": "VARCHAR"},
}
REQUIRED = ("customers", "accounts", "transactions", "loans")

# Enum columns of customers as integer codes, in the spec's order.
ENUMS = {
    "customer_type": ["individual", "business"],
    "gender": ["M", "F"],
    "occupation": [
        "farmer",
        "merchant",
        "micro_business_owner",
        "civil_servant",
        "public_institution",
        "enterprise_employee",
        "migrant_worker",
        "retired",
        "student",
        "other",
    ],
    "employer_type": ["government", "public_institution", "soe", "private", "self_employed", "agriculture", "none"],
    "marital_status": ["single", "married", "divorced", "widowed"],
    "education": ["primary", "secondary", "college", "bachelor", "postgraduate"],
    "residence": ["urban", "rural"],
    "industry": list("ABCDEFGHIJKLMNOPQRST"),
    "risk_tolerance": ["C1", "C2", "C3", "C4", "C5"],
}
# Monthly money in (C) and out (D) by transaction type: each summed over the windows below.
FLOWS = [
    ("C", "payroll"),
    ("C", "pension"),
    ("C", "subsidy"),
    ("C", "transfer"),
    ("C", "cash"),
    ("C", "merchant_settlement"),
    ("C", "loan_disbursement"),
    ("C", "interest"),
    ("C", "other"),
    ("D", "transfer"),
    ("D", "cash"),
    ("D", "purchase"),
    ("D", "tax"),
    ("D", "social_insurance"),
    ("D", "housing_fund"),
    ("D", "utility"),
    ("D", "loan_repayment"),
    ("D", "fee"),
    ("D", "other"),
]
CHANNELS = ("counter", "atm", "mobile", "pos", "qr", "agent")
ACCOUNT_TYPES = ("current", "savings", "time_deposit", "wealth", "loan", "debit_card", "credit_card")
SERVICES = (
    "mobile_banking",
    "wechat_banking",
    "payroll_agency",
    "social_security_card",
    "qr_merchant",
    "pos_terminal",
    "wealth_management",
    "insurance_agency",
)
GRADES = ["A", "B", "M", "C", "D"]
PARTS = ("acc", "srv", "lns", "cts", "tax", "lab")  # the relations joined to the (customer, as-of) rows
# their columns that stay unknown for a customer without such records (every other one is a count: 0)
UNKNOWN_IF_NONE = {
    "months_since_grant",
    "months_since_application",
    "worst_overdue_ended",
    "days_since_contact",
    "tax_grade",
    "tax_paid",
    "tax_months_filed",
}


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _month(d: date, n: int = 0) -> date:
    """The first day of the month ``n`` months after ``d``'s."""
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return date(y, m + 1, 1)


def open_export(con: duckdb.DuckDBPyConnection, export: Path) -> date:
    """One view per table of ``export`` (Parquet or CSV); return the export date.

    The export date is the manifest's, else the day after the latest transaction.
    """
    for table, cols in TABLES.items():
        pq, csv = export / f"{table}.parquet", export / f"{table}.csv"
        if pq.exists():
            src = f"read_parquet({_q(str(pq))})"
        elif csv.exists():
            src = f"read_csv({_q(str(csv))}, header = true, all_varchar = true)"
        elif table in REQUIRED:
            raise SystemExit(f"{export}: required table {table} missing")
        else:
            src = "(SELECT 1 WHERE false)"
        have = set(con.sql(f"SELECT * FROM {src}").columns)  # an optional column may be left out
        select = ", ".join(f"CAST({c if c in have else 'NULL'} AS {t}) AS {c}" for c, t in cols.items())
        con.execute(f"CREATE VIEW {table} AS SELECT {select} FROM {src}")
    manifest = export / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text(encoding="utf-8")).get("export_date"):
        return date.fromisoformat(json.loads(manifest.read_text(encoding="utf-8"))["export_date"])
    return con.execute("SELECT max(txn_time)::DATE + 1 FROM transactions").fetchone()[0]


def as_of_months(con: duckdb.DuckDBPyConnection, export_date: date) -> list[date]:
    """Every month start from the second full month of transactions to the export date (nbp's as-of dates)."""
    lo = con.execute("SELECT min(txn_time) FROM transactions").fetchone()[0]
    first_full = lo.date().replace(day=1) if (lo.day == 1 and lo.time().isoformat() == "00:00:00") else _month(lo, 1)
    out, t = [], _month(first_full, 1)
    while t <= (export_date + timedelta(days=1)).replace(day=1):
        out.append(t)
        t = _month(t, 1)
    return out


def _window(col: str, k: int, agg: str = "sum") -> str:
    """``agg`` of ``col`` over the ``k`` whole months before the grid row's month."""
    return f"{agg}({col}) OVER (PARTITION BY customer_id ORDER BY m ROWS BETWEEN {k} PRECEDING AND 1 PRECEDING)"


def build_features(con: duckdb.DuckDBPyConnection, as_ofs: list[date]) -> list[str]:
    """Create the table ``feats``: one row per (customer, as-of T) with ``open_date < T``,
    its features and, per product P, ``holds_P`` (an active P loan at T) and ``y_P`` (the label).

    Returns:
        The feature columns.
    """
    last = as_ofs[-1]
    con.execute(f"CREATE TEMP TABLE asofs AS SELECT unnest([{', '.join(f'DATE {_q(str(t))}' for t in as_ofs)}]) AS t")
    lo = con.execute("SELECT min(txn_time)::DATE FROM transactions").fetchone()[0]
    first = max(_month(lo), _month(as_ofs[0], -12))
    months = [first]
    while months[-1] < last:
        months.append(_month(months[-1], 1))
    con.execute(f"CREATE TEMP TABLE months AS SELECT unnest([{', '.join(f'DATE {_q(str(m))}' for m in months)}]) AS m")

    # transactions -> customer x month
    flow_cols = [f"{'in' if d == 'C' else 'out'}_{t}" for d, t in FLOWS]
    flows = [
        f"sum(amount) FILTER (direction = {_q(d)} AND txn_type = {_q(t)}) AS {c}"
        for (d, t), c in zip(FLOWS, flow_cols, strict=True)
    ]
    chans = [f"count(*) FILTER (channel = {_q(c)}) AS n_{c}" for c in CHANNELS]
    con.execute(f"""
        CREATE TEMP TABLE tm AS
        SELECT customer_id, date_trunc('month', txn_time)::DATE AS m,
               sum(amount) FILTER (direction = 'C') AS in_amt, count(*) FILTER (direction = 'C') AS in_n,
               sum(amount) FILTER (direction = 'D') AS out_amt, count(*) FILTER (direction = 'D') AS out_n,
               count(*) FILTER (txn_type = 'merchant_settlement') AS settle_n,
               {", ".join(flows + chans)}
        FROM transactions WHERE txn_time >= TIMESTAMP {_q(str(first))} AND txn_time < TIMESTAMP {_q(str(last))}
        GROUP BY 1, 2""")
    con.execute(f"""
        CREATE TEMP TABLE bm AS
        SELECT a.customer_id, strptime(b.month || '-01', '%Y-%m-%d')::DATE AS m,
               sum(b.avg_daily_balance) AS adb, sum(b.end_balance) AS eb
        FROM balances b JOIN accounts a USING (account_id)
        WHERE b.month >= {_q(first.strftime("%Y-%m"))} AND b.month < {_q(last.strftime("%Y-%m"))}
        GROUP BY 1, 2""")
    measures = [c for c in con.sql("SELECT * FROM tm").columns if c not in ("customer_id", "m")]
    wins = [
        *(f"{_window(c, k)} AS {c}_{k}m" for c in ("in_amt", "in_n", "out_amt", "out_n") for k in (1, 3, 6, 12)),
        *(f"{_window(c, k)} AS {c}_{k}m" for c in flow_cols for k in (1, 3, 12)),
        *(f"{_window(f'n_{c}', 3)} AS n_{c}_3m" for c in CHANNELS),
        f"{_window('settle_n', 3)} AS out_settle_n_3m",
        f"{_window('CAST(in_n + out_n > 0 AS INTEGER)', 12)} AS active_months_12m",
        f"{_window('eb', 1, 'max')} AS end_balance_1m",
        f"{_window('adb', 1, 'max')} AS adb_1m",
        f"{_window('adb', 3, 'avg')} AS adb_3m",
        f"{_window('adb', 12, 'avg')} AS adb_12m",
        f"{_window('eb', 6, 'min')} AS end_balance_min_6m",
    ]
    con.execute(f"""
        CREATE TEMP TABLE win AS
        SELECT customer_id, m AS t, {", ".join(wins)}
        FROM (
            SELECT c.customer_id, g.m, b.adb, b.eb, {", ".join(f"coalesce(x.{c}, 0) AS {c}" for c in measures)}
            FROM (SELECT customer_id FROM customers) c CROSS JOIN months g
            LEFT JOIN tm x ON x.customer_id = c.customer_id AND x.m = g.m
            LEFT JOIN bm b ON b.customer_id = c.customer_id AND b.m = g.m
        )
        QUALIFY m IN (SELECT t FROM asofs)""")

    ended = "coalesce(end_date, grant_date + to_months(term_months))"
    active = f"grant_date < t AND ({ended} IS NULL OR {ended} >= t)"
    is_open = "(close_date IS NULL OR close_date >= t)"
    by_type = ", ".join(f"count(*) FILTER (account_type = {_q(a)} AND {is_open}) AS acc_{a}" for a in ACCOUNT_TYPES)
    con.execute(f"""
        CREATE TEMP TABLE acc AS
        SELECT customer_id, t, count(*) FILTER ({is_open}) AS accounts_open, {by_type},
               count(*) FILTER (open_date >= t - INTERVAL 12 MONTH) AS accounts_opened_12m
        FROM accounts JOIN asofs ON open_date < t GROUP BY 1, 2""")
    held = "(end_date IS NULL OR end_date >= t)"
    by_service = ", ".join(f"bool_or(service = {_q(s)} AND {held})::INTEGER AS svc_{s}" for s in SERVICES)
    con.execute(f"""
        CREATE TEMP TABLE srv AS
        SELECT customer_id, t, count(DISTINCT service) FILTER ({held}) AS services_held, {by_service}
        FROM services JOIN asofs ON start_date < t GROUP BY 1, 2""")
    con.execute(f"""
        CREATE TEMP TABLE lns AS
        SELECT customer_id, t, count(*) FILTER ({active}) AS loans_active,
               coalesce(sum(amount) FILTER ({active}), 0) AS loans_active_amount,
               {", ".join(f"count(*) FILTER (product = {_q(p)} AND {active}) AS active_{p}" for p in LOAN_PRODUCTS)},
               count(*) FILTER (grant_date < t) AS loans_granted,
               count(*) FILTER (grant_date < t AND {ended} < t) AS loans_ended,
               count(*) FILTER (application_date >= t - INTERVAL 12 MONTH) AS applications_12m,
               count(*) FILTER (application_date >= t - INTERVAL 12 MONTH AND (grant_date IS NULL OR grant_date >= t))
                   AS applications_open_or_refused_12m,
               date_diff('month', max(grant_date) FILTER (grant_date < t), t) AS months_since_grant,
               date_diff('month', max(application_date), t) AS months_since_application,
               max(max_overdue_days) FILTER (grant_date < t AND {ended} < t) AS worst_overdue_ended
        FROM loans JOIN asofs ON application_date < t GROUP BY 1, 2""")
    con.execute(f"""
        CREATE TEMP TABLE lab AS
        SELECT customer_id, t, {", ".join(f"bool_or(product = {_q(p)})::INTEGER AS y_{p}" for p in PRODUCTS)}
        FROM loans JOIN asofs ON grant_date > t AND grant_date <= t + INTERVAL {HORIZON_DAYS} DAY GROUP BY 1, 2""")
    con.execute(f"""
        CREATE TEMP TABLE cts AS
        SELECT customer_id, t, count(*) AS contacts_12m,
               {", ".join(f"count(*) FILTER (product = {_q(p)}) AS contacts_{p}_12m" for p in PRODUCTS)},
               count(*) FILTER (outcome = 'accepted') AS accepted_12m,
               count(*) FILTER (outcome = 'declined') AS declined_12m,
               date_diff('day', max(contact_date), t) AS days_since_contact
        FROM contacts JOIN asofs ON contact_date < t AND contact_date >= t - INTERVAL 12 MONTH GROUP BY 1, 2""")
    grade = f"list_position({GRADES}, credit_grade) - 1"
    key = "epoch(published_date) * 10000 + tax_year"
    con.execute(f"""
        CREATE TEMP TABLE tax AS
        SELECT customer_id, t, arg_max({grade}, {key}) AS tax_grade, arg_max(tax_paid, {key}) AS tax_paid,
               arg_max(months_filed, {key}) AS tax_months_filed, count(*) AS tax_years
        FROM tax_records JOIN asofs ON published_date < t GROUP BY 1, 2""")

    codes = ", ".join(f"list_position({v}, c.{k}) - 1 AS {k}" for k, v in ENUMS.items())
    targets = ", ".join(
        f"coalesce(lns.active_{p}, 0) > 0 AS holds_{p}, coalesce(lab.y_{p}, 0) AS y_{p}" for p in PRODUCTS
    )
    parts = ", ".join(
        f"{c} AS {c}" if c in UNKNOWN_IF_NONE else f"coalesce({c}, 0) AS {c}"
        for r in PARTS[:-1]
        for c in con.sql(f"SELECT * EXCLUDE (customer_id, t) FROM {r}").columns
    )
    joins = " ".join(f"LEFT JOIN {r} ON {r}.customer_id = c.customer_id AND {r}.t = a.t" for r in PARTS)
    con.execute(f"""
        CREATE TABLE feats AS
        SELECT c.customer_id, a.t, {codes},
               date_diff('month', c.birth_date, a.t) // 12 AS age_years,
               date_diff('month', c.open_date, a.t) AS tenure_months,
               date_diff('month', c.established_date, a.t) AS firm_age_months,
               (br.area = 'rural')::INTEGER AS branch_rural,
               w.* EXCLUDE (customer_id, t), {parts}, {targets}
        FROM customers c JOIN asofs a ON c.open_date < a.t
        LEFT JOIN branches br ON br.branch_id = c.branch_id
        LEFT JOIN win w ON w.customer_id = c.customer_id AND w.t = a.t
        {joins}
    """)
    for r in ("win", "tm", "bm", *PARTS):
        con.execute(f"DROP TABLE {r}")
    cols = con.sql("SELECT * FROM feats").columns
    return [c for c in cols if c not in ("customer_id", "t") and not c.startswith(("holds_", "y_"))]


def _rows(product: str, months: list[date], extra: str = "") -> str:
    ts = ", ".join(f"DATE {_q(str(t))}" for t in months)
    return f"FROM feats WHERE t IN ({ts}) AND NOT holds_{product} AND ({ELIGIBLE[product]}){extra}"


def fit_and_score(
    con: duckdb.DuckDBPyConnection,
    feats: list[str],
    as_ofs: list[date],
    export_date: date,
    max_rows: int,
    test_months: int = 2,
) -> dict[str, dict]:
    """One default LightGBM per product on the closed months whose label windows closed before the last
    ``test_months`` begin; its AUC on those (nbp's gate split, ``training.pipeline.split_months``).

    Returns:
        Per product: rows fitted, uptakes, the negatives' sampling rate, the held-out AUC and
        the fitted model (key ``model``).
    """
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    closed = [t for t in as_ofs if t + timedelta(days=HORIZON_DAYS) < export_date]
    if len(closed) <= test_months:
        raise SystemExit(f"only {len(closed)} as-of month(s) with a closed label window before {export_date}")
    held = closed[-test_months:]
    fit = [t for t in closed[:-test_months] if t + timedelta(days=HORIZON_DAYS) < held[0]]
    out = {}
    for p in PRODUCTS:
        pos, neg = con.execute(
            f"SELECT count(*) FILTER (y_{p} = 1), count(*) FILTER (y_{p} = 0) {_rows(p, fit)}"
        ).fetchone()
        rate = 1.0 if not max_rows or pos + neg <= max_rows else max(max_rows - pos, 1) / max(neg, 1)
        # a hash of the row keeps the same sample from run to run
        keep = f" AND (y_{p} = 1 OR hash(customer_id, t, {_q(p)}) % 1000000 < {int(rate * 1_000_000)})"
        train = con.execute(f"SELECT {', '.join(feats)}, y_{p} AS y {_rows(p, fit, keep)}").df()
        if train.empty or train["y"].nunique() < 2:
            out[p] = {"rows": len(train), "uptakes": int(train["y"].sum()), "auc": None, "model": None}
            continue
        weight = np.where(train["y"] == 1, 1.0, 1.0 / rate)
        model = lgb.LGBMClassifier(verbose=-1).fit(train[feats], train["y"], sample_weight=weight)
        test = con.execute(f"SELECT {', '.join(feats)}, y_{p} AS y {_rows(p, held)}").df()
        auc = (
            float(roc_auc_score(test["y"], model.predict_proba(test[feats])[:, 1]))
            if test["y"].nunique() == 2
            else None
        )
        out[p] = {"rows": len(train), "uptakes": int(train["y"].sum()), "rate": rate, "auc": auc, "model": model}
        out[p].update(
            held_out=[str(held[0]), str(held[-1])], held_out_rows=len(test), held_out_uptakes=int(test["y"].sum())
        )
    return out


def score(con: duckdb.DuckDBPyConnection, feats: list[str], models: dict[str, dict], t: date, out: Path) -> int:
    """Score every customer known at ``t`` with each product's model; write ``out``; return the rows."""
    import pandas as pd

    rows = con.execute(
        f"SELECT customer_id, t AS as_of, {', '.join(feats)} FROM feats WHERE t = DATE {_q(str(t))}"
    ).df()
    scores = pd.DataFrame({"customer_id": rows["customer_id"], "as_of": rows["as_of"]})
    for p, m in models.items():
        scores[p] = m["model"].predict_proba(rows[feats])[:, 1] if m["model"] is not None else np.nan
    scores.to_parquet(out, index=False)
    return len(scores)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path, help="the bank export folder")
    ap.add_argument("--work", type=Path, required=True, help="folder for the DuckDB database and the scores")
    ap.add_argument("--max-rows", type=int, default=150_000, help="fitting rows per product (0: every row)")
    ap.add_argument("--test-months", type=int, default=2, help="latest closed months held out (nbp's test_months)")
    ap.add_argument("--memory", default="8GB", help="DuckDB's memory limit")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    a = ap.parse_args(argv)
    # LightGBM's OpenMP threads spin while they wait for each other; on a shared machine that makes
    # a default (all-core) fit several times slower: passive waiting, as the process's environment
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    a.work.mkdir(parents=True, exist_ok=True)
    db = a.work / "plain.duckdb"
    db.unlink(missing_ok=True)
    clock, phases = time.perf_counter(), {}
    con = duckdb.connect(str(db), config={"memory_limit": a.memory, "temp_directory": str(a.work / "spill")})
    con.execute("SET enable_progress_bar = false")
    export_date = open_export(con, a.export)
    as_ofs = as_of_months(con, export_date)
    feats = build_features(con, as_ofs)
    rows = con.execute("SELECT count(*) FROM feats").fetchone()[0]
    phases["features"] = time.perf_counter() - clock
    print(
        f"features: {rows:,} (customer, as-of) rows x {len(feats)} features, {len(as_ofs)} as-of months, "
        f"{phases['features']:.1f} s",
        flush=True,
    )
    clock = time.perf_counter()
    models = fit_and_score(con, feats, as_ofs, export_date, a.max_rows, a.test_months)
    phases["train"] = time.perf_counter() - clock
    for p, m in models.items():
        print(f"train {p}: {m['rows']:,} rows, {m['uptakes']:,} uptakes, held-out AUC {m['auc']}", flush=True)
    clock = time.perf_counter()
    n = score(con, feats, models, as_ofs[-1], a.work / "scores.parquet")
    phases["score"] = time.perf_counter() - clock
    print(f"score: {n:,} customers at {as_ofs[-1]}, {phases['score']:.1f} s", flush=True)
    con.close()
    summary = {
        "export_date": str(export_date),
        "as_of": [str(as_ofs[0]), str(as_ofs[-1])],
        "as_of_months": len(as_ofs),
        "feature_rows": rows,
        "features": len(feats),
        "scored": n,
        "seconds": {k: round(v, 2) for k, v in phases.items()},
        "products": {p: {k: v for k, v in m.items() if k != "model"} for p, m in models.items()},
    }
    print(json.dumps(summary), flush=True)
    if a.json:
        a.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
