"""Federation ingest (issue 14, decision 016): member banks side by side under ``banks/<code>/``.

One bank's import, re-import, failure or refusal never changes another bank's files; every
stored table and report names its bank; ``--bank`` and the manifest agree; a workspace is
single-bank or a federation. Every import costs ~0.2 s: two banks are imported once per module
and copied into each test's workspace."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from bankexport import ingest as ingest_mod
from bankexport.ingest import ingest
from bankexport.spec import TABLES
from nbp.config import IngestConfig
from nbp.errors import ConfigError, DataContractError
from nbp.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bankexport.conftest import (
    bank_manifest,
    base_tables,
    file_hashes,
    ingest_config,
    many_transactions,
    read_report,
    write_csv,
    write_export,
)


def _bank_b_tables() -> dict:
    """Bank B: the same customer ids as bank A (keys are unique within a bank only), other values."""
    tables = base_tables()
    for r in tables["transactions"]:
        r["amount"] = "77.00"
    tables["customers"][0]["occupation"] = "retired"
    return tables


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace home holding banks A (200 transactions) and B (3), both from their manifests."""
    root = tmp_path_factory.mktemp("federation")
    a = base_tables()
    many_transactions(a, 200)
    ws = Workspace(root / "home")
    ingest(write_export(root / "exp_a", a, manifest=bank_manifest("A")), ws, ingest_config())
    ingest(write_export(root / "exp_b", _bank_b_tables(), manifest=bank_manifest("B")), ws, ingest_config())
    return ws.home


@pytest.fixture
def fed(federation: Path, ws: Workspace) -> Workspace:
    """This test's copy of the two-bank workspace."""
    shutil.copytree(federation, ws.home)
    return ws


def test_two_banks_with_the_same_ids_are_stored_side_by_side(fed: Workspace) -> None:
    assert fed.banks() == ["A", "B"]
    assert not fed.ingested_dir.exists() and not fed.ingest_dir.exists()  # nothing at the single-bank place
    for code in ("A", "B"):
        bws = fed.for_bank(code)
        for name in TABLES:
            if not bws.table(name).exists():
                continue
            t = pq.read_table(bws.table(name))
            assert t.column_names == [*TABLES[name].column_names, "bank_code"], name
            assert set(t.column("bank_code").to_pylist()) == {code}, name
            col = pq.ParquetFile(bws.table(name)).metadata.row_group(0).column(t.num_columns - 1)
            assert "RLE_DICTIONARY" in col.encodings or "PLAIN_DICTIONARY" in col.encodings
        meta = json.loads(bws.ingest_meta.read_text(encoding="utf-8"))
        assert meta["bank_code"] == code and meta["bank"] == f"农商银行 {code}"
        assert read_report(bws)["bank_code"] == code
    ids = {c: set(pq.read_table(fed.for_bank(c).table("customers")).column("customer_id").to_pylist()) for c in "AB"}
    assert ids["A"] == ids["B"] == {"C1", "C2", "C3"}
    amounts = pq.read_table(fed.for_bank("B").table("transactions")).column("amount").to_pylist()
    assert amounts == [77.0] * 3
    assert len(pq.read_table(fed.for_bank("A").table("transactions"))) == 200


def _reimport(tmp: Path) -> tuple[Path, dict]:
    tables = base_tables()
    many_transactions(tables, 190)
    return write_export(tmp, tables, manifest=bank_manifest("A")), {}


def _bad_manifest(tmp: Path) -> tuple[Path, dict]:
    return write_export(tmp, base_tables(), manifest=bank_manifest("A", encoding="latin-1")), {}


def _stop_rule(tmp: Path) -> tuple[Path, dict]:
    src = write_export(tmp, base_tables(), manifest=bank_manifest("A"))
    write_csv(src / "loans.csv", TABLES["loans"].column_names, [])
    return src, {}


def _shrunk(tmp: Path) -> tuple[Path, dict]:
    tables = base_tables()
    many_transactions(tables, 20)
    return write_export(tmp, tables, manifest=bank_manifest("A")), {}


def _flag_bank(tmp: Path) -> tuple[Path, dict]:
    tables = base_tables()
    many_transactions(tables, 190)
    return write_export(tmp, tables), {"bank": "A"}


# (what happens to bank A, the export and options, the rule it stops with or None, A's store changes)
ALTERATIONS = [
    ("re-import", _reimport, None),
    ("re-import with --bank, no bank_code", _flag_bank, None),
    ("bad manifest", _bad_manifest, "bad_manifest"),
    ("stop rule", _stop_rule, "empty_table"),
    ("refused: shrank", _shrunk, "table_shrank"),
]


