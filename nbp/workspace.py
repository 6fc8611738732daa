"""Where state lives: every path under one folder, ``$NBP_HOME``.

Default ``NBP_HOME`` is the checkout itself, so MLflow's runs land in the
top-level ``mlruns/``. Two workspaces never share a file.

Every path the code uses is a property or method here; no other module joins a
name onto ``home``. Layout::

    $NBP_HOME/
      ingest/report.json             last ingest's report
      ingest/rejects/<table>.csv     rows set aside, with rule and source line
      ingest/cells/<table>.csv       optional cells reported as unknown
      ingest.refused/                report of the last import a share limit refused
      data/ingested/<table>.parquet  typed tables (atomic swap on success)
      data/ingested/_meta.json       export date and where it came from
      data/ingested/_append/         fingerprints and rows set aside, to append the next export
      data/features/<family>/        one family's feature table: Parquet files of whole as-of dates
      feast/registry.db              Feast registry
      feast/feature_store.yaml       its settings, for Feast's own CLI and UI
      feast/online_store.db          SQLite online store
      mlruns/mlflow.db               MLflow tracking DB
      mlruns/artifacts/<model>/      MLflow artifacts per registered model
      outputs/scores/<date>.parquet  every candidate's scores (latest.parquet: the newest)
      outputs/train/<product>/       plots and tables of the last training run
      outputs/backtest/<as-of>/      backtest reports
      audit/audit.jsonl              the service's audit log
      policy/do_not_contact.txt      customers never put on a list
      campaigns/<key>/               every issued list of one campaign (nbp.campaigns)
      outputs/campaigns/             the last campaign report (.xlsx, plots, JSON)
      outputs/drift/latest.json      the last retrain's drift and calibration figures
      secrets/fingerprint.key        HMAC key of token fingerprints in the audit log
      bentoml/                       BENTOML_HOME
      .tmp/<job>/                    a running job's scratch folder (nbp.jobs)

A federation workspace (``docs/decisions/016-federation-workspace.md``) holds several member
banks: ``Workspace.for_bank(code)`` puts each bank's own data (``ingest/``, ``ingest.refused/``,
``data/``, ``feast/``, ``policy/``, ``campaigns/``, ``outputs/``) under ``banks/<code>/`` (:attr:`Workspace.bank_root`),
while ``mlruns/`` (one registry: ``nbp-<bank>-<product>``), ``bentoml/``, ``audit/`` (every record
names its bank), ``secrets/`` and ``.tmp/`` stay shared under ``$NBP_HOME``. Without a bank every
path is the one above.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from nbp.errors import DataContractError

CHECKOUT = Path(__file__).resolve().parents[1]
# A member bank's code (spec, "Federation"): also a folder name, so nothing that could leave banks/
BANK_CODE = re.compile(r"[A-Za-z0-9_-]{1,16}")
BANK_CODE_RULE = "1-16 characters of A-Z a-z 0-9 _ -"  # BANK_CODE in words, for messages


def is_bank_code(code: object) -> bool:
    """Whether ``code`` is a valid ``bank_code``: 1-16 characters of ``A-Z a-z 0-9 _ -``."""
    return isinstance(code, str) and BANK_CODE.fullmatch(code) is not None


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace; with ``bank``, one member bank's view of a federation workspace."""

    home: Path
    bank: str | None = None

    def __post_init__(self) -> None:
        if self.bank is not None and not is_bank_code(self.bank):
            raise ValueError(f"bank code {self.bank!r}: {BANK_CODE_RULE} expected")

    @classmethod
    def from_env(cls) -> Workspace:
        """The workspace named by ``NBP_HOME`` (default: the checkout)."""
        return cls(Path(os.environ.get("NBP_HOME") or CHECKOUT).resolve())

    def for_bank(self, code: str) -> Workspace:
        """The same home, seen from member bank ``code`` (its own data under ``banks/<code>/``)."""
        return Workspace(self.home, code)

    @property
    def banks_dir(self) -> Path:
        """The folder of the member banks' own data in a federation workspace."""
        return self.home / "banks"

    @property
    def bank_root(self) -> Path:
        """Where this bank's own data lives: ``banks/<code>/``, or ``home`` without a bank."""
        return self.banks_dir / self.bank if self.bank is not None else self.home

    def banks(self) -> list[str]:
        """The member banks present: folders under ``banks/`` holding an ingested store, sorted."""
        if not self.banks_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.banks_dir.iterdir()
            if is_bank_code(p.name) and self.for_bank(p.name).ingest_meta.exists()
        )

    @property
    def ingest_dir(self) -> Path:
        return self.bank_root / "ingest"

    @property
    def ingest_refused_dir(self) -> Path:
        """Report of an import refused by a share limit (the store is not touched)."""
        return self.bank_root / "ingest.refused"

    @property
    def ingested_dir(self) -> Path:
        return self.bank_root / "data" / "ingested"

    @property
    def features_dir(self) -> Path:
        return self.bank_root / "data" / "features"

    @property
    def feast_dir(self) -> Path:
        """The Feast repo: registry and SQLite online store (a member bank's own, under ``banks/<code>/``)."""
        return self.bank_root / "feast"

    @property
    def mlruns_dir(self) -> Path:
        return self.home / "mlruns"

    @property
    def outputs_dir(self) -> Path:
        return self.bank_root / "outputs"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    def table(self, name: str) -> Path:
        """Path of one ingested table's Parquet file."""
        return self.ingested_dir / f"{name}.parquet"

    @property
    def ingest_append_dir(self) -> Path:
        """The last import's record for appending the next export's months (``bankexport/ingest_append.py``)."""
        return self.ingested_dir / "_append"

    @property
    def ingest_report(self) -> Path:
        """The last ingest's ``report.json``."""
        return self.ingest_dir / "report.json"

    def rejects(self, table: str, root: Path | None = None) -> Path:
        """Rows of ``table`` set aside by ingest; ``root``: a staging copy of ``ingest/`` being written."""
        return (root or self.ingest_dir) / "rejects" / f"{table}.csv"

    def cells(self, table: str, root: Path | None = None) -> Path:
        """Optional cells of ``table`` reported as unknown; ``root`` as for :meth:`rejects`."""
        return (root or self.ingest_dir) / "cells" / f"{table}.csv"

    @property
    def ingest_meta(self) -> Path:
        """``_meta.json`` beside the ingested tables: the export date and its source."""
        return self.ingested_dir / "_meta.json"

    def _ingest_record(self) -> dict | None:
        """``_meta.json`` of the last successful ingest; None before any ingest."""
        if not self.ingest_meta.exists():
            return None
        try:
            record = json.loads(self.ingest_meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataContractError(f"{self.ingest_meta}: unreadable ({e}); re-run `nbp ingest`") from e
        if not isinstance(record, dict):
            raise DataContractError(f"{self.ingest_meta}: not a JSON object; re-run `nbp ingest`")
        return record

    def export_date(self) -> date | None:
        """The export date recorded by the last successful ingest; None before any ingest."""
        record = self._ingest_record()
        if record is None:
            return None
        try:
            return date.fromisoformat(record["export_date"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataContractError(f"{self.ingest_meta}: no valid export_date ({e}); re-run `nbp ingest`") from e

    def recorded_bank(self) -> str | None:
        """The ``bank_code`` the last successful ingest recorded (None: single bank, or no ingest)."""
        record = self._ingest_record()
        return None if record is None else record.get("bank_code")

    def feature_table(self, family: str) -> Path:
        """One feature family's table, every customer and as-of date of the build: a folder of
        Parquet files that pandas and pyarrow read as one table (``features/tables.py``)."""
        return self.features_dir / family

    def feature_files(self, family: str) -> list[Path]:
        """The Parquet files of a family's table, in name order (empty: not built)."""
        return sorted(self.feature_table(family).glob("*.parquet"))

    def feature_glob(self, family: str) -> str:
        """The family's table as a glob, for DuckDB's ``read_parquet`` and Feast's file source."""
        return str(self.feature_table(family) / "*.parquet")

    @property
    def features_build_meta(self) -> Path:
        """``_build.json``: the as-of dates and inputs of the last feature build."""
        return self.features_dir / "_build.json"

    @property
    def feast_registry(self) -> Path:
        return self.feast_dir / "registry.db"

    @property
    def feast_yaml(self) -> Path:
        """``feature_store.yaml``: the repo's settings, for Feast's own CLI and UI."""
        return self.feast_dir / "feature_store.yaml"

    @property
    def online_store_db(self) -> Path:
        """The SQLite online store (the Redis store lives outside the workspace)."""
        return self.feast_dir / "online_store.db"

    @property
    def mlflow_db(self) -> Path:
        return self.mlruns_dir / "mlflow.db"

    def mlflow_artifacts(self, model: str) -> Path:
        """Artifact root of one registered model's experiment."""
        return self.mlruns_dir / "artifacts" / model

    @property
    def scores_dir(self) -> Path:
        return self.outputs_dir / "scores"

    @property
    def latest_scores(self) -> Path:
        """The newest scores, copied from ``scores/<date>.parquet``."""
        return self.scores_dir / "latest.parquet"

    def train_outputs(self, product: str) -> Path:
        """Plots and tables of the last training run of one product."""
        return self.outputs_dir / "train" / product

    def backtest_outputs(self, as_of: date) -> Path:
        return self.outputs_dir / "backtest" / f"{as_of:%Y-%m-%d}"

    @property
    def audit_log(self) -> Path:
        return self.home / "audit" / "audit.jsonl"

    @property
    def do_not_contact(self) -> Path:
        """One customer id per line; these customers are never put on a list."""
        return self.bank_root / "policy" / "do_not_contact.txt"

    @property
    def campaigns_dir(self) -> Path:
        """Every list issued for a campaign, one folder per campaign (:mod:`nbp.campaigns`)."""
        return self.bank_root / "campaigns"

    @property
    def campaign_reports_dir(self) -> Path:
        """The last ``nbp campaign report``: workbook, plots and JSON."""
        return self.outputs_dir / "campaigns"

    @property
    def drift_report(self) -> Path:
        """Drift and calibration figures of the last retrain (read by ``/readyz`` and campaign reports)."""
        return self.outputs_dir / "drift" / "latest.json"

    @property
    def tiers_dir(self) -> Path:
        """Monthly tier-migration tables written by ``nbp retrain`` (``features/tiers.py``)."""
        return self.outputs_dir / "tiers"

    @property
    def segments_dir(self) -> Path:
        """Segments (客群) saved by marketing through the service or ``nbp segment --save``, one YAML each."""
        return self.bank_root / "segments"

    @property
    def segment_outputs_dir(self) -> Path:
        """Workbooks of ``nbp segment``."""
        return self.outputs_dir / "segments"

    @property
    def quality_dir(self) -> Path:
        """Completeness per branch, manager and field, one file per ingest (export) date, kept as history."""
        return self.bank_root / "quality"

    @property
    def quality_reports_dir(self) -> Path:
        """The last ``nbp quality report``: workbook, trend plot, to-complete lists."""
        return self.outputs_dir / "quality"

    @property
    def fingerprint_key(self) -> Path:
        """HMAC key of the token fingerprints written to the audit log."""
        return self.home / "secrets" / "fingerprint.key"

    @property
    def scratch_root(self) -> Path:
        """Where running jobs keep scratch folders, one per job tag (:mod:`nbp.jobs`)."""
        return self.home / ".tmp"

    def job_scratch(self, tag: str) -> Path:
        """The scratch folder of the job tagged ``tag`` (not created here)."""
        return self.scratch_root / tag
