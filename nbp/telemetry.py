"""Telemetry off for Feast, BentoML and MLflow, before any of them is imported."""

from __future__ import annotations

import os

SWITCHES = {
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "FEAST_USAGE": "False",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
}


def disable() -> None:
    """Set the telemetry switches unless the user already set them."""
    for k, v in SWITCHES.items():
        os.environ.setdefault(k, v)
