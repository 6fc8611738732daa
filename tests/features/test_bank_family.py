"""The bank family: built for member banks only, point in time, and in their Feast services."""

from __future__ import annotations

from datetime import date

import pandas as pd
from featurekit import tiny_bank, typed, write_tables

from features.build import build
from features.catalog import BANK_FEATURES, CATALOG, MEMBER_MODULES, family_features
from features.families.bank import ESTABLISHED_MONTHS
from features.schema import EVENT_TS, JOIN_KEY
from nbp.workspace import Workspace

AS_OF = [date(2025, 4, 1), date(2025, 5, 1), date(2025, 6, 1), date(2025, 6, 15), date(2025, 7, 1)]


def _bank(ws: Workspace) -> pd.DataFrame:
    build(ws, AS_OF, families=["bank"])
    df = pd.read_parquet(ws.feature_table("bank"))
    return df.drop_duplicates(EVENT_TS).set_index(EVENT_TS).drop(columns=["bank_code", JOIN_KEY])


def test_bank_features_count_customers_and_months_since_each_first_application_before_t(tmp_path) -> None:
    ws = Workspace(tmp_path / "home").for_bank("A")
    write_tables(ws, tiny_bank(), date(2025, 8, 31), bank="A")
    got = _bank(ws)
    full = pd.read_parquet(ws.feature_table("bank"))
    assert list(full.columns) == ["bank_code", JOIN_KEY, EVENT_TS] + [f.name for f in family_features("bank")]
    assert (full.groupby(EVENT_TS).nunique().drop(columns=[JOIN_KEY]) <= 1).all().all()  # one value per bank and T
    at = got.loc
    # c4 opened on 2025-05-01: not yet a customer at T = 2025-05-01 (open_date < T)
    assert at[pd.Timestamp("2025-05-01"), "bank_customers_count"] == 3
    assert at[pd.Timestamp("2025-06-01"), "bank_customers_count"] == 4
    # consumer: first application 2025-05-20; unknown (not offered) before it
    assert pd.isna(at[pd.Timestamp("2025-05-01"), "bank_months_since_launch_consumer"])
    assert at[pd.Timestamp("2025-06-01"), "bank_months_since_launch_consumer"] == 1
    assert at[pd.Timestamp("2025-07-01"), "bank_months_since_launch_consumer"] == 2
    assert at[pd.Timestamp("2025-04-01"), "bank_months_since_launch_tax_linked"] == 2  # a rejected application counts
    # business_flow since 2024-01-05: 12 months on 2025-01-05, counted up to ESTABLISHED_MONTHS after
    assert at[pd.Timestamp("2025-06-01"), "bank_months_since_launch_business_flow"] == ESTABLISHED_MONTHS == 12
    assert got["bank_months_since_launch_mortgage"].isna().all()


def test_a_launch_after_t_changes_nothing_at_t(tmp_path) -> None:
    ws = Workspace(tmp_path / "home").for_bank("A")
    tables = tiny_bank()
    write_tables(ws, tables, date(2025, 8, 31), bank="A")
    before = _bank(ws)
    late = typed(
        "loans",
        [dict(loan_id="l9", customer_id="c1", product="mortgage", application_date=pd.Timestamp("2025-06-20"))],
    )
    tables["loans"] = pd.concat([tables["loans"], late], ignore_index=True)
    write_tables(ws, tables, date(2025, 8, 31), bank="A")
    after = _bank(ws)
    early = [pd.Timestamp(d) for d in AS_OF if d <= date(2025, 6, 15)]
    pd.testing.assert_frame_equal(after.loc[early], before.loc[early])
    assert after.loc[pd.Timestamp("2025-07-01"), "bank_months_since_launch_mortgage"] == 1


def test_a_single_bank_workspace_neither_builds_nor_publishes_the_bank_family(tmp_path) -> None:
    from features.repo.definitions import feature_views

    single = Workspace(tmp_path / "single")
    write_tables(single, tiny_bank(), date(2025, 8, 31))
    build(single, [date(2025, 6, 1)])
    assert not single.feature_table("bank").exists()
    assert "bank" not in {v.name for v in feature_views(single)}
    assert "bank" in {v.name for v in feature_views(Workspace(tmp_path / "fed").for_bank("A"))}
    assert not BANK_FEATURES & {f.name for f in CATALOG} and set(MEMBER_MODULES) == {"bank"}
    assert all(f.zh and f.en for f in family_features("bank"))
