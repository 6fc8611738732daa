"""Point in time as a property: features at T depend only on what was known before T.

For random T, the export is cut down to what the bank knew before T (rows dated on
or after T dropped, later dates blanked, export-date status columns scrambled unless
the loan had ended before T); rebuilding at T must give identical feature values.
Also the spec's traps, one test each.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from featurekit import random_bank, write_tables

from bankexport.spec import LOAN_STATUS
from features.build import build
from features.catalog import MODULES
from features.schema import EVENT_TS, JOIN_KEY
from nbp.workspace import Workspace


def cut(tables: dict[str, pd.DataFrame], t: pd.Timestamp, seed: int = 0) -> dict[str, pd.DataFrame]:
    """What the bank's export would have held at instant ``t``."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in tables.items()}

    def keep(name: str, col: str) -> None:
        out[name] = out[name][out[name][col] < t].reset_index(drop=True)

    def blank(name: str, col: str) -> None:
        out[name].loc[out[name][col] >= t, col] = pd.NaT

    keep("customers", "open_date")
    blank("customers", "birth_date")
    blank("customers", "established_date")
    keep("accounts", "open_date")
    blank("accounts", "close_date")
    keep("transactions", "txn_time")
    loans = out["loans"] = out["loans"][out["loans"]["application_date"] < t].reset_index(drop=True)
    not_granted = ~(loans["grant_date"] < t)
    loans.loc[not_granted, "grant_date"] = pd.NaT
    loans.loc[not_granted, "amount"] = np.nan
    blank("loans", "end_date")
    # status columns describe the export date: anything may stand there unless the loan ended before t
    open_ = loans["end_date"].isna()
    loans.loc[open_, "status"] = rng.choice(LOAN_STATUS, size=int(open_.sum()))
    loans.loc[open_, "max_overdue_days"] = pd.array(rng.integers(0, 999, size=int(open_.sum())), dtype="Int64")
    out["balances"] = out["balances"][out["balances"]["month"] + pd.DateOffset(months=1) <= t].reset_index(drop=True)
    keep("tax_records", "published_date")
    keep("services", "start_date")
    blank("services", "end_date")
    keep("contacts", "contact_date")
    keep("profile_updates", "collected_date")
    for name in ("customers", "accounts", "transactions", "loans", "balances", "tax_records", "services", "contacts"):
        out[name] = out[name].reset_index(drop=True)
    return out


def _read(ws: Workspace, family: str) -> pd.DataFrame:
    return pd.read_parquet(ws.feature_table(family), dtype_backend="numpy_nullable")


def _rows_at(df: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    return df[df[EVENT_TS] == t].sort_values(JOIN_KEY).reset_index(drop=True)


def _at(ws: Workspace, family: str, t: pd.Timestamp) -> pd.DataFrame:
    return _rows_at(_read(ws, family), t)


def _assert_same_at(full: dict[str, pd.DataFrame], known: Workspace, t: pd.Timestamp) -> None:
    """``full``: every family's table built from the whole export; ``known``: rebuilt at ``t`` from its cut."""
    for fam, table in full.items():
        a, b = _rows_at(table, t), _at(known, fam, t)
        assert len(a) > 0, fam
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=f"{fam} at {t:%Y-%m-%d %H:%M}")


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_rebuilding_from_what_was_known_gives_the_same_features(tmp_path: Path, seed: int) -> None:
    tables = random_bank(seed)
    rng = np.random.default_rng(seed)
    # month starts and arbitrary instants, between 2024-03 and the end of the data
    ts = [pd.Timestamp("2024-03-01") + pd.DateOffset(months=int(m)) for m in rng.integers(0, 17, size=2)]
    ts += [pd.Timestamp("2024-03-01") + pd.Timedelta(seconds=int(s)) for s in rng.integers(0, 540 * 86400, size=2)]
    full = Workspace(tmp_path / "full")
    write_tables(full, tables, date(2025, 8, 31))
    build(full, [t.to_pydatetime() for t in ts], loan_mode="end_date")
    built = {fam: _read(full, fam) for fam in MODULES}
    for i, t in enumerate(ts):
        known = Workspace(tmp_path / f"known{i}")
        write_tables(known, cut(tables, t, seed=i), date(2025, 8, 31))
        build(known, [t.to_pydatetime()], loan_mode="end_date")
        _assert_same_at(built, known, t)


@pytest.mark.slow
def test_property_holds_when_loans_end_by_term(tmp_path: Path) -> None:
    tables = random_bank(4)
    t = pd.Timestamp("2024-11-01")
    full, known = Workspace(tmp_path / "full"), Workspace(tmp_path / "known")
    write_tables(full, tables, date(2025, 8, 31))
    write_tables(known, cut(tables, t), date(2025, 8, 31))
    build(full, [t.date()], loan_mode="term")
    build(known, [t.date()], loan_mode="term")
    _assert_same_at({fam: _read(full, fam) for fam in MODULES}, known, t)


# -- the traps, by name ---------------------------------------------------------------------------


