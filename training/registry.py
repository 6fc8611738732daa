"""The MLflow registry of nbp's models: log, register, gate the ``champion`` alias, load.

Everything lives under the workspace: the tracking and registry store is
``sqlite:///<ws.mlflow_db>`` and artifacts go under
``<ws.mlflow_artifacts(experiment)>/`` (each experiment is created with an
explicit artifact location, because MLflow's default would be ``./mlruns`` in the
current directory). One experiment per product, ``nbp-<product>``, and one
registered model of the same name. Aliases, not stages: ``champion`` is what
scoring and serving load; ``challenger`` marks the latest version that did not
take over.

The logged model is a custom ``mlflow.pyfunc.PythonModel``
(:class:`training.mlflow_model.NbpPyfunc`) wrapping
:class:`training.model.FittedModel`, so ``mlflow.pyfunc.load_model(...).predict``
returns calibrated probabilities (a pyfunc over an ``LGBMClassifier`` would return
labels). :func:`load_champion` unwraps it and returns the ``FittedModel`` itself,
with ``predict_proba`` and ``contributions``.

Champion gate (:func:`promote`): a version becomes champion when it passes the
guardrails (AUC at or above the floor, no leak alarm) and either no champion exists
or it beats the champion on the same backtest window: higher AUC, ECE no worse than
the champion's plus a tolerance (the larger of ``ECE_TOLERANCE`` and the
standard error of one calibration bin's uptake rate, ``sqrt(r (1 - r) * bins / n)`` for
uptake rate ``r`` over ``n`` rows: smaller differences are sampling noise) and Brier no worse than the champion's times
``1 + BRIER_TOLERANCE``. Metrics of different windows are never compared: the
champion is re-scored on the challenger's rows when the caller passes them;
otherwise the new version stays challenger. The AUC comparisons are of point
estimates; every reason states the new AUC's standard error and uptake count
(:func:`training.evaluate.auc_se`), so a reader sees when a window is too small to
tell two models apart.

A product the training job could not fit (no candidates, too few months or uptakes) is
*skipped*: :func:`record_skip` logs a finished run tagged ``nbp.skipped`` (the reason in
English) and ``nbp.skipped_zh`` (in Chinese), and sets the same two tags on the registered
model, creating it without versions if needed; the next version registered clears them.
:func:`skip_of` reads them, so serving and ``nbp score`` can say why a product has no model.

A job killed mid-way (:func:`recover`, run at the start of every training job): each run
carries the tags ``nbp.host`` and ``nbp.pid`` of its process. A run still ``RUNNING`` whose
process is gone is marked ``FAILED``; a version registered by a dead process that never
got its gate decision (no ``nbp.decision`` tag) is deleted when it holds no alias (its run,
with the artifacts, stays as evidence, marked ``FAILED``), and given a decision tag saying
so when the gate had already moved an alias to it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import pandas as pd

from nbp import jobs, telemetry
from nbp.errors import ModelUnavailable
from nbp.workspace import Workspace
from training import evaluate
from training.model import FittedModel, fitted_periods
from training.setting_search import ChampionRecord

log = logging.getLogger(__name__)

ECE_TOLERANCE = 0.01  # absolute floor of the ECE tolerance (see _ece_tolerance)
BRIER_TOLERANCE = 0.02  # relative: Brier may be 2 % higher than the champion's
CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_WINDOW = "nbp.backtest_window"
TAG_DECISION = "nbp.decision"
TAG_SKIPPED = "nbp.skipped"  # why the last training skipped the product (English)
TAG_SKIPPED_ZH = "nbp.skipped_zh"  # the same, for staff
TAG_PID = "nbp.pid"  # process and host of the job that started the run (recover)
TAG_HOST = "nbp.host"
TAG_FAILED = "nbp.failed"
TAG_BANK = "nbp.bank"  # the member bank a run's model belongs to (federation workspace)
TAG_SCOPE = "nbp.scope"  # "pooled" on a member bank's version of a pooled model and on the pooled run
TAG_POOLED_RUN = "nbp.pooled_run"  # the pooled run (experiment nbp-pooled-<product>) a bank's version came from
RUNTIME_PACKAGES = ("lightgbm", "pandas", "numpy", "scikit-learn", "pydantic")


def model_name(product: str, bank: str | None = None) -> str:
    """Registered model (and experiment) name of a product: ``nbp-<product>``; of a member
    bank's model in a federation workspace: ``nbp-<bank>-<product>``."""
    return f"nbp-{product}" if bank is None else f"nbp-{bank}-{product}"


