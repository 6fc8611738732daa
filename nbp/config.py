"""One typed configuration object, merged from ``configs/*.yaml``.

``load_config()`` reads ``configs/base.yaml`` then every other ``configs/*.yaml``
that is a section file (``products.yaml``, ``tiers.yaml``), then an optional overlay given with
``--config FILE`` (deep-merged on top). Unknown keys are errors. Only ``NBP_HOME``
and ``NBP_TOKENS`` come from the environment (see :mod:`nbp.workspace`).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nbp.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
BASE_FILES = ("base.yaml", "products.yaml", "tiers.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulateConfig(_Section):
    """Defaults of ``nbp simulate`` and of ``make demo``."""

    customers: int = 20_000
    months: int = 24
    end: str = "2026-10"  # last simulated month, YYYY-MM
    seed: int = 7
    horizon_days: int = 90  # horizon of the oracle's uptake probability


class IngestConfig(_Section):
    """Validation and storage of a bank export."""

    # DuckDB memory limit of the validation; it spills beyond it (the feature build's default is 8GB too)
    memory_limit: str = "8GB"
    threads: int = 0  # DuckDB threads; 0 = all cores
    # Stop rules that keep a bad transfer from replacing a good store (docs/ingest-rules.md).
    max_set_aside_share: float = Field(0.05, ge=0.0, le=1.0)  # per table; --accept-set-aside overrides
    max_shrink_share: float = Field(0.20, ge=0.0, le=1.0)  # rows kept against the previous import; --accept-shrink
    share_min_rows: int = Field(100, ge=1)  # the two shares apply to tables of at least this many rows
    # Without export_date in the manifest: rows dated after the inferred export date may
    # amount to at most this many median days of transactions.
    export_date_tail_days: float = Field(0.2, gt=0.0)


class FeaturesConfig(_Section):
    """Feature building and the Feast store."""

    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "127.0.0.1:6379"
    as_of: list[date] = Field(default_factory=list)  # empty: every month start in the data
    # a family's table holding more files than this (one per monthly build) is merged into one
    max_table_files: int = Field(24, ge=1)


# Keys renamed since a bank may have written an overlay: the error names the new key.
RENAMED = {"training.valid_months": "training.rolling_folds"}


class TrainingConfig(_Section):
    """Model training defaults."""

    horizon_days: int = 90
    auc_floor: float = 0.6
    test_months: int = Field(2, ge=1)  # latest closed as-of months: backtest window of the gate
    rolling_folds: int = Field(4, ge=2)  # latest fitting months, each validating one rolling fold (calibration)
    search_folds: int = Field(4, ge=1)  # the latest of those folds choose the setting and rounds (calibration: all)
    # the one-SE rule's simplest setting: fewest leaves per tree (leaves), or over all trees (size: leaves x rounds)
    simplest: Literal["size", "leaves"] = "size"
    se_floor: bool = True  # the one-SE rule's standard error at least the fold AUCs' sampling error (Hanley-McNeil)
    negative_rate: float = Field(1.0, gt=0.0, le=1.0)  # share of negatives kept (weights compensate)
    workers: int = Field(2, ge=1)  # products fitted side by side (one LightGBM thread each)
    max_rows: int = Field(150_000, ge=1_000)  # fitting rows per product; beyond, negatives are down-sampled (weighted)
    leak_margin: float = 0.02  # AUC above the oracle's by more than this raises the leak alarm
    leak_auc: float = 0.995  # an AUC this high on uptake data is treated as a leak
    min_uptakes: int = Field(10, ge=1)  # fewer uptakes in the fitting months: the product is skipped
    # nbp retrain reuses each champion's setting (training/setting_search.py) until this many months
    # have passed since its search; 0: every retrain searches every setting
    search_every_months: int = Field(6, ge=0)
    # bank: one model per member bank (and in a single-bank workspace); pooled: one model fitted on
    # every member bank's rows, calibrated and gated per bank (docs/decisions/017-pooled-models.md)
    scope: Literal["bank", "pooled"] = "bank"
    pooled_max_rows: int = Field(400_000, ge=1_000)  # fitting rows of one pooled model, shared evenly by the banks
    min_bank_calibration_uptakes: int = Field(50, ge=1)  # fewer in a bank's fold months: pooled calibration


class SparkConfig(_Section):
    """The Spark session of ``compute.engine: spark`` (``nbp/spark.py``)."""

    master: str = "local[2]"  # e.g. yarn, k8s://https://host:443; local[N] runs in this process's JVM
    app_name: str = "nbp"
    shuffle_partitions: int = Field(8, ge=1)  # spark.sql.shuffle.partitions (Spark's 200 suits a cluster)
    # the driver's JVM heap; with a local master it is all of Spark's memory (Spark's 1g loses
    # collected results of a bank's training sets: TaskResultLost)
    driver_memory: str = "4g"
    conf: dict[str, str] = Field(default_factory=dict)  # any other spark.* setting, passed as given


class ComputeConfig(_Section):
    """Which engine runs the heavy stages (docs/scale-out.md)."""

    # duckdb: one process per bank on this machine; spark: feature build, point-in-time training
    # sets, batch scoring and the online-store load run on Spark (ingest stays on DuckDB per bank)
    engine: Literal["duckdb", "spark"] = "duckdb"


class ServingConfig(_Section):
    """The HTTP service and target lists (``serving/``)."""

    tokens_file: str | None = None  # TOKEN:ROLE[:BRANCH_ID] per line; NBP_TOKENS wins if set
    contact_cooldown_days: int = Field(30, ge=0)  # no re-contact about a product within N days
    control_share: float = Field(0.10, ge=0.0, lt=1.0)  # random hold-out of each campaign
    max_top: int = Field(10_000, ge=1)  # largest target list one request may ask for


class CampaignsConfig(_Section):
    """Remembered campaigns, their lift and uplift ranking (``nbp.campaigns``, ``training/uplift.py``)."""

    min_arm_customers: int = Field(200, ge=1)  # fewer in either arm: the report says the campaign is too small
    min_uplift_campaigns: int = Field(2, ge=1)  # randomised campaigns with a closed horizon needed for an uplift model
    min_uplift_uptakes: int = Field(30, ge=1)  # uptakes needed in each arm of the fitting campaigns
    uplift_test_campaigns: int = Field(1, ge=1)  # latest closed campaigns held out to judge an uplift model
    qini_floor: float = 0.0  # out-of-time Qini coefficient an uplift model must exceed to become champion


class GuardrailsConfig(_Section):
    """Limits that make ``nbp retrain`` exit non-zero once everything is written; None: off."""

    max_score_psi: float | None = Field(None, gt=0.0)  # PSI of a product's scores
    max_input_psi: float | None = Field(None, gt=0.0)  # largest PSI of a model input
    max_calibration_gap: float | None = Field(None, gt=0.0)  # |mean predicted / realised - 1|, latest closed month


class MonitoringConfig(_Section):
    """Drift and calibration figures of each retrain (``training/drift.py``, docs/monitoring.md)."""

    psi_flag: float = Field(0.25, gt=0.0)  # a PSI above it is flagged (MLflow, /readyz, the retrain's report)
    calibration_flag: float = Field(0.25, gt=0.0)  # relative gap |mean predicted / realised - 1| flagged above it
    sample_customers: int = Field(10_000, ge=100)  # customers (a fixed random sample) whose rows are monitored
    guardrails: GuardrailsConfig = GuardrailsConfig()


class TierLevel(_Section):
    """One value tier (客户价值分层), highest first in ``tiers.levels``."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    zh: str  # shown to staff, e.g. 高端
    en: str
    min_score: float = Field(ge=0.0, le=100.0)  # contribution score (0-100) from which a customer is in the tier
    # At most this share of a branch's customers in this tier or above; the lowest scores beyond it
    # go down a tier (None: no quota).
    max_branch_share: float | None = Field(None, gt=0.0, le=1.0)


