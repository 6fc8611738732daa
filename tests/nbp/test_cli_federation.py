"""Commands not built for member banks yet stop with a message in a federation workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbp.cli import main
from nbp.workspace import Workspace

COMMANDS = [
    "train",
    "score --as-of 2026-10-01 --out s.parquet",
    "targets --product consumer --out t.xlsx",
    "backtest --as-of 2026-06-01",
    "retrain",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_single_bank_commands_name_the_federation_and_its_banks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    home = tmp_path / "home"
    for code in ("QINGSHAN", "BAISHA"):
        bank = Workspace(home).for_bank(code)
        bank.ingested_dir.mkdir(parents=True)
        bank.ingest_meta.write_text(json.dumps({"export_date": "2026-11-01", "bank_code": code}), encoding="utf-8")
    monkeypatch.setenv("NBP_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, command.split())
    assert res.exit_code == 1, res.output
    assert "federation workspace (banks: BAISHA, QINGSHAN)" in res.output
    assert f"`nbp {command.split()[0]}` works on single-bank workspaces only" in res.output
    assert not (home / "mlruns").exists() and not (home / "outputs").exists()