def bank_tag(ws: Workspace) -> dict[str, str]:
    """``{"nbp.bank": code}`` on every run of a member bank's model (empty for a single bank)."""
    return {} if ws.bank is None else {TAG_BANK: ws.bank}


def tracking_uri(ws: Workspace) -> str:
    """The SQLite tracking/registry URI of a workspace."""
    return f"sqlite:///{ws.mlflow_db}"


def _connect(ws: Workspace) -> Any:
    """Point MLflow at the workspace (telemetry off, then import) and return a client."""
    telemetry.disable()
    import mlflow
    from mlflow.telemetry.client import get_telemetry_client, set_telemetry_client
    from mlflow.telemetry.utils import is_telemetry_disabled

    if is_telemetry_disabled() and get_telemetry_client() is not None:
        set_telemetry_client()  # mlflow was imported before the switch was set: drop its client
    ws.mlruns_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(ws)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def job_tags() -> dict[str, str]:
    """Tags naming this process, set on every run it starts (:func:`recover`)."""
    return {TAG_PID: str(os.getpid()), TAG_HOST: jobs.host()}


def _experiment_id(client: Any, ws: Workspace, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    where = ws.mlflow_artifacts(name)
    where.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=where.as_uri())


@dataclass(frozen=True)
class Decision:
    """Outcome of the champion gate."""

    version: int
    alias: str  # "champion" or "challenger"
    reason: str  # one sentence, also tagged on the run and the model version
    previous_champion: int | None = None

    @property
    def promoted(self) -> bool:
        return self.alias == CHAMPION


def _run_params(
    fitted: FittedModel, params: Mapping[str, Any], as_of_range: tuple[str, str], backtest_window: str
) -> dict[str, str]:
    """The run's parameters: ``params``, the fitting window and the fit's row counts as ``fit_*``."""
    flat = {
        **{k: v for k, v in params.items()},
        "as_of_start": as_of_range[0],
        "as_of_end": as_of_range[1],
        "backtest_window": backtest_window,
        "n_features": len(fitted.features),
        **{f"fit_{k}": v for k, v in fitted.info.items()},
    }
    return {k: str(v)[:6000] for k, v in flat.items()}


def _log_evidence(
    mlflow: Any,
    fitted: FittedModel,
    metrics: Mapping[str, float],
    plots: Mapping[str, Path],
    feature_info: Mapping[str, Any],
    backtest_window: str,
) -> None:
    """Log the active run's evidence for :func:`log_and_register`: finite metrics, plots,
    ``features.json``, ``backtest_metrics.json`` and ``feature_views.txt``."""
    mlflow.log_metrics(
        {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not math.isnan(float(v))}
    )
    for path in plots.values():
        mlflow.log_artifact(str(path), artifact_path="plots")
    info = {k: v for k, v in feature_info.items() if k != "feature_views"}
    mlflow.log_dict({"features": fitted.features, "categories": fitted.categories, **info}, "features.json")
    mlflow.log_dict({"backtest_window": backtest_window, "metrics": dict(metrics)}, "backtest_metrics.json")
    if feature_info.get("feature_views"):
        mlflow.log_text(str(feature_info["feature_views"]), "feature_views.txt")


