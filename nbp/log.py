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
    quiet_warnings()
    for noisy in ("alembic", "urllib3", "matplotlib", "numexpr", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_warnings() -> None:
    """Hide third-party deprecations a bank's operator can do nothing about.

    Call again after importing feast: it puts its own ``once`` filter for every
    DeprecationWarning in front of ours.
    """
    warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated")


@contextmanager
def timed(log: logging.Logger, what: str) -> Iterator[None]:
    """Log how long a block took: ``<what>: 1.23 s``."""
    t0 = time.perf_counter()
    yield
    log.info("%s: %.2f s", what, time.perf_counter() - t0)
