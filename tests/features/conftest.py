"""Fixtures of the feature tests: a workspace holding a tiny hand-made bank."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from featurekit import tiny_bank, write_tables

from nbp.workspace import Workspace


@pytest.fixture
def tiny_ws(tmp_path: Path) -> Workspace:
    """A workspace holding :func:`tiny_bank`, export date 2025-08-31."""
    ws = Workspace(tmp_path / "ws")
    write_tables(ws, tiny_bank(), date(2025, 8, 31))
    return ws