@pytest.mark.parametrize(("what", "make", "rule"), ALTERATIONS, ids=[a[0] for a in ALTERATIONS])
def test_what_happens_to_bank_a_leaves_bank_b_byte_identical(
    tmp_path: Path, fed: Workspace, cfg: IngestConfig, what: str, make, rule: str | None
) -> None:
    b_root, a_ws = fed.for_bank("B").bank_root, fed.for_bank("A")
    b_before, a_before = file_hashes(b_root), file_hashes(a_ws.ingested_dir)
    src, kw = make(tmp_path / "exp")
    if rule is None:
        rep = ingest(src, fed, cfg, **kw)
        assert rep.bank_code == "A" and read_report(a_ws)["run_id"] == rep.run_id
        assert len(pq.read_table(a_ws.table("transactions"))) == 190
        assert file_hashes(a_ws.ingested_dir) != a_before
        assert rep.checks["shrink"]["previous_run_id"] is not None  # compared with A's own last import
    else:
        with pytest.raises(DataContractError, match=rf"\(rule {rule}\)"):
            ingest(src, fed, cfg, **kw)
        assert file_hashes(a_ws.ingested_dir) == a_before
    assert file_hashes(b_root) == b_before
    assert fed.banks() == ["A", "B"]
    if rule == "table_shrank":
        refused = json.loads((a_ws.ingest_refused_dir / "report.json").read_text(encoding="utf-8"))
        assert refused["bank_code"] == "A" and not fed.for_bank("B").ingest_refused_dir.exists()
    leftovers = [p for p in fed.home.rglob(".*") if any(k in p.name for k in ("tmp", "work", "old"))]
    assert leftovers == []


def test_a_crash_while_writing_bank_a_leaves_both_banks_as_they_were(
    tmp_path: Path, fed: Workspace, cfg: IngestConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, folders = file_hashes(fed.home), sorted(fed.home.rglob("*"))
    real = ingest_mod.write_table

    def failing(con, t, path, *bank):
        if t.name == "loans":
            raise OSError("disk full (simulated)")
        real(con, t, path, *bank)

    monkeypatch.setattr(ingest_mod, "write_table", failing)
    with pytest.raises(OSError, match="simulated"):
        ingest(_reimport(tmp_path / "exp")[0], fed, cfg)
    assert file_hashes(fed.home) == before
    assert sorted(fed.home.rglob("*")) == folders  # no staging or work folder left either


def test_shrink_is_compared_with_the_same_bank_only(tmp_path: Path, fed: Workspace, cfg: IngestConfig) -> None:
    # bank C's 3 transactions are not compared with bank A's 200: C has no previous import
    rep = ingest(write_export(tmp_path / "c", base_tables(), manifest=bank_manifest("C")), fed, cfg)
    assert rep.checks["shrink"]["previous_run_id"] is None and fed.banks() == ["A", "B", "C"]


def test_bank_flag_and_manifest_must_agree(tmp_path: Path, fed: Workspace, cfg: IngestConfig) -> None:
    before = file_hashes(fed.home)
    src = write_export(tmp_path / "exp", base_tables(), manifest=bank_manifest("B"))
    with pytest.raises(DataContractError) as e:
        ingest(src, fed, cfg, bank="A")
    msg = str(e.value)
    assert "--bank A" in msg and "bank_code B" in msg and "(rule bank_mismatch)" in msg and "\n" not in msg
    assert file_hashes(fed.home) == before


@pytest.mark.parametrize("code", ["", "a/b", "../B", "X" * 17, "中文行", "a b", 42, ["A"]])
def test_an_invalid_bank_code_in_the_manifest_stops(tmp_path: Path, ws: Workspace, cfg: IngestConfig, code) -> None:
    src = write_export(tmp_path / "exp", base_tables(), manifest=bank_manifest(code))
    with pytest.raises(DataContractError) as e:
        ingest(src, ws, cfg)
    msg = str(e.value)
    assert msg.startswith("manifest.json: bank_code ") and json.dumps(code, ensure_ascii=False) in msg
    assert "(rule bad_manifest)" in msg
    assert not ws.home.exists()  # stopped before anything was written


@pytest.mark.parametrize("code", ["", "../B", "X" * 17])
def test_an_invalid_bank_flag_stops(tmp_path: Path, ws: Workspace, cfg: IngestConfig, code: str) -> None:
    with pytest.raises(ConfigError, match="--bank .*not a bank code"):
        ingest(write_export(tmp_path / "exp", base_tables()), ws, cfg, bank=code)
    assert not ws.home.exists()


def test_a_federation_refuses_an_export_without_a_bank(tmp_path: Path, fed: Workspace, cfg: IngestConfig) -> None:
    before = file_hashes(fed.home)
    with pytest.raises(DataContractError, match=r"federation workspace \(banks A, B\).*--bank CODE") as e:
        ingest(write_export(tmp_path / "exp", base_tables()), fed, cfg)
    assert "(rule mixed_workspace)" in str(e.value)
    assert file_hashes(fed.home) == before


def test_a_single_bank_store_refuses_a_member_bank(tmp_path: Path, ws: Workspace, cfg: IngestConfig) -> None:
    ingest(write_export(tmp_path / "one", base_tables()), ws, cfg)
    before = file_hashes(ws.home)
    with pytest.raises(DataContractError, match=r"bank A: .* holds a single-bank store.*another NBP_HOME"):
        ingest(write_export(tmp_path / "exp", base_tables()), ws, cfg, bank="A")
    assert file_hashes(ws.home) == before and ws.banks() == []


def test_cli_imports_a_bank_and_names_a_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbp.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("NBP_HOME", str(home))
    src = write_export(tmp_path / "exp", base_tables(), manifest=bank_manifest("B01"))
    res = CliRunner().invoke(main, ["ingest", str(src), "--bank", "B01"])
    assert res.exit_code == 0, res.output
    assert "bank B01: export date 2024-05-03" in res.output
    assert Workspace(home).banks() == ["B01"]
    res = CliRunner().invoke(main, ["ingest", str(src), "--bank", "B02"])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "--bank B02 but manifest.json says bank_code B01" in res.output
