"""Feast is imported without typeguard's import-time instrumentation (features/__init__.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # imports Feast twice, in child processes

PROBE = """
{pre}
from feast.on_demand_feature_view import OnDemandFeatureView
names = OnDemandFeatureView.__init__.__code__.co_names
print(any("typeguard" in n for n in names))
"""


def _instrumented(pre: str) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def test_feast_classes_are_not_recompiled_with_type_checks_once_features_is_imported() -> None:
    assert _instrumented("")  # plain Feast: typeguard rewrote the class's methods
    assert not _instrumented("import features")  # through nbp's features package: left as written
