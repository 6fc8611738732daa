"""Tiny hand-made ingested tables, typed as bankexport.spec says (helpers of tests/features)."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd

from bankexport.spec import TABLES
from nbp.workspace import Workspace

# Every as-of the read-only tests look at: month starts around the spec's traps and a mid-month T.
TINY_AS_OF = [
    date(2025, 4, 1),
    date(2025, 5, 1),
    date(2025, 6, 1),
    date(2025, 6, 15),
    date(2025, 7, 1),
    date(2025, 8, 1),
]


_DTYPES = {
    "string": "string",
    "enum": "string",
    "date": "datetime64[us]",
    "timestamp": "datetime64[us]",
    "month": "datetime64[us]",
    "money": "float64",
    "int": "Int64",
}


def typed(table: str, rows: list[dict]) -> pd.DataFrame:
    """A frame with exactly the spec's columns and ingest dtypes (missing cells null)."""
    spec = TABLES[table]
    df = pd.DataFrame(rows, columns=spec.column_names)
    for c in spec.columns:
        df[c.name] = (
            df[c.name].astype(_DTYPES[c.type]) if c.type != "int" else pd.array(df[c.name].tolist(), dtype="Int64")
        )
    return df


def write_tables(ws: Workspace, tables: dict[str, pd.DataFrame], export_date: date, bank: str | None = None) -> None:
    """Write ingested tables and ``_meta.json`` into a workspace (``bank``: the ``bank_code`` it records)."""
    ws.ingested_dir.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(ws.table(name), index=False)
    meta = {"export_date": export_date.isoformat(), **({"bank_code": bank} if bank is not None else {})}
    ws.ingest_meta.write_text(json.dumps(meta), encoding="utf-8")


