"""The training recipe: one LightGBM binary model, early-stopped and calibrated.

One code path for every caller: the product pipeline feeds it Feast training sets,
the bank-marketing benchmark feeds it a tabular file. Everything here takes and
returns pandas frames; nothing reads or writes files.

Recipe (:func:`fit_rolling`, details in its docstring and ``docs/training.md``):

1. Negatives beyond ``max_neg_per_pos`` per positive (or at ``negative_rate``) are
   down-sampled (:func:`downsample_negatives`): every positive is kept, the kept
   negatives weigh ``1 / rate``, so the weighted loss is an unbiased estimate of the
   full loss and probabilities stay calibrated in expectation.
2. Settings (:data:`GRID`) and round counts are chosen on rolling time-ordered folds
   (:func:`rolling_folds`: each of the latest periods validates a booster trained on
   the periods whose label windows closed before it; the latest ``search_folds`` of
   them), keeping the simplest setting within one standard error of the best: the fewest
   leaves per tree, or over all its trees (``simplest``; :func:`choose_on_folds`).
3. The chosen setting's fold boosters of every fold (the search's, and the earlier
   folds' trained at the chosen rounds, :func:`fold_boosters`) score their own
   validation periods (:func:`fold_scores`), and the final booster is refit on every
   period with the chosen setting and rounds (:func:`refit`).
4. Calibration (:func:`calibrate`) is Platt scaling by default, fitted on those
   out-of-time scores: a two-parameter logistic fit on the raw score (log-odds). With
   few positives (tens to a few hundred per product and month) isotonic regression
   overfits its steps; Platt's two parameters cannot, and LightGBM's raw score is
   already on the log-odds scale. ``calibration="isotonic"`` is there for products
   with thousands of calibration positives.

Categorical columns (object, string or category dtype) are encoded with the
categories seen in training; the mapping is stored in the model, so scoring
reproduces it. Unseen or missing categories become missing values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy.optimize import brentq
from scipy.special import expit

log = logging.getLogger(__name__)

WEIGHT_COL = "weight"


class ModelParams(BaseModel):
    """Hyper-parameters of the recipe, with defaults meant for sparse uptake labels.

    Defaults favour regularisation (few leaves, large leaves, L2) because positives
    are rare and later months differ from earlier ones.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = 0.05
    num_leaves: int = 15
    max_depth: int = -1
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 10.0
    cat_smooth: float = 20.0
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    metric: str = "auc"
    negative_rate: float | None = None  # down-sample training negatives to this fraction
    calibration: Literal["platt", "isotonic", "none"] = "platt"
    # rolling-fold recipe (fit_rolling): settings and rounds chosen on time-ordered folds
    folds: int = 4  # latest periods used, one at a time, as the validation period of a fold
    search_folds: int = 4  # the latest of those folds choose the setting and rounds; every fold calibrates
    calib_periods: int = 2  # calibrate_on="holdout": latest periods held out for Platt calibration
    calibrate_on: Literal["folds", "holdout"] = "folds"  # fit_rolling: where Platt is fitted (see there)
    search: bool = True  # also choose among GRID (else: these settings, rounds only)
    max_neg_per_pos: float | None = 100.0  # fit_rolling: down-sample negatives beyond this ratio (weighted)
    select: Literal["best", "one_se"] = "one_se"  # fit_rolling: simplest setting within one SE of the best, or best
    # the one-SE rule's "simplest": fewest leaves over every tree (num_leaves x rounds), or per tree
    simplest: Literal["size", "leaves"] = "size"
    # the one-SE rule's standard error at least the fold AUCs' own sampling error (Hanley-McNeil)
    se_floor: bool = True
    max_bin: int = 255
    extra_trees: bool = False  # one random threshold per feature and node (GRID's near-additive member)
    seed: int = 7
    num_threads: int = 0  # 0 = auto: one thread below AUTO_THREAD_CELLS cells, else two
    search_workers: int = 2  # fit_rolling: settings cross-validated side by side (single-threaded boosters only)
    deterministic: bool = True

    def lgb_params(self) -> dict[str, Any]:
        """The parameter dict handed to ``lightgbm.train``."""
        return {
            "objective": "binary",
            "metric": self.metric,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "cat_smooth": self.cat_smooth,
            "max_bin": self.max_bin,
            "extra_trees": self.extra_trees,
            "seed": self.seed,
            "num_threads": self.num_threads or 2,
            "deterministic": self.deterministic,
            "force_row_wise": self.deterministic,
            "verbosity": -1,
        }


# ---------------------------------------------------------------- calibrators


@dataclass
class PlattCalibrator:
    """p = sigmoid(a * raw + b)."""

    a: float = 1.0
    b: float = 0.0

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * raw + self.b)


@dataclass
class IsotonicCalibrator:
    """A monotone step function of the raw score (sklearn's IsotonicRegression)."""

    model: Any

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.model.predict(raw), 0.0, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return expit(x)  # 1 / (1 + exp(-x)) without overflow in the far tails


