"""The bank-marketing benchmark's protocols on the real file's 10 % sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbp.errors import NbpError
from training import bank_marketing as bm
from training import evaluate as ev
from training.model import ModelParams

SAMPLE = bm.DATA_DIR / "bank-additional.csv.gz"  # 4,119 rows, a 10 % sample of the full file
FULL = bm.DATA_DIR / "bank-additional-full.csv.gz"

needs_data = pytest.mark.skipif(
    not SAMPLE.exists() or not FULL.exists(), reason=f"shared dataset folder absent: {bm.DATA_DIR}"
)


def test_time_split_puts_test_rows_after_train_rows() -> None:
    s = bm.time_split(1000)
    assert s.train.max() < s.valid.min() and s.valid.max() < s.test.min()
    assert len(s.test) == 200 and len(s.valid) == 160 and len(s.train) == 640


def test_cv_splits_partition_the_rows() -> None:
    y = np.array([0, 1] * 50)
    splits = list(bm.cv_splits(y, folds=5, seed=1))
    assert sorted(np.concatenate([s.test for s in splits]).tolist()) == list(range(100))
    for s in splits:
        assert not set(s.test) & (set(s.train) | set(s.valid))
        assert y[s.test].mean() == 0.5  # stratified


def test_missing_file_names_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(NbpError, match="--data"):
        bm.load(tmp_path / "nope.csv")


@needs_data
def test_prepare_drops_duration_and_marks_never_contacted() -> None:
    df, features = bm.prepare(bm.load(SAMPLE))
    assert "duration" not in features and "y" not in features
    assert df["pdays"].max() < bm.PDAYS_NEVER
    assert (df["never_contacted"] == 1).sum() == df["pdays"].isna().sum() > 0
    assert df[bm.LABEL].sum() == 451  # README: y=yes count of the sample


def test_recipe_periods_are_months_in_time_and_random_blocks_under_cv() -> None:
    n = 2_000
    df = pd.DataFrame({bm.ORDER: np.arange(n), bm.MONTH_INDEX: np.arange(n) // 100, bm.LABEL: np.arange(n) % 2})
    t = bm.recipe_rows(df, bm.time_split(n))
    assert (t[bm.PERIOD] == t[bm.MONTH_INDEX]).all() and t[bm.ORDER].max() < 1_600
    s = next(bm.cv_splits(df[bm.LABEL].to_numpy(), folds=5, seed=1))
    c = bm.recipe_rows(df, s, seed=1)
    assert sorted(c[bm.PERIOD].unique()) == list(range(bm.BLOCKS))
    assert c.groupby(bm.PERIOD).size().max() - c.groupby(bm.PERIOD).size().min() <= 1
    # random blocks: every block spans the whole date range, none is a slice of time
    spans = c.groupby(bm.PERIOD)[bm.ORDER].agg(["min", "max"])
    assert (spans["min"] < 200).all() and (spans["max"] > 1_800).all()


@needs_data
def test_month_index_follows_the_calendar_in_date_order() -> None:
    raw = bm.load(FULL)
    idx = bm.month_index(raw)
    assert idx[0] == 0 and (np.diff(idx) >= 0).all()  # date order: never back in time
    assert idx.max() == 30  # May 2008 .. Nov 2010
    assert set(np.unique(idx[raw["month"].eq("mar").to_numpy()])) == {10, 22}  # Mar 2009, Mar 2010


@pytest.mark.slow
@needs_data
def test_time_ordered_pipeline_scores_later_rows_with_calendar_month_periods() -> None:
    raw = bm.load(FULL).iloc[::8].reset_index(drop=True)  # every 8th row: still date order, every month
    df, features = bm.prepare(raw)
    assert bm.MONTH_INDEX not in features and bm.ORDER not in features
    s = bm.time_split(len(df))
    assert df[bm.ORDER].iloc[s.test].min() > df[bm.ORDER].iloc[s.train].max()
    y = df[bm.LABEL].to_numpy()
    p = bm.predict_recipe(df, features, s, ModelParams(max_rounds=300, early_stopping_rounds=30))
    assert len(p) == len(s.test) and ((p > 0) & (p < 1)).all()
    # No "a ranking, not one constant" on the test rows: on this 1/8 sample the folds find
    # nothing that generalises (mean fold AUC 0.52-0.56), the chosen booster is 3 rounds of
    # 4 leaves, and the test rows' macro values (below anything in training) all fall into
    # one leaf. That is the data, not a defect.
    # Platt on the folds' months (Nov 2008, Mar-May 2009) lifts the level above the 2008 rate
    assert p.mean() > y[s.train].mean()
    # (no "beats random" here: on this 1/8 sample a model of 2008 does not rank 2009-10; see docs)
    assert np.isfinite(ev.auc(y[s.test], p))
