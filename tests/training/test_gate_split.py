"""The champion gate's time split: fitting months end one label horizon before the test window."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nbp.config import load_config
from nbp.workspace import Workspace
from training import pipeline
from training.pipeline import MIN_FIT_MONTHS, split_months

MONTHS = list(pd.date_range("2025-01-01", "2026-08-01", freq="MS"))


def test_fitting_months_close_their_label_windows_before_the_test_window() -> None:
    fit, test = split_months(MONTHS, 2, 90)
    assert test == MONTHS[-2:]
    assert fit == MONTHS[:-4]  # 2026-05 and 2026-06 label windows reach into July and August
    assert all(t + pd.Timedelta(days=90) < test[0] for t in fit)
    fit30, _ = split_months(MONTHS, 2, 30)
    # June's 30-day window ends on July 1st, the test window's first as-of: not closed before it
    assert fit30 == MONTHS[:-3]
    assert split_months(MONTHS[:2], 2, 90) == ([], MONTHS[:2])


def _panel(customers: int = 3_000, seed: int = 5) -> pd.DataFrame:
    """Customers with static features unrelated to uptake, each granted a loan at most once at a
    random day: the label at T is a grant in (T, T + 90 days]. No feature predicts it."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(customers, 6))
    days = (MONTHS[-1] + pd.Timedelta(days=90) - MONTHS[0]).days
    granted = np.where(rng.uniform(size=customers) < 0.3, rng.integers(0, days, customers), -1)
    grant = [MONTHS[0] + pd.Timedelta(days=int(g)) if g >= 0 else pd.NaT for g in granted]
    rows = []
    for t in MONTHS:
        g = pd.Series(grant)
        y = ((g > t) & (g <= t + pd.Timedelta(days=90))).to_numpy(dtype=int)
        holding = (g <= t).to_numpy()  # a customer holding the loan is no candidate
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).assign(as_of=t, label=y)
        rows.append(frame[~holding])
    return pd.concat(rows, ignore_index=True)


def _test_auc(panel: pd.DataFrame, fit: list, test: list) -> float:
    feats = [f"x{i}" for i in range(6)]
    tr, te = panel[panel["as_of"].isin(fit)], panel[panel["as_of"].isin(test)]
    params = {"objective": "binary", "num_leaves": 31, "min_child_samples": 5, "verbosity": -1, "seed": 7}
    booster = lgb.train(params | {"num_threads": 1}, lgb.Dataset(tr[feats], tr["label"]), num_boost_round=200)
    return float(roc_auc_score(te["label"], booster.predict(te[feats])))


def test_the_split_leaves_nothing_to_memorise() -> None:
    """Without the gap, a test-window grant is also a positive of the fitting months just before,
    for the same customer with the same features: a model scores well on features that carry no
    signal. With it, the test AUC is chance."""
    panel = _panel()
    fit, test = split_months(MONTHS, 2, 90)
    leaky = MONTHS[:-2]
    assert _test_auc(panel, leaky, test) > 0.65
    assert abs(_test_auc(panel, fit, test) - 0.5) < 0.05


def test_prepare_skips_a_bank_without_enough_months_before_the_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine closed months: two to test, two in the label horizon before them, five to fit (enough);
    eight leave four, and every product is skipped with the reason in Chinese and English."""
    monkeypatch.chdir(tmp_path)
    cfg, ws = load_config(), Workspace(tmp_path / "home")
    monkeypatch.setattr(pipeline, "export_date", lambda ws: pd.Timestamp("2025-12-15"))
    monkeypatch.setattr(
        pipeline, "_datasets", lambda cfg, ws, keys, fit_ofs, test_ofs: dict.fromkeys(keys, (None, None))
    )
    monkeypatch.setattr(pipeline, "trainability", lambda *a: None)
    monkeypatch.setattr(pipeline, "plan_searches", lambda *a: {})
    nine = list(pd.date_range("2025-01-01", "2025-09-01", freq="MS"))
    monkeypatch.setattr(pipeline, "feature_as_ofs", lambda ws: nine)
    prep = pipeline.prepare(cfg, ws)
    assert len(prep.fit_ofs) == MIN_FIT_MONTHS and prep.fit_ofs[-1] == pd.Timestamp("2025-05-01")
    assert prep.test_ofs == nine[-2:] and not prep.skips
    monkeypatch.setattr(pipeline, "feature_as_ofs", lambda ws: nine[1:])
    prep = pipeline.prepare(cfg, ws)
    assert not prep.fit_ofs and set(prep.skips) == set(cfg.products)
    skip = next(iter(prep.skips.values()))
    assert f"{MIN_FIT_MONTHS - 1} remain to fit; the recipe needs {MIN_FIT_MONTHS}" in skip.en
    assert f"剩 {MIN_FIT_MONTHS - 1} 个训练月份" in skip.zh