def _fit_calibrator(
    kind: str, raw: np.ndarray, y: np.ndarray, w: np.ndarray | None
) -> PlattCalibrator | IsotonicCalibrator:
    if kind == "none" or len(np.unique(y)) < 2:
        if kind != "none":
            log.warning("calibration rows hold one class only (%d rows): raw sigmoid kept", len(y))
        return PlattCalibrator()
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(raw, y, sample_weight=w)
        return IsotonicCalibrator(iso)
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(raw.reshape(-1, 1), y, sample_weight=w)
    return PlattCalibrator(float(lr.coef_[0, 0]), float(lr.intercept_[0]))


def _fit_platt_cross(
    raw: np.ndarray, y: np.ndarray, w: np.ndarray | None, group: np.ndarray, centre: np.ndarray, final_centre: float
) -> PlattCalibrator:
    """Platt on out-of-time fold scores, for the final booster.

    ``raw`` are the fold boosters' scores of their validation periods (``group``), and
    ``centre`` each score's booster's mean raw score on its own training rows (its
    level); ``final_centre`` is the final booster's. The boosters differ in level (each
    learnt from other months) and the fold periods in uptake rate, so:

    - the slope is fitted with one intercept per fold period: within-period ranking
      only. On pooled scores it would mix the differences between periods with the
      ranking, and can even come out negative (turning the ranking upside down);
    - the intercept is fitted over every fold row on the scores measured from their
      booster's level, ``raw - centre``, with that slope fixed: how far the validation
      months lie from the level their booster learnt. Applied as
      ``sigmoid(a * (raw - final_centre) + b)``, the slope never rescales a booster's
      level, only the spread around it.
    """
    from sklearn.linear_model import LogisticRegression

    y = y.astype(int)
    w = np.ones(len(y)) if w is None else w
    if len(np.unique(y)) < 2:
        log.warning("calibration rows hold one class only (%d rows): raw sigmoid kept", len(y))
        return PlattCalibrator()
    levels, gi = np.unique(group, return_inverse=True)
    design = np.column_stack([raw, np.eye(len(levels))[gi]])
    lr = LogisticRegression(C=1e4, max_iter=1000, fit_intercept=False)
    lr.fit(design, y, sample_weight=w)
    a = float(lr.coef_[0, 0])
    if a <= 0:
        log.warning("fold scores do not rank within their periods (Platt slope %.3f): slope 1 kept", a)
        a = 1.0
    z = a * (raw - centre)
    b = _intercept(z, y, w)
    return PlattCalibrator(a, b - a * final_centre)