class TierWeights(_Section):
    """Weights of the contribution score's parts (综合贡献度, ``features/tiers.py``); any non-negative numbers."""

    deposit: float = Field(0.40, ge=0.0)  # typical (median) monthly average daily deposit balance, last 12 months
    loan_interest: float = Field(0.25, ge=0.0)  # estimated loan interest earned, last 12 months
    products: float = Field(0.15, ge=0.0)  # accounts, services and loan products held
    activity: float = Field(0.10, ge=0.0)  # transactions, last 12 months
    tenure: float = Field(0.10, ge=0.0)  # months since the first relationship


class TiersConfig(_Section):
    """Value tiers from contribution, not a day's balance (``configs/tiers.yaml``)."""

    weights: TierWeights = TierWeights()
    loan_rate: float = Field(0.06, ge=0.0, le=1.0)  # annual rate that estimates loan interest earned
    levels: list[TierLevel] = Field(
        default_factory=lambda: [
            TierLevel(key="high", zh="高端", en="high value", min_score=85.0),
            TierLevel(key="middle", zh="中端", en="middle value", min_score=55.0),
            TierLevel(key="mass", zh="大众", en="mass", min_score=0.0),
        ]
    )

    @model_validator(mode="after")
    def _check(self) -> TiersConfig:
        keys = [lv.key for lv in self.levels]
        if not self.levels or len(set(keys)) != len(keys):
            raise ValueError("tiers.levels: give at least one tier, each key once")
        scores = [lv.min_score for lv in self.levels]
        if any(a <= b for a, b in zip(scores, scores[1:], strict=False)) or scores[-1] != 0.0:
            raise ValueError("tiers.levels: min_score must fall from the first tier to the last, which must be 0")
        if sum(self.weights.model_dump().values()) <= 0:
            raise ValueError("tiers.weights: at least one weight must be positive")
        return self