def tiny_bank() -> dict[str, pd.DataFrame]:
    """Four customers over 2025-01 … 2025-08, every table filled, with the spec's traps."""
    ts = pd.Timestamp
    customers = typed(
        "customers",
        [
            dict(
                customer_id="c1",
                customer_type="individual",
                gender="F",
                birth_date=ts("1990-06-15"),
                occupation="enterprise_employee",
                employer_type="private",
                marital_status="married",
                residence="urban",
                branch_id="b1",
                open_date=ts("2020-01-10"),
            ),
            dict(
                customer_id="c2",
                customer_type="individual",
                gender="M",
                birth_date=ts("1970-02-01"),
                occupation="merchant",
                employer_type="self_employed",
                residence="rural",
                industry="F",
                established_date=ts("2018-05-01"),
                branch_id="b2",
                open_date=ts("2019-03-01"),
            ),
            dict(
                customer_id="c3",
                customer_type="business",
                industry="C",
                established_date=ts("2015-01-01"),
                branch_id="b2",
                open_date=ts("2021-07-01"),
            ),
            # opens on 2025-05-01: unknown at as-of 2025-05-01, known from 2025-06-01
            dict(
                customer_id="c4",
                customer_type="individual",
                occupation="farmer",
                branch_id="b2",
                open_date=ts("2025-05-01"),
            ),
        ],
    )
    accounts = typed(
        "accounts",
        [
            dict(account_id="a1", customer_id="c1", account_type="debit_card", open_date=ts("2020-01-10")),
            dict(account_id="a2", customer_id="c2", account_type="current", open_date=ts("2019-03-01")),
            dict(account_id="a3", customer_id="c3", account_type="current", open_date=ts("2021-07-01")),
            # closed on 2025-04-15: open at 2025-04-01, closed at 2025-05-01
            dict(
                account_id="a4",
                customer_id="c1",
                account_type="credit_card",
                open_date=ts("2024-01-01"),
                close_date=ts("2025-04-15"),
            ),
            dict(account_id="a5", customer_id="c4", account_type="savings", open_date=ts("2025-05-01")),
        ],
    )
    txns = []
    n = 0

    def t(
        cust: str, acct: str, when: str, amount: float, direction: str, channel: str, ttype: str, cp: str | None = None
    ) -> None:
        nonlocal n
        n += 1
        txns.append(
            dict(
                txn_id=f"t{n}",
                account_id=acct,
                customer_id=cust,
                txn_time=ts(when),
                amount=amount,
                direction=direction,
                channel=channel,
                txn_type=ttype,
                counterparty_id=cp,
            )
        )

    for month in range(1, 9):
        t("c1", "a1", f"2025-{month:02d}-10 09:00", 6000.0 + 100 * month, "C", "batch", "payroll", "emp1")
        t("c1", "a1", f"2025-{month:02d}-12 20:00", 300.0, "D", "qr", "purchase", "shop1")
        t(
            "c2",
            "a2",
            f"2025-{month:02d}-05 18:00",
            20000.0 * (1 + (month == 7)),
            "C",
            "pos",
            "merchant_settlement",
            "acq",
        )
        t("c2", "a2", f"2025-{month:02d}-06 10:00", 1500.0, "D", "counter", "cash")
    # the last moment before as-of 2025-06-01 (counts) and the first moment of it (does not)
    t("c1", "a1", "2025-05-31 23:59:59", 999.0, "D", "pos", "purchase", "shop2")
    t("c1", "a1", "2025-06-01 00:00:00", 5555.0, "D", "pos", "purchase", "shop2")
    t("c3", "a3", "2025-03-03 11:00", 80000.0, "C", "mobile", "transfer", "buyer1")
    t("c3", "a3", "2025-03-04 11:00", 30000.0, "C", "mobile", "transfer", "buyer2")
    # disbursement of loan l2 on 2025-06-02, the day after as-of 2025-06-01
    t("c1", "a1", "2025-06-02 10:00", 50000.0, "C", "counter", "loan_disbursement")
    transactions = typed("transactions", txns)
    loans = typed(
        "loans",
        [
            # granted the day after T=2025-06-01: not active at 2025-06-01, active at 2025-07-01
            dict(
                loan_id="l2",
                customer_id="c1",
                product="consumer",
                application_date=ts("2025-05-20"),
                grant_date=ts("2025-06-02"),
                amount=50000.0,
                term_months=12,
                status="overdue",
                max_overdue_days=45,
            ),
            # ended on 2025-03-20 with a 10-day delinquency: known from 2025-04-01
            dict(
                loan_id="l1",
                customer_id="c2",
                product="business_flow",
                application_date=ts("2024-01-05"),
                grant_date=ts("2024-01-10"),
                amount=100000.0,
                term_months=12,
                status="settled",
                max_overdue_days=10,
                end_date=ts("2025-03-20"),
            ),
            # active whole time, status column says written_off on the export date (ended 2025-07-15)
            dict(
                loan_id="l3",
                customer_id="c2",
                product="agricultural",
                application_date=ts("2024-06-01"),
                grant_date=ts("2024-06-03"),
                amount=30000.0,
                term_months=24,
                status="written_off",
                max_overdue_days=200,
                end_date=ts("2025-07-15"),
            ),
            dict(
                loan_id="l4",
                customer_id="c3",
                product="tax_linked",
                application_date=ts("2025-02-01"),
                status="rejected",
            ),
        ],
    )
    balances = typed(
        "balances",
        [
            dict(account_id=a, month=ts(f"2025-{m:02d}-01"), avg_daily_balance=bal * m, end_balance=bal * m + 10)
            for a, bal in (("a1", 1000.0), ("a2", 5000.0))
            for m in range(1, 9)
        ],
    )
    tax_records = typed(
        "tax_records",
        [
            dict(
                customer_id="c3",
                tax_year=2023,
                months_filed=12,
                tax_paid=40000.0,
                credit_grade="B",
                published_date=ts("2024-04-15"),
            ),
            # published on 2025-06-20: unknown at 2025-06-01
            dict(
                customer_id="c3",
                tax_year=2024,
                months_filed=11,
                tax_paid=60000.0,
                credit_grade="A",
                published_date=ts("2025-06-20"),
            ),
        ],
    )
    services = typed(
        "services",
        [
            dict(customer_id="c1", service="mobile_banking", start_date=ts("2021-01-01")),
            dict(customer_id="c2", service="pos_terminal", start_date=ts("2019-05-01"), end_date=ts("2025-05-10")),
        ],
    )
    contacts = typed(
        "contacts",
        [
            dict(
                customer_id="c1",
                product="consumer",
                contact_date=ts("2025-04-10"),
                channel="sms",
                outcome="no_response",
                campaign_id="k1",
            ),
            dict(
                customer_id="c1",
                product="consumer",
                contact_date=ts("2025-05-25"),
                channel="phone",
                outcome="accepted",
                campaign_id="k2",
            ),
            dict(
                customer_id="c3",
                product="tax_linked",
                contact_date=ts("2025-06-01"),
                channel="visit",
                outcome="declined",
                campaign_id="k3",
            ),
        ],
    )
    branches = typed("branches", [dict(branch_id="b1", area="urban"), dict(branch_id="b2", area="rural")])
    managers = typed("managers", [])
    return dict(
        customers=customers,
        accounts=accounts,
        transactions=transactions,
        loans=loans,
        balances=balances,
        tax_records=tax_records,
        services=services,
        contacts=contacts,
        branches=branches,
        managers=managers,
    )