def _intercept(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """The ``b`` with sum w * (y - sigmoid(z + b)) = 0: the maximum-likelihood intercept
    for fixed scores ``z`` (both classes present).

    The left side falls monotonically in ``b``, so the root is bracketed and found by
    Brent's method. Plain Newton steps diverge when a steep slope leaves ``z`` spread
    over tens of logits (the sigmoid's flat tails give near-zero curvature).
    """

    def excess(b: float) -> float:
        return float(np.sum(w * (y - _sigmoid(z + b))))

    lo, hi = -float(z.max()) - 50.0, -float(z.min()) + 50.0  # every p below e-50 / above 1 - e-50
    return float(brentq(excess, lo, hi, xtol=1e-12))


# ---------------------------------------------------------------- the model


def fitted_periods(info: Mapping[str, Any]) -> list[pd.Timestamp]:
    """The periods a fit learnt from or was calibrated on (``info``'s ``train_periods`` and
    ``calibration_periods``, as :func:`fit_rolling` records them), as timestamps, ascending; entries
    that are not ISO dates (integer periods of a tabular fit) are left out."""
    periods = [*info.get("train_periods", []), *info.get("calibration_periods", [])]
    got = pd.to_datetime(pd.Series(periods, dtype=object), format="ISO8601", errors="coerce").dropna()
    return sorted({pd.Timestamp(t) for t in got})


@dataclass
class FittedModel:
    """A trained, calibrated model with everything scoring needs.

    Picklable (the booster pickles as its model string). Input frames must hold the
    columns in ``features``; extra columns are ignored.
    """

    booster: lgb.Booster
    calibrator: PlattCalibrator | IsotonicCalibrator
    features: list[str]
    categories: dict[str, list[str]]  # categorical column -> categories, in code order
    best_iteration: int
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # row counts, positives

    @property
    def categorical(self) -> list[str]:
        return [f for f in self.features if f in self.categories]

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Encode ``df[features]`` as the float matrix the booster was trained on."""
        return encode(df, self.features, self.categories)

    def raw_score(self, df: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Uncalibrated log-odds of the booster, one per row.

        ``num_threads``: LightGBM threads (0 = every core). Pass the training's count
        when other boosters may be training in the same process (:func:`training_threads`).
        """
        return self.booster.predict(
            self.matrix(df), raw_score=True, num_iteration=self.best_iteration, num_threads=num_threads
        )

    def predict_proba(self, df: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Calibrated probability of uptake, one per row (``num_threads``: as :meth:`raw_score`)."""
        return self.calibrator.predict(self.raw_score(df, num_threads))

    def contributions(self, df: pd.DataFrame, num_threads: int = 0) -> pd.DataFrame:
        """TreeSHAP contributions to the raw score (``num_threads``: as :meth:`raw_score`).

        Returns:
            One row per input row (same index), one column per feature plus ``bias``;
            each row sums to :meth:`raw_score`.
        """
        c = self.booster.predict(
            self.matrix(df), pred_contrib=True, num_iteration=self.best_iteration, num_threads=num_threads
        )
        return pd.DataFrame(c, columns=[*self.features, "bias"], index=df.index)

    def importance(self, kind: str = "gain") -> pd.Series:
        """Feature importance (``gain`` or ``split``), largest first."""
        imp = self.booster.feature_importance(importance_type=kind, iteration=self.best_iteration)
        return pd.Series(imp, index=self.features, name=kind).sort_values(ascending=False)


def categorical_columns(df: pd.DataFrame, features: list[str]) -> list[str]:
    """Features whose dtype is object, string or category."""
    return [
        f
        for f in features
        if isinstance(df[f].dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(df[f])
        or pd.api.types.is_string_dtype(df[f])
    ]


def category_mapping(df: pd.DataFrame, features: list[str]) -> dict[str, list[str]]:
    """Categories of each categorical feature, as strings, sorted (missing left out)."""
    return {c: sorted(df[c].dropna().astype(str).unique().tolist()) for c in categorical_columns(df, features)}


def encode(df: pd.DataFrame, features: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """Float matrix of ``df[features]``: categories to their codes, unknown to NaN.

    Raises:
        KeyError: a feature column is missing from ``df``.
    """
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise KeyError(f"input lacks feature columns {missing[:5]} ({len(missing)} missing)")
    out = np.empty((len(df), len(features)), dtype=np.float64)
    # Fast path (serving encodes one row per request): numeric columns in one block.
    numeric = set(df.columns[[pd.api.types.is_numeric_dtype(d) for d in df.dtypes]])
    fast = [j for j, f in enumerate(features) if f not in categories and f in numeric]
    if fast:
        out[:, fast] = df[[features[j] for j in fast]].to_numpy(dtype=np.float64, na_value=np.nan)
    done = set(fast)
    for j, f in enumerate(features):
        if j in done:
            continue
        col = df[f]
        if f in categories:
            codes = pd.Categorical(
                col.astype("string").astype(object).where(col.notna()), categories=categories[f]
            ).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            out[:, j] = codes
        else:
            out[:, j] = pd.to_numeric(col, errors="coerce").astype(np.float64).to_numpy()
    return out


def downsample_negatives(
    df: pd.DataFrame, label: str, rate: float, seed: int = 7, weight: str = WEIGHT_COL
) -> pd.DataFrame:
    """Keep every positive and a random ``rate`` share of the negatives, re-weighted.

    Args:
        df: rows with a 0/1 ``label`` column; an existing ``weight`` column is multiplied.
        label: name of the 0/1 label column.
        rate: share of negatives kept, in (0, 1].
        seed: random seed.
        weight: name of the weight column written.

    Returns:
        The kept rows (original order and index) with ``weight`` = previous weight
        (or 1) times ``1 / rate`` for negatives; weighted label mean equals the
        original base rate in expectation.
    """
    if not 0 < rate <= 1:
        raise ValueError(f"negative rate must be in (0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    y = df[label].to_numpy()
    keep = (y == 1) | (rng.random(len(df)) < rate)
    out = df.loc[keep].copy()
    base = out[weight].to_numpy(dtype=float) if weight in out.columns else np.ones(len(out))
    out[weight] = np.where(out[label].to_numpy() == 1, base, base / rate)
    return out


# ---------------------------------------------------------------- rolling-fold recipe

AUTO_THREAD_CELLS = 20_000_000
"""Rows × features below which ``num_threads=0`` (auto) means one LightGBM thread: on small
sets a second thread costs more in synchronisation than it adds
(``docs/decisions/004-lightgbm-thread-count.md``)."""


GRID: tuple[dict[str, Any], ...] = (
    {},  # the ModelParams settings themselves
    # near-additive, extremely randomised trees (one random threshold per feature and node): the
    # low-variance member for few positives; the one-SE rule keeps it unless the folds can tell
    {"num_leaves": 4, "min_child_samples": 200, "feature_fraction": 0.5, "extra_trees": True},
    {"num_leaves": 7, "min_child_samples": 300, "feature_fraction": 0.5, "lambda_l2": 30.0},
    {"num_leaves": 31, "min_child_samples": 50, "lambda_l2": 1.0},  # more capacity
)
"""Settings tried by :func:`fit_rolling` (overrides of :class:`ModelParams`): from a
near-additive model (few positives) to more capacity (many). Fixed in advance, not
tuned on any bank."""


def training_threads(params: ModelParams, cells: int) -> int:
    """LightGBM threads of a fit of ``cells`` rows × features: ``params.num_threads``, or
    auto (one below :data:`AUTO_THREAD_CELLS`, else two).

    LightGBM's thread count is one process-wide setting that every call rewrites, so every
    call that can run beside training, predictions included, passes this count and never the
    default (``docs/decisions/004-lightgbm-thread-count.md``).
    """
    if params.num_threads:
        return params.num_threads
    return 1 if cells < AUTO_THREAD_CELLS else 2


MIN_FOLD_CLASS = 10
"""A period validates a fold only with at least this many positives and negatives: the AUC
of fewer is noise (a calendar month with ten contacts would weigh as much as one with
thousands in the mean fold AUC)."""


def rolling_folds(
    times: np.ndarray, folds: int, embargo: Any = None, y: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Time-ordered folds: each of the latest ``folds`` periods validates a model trained
    on every period ``t`` with ``t + embargo < v``. With labels ``y``, only periods with
    :data:`MIN_FOLD_CLASS` rows of each class (and training rows of both classes) count.

    The embargo (the label horizon, for as-of dates) keeps a training label window from
    overlapping the validation period: without it a loan granted in the validation
    window is also a positive of the months just before, for the same customer with
    nearly the same features, and validation rewards memorising those customers.

    Returns:
        ``(train_idx, valid_idx)`` positional index pairs, earliest fold first.
    """
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for v in np.unique(times)[::-1]:
        if len(out) == folds:
            break
        tr = np.flatnonzero(times + embargo < v) if embargo is not None else np.flatnonzero(times < v)
        va = np.flatnonzero(times == v)
        if not len(tr):
            break
        if y is not None:
            pos = int(y[va].sum())
            if min(pos, len(va) - pos) < MIN_FOLD_CLASS or len(np.unique(y[tr])) < 2:
                continue
        out.append((tr, va))
    return out[::-1]


def _complexity(p: ModelParams, rounds: int | None = None) -> tuple[float, ...]:
    """Order of settings from simplest: fewer leaves in the whole model (``num_leaves`` times
    ``rounds``; per tree without ``rounds``), then fewer per tree, more rows per leaf, more L2."""
    size = p.num_leaves * rounds if rounds is not None else p.num_leaves
    return (size, p.num_leaves, -p.min_child_samples, -p.lambda_l2)


def choose_setting(
    scores: list[tuple[ModelParams, float, float]],
    rule: str = "one_se",
    rounds: Sequence[int] | None = None,
    simplest: str = "leaves",
) -> int:
    """Index of the setting kept from ``(setting, mean fold AUC, its standard error)``.

    ``"best"``: the highest mean fold AUC. ``"one_se"``: the simplest setting whose mean is
    at least the best mean minus the best setting's standard error (Breiman's one-SE rule).
    ``simplest="size"`` with each setting's early-stopped ``rounds``: the model with the fewest
    leaves in all its trees (``num_leaves x rounds``, the leaf values it fits; Breiman's rule
    counts a tree's terminal nodes), ``"leaves"`` (or no ``rounds``): the fewest leaves per
    tree; ties then go to fewer leaves per tree, more rows per leaf, more L2.
    """
    best = max(range(len(scores)), key=lambda i: scores[i][1])
    if rule == "best":
        return best
    floor = scores[best][1] - scores[best][2]
    size = list(rounds) if rounds is not None and simplest == "size" else [None] * len(scores)
    near = (i for i, (_, m, _) in enumerate(scores) if m >= floor)
    return min(near, key=lambda i: _complexity(scores[i][0], size[i]))


@dataclass
class Design:
    """The encoded rows of one fit: what every LightGBM step of :func:`fit_rolling` reads.

    ``x`` is the float matrix of :func:`encode`, ``y`` the 0/1 labels as floats, ``w`` the
    row weights (None: all 1), ``t`` each row's period; ``cat_idx`` the categorical columns.
    """

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None
    t: np.ndarray
    cat_idx: list[int]

    @property
    def names(self) -> list[str]:
        """Column names handed to LightGBM (the model keeps the real ones)."""
        return [f"f{i}" for i in range(self.x.shape[1])]

    def dataset(self, mask: np.ndarray | None = None, keep_raw: bool = False) -> lgb.Dataset:
        """A LightGBM Dataset of every row, or of the rows ``mask`` selects."""
        x, y, w = (self.x, self.y, self.w) if mask is None else (self.x[mask], self.y[mask], self._w(mask))
        extra = {"free_raw_data": False} if keep_raw else {}
        return lgb.Dataset(
            x,
            label=y,
            weight=w,
            feature_name=self.names,
            categorical_feature=self.cat_idx,
            params={"feature_pre_filter": False},
            **extra,
        )

    def _w(self, idx: np.ndarray) -> np.ndarray | None:
        return None if self.w is None else self.w[idx]

    def mean_raw(self, booster: lgb.Booster, idx: np.ndarray, threads: int, rounds: int | None = None) -> float:
        """The booster's weighted mean raw score on the rows ``idx``: its level."""
        kw = {} if rounds is None else {"num_iteration": rounds}
        raw = booster.predict(self.x[idx], raw_score=True, num_threads=threads, **kw)
        return float(np.average(raw, weights=self._w(idx)))


@dataclass
class Choice:
    """The setting and round count kept by :func:`choose_on_folds`.

    ``boosters``: the kept setting's fold boosters (one per fold, in fold order) when asked
    for, to score their validation periods; ``search``: one row per setting tried.
    """

    params: ModelParams
    rounds: int | None
    boosters: list[lgb.Booster] | None = None
    search: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FoldScores:
    """Out-of-time scores of the fold boosters: row ``idx[i]`` scored ``raw[i]`` by a booster
    whose mean raw score on its own training rows was ``centre[i]``."""

    idx: np.ndarray
    raw: np.ndarray
    centre: np.ndarray


def _sample_rate(rows: pd.DataFrame, label: str, params: ModelParams) -> float:
    """Share of negatives kept: ``negative_rate``, lowered to keep at most ``max_neg_per_pos`` per positive."""
    rate = params.negative_rate if params.negative_rate is not None else 1.0
    pos = int(rows[label].sum())
    if params.max_neg_per_pos and pos and len(rows) - pos > params.max_neg_per_pos * pos:
        rate = min(rate, params.max_neg_per_pos * pos / (len(rows) - pos))
    return rate


def split_fit_calibration(
    t: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], params: ModelParams, embargo: Any = None
) -> tuple[bool, np.ndarray, np.ndarray]:
    """Which rows the final booster learns from and which rows calibrate it.

    Cross-fitted (``params.calibrate_on == "folds"`` with a usable fold): the final booster
    learns from every row, and the folds' validation rows calibrate (no calibration mask).
    Otherwise the latest ``params.calib_periods`` periods are held out for calibration and
    the booster learns from the periods ``p`` with ``p + embargo`` before the first of them.

    Returns:
        ``(cross_fit, fit_mask, cal_mask)``.

    Raises:
        ValueError: held-out calibration with fewer than ``calib_periods + 2`` periods.
    """
    periods = np.unique(t)
    if params.calibrate_on == "folds":
        if folds:
            return True, np.ones(len(t), dtype=bool), np.zeros(len(t), dtype=bool)
        log.warning("no usable time-ordered fold (%d periods): calibration on held-out periods instead", len(periods))
    if len(periods) < params.calib_periods + 2:
        raise ValueError(f"{len(periods)} periods: need at least {params.calib_periods + 2}")
    if not params.calib_periods:
        return False, np.ones(len(t), dtype=bool), np.zeros(len(t), dtype=bool)
    calib_start = periods[-params.calib_periods]
    fit_mask = (t + embargo < calib_start) if embargo is not None else (t < calib_start)
    return False, fit_mask, t >= calib_start


def choose_on_folds(
    d: Design,
    folds: list[tuple[np.ndarray, np.ndarray]],
    candidates: list[ModelParams],
    select: str,
    threads: int,
    workers: int = 1,
    keep_boosters: bool = False,
    simplest: str = "leaves",
    se_floor: bool = False,
) -> Choice:
    """Cross-validate each candidate setting on ``folds``, early-stopped on the mean fold
    AUC, and keep one by :func:`choose_setting` (``select``, ``simplest``), with its round count.

    The standard error of a mean fold AUC is the folds' spread (sd / sqrt(folds)); with
    ``se_floor`` at least the AUCs' own sampling error (:func:`sampling_se`): the spread of
    two or three fold AUCs is itself too noisy to trust, and can come out near zero.

    Settings run ``workers`` at a time on threads (LightGBM releases the interpreter lock
    while it trains); each is seeded, so the choice does not depend on ``workers``. Only
    single-threaded boosters may run side by side (:func:`training_threads`).

    Returns:
        The kept setting, its rounds and (``keep_boosters``) its fold boosters; without a
        fold, ``candidates[0]`` with no rounds and no search.
    """
    if not folds:
        return Choice(candidates[0], None)

    def cross_validate(cand: ModelParams) -> dict[str, Any]:
        # a Dataset per setting: lgb.cv writes the setting's parameters into it
        return lgb.cv(
            cand.lgb_params() | {"num_threads": threads},
            d.dataset(keep_raw=True),
            num_boost_round=cand.max_rounds,
            folds=folds,
            stratified=False,
            shuffle=False,
            return_cvbooster=keep_boosters,
            callbacks=[lgb.early_stopping(cand.early_stopping_rounds, verbose=False)],
        )

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(candidates)))) as pool:
        cvs = list(pool.map(cross_validate, candidates))
    search: list[dict[str, Any]] = []
    scores: list[tuple[ModelParams, float, float]] = []
    for cand, res in zip(candidates, cvs, strict=True):
        curve = res[f"valid {cand.metric}-mean"]
        score, sd = float(curve[-1]), float(res[f"valid {cand.metric}-stdv"][-1])
        keys = ("num_leaves", "min_child_samples", "feature_fraction", "lambda_l2", "learning_rate")
        row = {k: getattr(cand, k) for k in keys}
        se = float(max(sd / np.sqrt(len(folds)), sampling_se(d, folds, score) if se_floor else 0.0))
        fig = {"rounds": len(curve), "cv_auc": round(score, 4), "cv_auc_sd": round(sd, 4), "cv_auc_se": round(se, 4)}
        search.append(row | fig)
        log.info("fold search: %s -> %d rounds, mean fold AUC %.4f ± %.4f", search[-1], len(curve), score, sd)
        scores.append((cand, score, se))
    i = choose_setting(scores, select, [r["rounds"] for r in search], simplest)
    kept = cvs[i].get("cvbooster")
    return Choice(candidates[i], search[i]["rounds"], None if kept is None else list(kept.boosters), search)


