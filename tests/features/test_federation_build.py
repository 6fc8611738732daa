"""Feature build and Feast publication per member bank of a federation workspace.

Two simulated banks whose customer ids overlap (both simulators number customers from
``C000000000``) are ingested as members ``A`` and ``B``; bank A's export is also ingested
into a single-bank workspace. Bank A is then built through ``nbp features`` and compared
with the single-bank build of the same export (``slow``: about 3 s for the module). The
refusals run on the tiny hand-made bank of :mod:`featurekit` written into member folders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from featurekit import tiny_bank, write_tables

from bankexport.ingest import ingest
from bankexport.simulate import simulate
from features.build import build, build_banks, key_columns, member_banks
from features.catalog import MODULES, family_features
from features.schema import EVENT_TS, JOIN_KEY
from nbp.cli import main
from nbp.config import IngestConfig
from nbp.errors import FeatureStoreError
from nbp.workspace import Workspace

SIM = {"months": 6, "end": "2026-10"}


@dataclass(frozen=True)
class Fed:
    home: Path
    single: Workspace  # bank A's export ingested as a single bank, built directly

    @property
    def ws(self) -> Workspace:
        return Workspace(self.home)


def _cli(home: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["features", *args, "--log-level", "WARNING"], env={"NBP_HOME": str(home)})
    return res.exit_code, res.output


def _member(home: Path, bank: str) -> Workspace:
    """A member bank ``bank`` of ``home`` holding the tiny bank, its ``_meta.json`` naming the bank."""
    ws = Workspace(home).for_bank(bank)
    write_tables(ws, tiny_bank(), date(2025, 8, 31), bank=bank)
    return ws


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    tmp = tmp_path_factory.mktemp("fedbuild")
    simulate(tmp / "a", customers=90, seed=1, **SIM)
    simulate(tmp / "b", customers=60, seed=2, **SIM)
    home = tmp / "home"
    ingest(tmp / "a" / "export", Workspace(home), IngestConfig(), bank="A")
    ingest(tmp / "b" / "export", Workspace(home), IngestConfig(), bank="B")
    single = Workspace(tmp / "single")
    ingest(tmp / "a" / "export", single, IngestConfig())
    build(single)
    code, out = _cli(home)
    assert code == 0, out
    return Fed(home, single)


@pytest.mark.slow
def test_the_cli_publishes_every_bank_into_its_own_feast_repo_with_a_progress_line(fed: Fed) -> None:
    code, out = _cli(fed.home)  # a rebuild of every as-of: replaces the fixture's rows
    lines = out.strip().splitlines()
    assert code == 0, out
    banks = [line for line in lines if line.startswith("bank ")]
    assert banks[0].startswith("bank A (1/2): features: ") and banks[1].startswith("bank B (2/2): features: ")
    assert sum(line.startswith("online store: as-of ") for line in lines) == 2
    assert not fed.ws.feast_dir.exists() and not fed.ws.features_dir.exists()  # nothing shared
    for bank in ("A", "B"):
        ws = fed.ws.for_bank(bank)
        meta = json.loads(ws.features_build_meta.read_text(encoding="utf-8"))
        assert meta["bank_code"] == bank
        assert ws.feast_registry.is_file() and ws.online_store_db.is_file()
        assert ws.feast_dir.parent == ws.bank_root


@pytest.mark.slow
def test_each_bank_online_store_answers_its_own_customer_behind_a_shared_id(fed: Fed) -> None:
    from features.store import online, project, service_names
    from nbp.config import load_config

    cfg = load_config()
    service = service_names(cfg)["consumer"]
    a, b = fed.ws.for_bank("A"), fed.ws.for_bank("B")
    assert project(a) != project(b) and project(Workspace(fed.home)) == "nbp"
    assert project(Workspace(fed.home).for_bank("x-y")) != project(Workspace(fed.home).for_bank("x_y"))
    shared = sorted(
        set(pd.read_parquet(a.table("customers"))[JOIN_KEY]) & set(pd.read_parquet(b.table("customers"))[JOIN_KEY])
    )
    latest = max(json.loads(a.features_build_meta.read_text())["as_of"])
    differ = 0
    for ws in (a, b):
        got = online(cfg, ws, shared, service).set_index(JOIN_KEY)
        want = pd.read_parquet(ws.feature_table("demo")).set_index([JOIN_KEY, EVENT_TS])
        want = want.xs(pd.Timestamp(latest), level=EVENT_TS).loc[shared]
        cols = [c for c in want.columns if c in got.columns and c != "bank_code"]
        assert cols, "the consumer service reads demo"
        pd.testing.assert_frame_equal(
            got.loc[shared, cols].astype(float), want[cols].astype(float), check_names=False, obj=ws.bank
        )
    got_a = online(cfg, a, shared, service).set_index(JOIN_KEY)
    got_b = online(cfg, b, shared, service).set_index(JOIN_KEY)
    differ = int((got_a.loc[shared, cols].astype(float) != got_b.loc[shared, cols].astype(float)).any(axis=1).sum())
    assert differ > len(shared) // 2  # different people behind the same ids


@pytest.mark.slow
def test_each_bank_table_holds_only_its_own_customers_and_bank_code(fed: Fed) -> None:
    ids = {b: set(pd.read_parquet(fed.ws.for_bank(b).table("customers"))[JOIN_KEY]) for b in ("A", "B")}
    assert len(ids["A"] & ids["B"]) >= 50  # the same ids, different people
    assert ids["A"] != ids["B"]
    for bank in ("A", "B"):
        ws = fed.ws.for_bank(bank)
        for fam in MODULES:
            df = pd.read_parquet(ws.feature_table(fam))
            assert list(df.columns) == key_columns(bank) + [f.name for f in family_features(fam)], (bank, fam)
            assert set(df["bank_code"]) == {bank}, (bank, fam)
            assert set(df[JOIN_KEY]) <= ids[bank] and len(df) > 0, (bank, fam)
            assert not df.duplicated([JOIN_KEY, EVENT_TS]).any(), (bank, fam)


@pytest.mark.slow
def test_a_member_bank_builds_the_features_of_a_single_bank_workspace(fed: Fed) -> None:
    a = fed.ws.for_bank("A")
    assert (
        json.loads(a.features_build_meta.read_text())["as_of"]
        == json.loads(fed.single.features_build_meta.read_text())["as_of"]
    )
    for fam in MODULES:
        got = pd.read_parquet(a.feature_table(fam)).drop(columns="bank_code")
        want = pd.read_parquet(fed.single.feature_table(fam))
        assert list(want.columns) == [JOIN_KEY, EVENT_TS] + [f.name for f in family_features(fam)]
        keys = [JOIN_KEY, EVENT_TS]
        pd.testing.assert_frame_equal(
            got.sort_values(keys).reset_index(drop=True), want.sort_values(keys).reset_index(drop=True), obj=fam
        )


@pytest.mark.slow
def test_building_one_bank_leaves_the_other_byte_identical(fed: Fed) -> None:
    b_root = fed.ws.for_bank("B").bank_root
    before = _digests(b_root)
    a_table = fed.ws.for_bank("A").feature_table("income")
    a_mtime = a_table.stat().st_mtime_ns
    code, out = _cli(fed.home, "--bank", "A", "--full")
    assert code == 0, out
    assert out.startswith("bank A (1/1): ") and "bank B" not in out
    assert a_table.stat().st_mtime_ns != a_mtime  # A really was rewritten
    assert _digests(b_root) == before


def test_an_unknown_bank_is_an_error_listing_the_banks_present(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for bank in ("A", "B"):
        _member(home, bank)
    code, out = _cli(home, "--bank", "NOPE")
    assert code == 1
    assert out.count("\n") == 1 and "--bank NOPE: no such member bank" in out and "(banks present: A, B)" in out
    assert not Workspace(home).for_bank("A").features_dir.exists()
    assert member_banks(Workspace(home)) == ["A", "B"] and member_banks(Workspace(home), "B") == ["B"]
    single = Workspace(tmp_path / "single")
    write_tables(single, tiny_bank(), date(2025, 8, 31))
    with pytest.raises(FeatureStoreError, match="not a federation workspace.*--bank A is only for a federation"):
        member_banks(single, "A")


def test_a_table_of_another_bank_in_a_bank_folder_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    a, b = _member(home, "A"), _member(home, "B")
    build(a, [date(2025, 6, 1)], families=["income"])
    b.features_dir.mkdir(parents=True)
    shutil.copytree(a.feature_table("income"), b.feature_table("income"))  # a table put in the wrong folder
    with pytest.raises(FeatureStoreError, match=r"features/income: .* rows of bank_code 'A' in the folder of bank B"):
        next(build_banks(Workspace(home), ["B"], [date(2025, 7, 1)]))
    b.ingest_meta.write_text(json.dumps({"export_date": "2025-08-31", "bank_code": "A"}), encoding="utf-8")
    with pytest.raises(FeatureStoreError, match="bank_code 'A' in the folder of bank B"):
        build(b, [date(2025, 7, 1)])


def test_features_export_in_a_federation_asks_for_the_bank_without_touching_feast(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _member(home, "A")
    res = CliRunner().invoke(
        main,
        ["features", "export", "--as-of", "2025-06-01", "--out", str(tmp_path / "x.parquet")],
        env={"NBP_HOME": str(home)},
    )
    assert res.exit_code == 1
    assert "is a federation workspace" in res.output and "add --bank CODE" in res.output
    assert not Workspace(home).for_bank("A").feast_dir.exists() and not (tmp_path / "x.parquet").exists()


@pytest.mark.slow
def test_features_export_of_a_member_bank_leads_with_the_bank_and_holds_the_bank_family(
    fed: Fed, tmp_path: Path
) -> None:
    from features.catalog import CATALOG, MEMBER_CATALOG

    latest = max(json.loads(fed.ws.for_bank("B").features_build_meta.read_text())["as_of"])
    out = tmp_path / "b.parquet"
    res = CliRunner().invoke(
        main,
        ["features", "export", "--bank", "B", "--as-of", latest, "--out", str(out), "--log-level", "WARNING"],
        env={"NBP_HOME": str(fed.home)},
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert list(df.columns) == ["bank_code", JOIN_KEY, *(f.name for f in (*CATALOG, *MEMBER_CATALOG))]
    assert set(df["bank_code"]) == {"B"}
    assert set(df[JOIN_KEY]) <= set(pd.read_parquet(fed.ws.for_bank("B").table("customers"))[JOIN_KEY])
    assert df["bank_customers_count"].nunique() == 1 and df["bank_customers_count"].iloc[0] == len(df)


@pytest.mark.slow
def test_closing_a_bank_store_forgets_only_that_bank(fed: Fed) -> None:
    from features import store
    from nbp.config import load_config

    cfg = load_config()
    a, b = fed.ws.for_bank("A"), fed.ws.for_bank("B")
    store.get_store(cfg, a), store.get_store(cfg, b)
    store.close_store(a)
    held = {k[0] for k in store._STORES}
    assert str(a.feast_dir) not in held and str(b.feast_dir) in held


@pytest.mark.slow
@pytest.mark.integration
def test_feasts_own_cli_opens_a_member_banks_repo_from_its_feature_store_yaml(fed: Fed, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import yaml

    from nbp.workspace import CHECKOUT

    ws = fed.ws.for_bank("B")
    settings = yaml.safe_load(ws.feast_yaml.read_text(encoding="utf-8"))
    assert settings["project"] == "nbp_B" and settings["online_store"]["path"] == str(ws.online_store_db)
    assert "temp_directory" not in settings["offline_store"]  # a job's own spill folder
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "FEAST_USAGE": "False"}
    feast = Path(sys.executable).with_name("feast")
    res = subprocess.run(
        [str(feast), "-c", str(ws.feast_dir), "feature-views", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    listed = {line.split()[0] for line in res.stdout.splitlines()[1:] if line.strip()}
    assert listed == set(MODULES) | {"bank", "tier"}