def log_and_register(
    ws: Workspace,
    product: str,
    fitted: FittedModel,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    plots: Mapping[str, Path],
    feature_info: Mapping[str, Any],
    as_of_range: tuple[str, str],
    backtest_window: str,
    input_example: pd.DataFrame,
    tags: Mapping[str, str] | None = None,
) -> int:
    """Log one trained model with its evidence and register it as ``nbp-<product>``.

    Args:
        ws: the workspace (all MLflow state goes under ``ws.mlruns_dir``).
        product: product key; experiment and registered model are ``nbp-<product>``.
        fitted: the trained model.
        metrics: backtest metrics (e.g. :func:`training.evaluate.metrics`), on the
            rows of ``backtest_window``.
        params: hyper-parameters and run settings to log (values are stringified).
        plots: name -> PNG path, logged under ``plots/``.
        feature_info: ``feature_views`` (text of the feature-view definitions, logged
            as ``feature_views.txt``) and anything else JSON-serialisable (logged in
            ``features.json`` with the model's feature list and categories).
        as_of_range: first and last as-of date of the training rows.
        backtest_window: id of the rows the metrics were computed on (e.g.
            ``"2026-04-01..2026-06-01"``); the gate only compares equal ids.
        input_example: a few rows holding at least the feature columns.
        tags: more tags of the run and the version (e.g. :data:`TAG_SCOPE`, :data:`TAG_POOLED_RUN`).

    Returns:
        The new registered model version.
    """
    client = _connect(ws)
    import mlflow
    from mlflow.models import infer_signature

    from training.mlflow_model import NbpPyfunc

    name = model_name(product, ws.bank)
    exp_id = _experiment_id(client, ws, name)
    example = input_example[fitted.features].head(5).reset_index(drop=True)
    signature = infer_signature(example, fitted.predict_proba(example))
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{name} {backtest_window}") as run:
        mlflow.set_tags(
            {TAG_WINDOW: backtest_window, "nbp.product": product, **bank_tag(ws), **job_tags(), **(tags or {})}
        )
        mlflow.log_params(_run_params(fitted, params, as_of_range, backtest_window))
        _log_evidence(mlflow, fitted, metrics, plots, feature_info, backtest_window)
        with jobs.tempdir(ws, "mlflow"):  # MLflow stages the model in a temporary folder: ours, under $NBP_HOME
            mi = mlflow.pyfunc.log_model(
                name="model",
                python_model=NbpPyfunc(fitted),
                signature=signature,
                input_example=example,
                registered_model_name=name,
                pip_requirements=[f"{p}=={pkg_version(p)}" for p in RUNTIME_PACKAGES],
            )
        run_id = run.info.run_id
    version = int(mi.registered_model_version)
    for k, v in {TAG_WINDOW: backtest_window, **(tags or {})}.items():
        client.set_model_version_tag(name, str(version), k, v)
    _clear_skip(client, name)  # trained again: the last skip no longer applies
    judged = ", ".join(f"{k} {float(metrics[k]):.3f}" for k in ("auc", "qini", "auuc") if k in metrics)
    log.info(
        "registered %s version %d (run %s, window %s%s)",
        name,
        version,
        run_id,
        backtest_window,
        f", {judged}" if judged else "",
    )
    return version


def _version_evidence(client: Any, name: str, version: int) -> tuple[str | None, dict[str, float], str]:
    """(backtest window, logged metrics, run id) of one model version."""
    mv = client.get_model_version(name, str(version))
    run = client.get_run(mv.run_id)
    return run.data.tags.get(TAG_WINDOW), run.data.metrics, mv.run_id


def version_evidence(ws: Workspace, product: str, version: int) -> tuple[str | None, dict[str, float], str]:
    """(backtest window, logged metrics, run id) of version ``version`` of ``nbp-<product>``."""
    return _version_evidence(_connect(ws), model_name(product, ws.bank), version)


def clear_skip(ws: Workspace, product: str) -> None:
    """Forget that an earlier training skipped ``product`` (its champion stands again)."""
    _clear_skip(_connect(ws), model_name(product, ws.bank))


def _clear_skip(client: Any, name: str) -> None:
    tags = client.get_registered_model(name).tags
    for t in (TAG_SKIPPED, TAG_SKIPPED_ZH):
        if t in tags:
            client.delete_registered_model_tag(name, t)