def sampling_se(d: Design, folds: list[tuple[np.ndarray, np.ndarray]], auc: float) -> float:
    """The sampling error of a mean of fold AUCs ``auc``: each fold's Hanley-McNeil standard error
    from its validation rows' positives and negatives (rows, not weights), combined as
    sqrt(sum of variances) / folds."""
    from training.evaluate import auc_se

    var = []
    for _, va in folds:
        pos = int(d.y[va].sum())
        var.append(auc_se(auc, pos, len(va) - pos) ** 2)
    return float(np.sqrt(np.sum(var)) / len(folds))


def fold_boosters(
    d: Design,
    folds: list[tuple[np.ndarray, np.ndarray]],
    params: ModelParams,
    rounds: int,
    threads: int,
    workers: int = 1,
) -> list[lgb.Booster]:
    """``params``'s boosters of ``folds`` at exactly ``rounds`` rounds, one per fold in fold order:
    the boosters :func:`choose_on_folds` keeps for a setting whose early stopping ends at ``rounds``
    (the same ``lgb.cv`` over the same rows, without early stopping). Folds run ``workers`` at a
    time on threads, as settings do in :func:`choose_on_folds` (single-threaded boosters only)."""

    def one(fold: tuple[np.ndarray, np.ndarray]) -> lgb.Booster:
        res = lgb.cv(
            params.lgb_params() | {"num_threads": threads},
            d.dataset(keep_raw=True),
            num_boost_round=rounds,
            folds=[fold],
            stratified=False,
            shuffle=False,
            return_cvbooster=True,
        )
        return res["cvbooster"].boosters[0]

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(folds)))) as pool:
        return list(pool.map(one, folds))


