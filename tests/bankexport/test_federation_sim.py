"""The simulated federation: member banks that differ as a province's do, each a complete export.

A 3-bank federation (small scale) is simulated once per module; a single bank with an
explicit :class:`BankProfile` checks the launch and tax-data knobs where enough loans
make the check able to fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bankexport import sim_params as P
from bankexport.sim_federation import occupation_mix, plan_federation, simulate_federation
from bankexport.sim_profile import BankProfile
from bankexport.simulate import simulate
from bankexport.spec import ALL_TABLES
from nbp.config import IngestConfig
from nbp.errors import ConfigError
from nbp.workspace import Workspace, is_bank_code

SEED, SCALE, SIZES = 21, 0.05, [30_000, 10_000, 3_000]
FED = {"k": 3, "seed": SEED, "scale": SCALE, "sizes": SIZES, "months": 10, "end": "2026-10"}
EXPORT_DATE = pd.Timestamp("2026-11-01")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fed") / "federation"
    simulate_federation(out, **FED)
    return out


def _listing(out: Path) -> dict:
    return json.loads((out / "federation.json").read_text(encoding="utf-8"))


def _loans(out: Path, code: str) -> pd.DataFrame:
    loans = pd.read_parquet(out / code / "export" / "loans.parquet")
    for col in ("application_date", "grant_date"):
        loans[col] = pd.to_datetime(loans[col])
    return loans


def test_every_bank_is_a_complete_export_with_its_own_oracle(fed: Path) -> None:
    banks = _listing(fed)["banks"]
    assert sorted(b["bank_code"] for b in banks) == sorted(p.name for p in fed.iterdir() if p.is_dir())
    for b in banks:
        exp = fed / b["export"]
        tables = [t for t in ALL_TABLES if b["tax_data"] or t != "tax_records"]
        assert sorted(p.stem for p in exp.glob("*.parquet")) == sorted(tables), b["bank_code"]
        assert (fed / b["oracle"]).exists()
        assert json.loads((exp / "manifest.json").read_text(encoding="utf-8"))["export_date"] == "2026-11-01"


def test_sizes_follow_the_configured_order_and_scale(fed: Path) -> None:
    banks = _listing(fed)["banks"]
    assert [b["size"] for b in banks] == SIZES
    rows = [len(pd.read_parquet(fed / b["export"] / "customers.parquet")) for b in banks]
    assert rows == [round(s * SCALE) for s in SIZES] == [b["customers"] for b in banks]


def test_manifests_name_each_bank_with_a_valid_distinct_code(fed: Path) -> None:
    codes = []
    for b in _listing(fed)["banks"]:
        m = json.loads((fed / b["export"] / "manifest.json").read_text(encoding="utf-8"))
        assert is_bank_code(m["bank_code"]) and m["bank_code"] == b["bank_code"]
        assert m["bank"].endswith("农商行")
        codes.append(m["bank_code"])
    assert len(set(codes)) == len(codes)


def test_tax_records_exist_only_where_the_bank_has_tax_data(fed: Path) -> None:
    banks = _listing(fed)["banks"]
    assert {b["tax_data"] for b in banks} == {True, False}  # a federation of 2+ banks has both kinds
    for b in banks:
        assert (fed / b["export"] / "tax_records.parquet").exists() == b["tax_data"], b["bank_code"]
        if not b["tax_data"]:  # no tax data, no 税易贷
            assert "tax_linked" not in b["launch"]
            assert not (_loans(fed, b["bank_code"])["product"] == "tax_linked").any()


def test_a_product_is_live_under_four_months_and_nothing_precedes_a_launch(fed: Path) -> None:
    banks = _listing(fed)["banks"]
    assert min(m for b in banks for m in b["live_months"].values()) < 4
    for b in banks:
        loans = _loans(fed, b["bank_code"])
        oracle = pd.read_parquet(fed / b["oracle"])
        for product, month in b["launch"].items():
            if month is None:
                continue
            day = pd.Timestamp(month)
            assert (EXPORT_DATE.to_period("M") - day.to_period("M")).n == b["live_months"][product]
            assert not (loans[loans["product"] == product].application_date < day).any()
            assert not (pd.to_datetime(oracle[oracle["product"] == product].as_of) < day).any()


def test_ids_collide_between_banks_and_the_banks_differ(fed: Path) -> None:
    banks = _listing(fed)["banks"]
    customers = [pd.read_parquet(fed / b["export"] / "customers.parquet") for b in banks]
    assert all("C000000000" in c.customer_id.values for c in customers)  # unique within a bank only
    assert len({b["seed"] for b in banks}) == len(banks)
    assert len({b["county_code"] for b in banks}) == len(banks)
    assert customers[0].township_code.str[:6].eq(banks[0]["county_code"]).all()


def test_the_population_follows_each_banks_shares(fed: Path) -> None:
    big = _listing(fed)["banks"][0]  # the largest bank, 1,500 customers
    c = pd.read_parquet(fed / big["export"] / "customers.parquet")
    ind = c[c.customer_type == "individual"]
    for share, occs in (
        (big["public_share"], ("civil_servant", "public_institution")),
        (big["merchant_share"], ("merchant", "micro_business_owner")),
    ):
        got = ind.occupation.isin(occs).mean()
        assert abs(got - share) < 4 * np.sqrt(share * (1 - share) / len(ind)), (occs, got, share)


def test_the_same_seed_gives_the_same_federation(fed: Path, tmp_path: Path) -> None:
    simulate_federation(tmp_path / "again", **FED)
    files = sorted(p.relative_to(fed) for p in fed.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    for f in files:
        assert (fed / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f
    other = plan_federation(3, SEED + 1, SCALE, SIZES, 10, "2026-10")
    assert [b.seed for b in other] != [b["seed"] for b in _listing(fed)["banks"]]


def test_default_sizes_spread_from_several_hundred_thousand_to_a_few_thousand() -> None:
    banks = plan_federation(8, 1, months=24, end="2026-10")
    sizes = [b.size for b in banks]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == P.FED_SIZE_RANGE[0] and sizes[-1] == P.FED_SIZE_RANGE[1]
    assert sum(sizes) >= 1_000_000  # issue 14's speed run: 8 banks, a million customers
    assert len({b.profile.bank_code for b in plan_federation(20, 1)}) == 20


def test_occupation_mix_sets_the_two_groups_and_keeps_the_rest_in_proportion() -> None:
    mix = occupation_mix(0.2, 0.05)
    assert list(mix) == list(P.OCCUPATION_MIX) and np.isclose(sum(mix.values()), 1)
    assert np.isclose(mix["civil_servant"] + mix["public_institution"], 0.2)
    assert np.isclose(mix["merchant"] / mix["micro_business_owner"], 8 / 3)
    ref = P.OCCUPATION_MIX
    assert np.isclose(mix["farmer"] / mix["retired"], ref["farmer"] / ref["retired"])


# ------------------------------------------------------------------ the knobs on one bank
def test_a_launch_holds_back_applications_contacts_and_oracle_rows(tmp_path: Path) -> None:
    mix = occupation_mix(0.08, 0.6)  # many merchants: business_flow loans after the launch
    profile = BankProfile(occupation_mix=mix, launch={"business_flow": "2026-04"}, tax_data=False)
    simulate(tmp_path / "b", customers=1_200, months=10, end="2026-10", seed=4, profile=profile)
    exp = tmp_path / "b" / "export"
    loans = pd.read_parquet(exp / "loans.parquet").query("product == 'business_flow'")
    app = pd.to_datetime(loans.application_date)
    assert len(loans) >= 5 and app.min() >= pd.Timestamp("2026-04-01")
    contacts = pd.read_parquet(exp / "contacts.parquet").query("product == 'business_flow'")
    assert len(contacts) > 0 and pd.to_datetime(contacts.contact_date).min() >= pd.Timestamp("2026-04-01")
    oracle = pd.read_parquet(tmp_path / "b" / "oracle" / "oracle.parquet")
    bf = pd.to_datetime(oracle[oracle["product"] == "business_flow"].as_of)
    assert bf.min() == pd.Timestamp("2026-04-01")
    assert not (oracle["product"] == "tax_linked").any() and not (exp / "tax_records.parquet").exists()


@pytest.mark.parametrize(
    ("profile", "says"),
    [
        (BankProfile(launch={"tax_linked": "2026-05"}, tax_data=False), "no tax data"),
        (BankProfile(launch={"consumer": "2025-01"}), "must fall in the simulated months"),
        (BankProfile(launch={"mortgage": "2026-05"}), "not a modelled product"),
        (BankProfile(launch={"consumer": "May"}), "not a month"),
        (BankProfile(bank_code="bad code!"), "bank_code"),
        (BankProfile(business_share=1.5), "business_share"),
        (BankProfile(occupation_mix={"farmer": 1.0}), "occupation_mix"),
    ],
)
def test_a_bad_profile_is_refused_before_writing(tmp_path: Path, profile: BankProfile, says: str) -> None:
    with pytest.raises(ConfigError, match=f"simulate: .*{says}"):
        simulate(tmp_path / "bank", customers=50, months=6, end="2026-10", profile=profile)
    assert not (tmp_path / "bank").exists()


def test_bad_federation_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="2 sizes for 3 banks"):
        plan_federation(3, 1, sizes=[10, 20])
    with pytest.raises(ConfigError, match="--scale"):
        plan_federation(3, 1, scale=0)
    with pytest.raises(ConfigError, match="between 1 and 999 banks"):
        plan_federation(0, 1)
    with pytest.raises(ConfigError, match="not a month"):
        plan_federation(2, 1, end="2026-13")


def test_cli_writes_a_federation_and_refuses_mixed_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nbp.cli import main

    args = ["simulate", "--months", "4", "--end", "2025-03", "--out", str(tmp_path / "fed")]
    res = CliRunner().invoke(main, [*args, "--federation", "2", "--sizes", "60,30"])
    assert res.exit_code == 0, res.output
    assert "QINGSHAN" in res.output and (tmp_path / "fed" / "BAISHA" / "export" / "manifest.json").exists()
    assert CliRunner().invoke(main, [*args, "--scale", "0.5"]).exit_code == 2  # --scale needs --federation
    bad = CliRunner().invoke(main, [*args, "--federation", "2", "--sizes", "60,x"])
    assert bad.exit_code == 2 and "--sizes" in bad.output


def test_every_bank_ingests_whole_into_one_federation_workspace(fed: Path, tmp_path: Path, cfg: IngestConfig) -> None:
    from bankexport.ingest import ingest

    ws = Workspace(tmp_path / "home")
    banks = _listing(fed)["banks"]
    for b in banks:
        report = ingest(fed / b["export"], ws, cfg)  # the bank comes from the manifest's bank_code
        assert report.bank_code == b["bank_code"]
        for table, t in report.tables.items():
            assert t.rows_read == t.rows_kept and not t.set_aside and not t.cells_reported, (b["bank_code"], table)
        assert (report.tables["tax_records"].file is not None) == b["tax_data"]
    assert ws.banks() == sorted(b["bank_code"] for b in banks)