def _current_champion(client: Any, name: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _ece_tolerance(m: Mapping[str, float]) -> float:
    """ECE tolerance of one window: max(ECE_TOLERANCE, one calibration bin's standard error)."""
    n, r = float(m.get("n", 0) or 0), float(m.get("base_rate", float("nan")))
    if n <= 0 or math.isnan(r):
        return ECE_TOLERANCE
    return max(ECE_TOLERANCE, math.sqrt(r * (1 - r) * evaluate.ECE_BINS / n))


def _auc_text(m: Mapping[str, float]) -> str:
    """``AUC 0.5720 ± 0.070 (18 uptakes)``: the AUC with its sampling error where the counts are known."""
    a = float(m.get("auc", float("nan")))
    n, pos = m.get("n"), m.get("positives")
    if n is None or pos is None or math.isnan(a):
        return f"AUC {a:.4f}"
    se = evaluate.auc_se(a, int(pos), int(n) - int(pos))
    return f"AUC {a:.4f} ± {se:.3f} ({int(pos):,} uptakes)" if not math.isnan(se) else f"AUC {a:.4f}"


def _compare(
    version: int, window: str, new: Mapping[str, float], champ_v: int, champ: Mapping[str, float], how: str
) -> tuple[bool, str]:
    """Does the new version beat the champion (same rows)? And the sentence why."""
    a_new, a_old = float(new["auc"]), float(champ["auc"])
    e_new, e_old = float(new["ece"]), float(champ["ece"])
    b_new, b_old = float(new["brier"]), float(champ["brier"])
    on = f"on window {window} ({how})"
    tol = _ece_tolerance(new)
    if not a_new > a_old:
        return False, (
            f"v{version} stays challenger: {_auc_text(new)} does not beat champion v{champ_v}'s {a_old:.4f} {on}."
        )
    if e_new > e_old + tol:
        return False, (
            f"v{version} stays challenger: AUC {a_new:.4f} beats {a_old:.4f} but ECE {e_new:.4f} is worse "
            f"than champion v{champ_v}'s {e_old:.4f} by more than {tol:.4f} {on}."
        )
    if b_new > b_old * (1 + BRIER_TOLERANCE):
        return False, (
            f"v{version} stays challenger: AUC {a_new:.4f} beats {a_old:.4f} but Brier {b_new:.5f} is "
            f"more than {BRIER_TOLERANCE:.0%} worse than champion v{champ_v}'s {b_old:.5f} {on}."
        )
    return True, (
        f"v{version} becomes champion: {_auc_text(new)} beats v{champ_v}'s {a_old:.4f} {on}, "
        f"ECE {e_new:.4f} vs {e_old:.4f}, Brier {b_new:.5f} vs {b_old:.5f}."
    )


def promote(
    ws: Workspace,
    product: str,
    version: int,
    metrics: Mapping[str, float],
    floor: float,
    leak_alarm: bool,
    window_rows: pd.DataFrame | None = None,
    label: str = "label",
    horizon_days: int | None = None,
) -> Decision:
    """Move ``champion`` to ``version`` if it earns it, else mark it ``challenger``.

    Args:
        ws: the workspace.
        product: product key.
        version: the candidate version (registered by :func:`log_and_register`).
        metrics: the candidate's backtest metrics (``auc``, ``ece``, ``brier``) on its
            window (the window id is read from the version's run).
        floor: minimum AUC (``cfg.training.auc_floor``).
        leak_alarm: the caller's leak flag (e.g. AUC above the oracle's + 0.02).
        window_rows: optional rows of the candidate's backtest window (feature
            columns and ``label``); when given (and the rows hold the champion's
            features) the champion is re-scored on them, so both are compared on the
            same rows; otherwise logged metrics are compared only for the same window id.
        label: 0/1 label column of ``window_rows``.
        horizon_days: the label horizon; with it (and ``as_of`` in ``window_rows``), a champion
            fitted on months whose label windows reach into the window's first as-of is not
            re-scored there (its AUC would be partly in-sample, :func:`fitted_on_window`): the
            candidate, past the guardrails, takes its place.

    Returns:
        The decision; its reason is also tagged (``nbp.decision``) on the run and the
        model version.
    """
    client = _connect(ws)
    name = model_name(product, ws.bank)
    window, _, run_id = _version_evidence(client, name, version)
    champ_v = _current_champion(client, name)
    auc = float(metrics.get("auc", float("nan")))
    promoted = False
    if math.isnan(auc) or auc < floor:
        reason = f"v{version} stays challenger: {_auc_text(metrics)} is below the floor {floor:.4f}."
    elif leak_alarm:
        reason = f"v{version} stays challenger: the leak alarm is raised (AUC {auc:.4f} is implausibly high)."
    elif champ_v is None or champ_v == version:
        promoted = True
        reason = (
            f"v{version} becomes champion: first model to pass the guardrails ({_auc_text(metrics)} >= {floor:.4f})."
        )
    else:
        champ_window, champ_metrics, _ = _version_evidence(client, name, champ_v)
        champ_fit = load_version(ws, product, champ_v)[0] if window_rows is not None and len(window_rows) else None
        overlap = fitted_on_window(champ_fit, window_rows, horizon_days) if champ_fit is not None else None
        if overlap is not None:
            promoted = True
            reason = (
                f"v{version} becomes champion ({_auc_text(metrics)} >= {floor:.4f}): champion v{champ_v} was "
                f"fitted on as-of {overlap:%Y-%m-%d}, whose {horizon_days}-day label window reaches into window "
                f"{window}, so it cannot be judged there."
            )
        elif champ_fit is not None and set(champ_fit.features) <= set(window_rows.columns):
            # The same rows for both, even when the window id matches: candidate rules or
            # data may have changed since the champion's own evaluation.
            rescored = evaluate.metrics(window_rows[label], champ_fit.predict_proba(window_rows))
            promoted, reason = _compare(version, window, metrics, champ_v, rescored, "champion re-scored")
        elif champ_window == window:
            promoted, reason = _compare(version, window, metrics, champ_v, champ_metrics, "logged metrics")
        else:
            reason = (
                f"v{version} stays challenger: champion v{champ_v} was evaluated on window {champ_window}, "
                f"not {window}; pass that window's rows to re-score it."
            )
    return _decide(client, name, version, run_id, promoted, reason, champ_v)


def fitted_on_window(model: Any, window_rows: pd.DataFrame, horizon_days: int | None) -> pd.Timestamp | None:
    """The latest as-of ``model`` was fitted or calibrated on (``info``'s periods) whose label window
    reaches into the first as-of of ``window_rows``; None when none does, or without a horizon,
    periods or an ``as_of`` column (``docs/decisions/030-the-gate-window-embargo.md``)."""
    if horizon_days is None or "as_of" not in window_rows.columns or not len(window_rows):
        return None
    from training.dataset import closed_as_ofs  # the split's own rule; not at import (serving loads this module)

    start = pd.Timestamp(pd.to_datetime(window_rows["as_of"]).min())
    periods = fitted_periods(model.info)
    closed = set(closed_as_ofs(periods, start, horizon_days))
    reach = [t for t in periods if t not in closed]
    return reach[-1] if reach else None


def _decide(
    client: Any, name: str, version: int, run_id: str, promoted: bool, reason: str, champ_v: int | None
) -> Decision:
    """Move the alias the gate chose to ``version`` and tag its run and version with the reason."""
    alias = CHAMPION if promoted else CHALLENGER
    client.set_registered_model_alias(name, alias, str(version))
    client.set_tag(run_id, TAG_DECISION, reason)
    client.set_model_version_tag(name, str(version), TAG_DECISION, reason)
    log.info("%s: %s", name, reason)
    return Decision(version=version, alias=alias, reason=reason, previous_champion=champ_v)


def decide(ws: Workspace, product: str, version: int, promoted: bool, reason: str) -> Decision:
    """Record a gate decided by the caller's own rule (an uplift model's Qini floor): move
    ``champion`` (or ``challenger``) to ``version`` and tag its run and version with ``reason``."""
    client = _connect(ws)
    name = model_name(product, ws.bank)
    _, _, run_id = _version_evidence(client, name, version)
    return _decide(client, name, version, run_id, promoted, reason, _current_champion(client, name))


def promote_unevaluable(
    ws: Workspace, product: str, version: int, why: str, federation: Mapping[str, float], floor: float
) -> Decision:
    """The gate of a pooled model's version for a bank whose own backtest window cannot rank it
    (no uptake there, e.g. a product launched after the window).

    Nothing is compared on the bank's rows, so a champion of the bank keeps its alias; a bank
    without a champion takes the version when the pooled model passes the floor on every bank's
    window together (``federation``: its metrics there), so a newly launched product gets a list.

    Returns:
        The decision (tagged on the run and the version as :func:`promote` does).
    """
    client = _connect(ws)
    name = model_name(product, ws.bank)
    _, _, run_id = _version_evidence(client, name, version)
    champ_v = _current_champion(client, name)
    auc = float(federation.get("auc", float("nan")))
    promoted = False
    if champ_v is not None:
        reason = (
            f"v{version} stays challenger: {why}; champion v{champ_v} cannot be compared with it on this bank's rows."
        )
    elif math.isnan(auc) or auc < floor:
        reason = (
            f"v{version} stays challenger: {why}, and over every bank's window "
            f"{_auc_text(federation)} is below the floor {floor:.4f}."
        )
    else:
        promoted = True
        reason = (
            f"v{version} becomes champion: {why}; the bank has no champion and the pooled model's "
            f"{_auc_text(federation)} over every bank's window passes the floor {floor:.4f}."
        )
    return _decide(client, name, version, run_id, promoted, reason, champ_v)


def pooled_experiment(product: str) -> str:
    """The experiment of a product's pooled runs: ``nbp-pooled-<product>``."""
    return f"nbp-pooled-{product}"


def start_pooled_run(ws: Workspace, product: str, params: Mapping[str, Any]) -> str:
    """Open the pooled run of ``product`` (experiment :func:`pooled_experiment`) and return its id;
    the banks' versions name it (:data:`TAG_POOLED_RUN`), :func:`end_pooled_run` closes it."""
    client = _connect(ws)
    name = pooled_experiment(product)
    run = client.create_run(
        _experiment_id(client, ws, name),
        run_name=f"{name} {params.get('backtest_window', '')}".strip(),
        tags={"nbp.product": product, TAG_SCOPE: "pooled", **job_tags()},
    )
    for k, v in params.items():
        client.log_param(run.info.run_id, k, str(v)[:6000])
    return run.info.run_id


def end_pooled_run(ws: Workspace, run_id: str, metrics: Mapping[str, float], banks: pd.DataFrame) -> None:
    """Log the pooled run's metrics (per bank: ``auc.<bank>``, ``auc_se.<bank>`` ...) and its
    per-bank table (``banks.csv``, ``banks.json``), and end it."""
    client = _connect(ws)
    from mlflow.entities import Metric

    now = int(pd.Timestamp.now().timestamp() * 1000)
    finite = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not math.isnan(float(v))}
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in finite.items()])
    from nbp.sheets import write_csv

    with jobs.tempdir(ws, "mlflow") as tmp:  # a staging file under $NBP_HOME, removed after
        client.log_artifact(run_id, str(write_csv(banks, tmp / "banks.csv")))
    client.log_dict(run_id, banks.to_dict(orient="records"), "banks.json")
    client.set_terminated(run_id, "FINISHED")