def fold_scores(
    d: Design, folds: list[tuple[np.ndarray, np.ndarray]], boosters: list[lgb.Booster], rounds: int, threads: int
) -> FoldScores:
    """Each fold booster, at ``rounds``, scores its own validation period, which it never saw
    (its training periods' label windows closed before it); with its level on its training rows."""
    pairs = list(zip(boosters, folds, strict=True))
    raw = [b.predict(d.x[va], raw_score=True, num_iteration=rounds, num_threads=threads) for b, (_, va) in pairs]
    centre = [np.full(len(va), d.mean_raw(b, tr, threads, rounds)) for b, (tr, va) in pairs]
    return FoldScores(np.concatenate([va for _, va in folds]), np.concatenate(raw), np.concatenate(centre))


def refit(d: Design, mask: np.ndarray, params: ModelParams, rounds: int, threads: int) -> lgb.Booster:
    """The final booster: ``params`` for exactly ``rounds`` rounds on the rows ``mask`` selects.

    Rounds are not rescaled for the larger set: the calibrator was fitted on boosters of
    exactly that many rounds, and more rounds would widen the scores beyond what it saw.
    """
    return lgb.train(params.lgb_params() | {"num_threads": threads}, d.dataset(mask), num_boost_round=rounds)


def calibrate(
    kind: str, d: Design, idx: np.ndarray, raw: np.ndarray, cross: FoldScores | None = None, final_centre: float = 0.0
) -> PlattCalibrator | IsotonicCalibrator:
    """The calibrator of scores ``raw`` of the rows ``idx`` (``kind``: platt, isotonic or none).

    With fold scores (``cross``) and Platt, :func:`_fit_platt_cross` fits it for a final
    booster whose level is ``final_centre``; otherwise the scores are taken as they are.
    """
    w = None if d.w is None else d.w[idx]
    if cross is not None and kind == "platt":
        return _fit_platt_cross(raw, d.y[idx], w, d.t[idx], cross.centre, final_centre)
    return _fit_calibrator(kind, raw, d.y[idx].astype(int), w)


