"""The bank simulator: spec conformance, determinism, point in time, and a calibrated oracle.

Labels and candidates are recomputed here from the written loans table by the spec's
own definitions, independently of the simulator's internal state. Conformance tests run
on a small bank (the fast tier) and on the larger one (marked slow); tests that need the
larger bank's sample (the oracle's calibration and ranking) run only on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bankexport import sim_params as P
from bankexport.sim_activity import split
from bankexport.sim_calendar import calendar, month_days
from bankexport.sim_loans import LoanBook
from bankexport.sim_population import add_months
from bankexport.simulate import PRODUCTS, simulate, write_csv_export
from bankexport.spec import ALL_TABLES, FORMAT, TABLES
from nbp.errors import ConfigError

MONTHS, END, SEED, H = 14, "2026-10", 11, 90
SIZES = {"small": 1_500, "large": 4_000}  # customers of the banks of MONTHS months to END
TINY = {"customers": 300, "months": 3, "end": "2025-06", "seed": 3, "horizon_days": H}  # for the writers
EXPORT_DATE = (pd.Period(END, "M") + 1).start_time


@dataclass
class Bank:
    """A simulated bank of ``customers`` customers, ``MONTHS`` months to ``END``, read back."""

    out: Path
    customers: int
    tables: dict[str, pd.DataFrame]
    oracle: pd.DataFrame


_BANKS: dict[str, Bank] = {}


def _bank(size: str, tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """Each size is simulated once per session."""
    if size not in _BANKS:
        out = tmp_path_factory.mktemp(f"sim-{size}") / "bank"
        if size == "tiny":
            simulate(out, **TINY)
        else:
            simulate(out, customers=SIZES[size], months=MONTHS, end=END, seed=SEED, horizon_days=H)
        tables = {t: pd.read_parquet(out / "export" / f"{t}.parquet") for t in ALL_TABLES}
        _BANKS[size] = Bank(
            out, SIZES.get(size, TINY["customers"]), tables, pd.read_parquet(out / "oracle" / "oracle.parquet")
        )
    return _BANKS[size]


@pytest.fixture(scope="module", params=["small", pytest.param("large", marks=pytest.mark.slow)])
def bank(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bank:
    return _bank(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=["tiny", pytest.param("large", marks=pytest.mark.slow)])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """A bank to convert: the tiny one (fast), and the large one."""
    return _bank(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    return _bank("large", tmp_path_factory)


def _month_starts() -> list[pd.Timestamp]:
    last = pd.Period(END, "M")
    return [(last - k).start_time for k in range(MONTHS - 1, -1, -1)]


def _active_until(loans: pd.DataFrame) -> pd.Series:
    """Last day each granted loan counts as active (spec: end_date, else grant_date + term)."""
    by_term = pd.Series(pd.NaT, index=loans.index, dtype="datetime64[ns]")
    for term, grp in loans.groupby("term_months"):
        by_term[grp.index] = grp["grant_date"] + pd.DateOffset(months=int(term))
    return loans["end_date"].where(loans["end_date"].notna(), by_term)


def _labels_and_holders(tables: dict[str, pd.DataFrame], product: str, t: pd.Timestamp) -> tuple[set, set]:
    """(customers with a grant of product in (t, t+H], customers holding an active one at t)."""
    loans = tables["loans"]
    lp = loans[(loans["product"] == product) & loans["grant_date"].notna()].copy()
    lp["grant_date"] = pd.to_datetime(lp["grant_date"])
    lp["end_date"] = pd.to_datetime(lp["end_date"])
    until = _active_until(lp)
    pos = set(lp.loc[(lp["grant_date"] > t) & (lp["grant_date"] <= t + pd.Timedelta(days=H)), "customer_id"])
    held = set(lp.loc[(lp["grant_date"] < t) & (until >= t), "customer_id"])
    return pos, held


# ------------------------------------------------------------------ spec conformance
def test_every_table_has_the_spec_columns_and_valid_values(bank: Bank) -> None:
    for name, spec in TABLES.items():
        df = bank.tables[name]
        assert list(df.columns) == spec.column_names, name
        assert len(df) > 0, name
        for col in spec.columns:
            s = df[col.name]
            if col.required:
                assert s.notna().all(), f"{name}.{col.name} has nulls"
            if col.enum:
                bad = set(s.dropna().unique()) - set(col.enum)
                assert not bad, f"{name}.{col.name}: {bad}"
            if col.positive:
                assert (s > 0).all(), f"{name}.{col.name} not positive"
            if col.min is not None:
                assert (s.dropna() >= col.min).all(), f"{name}.{col.name} below {col.min}"
            if col.max is not None:
                assert (s.dropna() <= col.max).all(), f"{name}.{col.name} above {col.max}"
            if col.type == "money":
                assert np.allclose(s.dropna(), s.dropna().round(2)), f"{name}.{col.name} > 2 decimals"
        if spec.key:
            assert not df.duplicated(list(spec.key)).any(), f"{name} key not unique"


def test_references_resolve(bank: Bank) -> None:
    tables = bank.tables
    for name, spec in TABLES.items():
        for col in spec.columns:
            if col.ref:
                tab, key = col.ref.split(".")
                missing = set(tables[name][col.name].dropna()) - set(tables[tab][key])
                assert not missing, f"{name}.{col.name} -> {col.ref}: {list(missing)[:3]}"
    # not declared as refs in the spec, but a bank's data has them
    assert set(tables["customers"]["branch_id"]) <= set(tables["branches"]["branch_id"])
    assert set(tables["customers"]["manager_id"].dropna()) <= set(tables["managers"]["manager_id"])
    assert set(tables["managers"]["branch_id"]) <= set(tables["branches"]["branch_id"])
    txn = tables["transactions"].merge(
        tables["accounts"][["account_id", "customer_id"]], on="account_id", suffixes=("", "_owner")
    )
    assert (txn["customer_id"] == txn["customer_id_owner"]).all()


def test_manifest_and_oracle_layout(bank: Bank) -> None:
    manifest = json.loads((bank.out / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == FORMAT
    assert manifest["encoding"] == "utf-8"
    assert pd.Timestamp(manifest["export_date"]) == EXPORT_DATE
    assert not list((bank.out / "export").glob("*oracle*"))
    assert (bank.out / "oracle" / "oracle.parquet").exists()


def test_population_has_the_county_mix(bank: Bank) -> None:
    cust = bank.tables["customers"]
    n_biz = int((cust["customer_type"] == "business").sum())
    # the reference bank's share of businesses, and a handful even in a small bank
    assert n_biz == max(P.MIN_BUSINESSES, round(bank.customers * P.FULL_BUSINESSES / P.FULL_CUSTOMERS))
    occ = cust["occupation"].value_counts(normalize=True)
    assert occ.index[0] == "farmer"
    assert {"migrant_worker", "merchant", "civil_servant", "retired", "student"} <= set(occ.index)
    assert set(bank.tables["branches"]["area"]) == {"urban", "rural"}
    mobile = bank.tables["services"].query("service == 'mobile_banking'")
    first = pd.Timestamp(_month_starts()[0])
    share_start = (pd.to_datetime(mobile["start_date"]) < first).sum() / len(cust)
    share_end = len(mobile) / len(cust)
    assert 0.03 < share_start < 0.10
    assert share_end > share_start + 0.02  # adoption grows


def test_dates_fall_before_the_export_date(bank: Bank) -> None:
    tables = bank.tables
    t = tables["transactions"]["txn_time"]
    assert t.min() >= _month_starts()[0] and t.max() < EXPORT_DATE
    for name, col in (
        ("loans", "application_date"),
        ("loans", "grant_date"),
        ("loans", "end_date"),
        ("accounts", "open_date"),
        ("customers", "open_date"),
        ("contacts", "contact_date"),
        ("services", "start_date"),
        ("tax_records", "published_date"),
    ):
        assert (pd.to_datetime(tables[name][col].dropna()) < EXPORT_DATE).all(), f"{name}.{col}"


def test_tax_records_are_published_after_the_tax_year(bank: Bank) -> None:
    tax = bank.tables["tax_records"]
    pub = pd.to_datetime(tax["published_date"])
    year_end = pd.to_datetime(tax["tax_year"].astype(str) + "-12-31")
    assert (pub > year_end).all()
    assert set(tax["credit_grade"]) <= set("ABMCD") and len(set(tax["credit_grade"])) >= 4
    taxpayers = bank.tables["customers"].set_index("customer_id").loc[tax["customer_id"].unique()]
    assert set(taxpayers["occupation"].fillna("business")) <= {"merchant", "micro_business_owner", "business"}


def test_loans_are_consistent_with_transactions(bank: Bank) -> None:
    loans = bank.tables["loans"]
    rej = loans["status"] == "rejected"
    assert rej.any() and loans.loc[rej, ["grant_date", "amount", "end_date"]].isna().all().all()
    assert loans.loc[~rej, ["grant_date", "amount", "term_months"]].notna().all().all()
    assert (pd.to_datetime(loans.loc[~rej, "grant_date"]) >= pd.to_datetime(loans.loc[~rej, "application_date"])).all()
    days = (pd.to_datetime(loans["end_date"]).fillna(EXPORT_DATE) - pd.to_datetime(loans["grant_date"])).dt.days
    assert (loans.loc[~rej, "max_overdue_days"] <= days[~rej]).all()
    assert (loans.loc[loans["status"] == "overdue", "max_overdue_days"] > 0).all()
    ended = loans["status"].isin(["settled", "written_off"])
    assert loans.loc[ended, "end_date"].notna().all()
    assert loans.loc[loans["status"].isin(["active", "overdue"]), "end_date"].isna().all()
    # every loan granted during the simulation is disbursed on its grant date, for its amount
    g = loans[~rej & (pd.to_datetime(loans["grant_date"]) >= _month_starts()[0])]
    txn = bank.tables["transactions"]
    disb = txn[txn["txn_type"] == "loan_disbursement"].assign(day=lambda d: d["txn_time"].dt.normalize())
    got = g.assign(day=pd.to_datetime(g["grant_date"])).merge(disb, on=["customer_id", "day", "amount"])
    assert len(disb) == len(g) and got["loan_id"].nunique() == len(g)
    assert {"agricultural", "mortgage"} <= set(loans["product"])


def test_transactions_look_like_a_rural_bank(bank: Bank) -> None:
    txn = bank.tables["transactions"]
    per_month = len(txn) / bank.customers / MONTHS
    assert 1 < per_month < 15
    pay = txn[txn["txn_type"] == "payroll"]
    assert (pay["channel"] == "batch").all()
    assert {"agent", "batch", "qr", "pos", "mobile", "counter"} <= set(txn["channel"])
    assert {"pension", "subsidy", "tax", "loan_repayment", "merchant_settlement"} <= set(txn["txn_type"])
    # merchants' settlements peak around the Spring Festival (2026-02-17)
    ms = txn[txn["txn_type"] == "merchant_settlement"]
    monthly = ms.groupby(ms["txn_time"].dt.to_period("M"))["amount"].sum()
    assert monthly[pd.Period("2026-02", "M")] > 1.2 * monthly.median()


def test_contacts_never_reveal_a_later_application(bank: Bank) -> None:
    """An accepted contact is followed by an application that same month, on or after it."""
    c = bank.tables["contacts"]
    acc = c[c["outcome"] == "accepted"].assign(contact_date=lambda d: pd.to_datetime(d["contact_date"]))
    assert len(acc) > 0 and set(c["outcome"]) >= {"declined", "no_response"}
    loans = bank.tables["loans"].assign(application_date=lambda d: pd.to_datetime(d["application_date"]))
    m = acc.merge(loans, on=["customer_id", "product"])
    ok = (m["application_date"] >= m["contact_date"]) & (
        m["application_date"].dt.to_period("M") == m["contact_date"].dt.to_period("M")
    )
    assert m.loc[ok, ["customer_id", "product", "contact_date"]].drop_duplicates().shape[0] == len(acc)


def test_nothing_happens_before_a_customer_opens(bank: Bank) -> None:
    opened = bank.tables["customers"].set_index("customer_id")["open_date"].map(pd.Timestamp)
    txn = bank.tables["transactions"]
    assert (txn["txn_time"] >= txn["customer_id"].map(opened)).all()
    for name, col in (("services", "start_date"), ("accounts", "open_date")):
        t = bank.tables[name]
        assert (pd.to_datetime(t[col]) >= t["customer_id"].map(opened)).all(), name
    assert (pd.to_datetime(bank.oracle["as_of"]) > bank.oracle["customer_id"].map(opened)).all()


# ------------------------------------------------------------------ determinism
def test_same_seed_same_bytes_different_seed_different(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    a = _bank("tiny", tmp_path_factory).out
    simulate(tmp_path / "b", **TINY)
    simulate(tmp_path / "c", **{**TINY, "seed": TINY["seed"] + 1})
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    # the tables, the manifest, the oracle and the true uplift, plus the campaigns' assignment files
    assert len([f for f in files if f.parts[0] != "campaigns"]) == len(ALL_TABLES) + 3
    for f in files:
        assert (a / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (a / "export" / "transactions.parquet").read_bytes() != (
        tmp_path / "c" / "export" / "transactions.parquet"
    ).read_bytes()


# ------------------------------------------------------------------ the oracle
def test_oracle_rows_are_candidates_at_month_starts(bank: Bank) -> None:
    oracle = bank.oracle
    assert list(oracle.columns) == ["customer_id", "product", "as_of", "p_true", "p_asof"]
    assert set(oracle["product"]) == set(PRODUCTS)
    as_of = pd.to_datetime(oracle["as_of"])
    assert (as_of.dt.day == 1).all()
    assert (as_of + pd.Timedelta(days=H) < EXPORT_DATE).all()
    assert ((oracle["p_true"] > 0) & (oracle["p_true"] < 1)).all()
    assert ((oracle["p_asof"] >= 0) & (oracle["p_asof"] < 1)).all()
    assert not oracle.duplicated(["customer_id", "product", "as_of"]).any()
    for (product, t), grp in oracle.groupby(["product", as_of]):
        _, held = _labels_and_holders(bank.tables, product, t)
        assert not held & set(grp["customer_id"]), f"{product} {t:%Y-%m}: holders in the oracle"


@pytest.mark.slow
def test_oracle_is_calibrated_per_product(large: Bank) -> None:
    """Mean p_true over candidate rows equals the observed label rate, within sampling error.

    Within one as-of residue class modulo k months (k = ceil((H + 1) / 28)), label windows
    do not overlap, so y - p_true is a martingale difference sequence per customer and
    Var(sum) = sum p(1 - p). Summing k such classes, Var <= k * sum p(1 - p) (Cauchy-Schwarz).
    The tolerance is 4 standard deviations of that bound.
    """
    k = math.ceil((H + 1) / 28)
    oracle = large.oracle
    as_of = pd.to_datetime(oracle["as_of"])
    for product in PRODUCTS:
        o = oracle[oracle["product"] == product]
        y = np.zeros(len(o))
        for t, idx in o.groupby(as_of[o.index]).groups.items():
            pos, _ = _labels_and_holders(large.tables, product, t)
            y[o.index.get_indexer(idx)] = o.loc[idx, "customer_id"].isin(pos)
        p = o["p_true"].to_numpy()
        diff = y.sum() - p.sum()
        tol = 4 * math.sqrt(k * (p * (1 - p)).sum())
        assert y.sum() >= 20, f"{product}: too few labels to judge ({y.sum()})"
        assert abs(diff) <= tol, f"{product}: labels {y.sum():.0f} vs sum p {p.sum():.1f} (tol {tol:.1f})"


def test_customers_left_out_of_the_oracle_never_take_up(bank: Bank) -> None:
    """Omitted rows mean p = 0: no candidate outside the oracle gets a grant in the window."""
    oracle = bank.oracle
    as_of = pd.to_datetime(oracle["as_of"])
    for product in PRODUCTS:
        o = oracle[oracle["product"] == product]
        for t in sorted(as_of.unique()):
            pos, held = _labels_and_holders(bank.tables, product, t)
            inside = set(o.loc[as_of[o.index] == t, "customer_id"])
            assert not (pos - held - inside), f"{product} {t:%Y-%m}: uptake outside the oracle"


@pytest.mark.slow
def test_as_of_oracle_differs_only_where_drivers_move_inside_the_window(large: Bank) -> None:
    """``p_asof`` freezes the as-of month's drivers over the window: the same ranking
    in the main (drivers are persistent), not the same numbers (turnover, tax records,
    life events and the festival calendar move inside the window)."""
    for product, o in large.oracle.groupby("product"):
        rho = o["p_true"].rank().corr(o["p_asof"].rank())
        assert 0.8 < rho < 1.0, f"{product}: rank correlation {rho:.3f}"
        assert (o["p_asof"] != o["p_true"]).mean() > 0.5, product


# ------------------------------------------------------------------ CSV conversion
@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_write_csv_export(written: Bank, tmp_path: Path, encoding: str) -> None:
    bank = written
    files = write_csv_export(bank.out / "export", tmp_path / "csv", encoding=encoding)
    assert {f.stem for f in files} == set(ALL_TABLES)
    manifest = json.loads((tmp_path / "csv" / "manifest.json").read_text(encoding="utf-8"))
    source = json.loads((bank.out / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == {**source, "encoding": encoding}
    branches = pd.read_csv(tmp_path / "csv" / "branches.csv", encoding=encoding, dtype=str)
    assert branches["name"].str.contains("支行").all()
    loans = pd.read_csv(tmp_path / "csv" / "loans.csv", encoding=encoding, dtype=str, keep_default_na=False)
    assert list(loans.columns) == TABLES["loans"].column_names
    assert len(loans) == pq.read_metadata(bank.out / "export" / "loans.parquet").num_rows
    assert loans["grant_date"].str.fullmatch(r"(\d{4}-\d{2}-\d{2})?").all()
    txn = pd.read_csv(tmp_path / "csv" / "transactions.csv", encoding=encoding, dtype=str, nrows=1000)
    assert txn["txn_time"].str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}").all()
    # the same values as the Parquet file: amounts to the fen, times to the second
    src = bank.tables["transactions"].head(1000)
    assert (txn["amount"].astype(float) == src["amount"]).all()
    assert (pd.to_datetime(txn["txn_time"]) == src["txn_time"]).all()


def test_write_csv_export_refuses_an_unknown_encoding(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encoding must be 'utf-8' or 'gbk'"):
        write_csv_export(tmp_path / "export", tmp_path / "csv", encoding="latin-1")
    assert not (tmp_path / "csv").exists()


# ------------------------------------------------------------------ CLI
def test_cli_prints_the_summary(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nbp.cli import main

    res = CliRunner().invoke(
        main, ["simulate", "--customers", "400", "--months", "4", "--end", "2025-03", "--out", str(tmp_path / "bank")]
    )
    assert res.exit_code == 0, res.output
    assert "transactions" in res.output and "oracle:" in res.output
    assert "export date 2025-04-01" in res.output
    assert (tmp_path / "bank" / "oracle" / "oracle.parquet").exists()


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"end": "2026-13"}, "not a month"),
        ({"customers": 0}, "must be positive"),
        ({"horizon_days": 0}, "must be positive"),
        ({"end": "2040-01"}, "no Spring Festival date for 2039"),
    ],
)
def test_bad_arguments_are_config_errors(tmp_path: Path, kw: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=f"simulate: .*{says}"):
        simulate(tmp_path / "bank", **{"customers": 50, "months": 2, "end": "2025-01", **kw})
    assert not (tmp_path / "bank").exists()  # refused before writing anything


# ------------------------------------------------------------------ building blocks
def test_split_keeps_each_total_in_positive_parts() -> None:
    rng = np.random.default_rng(0)
    total = np.array([100.0, 7.5, 1_000_000.0])
    counts = np.array([3, 1, 12])
    parts = split(total, counts, rng)
    assert len(parts) == counts.sum() and (parts > 0).all()
    owner = np.repeat(np.arange(3), counts)
    assert np.allclose(np.bincount(owner, weights=parts), total)


def test_calendar_lifts_the_festival_and_leaves_summer_alone() -> None:
    def cal(month: str) -> tuple[float, float]:
        ms = np.datetime64(month, "D")
        return calendar(ms, month_days(ms))

    assert cal("2026-08-01") == (1.0, 0.0)
    lift, stock = cal("2026-02-01")  # 春节 2026-02-17: the peak's days and the stocking weeks
    assert lift > 1.2 and stock > 0.5
    assert cal("2026-03-01")[0] < 1.0  # the slump after it
    assert month_days(np.datetime64("2024-02-01")) == 29


def test_add_months_clips_to_the_month_end() -> None:
    days = np.array(["2025-01-31", "2024-01-31", "2025-03-15"], dtype="datetime64[D]")
    got = add_months(days, np.array([1, 1, -3]))
    assert list(got.astype(str)) == ["2025-02-28", "2024-02-29", "2024-12-15"]


def test_a_loan_is_held_from_the_day_after_its_grant_until_its_end() -> None:
    book = LoanBook(3, np.datetime64("2026-01-01"))
    rng = np.random.default_rng(1)
    app = np.array(["2025-03-01", "2025-03-01"], dtype="datetime64[D]")
    grant = np.array(["2025-03-10", "NaT"], dtype="datetime64[D]")  # the second is rejected
    book.add(np.array([0, 1]), "consumer", app, grant, np.array([20_000.0, 20_000.0]), rng)
    end = book.arrays()["end"][0]
    assert np.isnat(book.arrays()["end"][1])
    for day, held in (("2025-03-10", False), ("2025-03-11", True), (str(end), True)):
        assert list(book.holding("consumer", np.datetime64(day))) == [held, False, False], day
    if end < np.datetime64("2026-01-01"):  # an end before the export date is the last day held
        assert not book.holding("consumer", end + 1)[0]