def load_version(ws: Workspace, product: str, version: int | str) -> tuple[FittedModel, int]:
    """Load one version (a number or an alias) of ``nbp-<product>``.

    Returns:
        The :class:`FittedModel` (``predict_proba``, ``contributions``) and its version.

    Raises:
        ModelUnavailable: no such registered model, version or alias.
    """
    name = model_name(product, ws.bank)
    if not ws.mlflow_db.exists():
        raise ModelUnavailable(f"{name}: no model registry in {ws.mlruns_dir}; run `nbp train` first")
    client = _connect(ws)
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        if isinstance(version, str) and not version.isdigit():
            mv = client.get_model_version_by_alias(name, version)
        else:
            mv = client.get_model_version(name, str(version))
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    except MlflowException as e:
        skip = skip_of(ws, product)
        if skip is not None:
            raise ModelUnavailable(
                f"{name}: no version or alias '{version}' in the registry; the last "
                f"training skipped the product: {skip['en']}"
            ) from e
        gated = _challenger_decision(client, name) if version == CHAMPION else None
        if gated is not None:
            raise ModelUnavailable(f"{name}: no champion: {gated}") from e
        raise ModelUnavailable(
            f"{name}: no version or alias '{version}' in the registry; train the product and promote a model"
        ) from e
    return pyfunc.unwrap_python_model().fitted, int(mv.version)


