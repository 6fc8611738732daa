"""Tiny hand-made ingested tables in a temporary NBP_HOME, typed as bankexport.spec says."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from bankexport.spec import TABLES
from nbp.workspace import Workspace

_DTYPES = {"string": "string", "enum": "string", "date": "datetime64[us]", "timestamp": "datetime64[us]",
           "month": "datetime64[us]", "money": "float64", "int": "Int64"}


def typed(table: str, rows: list[dict]) -> pd.DataFrame:
    """A frame with exactly the spec's columns and ingest dtypes (missing cells null)."""
    spec = TABLES[table]
    df = pd.DataFrame(rows, columns=spec.column_names)
    for c in spec.columns:
        df[c.name] = df[c.name].astype(_DTYPES[c.type]) if c.type != "int" else \
            pd.array(df[c.name].tolist(), dtype="Int64")
    return df


def write_tables(ws: Workspace, tables: dict[str, pd.DataFrame], export_date: date) -> None:
    """Write ingested tables and ``_meta.json`` into a workspace."""
    ws.ingested_dir.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(ws.table(name), index=False)
    (ws.ingested_dir / "_meta.json").write_text(json.dumps({"export_date": export_date.isoformat()}))


def tiny_bank() -> dict[str, pd.DataFrame]:
    """Four customers over 2025-01 … 2025-08, every table filled, with the spec's traps."""
    ts = pd.Timestamp
    customers = typed("customers", [
        dict(customer_id="c1", customer_type="individual", gender="F", birth_date=ts("1990-06-15"),
             occupation="enterprise_employee", employer_type="private", marital_status="married",
             residence="urban", branch_id="b1", open_date=ts("2020-01-10")),
        dict(customer_id="c2", customer_type="individual", gender="M", birth_date=ts("1970-02-01"),
             occupation="merchant", employer_type="self_employed", residence="rural", industry="F",
             established_date=ts("2018-05-01"), branch_id="b2", open_date=ts("2019-03-01")),
        dict(customer_id="c3", customer_type="business", industry="C", established_date=ts("2015-01-01"),
             branch_id="b2", open_date=ts("2021-07-01")),
        # opens on 2025-05-01: unknown at as-of 2025-05-01, known from 2025-06-01
        dict(customer_id="c4", customer_type="individual", occupation="farmer", branch_id="b2",
             open_date=ts("2025-05-01")),
    ])
    accounts = typed("accounts", [
        dict(account_id="a1", customer_id="c1", account_type="debit_card", open_date=ts("2020-01-10")),
        dict(account_id="a2", customer_id="c2", account_type="current", open_date=ts("2019-03-01")),
        dict(account_id="a3", customer_id="c3", account_type="current", open_date=ts("2021-07-01")),
        # closed on 2025-04-15: open at 2025-04-01, closed at 2025-05-01
        dict(account_id="a4", customer_id="c1", account_type="credit_card", open_date=ts("2024-01-01"),
             close_date=ts("2025-04-15")),
        dict(account_id="a5", customer_id="c4", account_type="savings", open_date=ts("2025-05-01")),
    ])
    txns = []
    n = 0

    def t(cust: str, acct: str, when: str, amount: float, direction: str, channel: str, ttype: str,
          cp: str | None = None) -> None:
        nonlocal n
        n += 1
        txns.append(dict(txn_id=f"t{n}", account_id=acct, customer_id=cust, txn_time=ts(when), amount=amount,
                         direction=direction, channel=channel, txn_type=ttype, counterparty_id=cp))

    for month in range(1, 9):
        t("c1", "a1", f"2025-{month:02d}-10 09:00", 6000.0 + 100 * month, "C", "batch", "payroll", "emp1")
        t("c1", "a1", f"2025-{month:02d}-12 20:00", 300.0, "D", "qr", "purchase", "shop1")
        t("c2", "a2", f"2025-{month:02d}-05 18:00", 20000.0 * (1 + (month == 7)), "C", "pos",
          "merchant_settlement", "acq")
        t("c2", "a2", f"2025-{month:02d}-06 10:00", 1500.0, "D", "counter", "cash")
    # the last moment before as-of 2025-06-01 (counts) and the first moment of it (does not)
    t("c1", "a1", "2025-05-31 23:59:59", 999.0, "D", "pos", "purchase", "shop2")
    t("c1", "a1", "2025-06-01 00:00:00", 5555.0, "D", "pos", "purchase", "shop2")
    t("c3", "a3", "2025-03-03 11:00", 80000.0, "C", "mobile", "transfer", "buyer1")
    t("c3", "a3", "2025-03-04 11:00", 30000.0, "C", "mobile", "transfer", "buyer2")
    # disbursement of loan l2 on 2025-06-02, the day after as-of 2025-06-01
    t("c1", "a1", "2025-06-02 10:00", 50000.0, "C", "counter", "loan_disbursement")
    transactions = typed("transactions", txns)
    loans = typed("loans", [
        # granted the day after T=2025-06-01: not active at 2025-06-01, active at 2025-07-01
        dict(loan_id="l2", customer_id="c1", product="consumer", application_date=ts("2025-05-20"),
             grant_date=ts("2025-06-02"), amount=50000.0, term_months=12, status="overdue",
             max_overdue_days=45),
        # ended on 2025-03-20 with a 10-day delinquency: known from 2025-04-01
        dict(loan_id="l1", customer_id="c2", product="business_flow", application_date=ts("2024-01-05"),
             grant_date=ts("2024-01-10"), amount=100000.0, term_months=12, status="settled",
             max_overdue_days=10, end_date=ts("2025-03-20")),
        # active whole time, status column says written_off on the export date (ended 2025-07-15)
        dict(loan_id="l3", customer_id="c2", product="agricultural", application_date=ts("2024-06-01"),
             grant_date=ts("2024-06-03"), amount=30000.0, term_months=24, status="written_off",
             max_overdue_days=200, end_date=ts("2025-07-15")),
        dict(loan_id="l4", customer_id="c3", product="tax_linked", application_date=ts("2025-02-01"),
             status="rejected"),
    ])
    balances = typed("balances", [
        dict(account_id=a, month=ts(f"2025-{m:02d}-01"), avg_daily_balance=bal * m, end_balance=bal * m + 10)
        for a, bal in (("a1", 1000.0), ("a2", 5000.0)) for m in range(1, 9)
    ])
    tax_records = typed("tax_records", [
        dict(customer_id="c3", tax_year=2023, months_filed=12, tax_paid=40000.0, credit_grade="B",
             published_date=ts("2024-04-15")),
        # published on 2025-06-20: unknown at 2025-06-01
        dict(customer_id="c3", tax_year=2024, months_filed=11, tax_paid=60000.0, credit_grade="A",
             published_date=ts("2025-06-20")),
    ])
    services = typed("services", [
        dict(customer_id="c1", service="mobile_banking", start_date=ts("2021-01-01")),
        dict(customer_id="c2", service="pos_terminal", start_date=ts("2019-05-01"), end_date=ts("2025-05-10")),
    ])
    contacts = typed("contacts", [
        dict(customer_id="c1", product="consumer", contact_date=ts("2025-04-10"), channel="sms",
             outcome="no_response", campaign_id="k1"),
        dict(customer_id="c1", product="consumer", contact_date=ts("2025-05-25"), channel="phone",
             outcome="accepted", campaign_id="k2"),
        dict(customer_id="c3", product="tax_linked", contact_date=ts("2025-06-01"), channel="visit",
             outcome="declined", campaign_id="k3"),
    ])
    branches = typed("branches", [dict(branch_id="b1", area="urban"), dict(branch_id="b2", area="rural")])
    managers = typed("managers", [])
    return dict(customers=customers, accounts=accounts, transactions=transactions, loans=loans,
                balances=balances, tax_records=tax_records, services=services, contacts=contacts,
                branches=branches, managers=managers)


@pytest.fixture
def tiny_ws(tmp_path: Path) -> Workspace:
    """A workspace holding :func:`tiny_bank`, export date 2025-08-31."""
    ws = Workspace(tmp_path / "ws")
    write_tables(ws, tiny_bank(), date(2025, 8, 31))
    return ws
