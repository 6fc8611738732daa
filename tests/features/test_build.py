"""Feature build: catalogue and tables agree, optional tables may be absent, rebuilds replace."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from featurekit import TINY_AS_OF, tiny_bank, write_tables

from bankexport import spec
from features.build import absent_sources, build, built_as_of, default_as_of
from features.catalog import CATALOG, MODULES, catalog_frame, family_features
from features.schema import EVENT_TS, JOIN_KEY
from nbp.errors import FeatureStoreError
from nbp.workspace import Workspace


def _at(ws: Workspace, family: str, t: str = "2025-06-01") -> pd.DataFrame:
    """One family's rows at as-of ``t``, indexed by customer."""
    df = pd.read_parquet(ws.feature_table(family))
    return df[df[EVENT_TS] == pd.Timestamp(t)].set_index(JOIN_KEY)


def test_catalogue_names_follow_the_convention_and_are_unique() -> None:
    names = [f.name for f in CATALOG]
    assert len(names) == len(set(names))
    for f in CATALOG:
        assert f.name.startswith(f.family + "_"), f.name
        assert f.zh and f.en and f.dtype in ("int", "float"), f.name
        assert f.name == f.name.lower()


def test_every_family_table_has_its_catalogue_columns_and_one_row_per_known_customer(tiny_built: Workspace) -> None:
    # customers known at T (open_date < T): c4 opened on 2025-05-01
    known = {T: (4 if T > date(2025, 5, 1) else 3) for T in TINY_AS_OF}
    for fam in MODULES:
        df = pd.read_parquet(tiny_built.feature_table(fam))
        assert list(df.columns) == [JOIN_KEY, EVENT_TS] + [f.name for f in family_features(fam)]
        assert str(df[EVENT_TS].dtype) == "datetime64[us]"
        per_t = df.groupby(EVENT_TS)[JOIN_KEY].nunique().to_dict()
        assert per_t == {pd.Timestamp(T): n for T, n in known.items()}, fam
        assert not df.duplicated([JOIN_KEY, EVENT_TS]).any(), fam


def test_categorical_codes_are_positions_in_the_catalogue_categories(tiny_built: Workspace) -> None:
    customers = pd.read_parquet(tiny_built.table("customers")).set_index(JOIN_KEY)
    demo = _at(tiny_built, "demo")
    for f in (f for f in family_features("demo") if f.categorical):
        col = f.name.removeprefix("demo_")
        assert f.categories == spec.TABLES["customers"].column(col).enum, f.name  # the spec's enum order
        for cid, code in demo[f.name].items():
            raw = customers.loc[cid, col]
            assert pd.isna(raw) if pd.isna(code) else f.categories[int(code)] == raw, (f.name, cid)
    assert demo.loc["c1", "demo_occupation"] == spec.OCCUPATIONS.index("enterprise_employee")
    frame = catalog_frame().set_index("name")
    for f in CATALOG:  # the catalogue table lists the codes in the same order
        assert frame.loc[f.name, "categories"] == ",".join(f.categories), f.name


def test_known_values_on_the_tiny_bank(tiny_built: Workspace) -> None:
    inc = _at(tiny_built, "income")
    assert inc.loc["c1", "income_payroll_months_3m"] == 3
    assert inc.loc["c1", "income_payroll_streak_months"] == 5  # January to May
    assert inc.loc["c1", "income_payroll_amount_avg_6m"] == pytest.approx((6100 + 6200 + 6300 + 6400 + 6500) / 6)
    assert inc.loc["c2", "income_payroll_months_12m"] == 0
    assert pd.isna(inc.loc["c2", "income_payroll_cv_6m"])  # no payroll: unknown, not 0
    biz = _at(tiny_built, "business")
    assert biz.loc["c2", "business_settlement_avg_3m"] == pytest.approx(20000.0)
    demo = _at(tiny_built, "demo")
    assert demo.loc["c1", "demo_age_years"] == 34
    assert demo.loc["c2", "demo_branch_customers"] == 3  # c2, c3, c4 at branch b2
    assert demo.loc["c2", "demo_branch_rural"] == 1
    hold = _at(tiny_built, "holdings")
    assert hold.loc["c1", "holdings_services_count"] == 1
    assert hold.loc["c1", "holdings_service_mobile_banking_held"] == 1
    assert hold.loc["c2", "holdings_service_pos_terminal_held"] == 0  # ended 2025-05-10
    assert hold.loc["c3", "holdings_services_count"] == 0  # no service rows: 0, the table exists


