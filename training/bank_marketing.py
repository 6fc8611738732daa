"""Benchmark of the training recipe on real uptake data: UCI Bank Marketing.

Moro, Cortez and Rita (2014), "A data-driven approach to predict the success of bank
telemarketing": 41,188 phone contacts of a Portuguese bank, May 2008 - Nov 2010, in
date order, label ``y`` = subscribed to a term deposit. ``duration`` is dropped: it is
known only after the call.

Two protocols, three models (results: docs/benchmarks.md, section ``bank_marketing``;
how to read them and why the protocols disagree: docs/training.md):

- ``time``: rows in date order; train on the first 80 %, test on the last 20 %.
- ``cv``: 5-fold stratified cross-validation, shuffled with a fixed seed.

Our recipe (:func:`training.model.fit_rolling`) gets the training rows cut into
periods (calendar months under the time split, :data:`BLOCKS` equal random blocks under
CV): settings and rounds from rolling folds over the latest periods, Platt calibration on
those folds' out-of-time scores, the booster refit on every training row.

Models: our recipe (the same code path as the product
pipeline), ``lightgbm.LGBMClassifier()`` with its defaults on every training row (no
early stopping), and the published reference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nbp.config import MonitoringConfig
from nbp.errors import NbpError
from nbp.workspace import CHECKOUT
from training import evaluate
from training.drift import calibration_in_the_large
from training.model import ModelParams, fit_rolling

log = logging.getLogger(__name__)

DATA_DIR = CHECKOUT.parent / "shared" / "datasets" / "bank_marketing"
DEFAULT_DATA = DATA_DIR / "bank-additional-full.csv.gz"
LABEL = "label"
ORDER = "row"  # position in the file = date order
PERIOD = "period"  # the recipe's time unit: calendar month (time split) or random block (CV)
MONTH_INDEX = "month_index"  # months since May 2008, rebuilt from `month` in date order
BLOCKS = 10  # under CV the recipe's rows are cut into this many equal random blocks
FIRST_MONTH = pd.Period("2008-05", freq="M")  # the file's first row: month_index 0
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
LEAK = "duration"  # known only after the call
PDAYS_NEVER = 999  # bank-additional's sentinel for "never contacted before"
MACRO = ["emp.var.rate", "cons.price.idx", "cons.conf.idx", "euribor3m", "nr.employed"]
# Moro, Cortez and Rita (2014), best model (neural network), rolling-window test
REFERENCE = {"auc": 0.80, "gain_area": 0.70}


def load(path: Path | str | None = None) -> pd.DataFrame:
    """Read a bank-additional CSV (``;``-separated, header, optionally gzipped).

    Raises:
        NbpError: the file is missing or lacks the ``y`` column.
    """
    p = Path(path) if path is not None else DEFAULT_DATA
    if not p.exists():
        raise NbpError(
            f"{p}: bank marketing file not found; put UCI bank-additional-full.csv(.gz) there "
            f"(see {DATA_DIR / 'README.md'}) or pass --data FILE"
        )
    df = pd.read_csv(p, sep=";")
    if "y" not in df.columns:
        raise NbpError(f"{p}: no column 'y' (is it ';'-separated with a header?)")
    log.info("read %s: %d rows, %d columns", p.name, len(df), df.shape[1])
    return df


def prepare(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Model table of a raw bank-additional frame.

    Returns:
        The frame with ``row`` (file position, i.e. date order), ``label`` (1 if
        y == "yes"), every input column except ``duration`` and ``y`` (text columns as
        ``category``; ``pdays`` 999 as missing, with ``never_contacted`` = 1), and the
        list of feature columns.
    """
    df = raw.drop(columns=[c for c in (LEAK, "y") if c in raw.columns]).copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("category")
    if "pdays" in df.columns:
        never = df["pdays"] == PDAYS_NEVER
        df["never_contacted"] = never.astype(int)
        df["pdays"] = df["pdays"].where(~never)
    features = list(df.columns)
    df[LABEL] = (raw["y"] == "yes").astype(int).to_numpy()
    df[ORDER] = np.arange(len(df))
    df[MONTH_INDEX] = month_index(raw)
    return df, features


