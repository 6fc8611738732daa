"""The small simulated bank shared by the end-to-end tests of export shapes and killed jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2ekit import SMALL_BANK, run_cli


@pytest.fixture(scope="session")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export folder of the small simulated bank (:data:`e2ekit.SMALL_BANK`; its oracle beside it)."""
    root = tmp_path_factory.mktemp("small_bank")
    run_cli(["simulate", "--out", str(root / "bank"), *SMALL_BANK])
    return root / "bank" / "export"
