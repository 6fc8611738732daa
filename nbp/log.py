"""Logging set-up, done once by the CLI."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


def configure(level: str = "INFO") -> None:
    """Configure root logging for the CLI (idempotent)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # Third-party deprecations that a bank's operator can do nothing about.
    warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated")
    for noisy in ("alembic", "urllib3", "matplotlib", "numexpr", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def timed(log: logging.Logger, what: str) -> Iterator[None]:
    """Log how long a block took: ``<what>: 1.23 s``."""
    t0 = time.perf_counter()
    yield
    log.info("%s: %.2f s", what, time.perf_counter() - t0)
