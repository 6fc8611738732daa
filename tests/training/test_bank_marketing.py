"""The bank-marketing benchmark's protocols on the real file's 10 % sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nbp.errors import NbpError
from training import bank_marketing as bm
from training import evaluate as ev
from training.model import ModelParams

SAMPLE = bm.DATA_DIR / "bank-additional.csv.gz"  # 4,119 rows, a 10 % sample of the full file
FULL = bm.DATA_DIR / "bank-additional-full.csv.gz"

needs_data = pytest.mark.skipif(not SAMPLE.exists() or not FULL.exists(),
                                reason=f"shared dataset folder absent: {bm.DATA_DIR}")


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


@needs_data
def test_time_ordered_pipeline_beats_random_on_later_rows() -> None:
    raw = bm.load(FULL).head(5000)  # the first 5,000 rows are in date order
    df, features = bm.prepare(raw)
    s = bm.time_split(len(df))
    assert df[bm.ORDER].iloc[s.test].min() > df[bm.ORDER].iloc[s.train].max()
    y = df[bm.LABEL].to_numpy()
    p = bm.predict_recipe(df, features, s, ModelParams(max_rounds=300, early_stopping_rounds=30))
    assert 0.5 < ev.auc(y[s.test], p) < 1
