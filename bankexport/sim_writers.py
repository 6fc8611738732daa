"""The writers: every export table as Parquet, the manifest, the oracle, the true uplift and
the randomised campaigns' assignment files.

Transactions and balances are appended month by month by :class:`MonthWriter` (one row
group per month); the other tables are built at the end from the run's state
(:func:`static_tables`). Every table is cast to its spec schema (:func:`schema`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bankexport import sim_params as P
from bankexport.sim_calendar import rng as stream
from bankexport.sim_contact import campaign_id
from bankexport.sim_loans import loans_table
from bankexport.sim_population import NO_DAY, customers_table, ids, network_tables
from bankexport.sim_visits import profile_updates_table
from bankexport.spec import CONTACT_CHANNELS, CONTACT_OUTCOMES, FORMAT, LOAN_PRODUCTS, TABLES
from nbp.sheets import write_csv

if TYPE_CHECKING:
    from bankexport.sim_state import SimState

COMPRESSION = "zstd"  # a third smaller than snappy for the id-heavy transactions, as fast
_ARROW = {
    "string": pa.string(),
    "enum": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "money": pa.float64(),
    "int": pa.int64(),
    "month": pa.string(),
}
_ROW_KEYS = [("customer_id", pa.string()), ("product", pa.string()), ("as_of", pa.date32())]
ORACLE_SCHEMA = pa.schema([*_ROW_KEYS, ("p_true", pa.float64()), ("p_asof", pa.float64())])
UPLIFT_SCHEMA = pa.schema(
    [
        *_ROW_KEYS,
        ("p_base", pa.float64()),
        ("p_contacted", pa.float64()),
        ("uplift_true", pa.float64()),
        ("kind", pa.string()),
    ]
)
CAMPAIGN_COLUMNS = ["campaign_id", "product", "list_date", "customer_id", "arm"]


def schema(table: str) -> pa.Schema:
    """Arrow schema of an export table, from the spec (month columns as ``YYYY-MM`` text)."""
    return pa.schema([(c.name, _ARROW[c.type]) for c in TABLES[table].columns])


class MonthWriter:
    """``transactions.parquet`` and ``balances.parquet``, one row group per month."""

    def __init__(self, exp_dir: Path) -> None:
        self.txn_schema, self.bal_schema = schema("transactions"), schema("balances")
        self.tw = pq.ParquetWriter(exp_dir / "transactions.parquet", self.txn_schema, compression=COMPRESSION)
        self.bw = pq.ParquetWriter(exp_dir / "balances.parquet", self.bal_schema, compression=COMPRESSION)

    def write(self, transactions: pa.Table, balances: pa.Table) -> None:
        """Append one month."""
        self.tw.write_table(transactions.cast(self.txn_schema))
        self.bw.write_table(balances.cast(self.bal_schema))

    def close(self) -> None:
        self.tw.close()
        self.bw.close()


def write_static(s: SimState, exp_dir: Path) -> dict[str, int]:
    """Write every table but transactions and balances; return rows per table (all of them)."""
    rows = {"transactions": s.n_txn, "balances": s.n_bal}
    if not s.profile.tax_data:  # an earlier run's table in the same folder would say otherwise
        (exp_dir / "tax_records.parquet").unlink(missing_ok=True)
    for name, tab in static_tables(s).items():
        sch = schema(name)
        pq.write_table(tab.select(sch.names).cast(sch), exp_dir / f"{name}.parquet", compression=COMPRESSION)
        rows[name] = tab.num_rows
    return rows


def static_tables(s: SimState) -> dict[str, pa.Table]:
    """Every table but transactions and balances, built from the run's final state."""
    tables: dict[str, pa.Table] = {"customers": customers_table(s.pop, stream(s.seed, 8))}
    tables["branches"], tables["managers"] = network_tables(s.pop)
    tables["loans"], L, ended = loans_table(s, stream(s.seed, 9))
    tables["accounts"] = _accounts_table(s, L, ended)
    tables["services"] = _services_table(s, stream(s.seed, 10))
    if s.profile.tax_data:  # a bank outside 银税互动 has no tax_records table
        tables["tax_records"] = _tax_table(s)
    tables["contacts"] = _contacts_table(s)
    tables["profile_updates"] = profile_updates_table(s, stream(s.seed, 12))
    return tables