def _challenger_decision(client: Any, name: str) -> str | None:
    """The gate's reason on the ``challenger`` version (why it is not champion); None without one."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHALLENGER)
    except MlflowException:
        return None
    return mv.tags.get(TAG_DECISION)


def load_champion(ws: Workspace, product: str) -> tuple[FittedModel, int]:
    """The champion of ``nbp-<product>`` and its version.

    Raises:
        ModelUnavailable: the product has no registered model or no champion.
    """
    return load_version(ws, product, CHAMPION)


def search_record(ws: Workspace, product: str) -> ChampionRecord | None:
    """The champion of ``nbp-<product>`` as the monthly job's setting search reads it: its version,
    its run's tags (the search it carries: ``training/setting_search.py``) and the product's latest
    registered version. None without a registry, a registered model or a champion."""
    if not ws.mlflow_db.exists():
        return None
    client = _connect(ws)
    name = model_name(product, ws.bank)
    champ_v = _current_champion(client, name)
    if champ_v is None:
        return None
    versions = client.search_model_versions(f"name = '{name}'")
    run_id = client.get_model_version(name, str(champ_v)).run_id
    tags = dict(client.get_run(run_id).data.tags) if run_id else {}
    return ChampionRecord(champ_v, tags, max([int(v.version) for v in versions] + [champ_v]))


def record_skip(ws: Workspace, product: str, zh: str, en: str, window: str = "") -> str:
    """Record that training skipped ``product``: a finished run and two registered-model tags.

    Args:
        zh, en: the reason, for staff (Chinese) and operators (English).
        window: the backtest window of the job ("" when the job had none).

    Returns:
        The run id.
    """
    client = _connect(ws)
    import mlflow
    from mlflow.exceptions import MlflowException

    name = model_name(product, ws.bank)
    exp_id = _experiment_id(client, ws, name)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{name} skipped") as run:
        mlflow.set_tags(
            {
                "nbp.product": product,
                TAG_SKIPPED: en,
                TAG_SKIPPED_ZH: zh,
                TAG_WINDOW: window,
                **bank_tag(ws),
                **job_tags(),
            }
        )
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"nbp model of product {product}")
    client.set_registered_model_tag(name, TAG_SKIPPED, en)
    client.set_registered_model_tag(name, TAG_SKIPPED_ZH, zh)
    log.warning("%s: skipped: %s", name, en)
    return run.info.run_id


def skip_of(ws: Workspace, product: str) -> dict[str, str] | None:
    """``{"zh": ..., "en": ...}``: why the last training skipped ``product``; None when it did not."""
    if not ws.mlflow_db.exists():
        return None
    client = _connect(ws)
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(model_name(product, ws.bank)).tags
    except MlflowException:
        return None
    if TAG_SKIPPED not in tags:
        return None
    return {"zh": tags.get(TAG_SKIPPED_ZH, tags[TAG_SKIPPED]), "en": tags[TAG_SKIPPED]}


def _dead(tags: Mapping[str, str]) -> bool:
    """Whether the run's process (``nbp.host``/``nbp.pid`` tags) ran on this host and is gone."""
    pid, host = tags.get(TAG_PID, ""), tags.get(TAG_HOST, "")
    return pid.isdigit() and jobs.dead(f"{host}-{pid}")