def _row(ws: Workspace, family: str, customer: str, t: str) -> pd.Series:
    df = _at(ws, family, pd.Timestamp(t))
    return df.set_index(JOIN_KEY).loc[customer]


def test_loan_disbursed_the_day_after_t_is_not_held_at_t(tiny_built: Workspace) -> None:
    # l2 (consumer) granted 2025-06-02, its disbursement transaction dated 2025-06-02 10:00
    at_t = _row(tiny_built, "holdings", "c1", "2025-06-01")
    assert at_t["holdings_loans_active_consumer_count"] == 0
    assert at_t["holdings_loan_applications_not_granted_12m"] == 1  # applied 2025-05-20, not granted yet
    assert pd.isna(at_t["holdings_months_since_last_grant"])
    assert _row(tiny_built, "income", "c1", "2025-06-01")["income_credit_amount_avg_3m"] < 50_000 / 3
    assert _row(tiny_built, "holdings", "c1", "2025-07-01")["holdings_loans_active_consumer_count"] == 1


def test_tax_record_published_after_t_is_unknown_at_t(tiny_built: Workspace) -> None:
    # the 2024 record (grade A) was published 2025-06-20
    at_t = _row(tiny_built, "tax", "c3", "2025-06-01")
    assert at_t["tax_credit_grade_latest"] == 1  # B, from the 2023 record
    assert at_t["tax_years_on_record"] == 1
    later = _row(tiny_built, "tax", "c3", "2025-07-01")
    assert later["tax_credit_grade_latest"] == 0  # A
    assert later["tax_paid_ratio_latest_prior"] == pytest.approx(1.5)


def test_balance_month_that_has_not_ended_is_not_used(tiny_built: Workspace) -> None:
    # as-of mid-June: June's balance row (month 2025-06) has not ended, May's has
    at_t = _row(tiny_built, "liquidity", "c1", "2025-06-15")
    assert at_t["liquidity_end_balance_1m"] == 5 * 1000.0 + 10  # May, not June (6010)
    assert at_t["liquidity_avg_daily_balance_1m"] == 5000.0


def test_status_columns_of_the_export_date_do_not_leak(tiny_built: Workspace) -> None:
    # l2 has status 'overdue' and 45 days overdue on the export date; it had not ended at any T
    c1 = _row(tiny_built, "holdings", "c1", "2025-08-01")
    assert pd.isna(c1["holdings_worst_overdue_days_ended"])
    assert c1["holdings_written_off_count_ended"] == 0
    # l3 was written off on 2025-07-15: only known from 2025-08-01, with its delinquency
    c2_before = _row(tiny_built, "holdings", "c2", "2025-07-01")
    assert c2_before["holdings_written_off_count_ended"] == 0
    assert c2_before["holdings_worst_overdue_days_ended"] == 10  # l1 only (ended 2025-03-20)
    assert c2_before["holdings_loans_active_agricultural_count"] == 1
    c2_after = _row(tiny_built, "holdings", "c2", "2025-08-01")
    assert c2_after["holdings_written_off_count_ended"] == 1
    assert c2_after["holdings_worst_overdue_days_ended"] == 200
    assert c2_after["holdings_loans_active_agricultural_count"] == 0


def test_closed_account_counts_only_through_its_close_date(tiny_built: Workspace) -> None:
    assert _row(tiny_built, "holdings", "c1", "2025-04-01")["holdings_account_credit_card_held"] == 1
    assert _row(tiny_built, "holdings", "c1", "2025-05-01")["holdings_account_credit_card_held"] == 0


def test_transaction_at_t_midnight_is_not_known_at_t(tiny_built: Workspace) -> None:
    # 2025-05-31 23:59:59 (999, pos) counts at 2025-06-01; 2025-06-01 00:00 (5555, pos) only later
    assert _row(tiny_built, "spend", "c1", "2025-06-01")["spend_purchase_pos_amount_3m"] == 999.0
    assert _row(tiny_built, "spend", "c1", "2025-07-01")["spend_purchase_pos_amount_3m"] == 999.0 + 5555.0


def test_customer_opened_on_t_is_not_in_the_table_at_t(tiny_built: Workspace) -> None:
    # c4 opened on 2025-05-01; no family has a row for it at that as-of
    for fam in MODULES:
        assert "c4" not in set(_at(tiny_built, fam, pd.Timestamp("2025-05-01"))[JOIN_KEY]), fam
        assert "c4" in set(_at(tiny_built, fam, pd.Timestamp("2025-06-01"))[JOIN_KEY]), fam


def test_contact_on_t_is_not_known_at_t(tiny_built: Workspace) -> None:
    # c3's tax_linked visit is dated 2025-06-01
    assert pd.isna(_row(tiny_built, "marketing", "c3", "2025-06-01")["marketing_last_outcome_tax_linked"])
    assert _row(tiny_built, "marketing", "c3", "2025-07-01")["marketing_last_outcome_tax_linked"] == 1  # declined