def _downsampled(
    rows: pd.DataFrame, label: str, params: ModelParams, weight: str | None
) -> tuple[pd.DataFrame, str | None, float]:
    """``rows`` with negatives down-sampled at :func:`_sample_rate` (weighted ``1 / rate``).

    Returns:
        The rows, the name of their weight column (None: unweighted) and the rate.
    """
    rate = _sample_rate(rows, label, params)
    if rate >= 1:
        return rows, weight, rate
    n0, w_col = len(rows), weight or WEIGHT_COL
    rows = downsample_negatives(rows, label, rate, params.seed, weight=w_col)
    log.info(
        "down-sampled negatives at %.4f (weights 1/rate): %d -> %d rows, %d positives",
        rate,
        n0,
        len(rows),
        int(rows[label].sum()),
    )
    return rows, w_col, rate


def _fit_info(
    d: Design,
    folds: list[tuple[np.ndarray, np.ndarray]],
    fit_mask: np.ndarray,
    cal_idx: np.ndarray,
    rate: float,
    cross_fit: bool,
    search: list[dict[str, Any]],
    threads: int,
    rounds: int,
) -> dict[str, Any]:
    """``FittedModel.info`` of a :func:`fit_rolling` fit: rows, positives and periods of each step (logged)."""
    y, t = d.y, d.t
    info = {
        "negative_rate": rate,
        "n_train": int(fit_mask.sum()),
        "n_calibration": int(len(cal_idx)),
        "pos_train": int(y[fit_mask].sum()),
        "pos_calibration": int(y[cal_idx].sum()),
        "calibrate_on": "folds" if cross_fit else "holdout",
        "folds": len(folds),
        "pos_folds": int(sum(y[b].sum() for _, b in folds)),
        "best_iteration": rounds,
        "search": search,
        "threads": threads,
        "train_periods": [str(p) for p in np.unique(t[fit_mask])],
        "calibration_periods": [str(p) for p in np.unique(t[cal_idx])],
    }
    log.info(
        "fit_rolling: %d rows (%d positive), %d folds (%d positives), %d rounds, calibration on %d rows (%d positive)",
        info["n_train"],
        info["pos_train"],
        len(folds),
        info["pos_folds"],
        rounds,
        info["n_calibration"],
        info["pos_calibration"],
    )
    return info


