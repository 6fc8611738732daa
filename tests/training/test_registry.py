"""MLflow registry: logging, the champion gate, loading (in a temporary workspace)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from training_synth import FEATURES, time_slices, uptake_frame

from nbp.errors import ModelUnavailable
from nbp.workspace import Workspace
from training import evaluate as ev
from training import registry
from training.model import FittedModel, ModelParams, fit_rolling

pytestmark = pytest.mark.integration

FAST = ModelParams(
    learning_rate=0.1, max_rounds=200, early_stopping_rounds=20, min_child_samples=50, folds=2, search=False
)


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return time_slices(uptake_frame(n=12_000))


def _train(frames, features: list[str]) -> FittedModel:
    train, valid, _ = frames
    return fit_rolling(pd.concat([train, valid]), features, "label", "period", FAST)


def _register(ws: Workspace, frames, model: FittedModel, window: str = "w1") -> tuple[int, dict]:
    test = frames[2]
    m = ev.metrics(test["label"], model.predict_proba(test))
    v = registry.log_and_register(
        ws,
        "consumer",
        model,
        m,
        FAST.model_dump(),
        plots={},
        feature_info={"feature_views": "consumer_v1: x1, x2, segment, noise"},
        as_of_range=("2026-01-01", "2026-03-01"),
        backtest_window=window,
        input_example=test,
    )
    return v, m


@pytest.fixture(scope="module")
def models(frames) -> dict[str, FittedModel]:
    return {
        "good": _train(frames, FEATURES),
        "weak": _train(frames, ["x2", "noise"]),
        "noise": _train(frames, ["noise", "segment"]),
    }


def test_gate_moves_champion_only_for_a_better_model(
    tmp_path: Path, frames, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow must not write ./mlruns into the working directory
    ws = Workspace(tmp_path / "home")

    v1, m1 = _register(ws, frames, models["noise"])
    d1 = registry.promote(ws, "consumer", v1, m1, floor=0.6, leak_alarm=False)
    assert m1["auc"] < 0.6
    assert d1.alias == "challenger" and "below the floor" in d1.reason  # never champion under the floor
    se = ev.auc_se(m1["auc"], m1["positives"], m1["n"] - m1["positives"])
    assert f"± {se:.3f} ({m1['positives']:,} uptakes)" in d1.reason  # the reader sees the sampling error
    with pytest.raises(ModelUnavailable) as no_champion:  # whoever asks for the champion learns why
        registry.load_champion(ws, "consumer")
    assert d1.reason in str(no_champion.value)

    v2, m2 = _register(ws, frames, models["weak"])
    d2 = registry.promote(ws, "consumer", v2, m2, floor=0.55, leak_alarm=False)
    assert d2.promoted and "first model" in d2.reason

    v3, m3 = _register(ws, frames, models["good"])
    assert m3["auc"] > m2["auc"]
    d3 = registry.promote(ws, "consumer", v3, m3, floor=0.55, leak_alarm=False)
    assert d3.promoted and d3.previous_champion == v2

    v4, m4 = _register(ws, frames, models["weak"])
    d4 = registry.promote(ws, "consumer", v4, m4, floor=0.55, leak_alarm=False)
    assert d4.alias == "challenger" and "does not beat" in d4.reason

    v5, m5 = _register(ws, frames, models["good"])
    d5 = registry.promote(ws, "consumer", v5, {**m5, "auc": 0.99}, floor=0.55, leak_alarm=True)
    assert d5.alias == "challenger" and "leak" in d5.reason

    fitted, version = registry.load_champion(ws, "consumer")
    assert version == v3
    p = fitted.predict_proba(frames[2])
    assert ((p >= 0) & (p <= 1)).all() and 0 < p.mean() < 1 and len(np.unique(p)) > 10

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=registry.tracking_uri(ws))
    assert client.get_model_version("nbp-consumer", str(v4)).tags[registry.TAG_DECISION] == d4.reason
    assert int(client.get_model_version_by_alias("nbp-consumer", "challenger").version) == v5
    # the pyfunc flavour returns probabilities too, not labels
    pyfunc = mlflow.pyfunc.load_model("models:/nbp-consumer@champion")
    np.testing.assert_allclose(np.asarray(pyfunc.predict(frames[2][FEATURES].head(20))), p[:20])
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]
    assert (ws.mlruns_dir / "mlflow.db").exists()


def test_different_windows_are_not_compared_unless_rescored(tmp_path: Path, frames, models) -> None:
    ws = Workspace(tmp_path)
    v1, m1 = _register(ws, frames, models["weak"], window="w1")
    assert registry.promote(ws, "consumer", v1, m1, floor=0.55, leak_alarm=False).promoted
    v2, m2 = _register(ws, frames, models["good"], window="w2")
    d2 = registry.promote(ws, "consumer", v2, m2, floor=0.55, leak_alarm=False)
    assert d2.alias == "challenger" and "window w1, not w2" in d2.reason
    d3 = registry.promote(ws, "consumer", v2, m2, floor=0.55, leak_alarm=False, window_rows=frames[2])
    assert d3.promoted and "re-scored" in d3.reason
    assert registry.load_champion(ws, "consumer")[1] == v2


def test_a_champion_fitted_on_the_windows_labels_is_not_judged_there(tmp_path: Path, frames, models) -> None:
    """A champion whose fitting months' label windows reach into the candidate's window would be
    re-scored partly in-sample (decision 030): the candidate past the guardrails replaces it, however
    it compares; a champion whose label windows closed before the window is compared as usual."""
    import copy

    ws = Workspace(tmp_path)
    window = frames[2].assign(as_of=pd.Timestamp("2026-07-01"))
    for last, replaced in (("2026-05-01", True), ("2026-04-01", False)):
        good = copy.deepcopy(models["good"])
        good.info["train_periods"] = ["2026-01-01T00:00:00", f"{last}T00:00:00"]
        v1, m1 = _register(ws, frames, good)
        registry.promote(ws, "consumer", v1, {**m1, "auc": 0.99}, floor=0.55, leak_alarm=False)
        assert registry.load_champion(ws, "consumer")[1] == v1
        v2, m2 = _register(ws, frames, models["weak"])
        d = registry.promote(ws, "consumer", v2, m2, 0.55, False, window_rows=window, horizon_days=90)
        assert d.promoted is replaced, d.reason
        if replaced:
            assert f"fitted on as-of {last}" in d.reason and "90-day label window" in d.reason
        else:
            assert "does not beat" in d.reason and "re-scored" in d.reason
        # without the horizon (a caller that cannot tell) the champion is re-scored as before
        v3, m3 = _register(ws, frames, models["weak"])
        champion = registry.load_champion(ws, "consumer")[1]
        assert not registry.promote(ws, "consumer", v3, m3, 0.55, False, window_rows=window).promoted
        assert registry.load_champion(ws, "consumer")[1] == champion


def test_load_champion_without_a_model_is_unavailable(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    with pytest.raises(ModelUnavailable, match="nbp-consumer"):
        registry.load_champion(ws, "consumer")
    assert not ws.mlruns_dir.exists()  # a lookup creates no registry
