"""What managers collect on visits (``profile_updates``) in the ``demo`` family, point in time:
an update counts from the first as-of after its ``collected_date``, the latest before T wins."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from featurekit import TINY_AS_OF, tiny_bank, typed, write_tables

from bankexport.spec import TABLES
from features.build import build
from features.catalog import MODULES
from features.schema import EVENT_TS, JOIN_KEY
from nbp.workspace import Workspace

ts = pd.Timestamp
# c1: enterprise_employee, married, no established_date in customers; c2: merchant, F, 2018-05-01
UPDATES = [
    dict(customer_id="c1", field="occupation", value="civil_servant", collected_date=ts("2025-04-20"), manager_id="m1"),
    dict(customer_id="c1", field="occupation", value="retired", collected_date=ts("2025-05-10"), manager_id="m1"),
    dict(customer_id="c1", field="monthly_income", value="6000.50", collected_date=ts("2025-05-31")),
    # recorded on the as-of itself: unknown at 2025-06-01, known from 2025-06-15
    dict(customer_id="c1", field="monthly_income", value="7200", collected_date=ts("2025-06-01")),
    dict(customer_id="c2", field="industry", value="G", collected_date=ts("2025-06-01")),
    dict(customer_id="c2", field="established_date", value="2020-03-01", collected_date=ts("2025-04-02")),
    dict(customer_id="c2", field="business_turnover_monthly", value="85000", collected_date=ts("2025-04-02")),
]


def _built(root: Path, updates: list[dict] | None) -> dict[str, pd.DataFrame]:
    tables = tiny_bank()
    if updates is not None:
        tables["profile_updates"] = typed("profile_updates", updates)
    ws = Workspace(root)
    write_tables(ws, tables, date(2025, 8, 31))
    build(ws, TINY_AS_OF)
    return {f: pd.read_parquet(ws.feature_table(f), dtype_backend="numpy_nullable") for f in MODULES}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _built(tmp_path_factory.mktemp("pu") / "ws", UPDATES)["demo"].set_index([JOIN_KEY, EVENT_TS])


def _at(demo: pd.DataFrame, customer: str, t: str) -> pd.Series:
    return demo.loc[(customer, ts(t))]


def test_latest_update_before_t_wins_over_customers(demo: pd.DataFrame) -> None:
    occ = TABLES["customers"].column("occupation").enum
    assert _at(demo, "c1", "2025-04-01")["demo_occupation"] == occ.index("enterprise_employee")
    assert _at(demo, "c1", "2025-05-01")["demo_occupation"] == occ.index("civil_servant")
    assert _at(demo, "c1", "2025-06-01")["demo_occupation"] == occ.index("retired")  # the later of two


def test_a_visit_on_or_after_t_changes_nothing_at_t(demo: pd.DataFrame) -> None:
    assert _at(demo, "c1", "2025-06-01")["demo_monthly_income_amount"] == pytest.approx(6000.50)
    assert _at(demo, "c1", "2025-06-15")["demo_monthly_income_amount"] == pytest.approx(7200)
    industries = TABLES["customers"].column("industry").enum
    assert _at(demo, "c2", "2025-06-01")["demo_industry"] == industries.index("F")
    assert _at(demo, "c2", "2025-06-15")["demo_industry"] == industries.index("G")


def test_figures_and_dates_from_visits(demo: pd.DataFrame) -> None:
    assert pd.isna(_at(demo, "c1", "2025-05-01")["demo_monthly_income_amount"])  # no update yet
    assert pd.isna(_at(demo, "c3", "2025-08-01")["demo_business_turnover_monthly_amount"])  # never visited
    assert pd.isna(_at(demo, "c2", "2025-04-01")["demo_business_turnover_monthly_amount"])
    later = _at(demo, "c2", "2025-05-01")
    assert later["demo_business_turnover_monthly_amount"] == pytest.approx(85000)
    assert later["demo_firm_age_months"] == 62  # established 2020-03-01 per the visit, not 2018-05-01
    assert _at(demo, "c2", "2025-04-01")["demo_firm_age_months"] == 83


def test_without_the_table_or_with_only_later_updates_the_features_are_as_before(tmp_path: Path) -> None:
    """Updates all collected on or after the last as-of give exactly the tables of an export without
    ``profile_updates``: every family, every column (the visit-only figures null)."""
    later = [{**u, "collected_date": ts("2025-08-01")} for u in UPDATES]
    without, with_later = _built(tmp_path / "a", None), _built(tmp_path / "b", later)
    keys = ["customer_id", "event_timestamp"]  # row order within a family table is not part of its contract
    for fam, table in without.items():
        pd.testing.assert_frame_equal(
            table.sort_values(keys, ignore_index=True), with_later[fam].sort_values(keys, ignore_index=True), obj=fam
        )
    assert without["demo"]["demo_monthly_income_amount"].isna().all()
    assert without["demo"]["demo_occupation"].notna().any()