def fit_rolling(
    rows: pd.DataFrame,
    features: list[str],
    label: str,
    time: str,
    params: ModelParams | None = None,
    weight: str | None = None,
    embargo: Any = None,
    grid: Sequence[Mapping[str, Any]] | None = None,
) -> FittedModel:
    """Choose settings and rounds on rolling time-ordered folds, refit, calibrate (Platt).

    1. Each candidate setting (``grid``'s overrides of ``params``; by default :data:`GRID`,
       or ``params`` alone when ``params.search`` is off) is cross-validated on
       the latest ``params.search_folds`` of :func:`rolling_folds` (the latest
       ``params.folds`` periods, each against the periods before it minus the embargo),
       early-stopped on the mean fold AUC (:func:`choose_on_folds`). Every positive of
       those periods votes, not one month's. ``params.select == "one_se"`` (default) keeps
       the simplest setting whose mean fold AUC is within one standard error (fold sd /
       sqrt(folds)) of the best: with ``params.simplest == "size"`` the fewest leaves over
       all its trees (``num_leaves`` x its rounds), with ``"leaves"`` the fewest per tree
       (then most rows per leaf); ``"best"`` keeps the best. With a few hundred
       fold positives the fold AUCs differ by less than their noise, and the noise favours
       capacity.
    2. ``params.calibrate_on == "folds"`` (default, cross-fitted): the chosen setting's
       boosters of every one of the ``params.folds`` folds, at the chosen round count (the
       search's own, and :func:`fold_boosters` for the earlier folds the search left out),
       score their own validation periods
       (:func:`fold_scores`); Platt is fitted on these out-of-time scores, and the final
       booster is refit (:func:`refit`) with the same setting and round count on every
       period of ``rows``. ``"holdout"``: the latest ``params.calib_periods`` periods are
       held out, the final booster learns from the periods ``t`` with ``t + embargo``
       before the first of them, and Platt is fitted on its scores of the held-out
       periods. Without a usable fold, ``"holdout"`` is used
       (:func:`split_fit_calibration`).

    Args:
        rows: labelled rows of every period: ``features``, ``label``, ``time``,
            optional ``weight``.
        embargo: gap added to a training period before it may precede a validation or
            calibration period (e.g. ``pd.Timedelta(days=90)`` for 90-day labels);
            ``None`` = none (periods strictly before).
        grid: the settings cross-validated, as overrides of ``params`` (default above). A
            grid of one member of :data:`GRID` gives exactly the model the full search gives
            when it keeps that member: the same folds, rounds early-stopped on them, fold
            scores, refit and calibration; only ``info["search"]`` is shorter.

    Raises:
        ValueError: too few periods, or the final training rows hold one class.
    """
    return fit_rolling_parts(rows, features, label, time, params, weight, embargo, grid).model


