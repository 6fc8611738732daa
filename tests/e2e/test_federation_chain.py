"""The chain on a federation workspace through the CLI: two member banks whose customer ids
overlap, each with its own Feast repo, models ``nbp-<bank>-<product>`` and scores.

Small on purpose (two banks of a few thousand customers): it checks that every stage keeps
each bank's data to itself, not model quality (``benchmarks/bench_federation.py``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nbp.cli import main
from nbp.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BANKS = ("QINGSHAN", "BAISHA")


def _run(args: list[str], code: int = 0) -> str:
    res = CliRunner().invoke(main, [*args, "--log-level", "WARNING"], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("fedchain")
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(root / "home"))
    try:
        _run(["simulate", "--federation", "2", "--sizes", "6000,3000", "--seed", "5", "--out", str(root / "export")])
        for code in BANKS:
            _run(["ingest", str(root / "export" / code / "export")])
        _run(["features"])
        out = _run(["train"])
        assert out.index("bank BAISHA:") < out.index("bank QINGSHAN:"), out  # sorted by code
        yield Workspace(root / "home")
    finally:
        mp.undo()


def _client(ws: Workspace):
    from training.registry import _connect

    return _connect(ws)


def test_each_bank_registers_its_own_models_tagged_with_the_bank(fed: Workspace) -> None:
    client = _client(fed)
    names = {m.name for m in client.search_registered_models()}
    assert names and all(n.startswith(("nbp-QINGSHAN-", "nbp-BAISHA-")) for n in names), names
    assert "nbp-QINGSHAN-consumer" in names
    for m in client.search_model_versions("name='nbp-QINGSHAN-consumer'"):
        assert client.get_run(m.run_id).data.tags["nbp.bank"] == "QINGSHAN"


def test_scores_of_one_bank_carry_the_bank_and_only_its_customers(fed: Workspace, tmp_path: Path) -> None:
    mp = pytest.MonkeyPatch()
    mp.setenv("NBP_HOME", str(fed.home))
    try:
        other = _digests(fed.for_bank("BAISHA").bank_root)
        _run(["score", "--bank", "QINGSHAN", "--as-of", "2026-10-01", "--out", str(tmp_path / "s.parquet")])
        assert _digests(fed.for_bank("BAISHA").bank_root) == other
    finally:
        mp.undo()
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert list(df.columns)[0] == "bank_code" and set(df["bank_code"]) == {"QINGSHAN"}
    ids = set(pd.read_parquet(fed.for_bank("QINGSHAN").table("customers"))["customer_id"])
    assert len(df) > 0 and set(df["customer_id"]) <= ids
    meta = json.loads(fed.for_bank("QINGSHAN").features_build_meta.read_text())
    assert meta["bank_code"] == "QINGSHAN"
