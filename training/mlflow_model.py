"""The MLflow pyfunc flavour of a :class:`training.model.FittedModel`.

Kept apart from :mod:`training.registry` so that importing the registry does not
import MLflow: MLflow starts its telemetry client at import, so it is imported
only after :func:`nbp.telemetry.disable` (see ``registry._connect``). Loading a
logged model unpickles this class, so it must stay importable under this name.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from training.model import FittedModel


class NbpPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc whose ``predict`` returns calibrated probabilities of uptake (one per row)."""

    def __init__(self, fitted: FittedModel) -> None:
        self.fitted = fitted

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """Calibrated probabilities of the rows of ``model_input`` (feature columns)."""
        return self.fitted.predict_proba(pd.DataFrame(model_input))