@dataclass
class RollingFit:
    """A :func:`fit_rolling` fit with what calibrating a subset of its rows again needs: the
    (down-sampled) rows it fitted, their :class:`Design`, the folds' out-of-time scores (None
    without cross-fitting) and the final booster's level on its training rows."""

    model: FittedModel
    rows: pd.DataFrame
    design: Design
    cross: FoldScores | None
    final_centre: float


def fit_rolling_parts(
    rows: pd.DataFrame,
    features: list[str],
    label: str,
    time: str,
    params: ModelParams | None,
    weight: str | None,
    embargo: Any,
    grid: Sequence[Mapping[str, Any]] | None = None,
) -> RollingFit:
    """:func:`fit_rolling` with what it fitted on kept beside the model (:class:`RollingFit`),
    for a caller that calibrates subsets of the rows again (:func:`calibrate_group`).

    ``model.info["setting"]`` is the kept member of the grid (its overrides of ``params``)."""
    params = params or ModelParams()
    rows, w_col, rate = _downsampled(rows, label, params, weight)
    t = rows[time].to_numpy()
    y = rows[label].to_numpy(dtype=float)
    folds = rolling_folds(t, params.folds, embargo, y)
    cross_fit, fit_mask, cal_mask = split_fit_calibration(t, folds, params, embargo)
    if len(np.unique(y[fit_mask])) < 2:
        raise ValueError(f"training rows hold one class only ({int(fit_mask.sum())} rows, label '{label}')")
    categories = category_mapping(rows.loc[fit_mask], features)
    w = rows[w_col].to_numpy(dtype=float) if w_col and w_col in rows.columns else None
    d = Design(encode(rows, features, categories), y, w, t, [i for i, f in enumerate(features) if f in categories])
    threads = training_threads(params, int(fit_mask.sum()) * len(features))
    settings = [dict(g) for g in (grid if grid is not None else GRID if params.search else ({},))]
    candidates = [params.model_copy(update=g) for g in settings]
    workers = params.search_workers if threads == 1 else 1
    searched = folds[-params.search_folds :] if params.search_folds < len(folds) else folds
    choice = choose_on_folds(
        d,
        searched,
        candidates,
        params.select,
        threads,
        workers,
        keep_boosters=cross_fit,
        simplest=params.simplest,
        se_floor=params.se_floor,
    )
    if choice.rounds is None:
        log.warning(
            "no usable time-ordered fold (%d periods): %d rounds without search",
            len(np.unique(t)),
            params.max_rounds // 10,
        )
    rounds = choice.rounds or max(1, params.max_rounds // 10)
    cross = None
    if cross_fit:  # every fold's out-of-time scores calibrate, the searched folds' and the earlier ones'
        earlier = fold_boosters(d, folds[: len(folds) - len(searched)], choice.params, rounds, threads, workers)
        cross = fold_scores(d, folds, [*earlier, *(choice.boosters or [])], rounds, threads)
    choice.boosters = None  # the fold boosters are freed before the refit
    booster = refit(d, fit_mask, choice.params, rounds, threads)
    cal_idx = cross.idx if cross is not None else np.flatnonzero(cal_mask)
    calibrator = PlattCalibrator()
    centre = d.mean_raw(booster, fit_mask, threads) if cross is not None and params.calibration == "platt" else 0.0
    if len(cal_idx):
        raw = cross.raw if cross is not None else booster.predict(d.x[cal_idx], raw_score=True, num_threads=threads)
        calibrator = calibrate(params.calibration, d, cal_idx, raw, cross, centre)
    model = FittedModel(booster, calibrator, list(features), categories, rounds, choice.params.model_dump())
    model.info = _fit_info(d, folds, fit_mask, cal_idx, rate, cross_fit, choice.search, threads, rounds)
    model.info["search_folds"] = len(searched)
    model.info["setting"] = settings[candidates.index(choice.params)]
    return RollingFit(model, rows, d, cross, centre)


def calibrate_group(fit: RollingFit, group: np.ndarray, kind: str = "platt") -> PlattCalibrator | IsotonicCalibrator:
    """A calibrator of ``fit``'s final booster fitted on the out-of-time fold scores of the rows
    ``group`` selects (a boolean mask over ``fit.rows``), as :func:`fit_rolling` fits it on all.

    Used for one member bank's own calibration of a model pooled over banks.

    Raises:
        ValueError: the fit was not cross-fitted on folds (no out-of-time scores).
    """
    if fit.cross is None:
        raise ValueError("the fit has no out-of-time fold scores to calibrate a group on")
    sel = group[fit.cross.idx]
    cross = FoldScores(fit.cross.idx[sel], fit.cross.raw[sel], fit.cross.centre[sel])
    return calibrate(kind, fit.design, cross.idx, cross.raw, cross, fit.final_centre)
