"""Which member banks a command works on in a federation workspace (``nbp.cli.bank_workspaces``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbp.cli import main
from nbp.workspace import Workspace

ONE_BANK = [
    "score --as-of 2026-10-01 --out s.parquet",
    "targets --product consumer --out t.xlsx",
    "backtest --as-of 2026-06-01",
    "features export --as-of 2026-06-01 --out f.parquet",
]


def _federation(home: Path, codes: tuple[str, ...] = ("QINGSHAN", "BAISHA")) -> None:
    for code in codes:
        bank = Workspace(home).for_bank(code)
        bank.ingested_dir.mkdir(parents=True)
        bank.ingest_meta.write_text(json.dumps({"export_date": "2026-11-01", "bank_code": code}), encoding="utf-8")


def _run(home: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> tuple[int, str]:
    monkeypatch.setenv("NBP_HOME", str(home))
    res = CliRunner().invoke(main, command.split())
    return res.exit_code, res.output


@pytest.mark.parametrize("command", ONE_BANK)
def test_one_bank_commands_ask_for_the_bank_and_name_the_banks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    home = tmp_path / "home"
    _federation(home)
    monkeypatch.chdir(tmp_path)
    code, out = _run(home, monkeypatch, command)
    assert code == 1, out
    assert "federation workspace (banks: BAISHA, QINGSHAN)" in out and "add --bank CODE" in out
    assert not (home / "mlruns").exists() and not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob("*.xlsx"))


@pytest.mark.parametrize("command", ["train", "retrain", *ONE_BANK])
def test_an_absent_bank_is_refused_naming_the_banks_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    home = tmp_path / "home"
    _federation(home)
    monkeypatch.chdir(tmp_path)
    code, out = _run(home, monkeypatch, f"{command} --bank NOPE")
    assert code == 1, out
    assert "--bank NOPE: no such member bank" in out and "BAISHA, QINGSHAN" in out
    assert not (home / "mlruns").exists()


@pytest.mark.parametrize("command", ["train", "retrain", *ONE_BANK])
def test_bank_in_a_single_bank_workspace_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    home = tmp_path / "home"
    ws = Workspace(home)
    ws.ingested_dir.mkdir(parents=True)
    ws.ingest_meta.write_text(json.dumps({"export_date": "2026-11-01"}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out = _run(home, monkeypatch, f"{command} --bank QINGSHAN")
    assert code == 1, out
    assert "--bank QINGSHAN: " in out and "is a single-bank workspace" in out


def test_serve_in_a_federation_refuses_a_token_without_a_member_bank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    _federation(home)
    secret = "mkt-0123456789abcdef0123"
    for tokens, needle in (
        (
            f"{secret}:marketing",
            "a 'marketing' token names its bank, as TOKEN:marketing:BANK (banks: BAISHA, QINGSHAN)",
        ),
        (f"{secret}:marketing:HEISHAN", "bank 'HEISHAN' is not served here (member banks: BAISHA, QINGSHAN)"),
    ):
        monkeypatch.setenv("NBP_TOKENS", f"adm-0123456789abcdef0123:federation_admin,{tokens}")
        code, out = _run(home, monkeypatch, "serve --port 1")
        assert code == 1 and "NBP_TOKENS entry 2" in out and needle in out, out
        assert secret not in out
