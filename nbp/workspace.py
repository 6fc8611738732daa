"""Where state lives: every path under one folder, ``$NBP_HOME``.

Default ``NBP_HOME`` is the checkout itself, so MLflow's runs land in the
top-level ``mlruns/``. Two workspaces never share a file.

Layout::

    $NBP_HOME/
      ingest/report.json           last ingest's report
      ingest/rejects/<table>.csv   rows set aside, with rule and source line
      ingest/cells/<table>.csv     optional cells reported as unknown
      ingest.refused/              report of the last import a share limit refused
      data/ingested/<table>.parquet  typed tables (atomic swap on success)
      data/features/...            feature tables per family (Parquet)
      feast/                       Feast registry + SQLite online store
      mlruns/                      MLflow tracking DB and artifacts
      outputs/                     scores, target lists, reports
      bentoml/                     BENTOML_HOME
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace."""

    home: Path

    @classmethod
    def from_env(cls) -> Workspace:
        """The workspace named by ``NBP_HOME`` (default: the checkout)."""
        return cls(Path(os.environ.get("NBP_HOME") or CHECKOUT).resolve())

    @property
    def ingest_dir(self) -> Path:
        return self.home / "ingest"

    @property
    def ingest_refused_dir(self) -> Path:
        """Report of an import refused by a share limit (the store is not touched)."""
        return self.home / "ingest.refused"

    @property
    def ingested_dir(self) -> Path:
        return self.home / "data" / "ingested"

    @property
    def features_dir(self) -> Path:
        return self.home / "data" / "features"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlruns_dir(self) -> Path:
        return self.home / "mlruns"

    @property
    def outputs_dir(self) -> Path:
        return self.home / "outputs"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    def table(self, name: str) -> Path:
        """Path of one ingested table's Parquet file."""
        return self.ingested_dir / f"{name}.parquet"
