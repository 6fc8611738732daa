"""Shared fixtures: every test runs in its own NBP_HOME, with telemetry off."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbp import telemetry


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the checkout's workspace by accident."""
    telemetry.disable()
    monkeypatch.setenv("NBP_HOME", str(tmp_path_factory.mktemp("nbp_home")))


@pytest.fixture
def nbp_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh, empty workspace named by NBP_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("NBP_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def spark():
    """One ``local[2]`` Spark session for the whole test run (Spark allows one per process).

    Started from the default config (``nbp/spark.py: session``), so the tests run Spark as
    ``compute.engine: spark`` does; stopped when the run ends.
    """
    from nbp.config import load_config
    from nbp.spark import session

    s = session(load_config())
    yield s
    s.stop()