def recover(ws: Workspace) -> list[str]:
    """Finish what killed training jobs left half-done in the registry (module docstring).

    Returns:
        One line per repair, for the log.
    """
    if not ws.mlflow_db.exists():
        return []
    client = _connect(ws)
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    done: list[str] = []
    exps = [e for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY) if e.name.startswith("nbp-")]
    failed: set[str] = set()

    def fail(run_id: str, tags: Mapping[str, str], why: str) -> None:
        client.set_tag(run_id, TAG_FAILED, why)
        client.set_terminated(run_id, "FAILED")
        failed.add(run_id)
        done.append(f"run {run_id}: {why}")

    for exp in exps:
        for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
            if _dead(run.data.tags):
                fail(
                    run.info.run_id,
                    run.data.tags,
                    f"the job (pid {run.data.tags[TAG_PID]} on "
                    f"{run.data.tags[TAG_HOST]}) died before the run ended; marked FAILED by pid {os.getpid()}",
                )
        name = exp.name
        try:
            versions = client.search_model_versions(f"name = '{name}'")
        except MlflowException:  # no registered model of that name: nothing to repair
            versions = []
        for mv in versions:
            if TAG_DECISION in (mv.tags or {}):
                continue
            run = client.get_run(mv.run_id) if mv.run_id else None
            if run is None or not _dead(run.data.tags):
                continue
            held = client.get_registered_model(name).aliases or {}
            aliases = [a for a, v in held.items() if str(v) == str(mv.version)]
            if aliases:
                why = (
                    f"the job died after the gate moved '{', '.join(aliases)}' to v{mv.version}, before it "
                    f"recorded the reason"
                )
                client.set_model_version_tag(name, mv.version, TAG_DECISION, why)
                done.append(f"{name} v{mv.version}: {why}")
                continue
            client.delete_model_version(name, mv.version)
            done.append(f"{name} v{mv.version}: deleted, registered by a job that died before the champion gate")
            if run.info.run_id not in failed:
                fail(
                    run.info.run_id,
                    run.data.tags,
                    f"the job (pid {run.data.tags[TAG_PID]}) died before the "
                    f"champion gate; its model version v{mv.version} was deleted",
                )
    for line in done:
        log.warning("recover: %s", line)
    return done