class QualityConfig(_Section):
    """Data-quality progress per branch and manager (``nbp quality report``)."""

    # customers' fields whose completeness is tracked: columns of `customers`, or fields of
    # `profile_updates` (monthly_income, business_turnover_monthly), or tax_credit_grade
    fields: list[str] = Field(
        default_factory=lambda: [
            "occupation",
            "employer_type",
            "monthly_income",
            "industry",
            "tax_credit_grade",
            "birth_date",
            "marital_status",
            "education",
            "residence",
            "manager_id",
            "risk_tolerance",
        ]
    )
    to_complete_top: int = Field(50, ge=1)  # customers per manager on the to-complete list (客户信息待完善清单)


class EligibilityRule(_Section):
    """One condition a candidate must meet, on a feature of the product's feature service.

    A missing feature value fails the rule (unknown is not eligible) unless
    ``allow_missing`` is set. Categorical features hold integer codes in the
    order of their enum in ``bankexport/spec.py`` (see docs/features.md).
    """

    feature: str
    min: float | None = None  # inclusive
    max: float | None = None  # inclusive
    one_of: list[str | float] | None = None
    allow_missing: bool = False  # True: an unknown value passes (e.g. no past loan, so no overdue)
    zh: str  # shown to staff when the rule fails, e.g. 年龄不在18–60岁
    en: str


class ProductConfig(_Section):
    """One product of ``configs/products.yaml``."""

    name_zh: str
    name_en: str
    loan_product: str | None = None  # value of loans.product that counts as uptake (default: the key)
    value: float = 1.0  # expected value of one uptake, for ranking hints
    feature_service: str | None = None  # Feast feature service (default: <key>_v1)
    scope: Literal["bank", "pooled"] | None = None  # training.scope for this product (default: training.scope)
    eligibility: list[EligibilityRule] = Field(default_factory=list)


class Config(_Section):
    """The whole configuration."""

    simulate: SimulateConfig = SimulateConfig()
    ingest: IngestConfig = IngestConfig()
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()
    campaigns: CampaignsConfig = CampaignsConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    tiers: TiersConfig = TiersConfig()
    quality: QualityConfig = QualityConfig()
    compute: ComputeConfig = ComputeConfig()
    spark: SparkConfig = SparkConfig()
    products: dict[str, ProductConfig] = Field(default_factory=dict)

    def scope(self, product: str) -> str:
        """``bank`` or ``pooled``: the product's own ``scope``, else ``training.scope``."""
        return self.products[product].scope or self.training.scope


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read configuration: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(path: str | Path | None = None, config_dir: Path = CONFIG_DIR) -> Config:
    """Load the configuration.

    Args:
        path: optional overlay YAML, deep-merged over the base files.
        config_dir: folder with ``base.yaml`` and ``products.yaml``.

    Returns:
        The frozen :class:`Config`.

    Raises:
        ConfigError: a file is unreadable or a key/value is invalid.
    """
    merged: dict = {}
    for name in BASE_FILES:
        f = config_dir / name
        if f.exists():
            merged = _deep_merge(merged, _read_yaml(f))
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: configuration file not found")
        merged = _deep_merge(merged, _read_yaml(p))
    try:
        return Config.model_validate(merged)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        hint = f"; it is now '{RENAMED[where]}'" if where in RENAMED else ""
        raise ConfigError(f"configuration key '{where}': {first['msg']}{hint} ({e.error_count()} error(s))") from e