def _accounts_table(s: SimState, L: dict[str, np.ndarray], ended: np.ndarray) -> pa.Table:
    """Main and extra accounts, then one loan account per granted loan (in the loans' order)."""
    acc = s.accounts
    g = np.flatnonzero(~np.isnat(L["grant"]))
    kinds = np.concatenate([acc.kind, np.full(len(g), "loan", dtype=object)])
    return pa.table(
        {
            "account_id": pa.concat_arrays([acc.ids, ids("D", len(g), 10)]),
            "customer_id": s.cust_ids.take(pa.array(np.concatenate([acc.cust, L["cust"][g]]).astype(np.int64))),
            "account_type": pa.array(kinds, pa.string()),
            "open_date": pa.array(np.concatenate([acc.open, L["grant"][g]]), pa.date32()),
            "close_date": pa.array(
                np.concatenate([acc.close, np.where(ended[g], L["end"][g], NO_DAY)]),
                pa.date32(),
                from_pandas=True,
            ),
        }
    )


def _services_table(s: SimState, rng: np.random.Generator) -> pa.Table:
    """Services held: mobile and WeChat banking, payroll agency, cards, acquiring, wealth, insurance."""
    pop, acc = s.pop, s.accounts
    n = pop.n
    E = s.export_date
    parts: list[tuple[np.ndarray, str, np.ndarray, np.ndarray]] = []

    def since_open(mask: np.ndarray, max_days: int = P.SERVICE_MAX_AGE_DAYS) -> tuple[np.ndarray, np.ndarray]:
        c = np.flatnonzero(mask)
        span = np.maximum((E - pop.open_day[c]).astype(np.int64) - 1, 1)
        return c, pop.open_day[c] + (rng.random(len(c)) * np.minimum(span, max_days)).astype(np.int64)

    def ending(start: np.ndarray) -> np.ndarray:
        life = rng.geometric(P.SERVICE_END_MONTHLY, len(start)) * 30
        return np.where(start + life < E, start + life, NO_DAY)

    c = np.flatnonzero(~np.isnat(s.mobile_day))
    parts.append((c, "mobile_banking", s.mobile_day[c], np.full(len(c), NO_DAY)))
    c, st = since_open(~pop.is_biz & (rng.random(n) < P.WECHAT_START * pop.mobile_prop))
    parts.append((c, "wechat_banking", st, ending(st)))
    c = np.flatnonzero(pop.payroll)
    parts.append((c, "payroll_agency", pop.open_day[c], np.full(len(c), NO_DAY)))
    c, st = since_open(~pop.is_biz & (rng.random(n) < P.SOCIAL_SECURITY_CARD))
    parts.append((c, "social_security_card", st, np.full(len(c), NO_DAY)))
    for name, mask in (("qr_merchant", pop.terminal >= 1), ("pos_terminal", pop.terminal == 2)):
        c = np.flatnonzero(mask)
        parts.append((c, name, pop.open_day[c], np.full(len(c), NO_DAY)))
    w = np.flatnonzero(acc.kind == "wealth")
    parts.append((acc.cust[w], "wealth_management", acc.open[w], acc.close[w]))
    c, st = since_open(~pop.is_biz & (rng.random(n) < P.INSURANCE_SHARE))
    parts.append((c, "insurance_agency", st, ending(st)))
    cust = np.concatenate([p[0] for p in parts])
    return pa.table(
        {
            "customer_id": s.cust_ids.take(pa.array(cust.astype(np.int64))),
            "service": pa.array(np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts]), pa.string()),
            "start_date": pa.array(np.concatenate([p[2] for p in parts]), pa.date32()),
            "end_date": pa.array(np.concatenate([p[3] for p in parts]), pa.date32(), from_pandas=True),
        }
    )


def _tax_table(s: SimState) -> pa.Table:
    """The ``tax_records`` table: the exported tax records, by customer then tax year."""
    tx = s.tax
    k, c = np.nonzero(tx.exists)
    order = np.lexsort((tx.years[k], c))
    k, c = k[order], c[order]
    return pa.table(
        {
            "customer_id": s.cust_ids.take(pa.array(c.astype(np.int64))),
            "tax_year": pa.array(tx.years[k].astype(np.int64)),
            "months_filed": pa.array(tx.filed[k, c].astype(np.int64)),
            "tax_paid": pa.array(tx.paid[k, c]),
            "credit_grade": pa.array(tx.grades[tx.grade[k, c]].astype(object), pa.string()),
            "published_date": pa.array(tx.pub[k, c], pa.date32()),
        }
    )