def random_bank(seed: int, n_customers: int = 30, months: int = 20) -> dict[str, pd.DataFrame]:
    """A small random bank over ``months`` months from 2024-01, every table and enum exercised."""
    from bankexport import spec

    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    end = start + pd.DateOffset(months=months)

    first = start - pd.Timedelta(days=400)

    def day(lo: pd.Timestamp = first, hi: pd.Timestamp = end) -> pd.Timestamp:
        return lo + pd.Timedelta(days=int(rng.integers(0, max((hi - lo).days, 1))))

    def pick(values: tuple[str, ...], p_null: float = 0.2) -> str | None:
        return None if rng.random() < p_null else str(rng.choice(values))

    cust, accts, txns, loans, bals, tax, svcs, conts = [], [], [], [], [], [], [], []
    for i in range(n_customers):
        cid = f"c{i}"
        opened = day()
        cust.append(
            dict(
                customer_id=cid,
                customer_type=pick(spec.CUSTOMER_TYPES, 0),
                gender=pick(("M", "F")),
                birth_date=day(pd.Timestamp("1950-01-01"), end) if rng.random() < 0.9 else None,
                occupation=pick(spec.OCCUPATIONS),
                employer_type=pick(spec.EMPLOYER_TYPES),
                marital_status=pick(spec.MARITAL),
                education=pick(spec.EDUCATION),
                residence=pick(spec.RESIDENCE),
                industry=pick(spec.INDUSTRIES),
                established_date=day() if rng.random() < 0.4 else None,
                branch_id=f"b{rng.integers(0, 3)}",
                open_date=opened,
                risk_tolerance=pick(spec.RISK),
            )
        )
        for j in range(int(rng.integers(1, 4))):
            aid = f"{cid}a{j}"
            a_open = day(opened, end)
            accts.append(
                dict(
                    account_id=aid,
                    customer_id=cid,
                    account_type=pick(spec.ACCOUNT_TYPES, 0),
                    open_date=a_open,
                    close_date=day(a_open, end) if rng.random() < 0.3 else None,
                )
            )
            a_span = max((end - a_open).days, 1)
            for k in range(int(rng.integers(0, 40))):
                t = max(a_open, start) + pd.Timedelta(seconds=int(rng.integers(0, a_span * 86400)))
                txns.append(
                    dict(
                        txn_id=f"{aid}t{k}",
                        account_id=aid,
                        customer_id=cid,
                        txn_time=t,
                        amount=float(rng.integers(1, 100_000)) / 10,
                        direction=pick(spec.DIRECTIONS, 0),
                        channel=pick(spec.CHANNELS, 0),
                        txn_type=pick(spec.TXN_TYPES, 0),
                        counterparty_id=pick(("p1", "p2", "p3", "p4"), 0.3),
                    )
                )
            for m in pd.date_range(start, end, freq="MS"):
                if m >= a_open.to_period("M").to_timestamp() and rng.random() < 0.7:
                    bals.append(
                        dict(
                            account_id=aid,
                            month=m,
                            avg_daily_balance=float(rng.integers(0, 10**6)),
                            end_balance=float(rng.integers(0, 10**6)) if rng.random() < 0.9 else None,
                        )
                    )
        for j in range(int(rng.integers(0, 4))):
            applied = day(start - pd.Timedelta(days=300), end)
            granted = applied + pd.Timedelta(days=int(rng.integers(0, 20))) if rng.random() < 0.8 else None
            ended = (
                granted + pd.Timedelta(days=int(rng.integers(1, 500)))
                if granted is not None and rng.random() < 0.5
                else None
            )
            loans.append(
                dict(
                    loan_id=f"{cid}l{j}",
                    customer_id=cid,
                    product=pick(spec.LOAN_PRODUCTS, 0),
                    application_date=applied,
                    grant_date=granted,
                    amount=float(rng.integers(1000, 300_000)) if granted is not None else None,
                    term_months=int(rng.integers(1, 37)) if rng.random() < 0.9 else None,
                    status=pick(spec.LOAN_STATUS, 0),
                    max_overdue_days=int(rng.integers(0, 120)) if rng.random() < 0.7 else None,
                    end_date=ended,
                )
            )
        for y in (2022, 2023, 2024):
            if rng.random() < 0.4:
                tax.append(
                    dict(
                        customer_id=cid,
                        tax_year=y,
                        months_filed=int(rng.integers(0, 13)),
                        tax_paid=float(rng.integers(0, 10**5)),
                        credit_grade=pick(spec.TAX_GRADES),
                        published_date=pd.Timestamp(f"{y + 1}-01-01") + pd.Timedelta(days=int(rng.integers(0, 200))),
                    )
                )
        for s in rng.choice(spec.SERVICES, size=int(rng.integers(0, 3)), replace=False):
            s_start = day()
            svcs.append(
                dict(
                    customer_id=cid,
                    service=str(s),
                    start_date=s_start,
                    end_date=day(s_start, end) if rng.random() < 0.3 else None,
                )
            )
        for _ in range(int(rng.integers(0, 5))):
            conts.append(
                dict(
                    customer_id=cid,
                    product=pick(spec.LOAN_PRODUCTS, 0),
                    contact_date=day(start, end),
                    channel=pick(spec.CONTACT_CHANNELS),
                    outcome=pick(spec.CONTACT_OUTCOMES),
                    campaign_id="k",
                )
            )
    # visits from a stream of their own, so the other tables stay as they were
    ru = np.random.default_rng([seed, 1])
    updates = []
    for i in range(n_customers):
        for _ in range(int(ru.integers(0, 4))):
            fld = str(ru.choice(spec.PROFILE_FIELDS))
            if fld in spec.PROFILE_MONEY_FIELDS:
                value = f"{ru.integers(0, 10**7) / 100:.2f}"
            elif fld == "established_date":
                value = f"{first + pd.Timedelta(days=int(ru.integers(-3000, 300))):%Y-%m-%d}"
            else:
                value = str(ru.choice(spec.TABLES["customers"].column(fld).enum))
            collected = first + pd.Timedelta(days=int(ru.integers(0, (end - first).days)))
            updates.append(dict(customer_id=f"c{i}", field=fld, value=value, collected_date=collected))
    return dict(
        profile_updates=typed("profile_updates", updates),
        customers=typed("customers", cust),
        accounts=typed("accounts", accts),
        transactions=typed("transactions", txns),
        loans=typed("loans", loans),
        balances=typed("balances", bals),
        tax_records=typed("tax_records", tax),
        services=typed("services", svcs),
        contacts=typed("contacts", conts),
        branches=typed("branches", [dict(branch_id=f"b{i}", area=("urban", "rural")[i % 2]) for i in range(2)]),
    )
