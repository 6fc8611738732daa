"""Helpers of the end-to-end tests: the small simulated bank, and running the CLI in-process."""

from __future__ import annotations

from click.testing import CliRunner

from nbp.cli import main

# 2,000 customers and 14 months: the smallest simulated bank on which some product still has
# enough uptakes (training.min_uptakes) to be fitted, so every stage of the chain runs.
SMALL_BANK = ["--customers", "2000", "--months", "14", "--seed", "7"]


def run_cli(args: list[str], code: int = 0) -> str:
    """Run ``nbp ARGS`` in this process; assert its exit code; return what it printed."""
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output