def _contacts_table(s: SimState) -> pa.Table:
    """The ``contacts`` table. Managers' ordinary calls of one product in one month share a
    campaign id ``CMP<YYYYMM><code>``; a randomised campaign's are ``RCT-<product>-<YYYYMM>``."""
    if s.contacts:
        cust, prod, day, chan, outc, m, rct = (np.concatenate(x) for x in zip(*s.contacts, strict=True))
    else:
        cust = prod = chan = outc = m = np.array([], np.int64)
        day = np.array([], "datetime64[D]")
        rct = np.array([], bool)
    m, prod = m.astype(np.int64), prod.astype(np.int64)
    months = np.array([str(x).replace("-", "") for x in s.ms.astype("datetime64[M]")], dtype=object)
    code = np.array(["CL", "BF", "TX", "AG", "MG", "OT"], dtype=object)
    names = np.array(LOAN_PRODUCTS, dtype=object)
    ordinary = "CMP" + months[m] + code[prod]
    randomised = f"{P.CAMPAIGN_PREFIX}-" + names[prod] + "-" + months[m]
    return pa.table(
        {
            "customer_id": s.cust_ids.take(pa.array(cust.astype(np.int64))),
            "product": pa.array(names[prod], pa.string()),
            "contact_date": pa.array(day.astype("datetime64[D]"), pa.date32()),
            "channel": pa.array(np.array(CONTACT_CHANNELS, dtype=object)[chan.astype(np.int64)], pa.string()),
            "outcome": pa.array(np.array(CONTACT_OUTCOMES, dtype=object)[outc.astype(np.int64)], pa.string()),
            "campaign_id": pa.array(np.where(rct, randomised, ordinary), pa.string()),
        }
    )


def write_campaigns(s: SimState, out_dir: Path) -> dict[str, int]:
    """One assignment file per randomised campaign, ``out_dir/<campaign_id>.csv``.

    Columns ``campaign_id, product, list_date (YYYY-MM-DD), customer_id, arm (treatment |
    control)``, as a bank hands over its own randomised campaign. Files of another run's
    campaigns in ``out_dir`` are removed.

    Returns:
        Randomised customers per product (summed over its campaigns).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written, counts = set(), {p: 0 for p in P.PRODUCTS}
    for product, m, chosen, treat in s.campaigns:
        cid = campaign_id(s, product, m)
        frame = pd.DataFrame(
            {
                "campaign_id": cid,
                "product": product,
                "list_date": str(s.ms[m]),
                "customer_id": s.cust_ids.take(pa.array(s.pools[product][chosen].astype(np.int64))).to_pylist(),
                "arm": np.where(treat, "treatment", "control"),
            },
            columns=CAMPAIGN_COLUMNS,
        )
        written.add(write_csv(frame, out_dir / f"{cid}.csv", bom=False).name)
        counts[product] += len(frame)
    for old in out_dir.glob(f"{P.CAMPAIGN_PREFIX}-*.csv"):
        if old.name not in written:
            old.unlink()
    return counts


def write_oracle(parts: list[pa.Table], path: Path) -> int:
    """Write ``oracle.parquet`` from its parts; return its rows."""
    table = pa.concat_tables(parts) if parts else ORACLE_SCHEMA.empty_table()
    pq.write_table(table.cast(ORACLE_SCHEMA), path, compression=COMPRESSION)
    return table.num_rows


def write_uplift(parts: list[pa.Table], path: Path) -> int:
    """Write ``uplift.parquet`` from its parts; return its rows."""
    table = pa.concat_tables(parts) if parts else UPLIFT_SCHEMA.empty_table()
    pq.write_table(table.cast(UPLIFT_SCHEMA), path, compression=COMPRESSION)
    return table.num_rows


def write_manifest(
    exp_dir: Path, export_date: np.datetime64, seed: int, bank: str | None = None, bank_code: str | None = None
) -> None:
    """The export's ``manifest.json``: format, export date, encoding, the bank's name and its code.

    Without ``bank`` the name is the simulator's description; without ``bank_code`` there
    is no ``bank_code`` key (a single bank).
    """
    manifest = {
        "format": FORMAT,
        "export_date": str(export_date),
        "encoding": "utf-8",
        "bank": bank or f"simulated county rural commercial bank, central Hunan (nbp simulator, seed {seed})",
    }
    if bank_code is not None:
        manifest["bank_code"] = bank_code
    (exp_dir / "manifest.json").write_text(
        json.dumps(
            manifest,
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