def test_optional_tables_absent_give_null_families(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    tables = {k: v for k, v in tiny_bank().items() if k in spec.REQUIRED_TABLES}
    write_tables(ws, tables, date(2025, 8, 31))
    summary = build(ws, [date(2025, 6, 1)])
    assert set(summary.skipped_families) == {"liquidity", "tax", "marketing"}
    tax = pd.read_parquet(ws.feature_table("tax"))
    assert len(tax) == 4 and tax.drop(columns=[JOIN_KEY, EVENT_TS]).isna().all().all()
    hold = pd.read_parquet(ws.feature_table("holdings")).set_index(JOIN_KEY)
    assert hold["holdings_service_mobile_banking_held"].isna().all()  # no services table
    assert hold["holdings_services_count"].isna().all()
    demo = pd.read_parquet(ws.feature_table("demo"))
    assert demo["demo_branch_rural"].isna().all() and demo["demo_branch_customers"].notna().all()  # no branches table
    # absent_sources names the missing table of every feature that is null for want of it
    absent = absent_sources(ws)
    assert absent["tax_paid_latest"] == ("tax_records",) and absent["demo_branch_rural"] == ("branches",)
    assert absent["holdings_services_count"] == ("services",) and "holdings_loans_active_count" not in absent
    assert hold.loc["c2", "holdings_loans_active_count"] == 1  # loans are still there


def test_required_table_missing_is_a_clear_error(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    write_tables(ws, {k: v for k, v in tiny_bank().items() if k != "loans"}, date(2025, 8, 31))
    with pytest.raises(FeatureStoreError, match="loans"):
        build(ws, [date(2025, 6, 1)])


def test_default_as_of_starts_after_the_first_full_month(tiny_ws: Workspace) -> None:
    # first transaction 2025-01-05: first full month is February, so the first as-of is 2025-03-01;
    # export date 2025-08-31, so the last as-of is 2025-09-01 (sees the whole export)
    got = default_as_of(tiny_ws)
    assert got[0] == date(2025, 3, 1) and got[-1] == date(2025, 9, 1) and len(got) == 7


def test_rebuilding_one_as_of_keeps_the_others(tiny_ws: Workspace) -> None:
    build(tiny_ws, [date(2025, 6, 1), date(2025, 7, 1)])
    first = pd.read_parquet(tiny_ws.feature_table("income"))
    build(tiny_ws, [date(2025, 7, 1), date(2025, 8, 1)])
    again = pd.read_parquet(tiny_ws.feature_table("income"))
    assert sorted(again[EVENT_TS].unique()) == [pd.Timestamp(f"2025-0{m}-01") for m in (6, 7, 8)]
    assert len(again) == len(first) + 4
    assert built_as_of(tiny_ws) == [date(2025, 6, 1), date(2025, 7, 1), date(2025, 8, 1)]
    meta = json.loads(tiny_ws.features_build_meta.read_text())
    assert meta["loan_mode"] == "end_date"


def test_loan_mode_term_ends_loans_by_their_term(tiny_ws: Workspace) -> None:
    # l1: granted 2024-01-10, 12 months: by term it ended 2025-01-10, by end_date 2025-03-20
    build(tiny_ws, [date(2025, 2, 1)], loan_mode="term")
    hold = pd.read_parquet(tiny_ws.feature_table("holdings")).set_index(JOIN_KEY)
    assert hold.loc["c2", "holdings_loans_active_business_flow_count"] == 0
    build(tiny_ws, [date(2025, 2, 1)], loan_mode="end_date")
    hold = pd.read_parquet(tiny_ws.feature_table("holdings")).set_index(JOIN_KEY)
    assert hold.loc["c2", "holdings_loans_active_business_flow_count"] == 1


def test_a_spine_rows_family_with_extra_rows_is_refused(tiny_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    # demo says SPINE_ROWS (one row per customer and as-of); a SQL that breaks it must not be written
    from features.families import demo

    assert demo.SPINE_ROWS
    sql = demo.sql
    monkeypatch.setattr(demo, "sql", lambda tables: f"{sql(tables)}\nUNION ALL\n{sql(tables)}")
    with pytest.raises(FeatureStoreError, match="SPINE_ROWS"):
        build(tiny_ws, [date(2025, 6, 1)], families=["demo"])
    assert not tiny_ws.feature_table("demo").exists()


def test_a_window_over_an_unknown_monthly_column_is_a_clear_error(
    tiny_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.families import _sql, income

    broken = [replace(f, sql=_sql.win("sum", "no_such_amt", 3)) for f in income.FEATURES]
    monkeypatch.setattr(income, "sql", lambda tables: _sql.monthly(broken, tables))
    with pytest.raises(FeatureStoreError, match="no_such_amt"):
        build(tiny_ws, [date(2025, 6, 1)], families=["income"])


def test_customers_without_transactions_get_zero_counts_and_null_ratios(tiny_built: Workspace) -> None:
    # c4 has no transactions at all: the window relation still has its rows (all-zero months)
    inc, spend = _at(tiny_built, "income"), _at(tiny_built, "spend")
    assert inc.loc["c4", "income_payroll_months_12m"] == 0 and inc.loc["c4", "income_payroll_streak_months"] == 0
    assert pd.isna(inc.loc["c4", "income_payroll_months_since_last"])
    assert spend.loc["c4", "spend_purchase_amount_3m"] == 0 and pd.isna(spend.loc["c4", "spend_cash_share_3m"])