def month_index(raw: pd.DataFrame) -> np.ndarray:
    """Calendar month of each row as a running index (0 = the first row's month).

    The file has ``month`` but no year; its rows are in date order, so the year turns
    wherever the month number goes down (May 2008 ... Dec 2008, Mar 2009 ...).
    """
    if "month" not in raw.columns:
        return np.zeros(len(raw), dtype=int)
    m = raw["month"].astype(str).str.lower().map({k: i for i, k in enumerate(MONTHS)}).fillna(0).to_numpy(int)
    year = np.concatenate([[0], np.cumsum(np.diff(m) < 0)])
    return year * 12 + m - m[0]


def raw_features(raw: pd.DataFrame) -> pd.DataFrame:
    """The untouched input columns (minus ``duration``/``y``), text as ``category``: the defaults' input."""
    df = raw.drop(columns=[c for c in (LEAK, "y") if c in raw.columns]).copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("category")
    return df


@dataclass(frozen=True)
class Split:
    """Row positions of one train/validation/test split."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def time_split(n: int, test_share: float = 0.2, valid_share: float = 0.2) -> Split:
    """Date-ordered split: train | valid (last ``valid_share`` of the train part) | test (last ``test_share``)."""
    cut = int(round(n * (1 - test_share)))
    vcut = int(round(cut * (1 - valid_share)))
    return Split("time", np.arange(vcut), np.arange(vcut, cut), np.arange(cut, n))


def cv_splits(y: np.ndarray, folds: int = 5, seed: int = 7, valid_share: float = 0.2) -> Iterator[Split]:
    """Stratified, shuffled k-fold; a random ``valid_share`` slice of each training fold is the validation."""
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    for i, (tr, te) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
        tr = rng.permutation(tr)
        k = int(round(len(tr) * valid_share))
        yield Split(f"cv{i}", np.sort(tr[k:]), tr[:k], te)


def recipe_rows(df: pd.DataFrame, split: Split, seed: int = 7) -> pd.DataFrame:
    """The split's train + valid rows with the recipe's ``period``: the calendar month under
    the time split (as the product pipeline's as-of months), equal random blocks under CV."""
    idx = np.concatenate([split.train, split.valid])
    if split.name == "time":
        return df.iloc[idx].assign(**{PERIOD: df[MONTH_INDEX].to_numpy()[idx]})
    idx = np.random.default_rng(seed).permutation(idx)  # split.train is sorted: shuffle first
    return df.iloc[idx].assign(**{PERIOD: np.arange(len(idx)) * BLOCKS // len(idx)})


def predict_recipe(df: pd.DataFrame, features: list[str], split: Split, params: ModelParams) -> np.ndarray:
    """Probabilities of the test rows from our recipe (:func:`training.model.fit_rolling`).

    The recipe gets the split's train + valid rows with a period column (calendar
    months under the time split, :data:`BLOCKS` equal random blocks under CV): its
    rolling folds, Platt calibration (on the folds' scores) and final fit all stay
    inside them.
    """
    model = fit_rolling(recipe_rows(df, split, params.seed), features, LABEL, PERIOD, params)
    log.info("bank marketing %s: %s", split.name, model.info["search"])
    return model.predict_proba(df.iloc[split.test])


def predict_default(x: pd.DataFrame, y: np.ndarray, split: Split, seed: int = 7) -> np.ndarray:
    """Probabilities of the test rows from ``LGBMClassifier()`` defaults, trained on train + valid rows."""
    import lightgbm as lgb

    tr = np.concatenate([split.train, split.valid])
    clf = lgb.LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1)
    clf.fit(x.iloc[tr], y[tr])
    return clf.predict_proba(x.iloc[split.test])[:, 1]


@dataclass
class BenchResult:
    """Rows of the results table and the markdown table itself; the recipe's calibration in the
    large per test month of the time split (:func:`calibration_by_month`) as a markdown table."""

    rows: list[dict]
    table: str
    seconds: float
    calibration: str = ""
    train_rate: float = float("nan")  # uptake rate of the time split's training rows


COLUMNS = [
    "protocol",
    "model",
    "test rows",
    "uptake rate",
    "AUC",
    "lift@10%",
    "gain area (ALIFT)",
    "Brier",
    "ECE",
    "mean p",
]


def _row(protocol: str, model: str, y: np.ndarray, p: np.ndarray) -> dict:
    m = evaluate.metrics(y, p)
    return {
        "protocol": protocol,
        "model": model,
        "test rows": m["n"],
        "uptake rate": m["base_rate"],
        "AUC": m["auc"],
        "lift@10%": m["lift_10"],
        "gain area (ALIFT)": m["gain_area"],
        "Brier": m["brier"],
        "ECE": m["ece"],
        "mean p": m["mean_p"],
    }


def calibration_by_month(df: pd.DataFrame, split: Split, p: np.ndarray) -> pd.DataFrame:
    """Calibration in the large of the test rows ``split.test`` scored ``p``, per calendar month
    (:func:`training.drift.calibration_in_the_large`), then the whole test window; ``flag`` where the
    gap exceeds the default ``monitoring.calibration_flag``."""
    y = df[LABEL].to_numpy()[split.test]
    months = [str(FIRST_MONTH + int(i)) for i in df[MONTH_INDEX].to_numpy()[split.test]]
    cal = pd.concat(
        [calibration_in_the_large(y, p, months), calibration_in_the_large(y, p, ["whole test window"] * len(y))],
        ignore_index=True,
    ).rename(columns={"period": "month"})
    cal["flag"] = cal["gap"] > MonitoringConfig().calibration_flag
    return cal


def run_benchmark(
    path: Path | str | None = None, params: ModelParams | None = None, folds: int = 5, seed: int = 7
) -> BenchResult:
    """Both protocols, recipe against defaults, plus the published reference row.

    CV metrics are computed on the pooled out-of-fold predictions (every row scored
    once, by the fold that did not train on it).
    """
    t0 = time.perf_counter()
    raw = load(path)
    df, features = prepare(raw)
    x_raw = raw_features(raw)
    y = df[LABEL].to_numpy()
    params = params or ModelParams(seed=seed)
    rows = []
    s = time_split(len(df))
    p_time = predict_recipe(df, features, s, params)
    rows.append(_row("time 80/20", "recipe (training.model.fit_rolling)", y[s.test], p_time))
    calibration = evaluate.metrics_table(calibration_by_month(df, s, p_time).to_dict(orient="records"))
    train_rate = float(y[np.concatenate([s.train, s.valid])].mean())
    rows.append(_row("time 80/20", "LGBMClassifier() defaults", y[s.test], predict_default(x_raw, y, s, seed)))
    oof_recipe, oof_default = np.zeros(len(df)), np.zeros(len(df))
    for s in cv_splits(y, folds, seed):
        oof_recipe[s.test] = predict_recipe(df, features, s, params)
        oof_default[s.test] = predict_default(x_raw, y, s, seed)
    rows.append(_row(f"{folds}-fold CV", "recipe (training.model.fit_rolling)", y, oof_recipe))
    rows.append(_row(f"{folds}-fold CV", "LGBMClassifier() defaults", y, oof_default))
    rows.append(
        {
            "protocol": "rolling window (their data)",
            "model": "Moro et al. 2014, best (NN)",
            "AUC": REFERENCE["auc"],
            "gain area (ALIFT)": REFERENCE["gain_area"],
        }
    )
    seconds = time.perf_counter() - t0
    log.info("bank marketing benchmark: %.1f s", seconds)
    return BenchResult(rows, evaluate.metrics_table(rows, COLUMNS), seconds, calibration, train_rate)
