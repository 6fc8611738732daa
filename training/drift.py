"""Drift monitoring: how far the latest month has moved from a champion's training window, and
whether the champion's predicted uptake still matches realised uptake (docs/monitoring.md).

Figures, per product with a champion:

- **PSI** (population stability index, 群体稳定性指数) of every model input and of the scores,
  between the reference (the product's candidates at the as-of months the champion was fitted
  on) and the candidates at the latest as-of: ``sum_b (a_b - e_b) ln(a_b / e_b)`` over bins ``b``,
  ``e_b`` the reference's share of rows in the bin and ``a_b`` the latest month's. Numeric values:
  bins cut at the reference's deciles (tied deciles leave empty bins, which add nothing), missing
  values a bin of their own; categorical values: one bin per value, missing its own. A bin empty
  on one side counts as :data:`EMPTY_SHARE` of the rows (``ln 0`` is undefined).
- **Calibration in the large** (整体校准): for every as-of month whose label window has closed
  (as-of + ``training.horizon_days`` on or before the export date), the champion's mean predicted
  propensity against the realised uptake rate, and the relative gap ``|mean predicted / realised - 1|``.

The champion's scores are computed point in time through the scoring path's own pieces (entity
rows, eligibility screen, one Feast retrieval, ``FittedModel.predict_proba``) for a fixed sample of
customers (``monitoring.sample_customers``, chosen by a hash of the id, so the same customers are
followed from one export to the next); they are not read from training's logs, because the
champion may be an older version than this retrain's and the months after its fit are the ones
that show drift.

:func:`monitor` computes every product's figures, writes them to ``Workspace.drift_report`` and
logs them to the product's MLflow run of the retrain; :func:`check_guardrails` turns a configured
limit that is exceeded into :class:`nbp.errors.GuardrailFailed`. :func:`read_report` and
:func:`flag_rows` are for the readers (``/readyz``, the campaign report).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nbp import jobs
from nbp.config import Config, GuardrailsConfig
from nbp.errors import GuardrailFailed, ModelUnavailable
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

EMPTY_SHARE = 1e-4  # share given to a bin empty on one side: one row in 10,000
DECILES = np.arange(1, 10) / 10
SCORE = "score"
LINE_FLAGS = 6  # input flags shown in the retrain's one line per product (the report holds all)


# ----------------------------------------------------------------------------- figures
def _psi_of_counts(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """PSI per row of two count matrices (columns × bins); nan where either side has no rows."""
    n_ref, n_cur = ref.sum(axis=1, keepdims=True), cur.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.maximum(ref / n_ref, EMPTY_SHARE)
        a = np.maximum(cur / n_cur, EMPTY_SHARE)
        out = ((a - e) * np.log(a / e)).sum(axis=1)
    out[(n_ref[:, 0] == 0) | (n_cur[:, 0] == 0)] = np.nan
    return out


def psi_numeric(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """PSI of each column of two float arrays (rows × columns, or one column; NaN = missing).

    Bins: the reference's deciles per column, ``(-inf, d1], (d1, d2], ..., (d9, inf)``, and one
    bin for missing values.
    """
    ref = np.asarray(ref, dtype=float).reshape(len(ref), -1)
    cur = np.asarray(cur, dtype=float).reshape(len(cur), -1)
    k, nb = ref.shape[1], len(DECILES) + 2  # ten value bins and the missing bin
    if len(ref):
        with warnings.catch_warnings():  # a column missing in every reference row: its edges are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            edges = np.nanquantile(ref, DECILES, axis=0)  # deciles × columns
    else:
        edges = np.full((len(DECILES), k), np.nan)

    def counts(x: np.ndarray) -> np.ndarray:
        b = np.empty(x.shape, dtype=np.int64)
        for j in range(k):  # per column: searchsorted is vectorised over the rows
            b[:, j] = np.searchsorted(edges[:, j], x[:, j], side="left")
        b[np.isnan(x)] = nb - 1
        return np.bincount((b + np.arange(k) * nb).ravel(), minlength=k * nb).reshape(k, nb)

    return _psi_of_counts(counts(ref), counts(cur))


def psi_categorical(ref: pd.Series, cur: pd.Series) -> float:
    """PSI of a categorical input: one bin per value seen on either side, one for missing."""
    codes, values = pd.factorize(pd.concat([ref.astype(object), cur.astype(object)], ignore_index=True))
    nb = len(values) + 1
    codes = codes + 1  # factorize gives -1 for missing: bin 0
    c_ref = np.bincount(codes[: len(ref)], minlength=nb)
    c_cur = np.bincount(codes[len(ref) :], minlength=nb)
    return float(_psi_of_counts(c_ref[None, :], c_cur[None, :])[0])


def psi_inputs(
    ref: pd.DataFrame, cur: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] = ()
) -> pd.Series:
    """PSI of every input ``features`` between the rows ``ref`` and ``cur``, largest first."""
    cats = [f for f in features if f in set(categorical)]
    nums = [f for f in features if f not in set(cats)]
    out = pd.Series(np.nan, index=list(features), dtype=float)
    if nums:
        out[nums] = psi_numeric(ref[nums].to_numpy(float), cur[nums].to_numpy(float))
    for f in cats:
        out[f] = psi_categorical(ref[f], cur[f])
    return out.sort_values(ascending=False, na_position="last")


def relative_gap(mean_predicted: Any, realised: Any) -> np.ndarray:
    """``|mean predicted / realised - 1|``; infinite when nothing was realised but something predicted."""
    m, r = np.asarray(mean_predicted, dtype=float), np.asarray(realised, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, np.abs(m / r - 1), np.where(m > 0, np.inf, 0.0))


def calibration_in_the_large(y: Any, p: Any, period: Any) -> pd.DataFrame:
    """Mean predicted propensity against realised uptake, per period.

    Returns:
        One row per period (sorted): ``rows``, ``uptakes``, ``mean_predicted``, ``realised``,
        ``gap`` (:func:`relative_gap`) and ``gap_se``, the gap's standard error from the realised
        rate's sampling alone (delta method: ``(m / r) sqrt((1 - r) / (n r))``); about
        ``1 / sqrt(uptakes)`` at low rates.
    """
    df = pd.DataFrame({"period": np.asarray(period), "y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    g = df.groupby("period", sort=True).agg(
        rows=("y", "size"), uptakes=("y", "sum"), mean_predicted=("p", "mean"), realised=("y", "mean")
    )
    g["uptakes"] = g["uptakes"].astype(int)
    g["gap"] = relative_gap(g["mean_predicted"], g["realised"])
    r = g["realised"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        g["gap_se"] = np.where(r > 0, g["mean_predicted"] / r * np.sqrt((1 - r) / (g["rows"] * r)), np.inf)
    return g.reset_index()


def closed_months(as_ofs: Sequence[pd.Timestamp], export_date: pd.Timestamp, horizon_days: int) -> list[pd.Timestamp]:
    """The as-of months whose label window (T, T + horizon] has closed by the export date."""
    h = pd.Timedelta(days=horizon_days)
    return [pd.Timestamp(t) for t in as_ofs if pd.Timestamp(t) + h <= pd.Timestamp(export_date)]


# ----------------------------------------------------------------------------- one product
def product_figures(
    cfg: Config,
    rows: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    reference: Sequence[pd.Timestamp],
    latest: pd.Timestamp,
    closed: Sequence[pd.Timestamp],
) -> dict[str, Any]:
    """The figures and flags of one product from its scored candidate rows.

    Args:
        rows: ``as_of``, ``label``, :data:`SCORE` and the model's input columns.
        features, categorical: the model's inputs and which of them are categorical.
        reference: the as-of months of the training window.
        latest: the latest as-of (the month the service scores).
        closed: the as-of months whose labels have closed.
    """
    at = rows["as_of"]
    ref = rows[at.isin(list(reference))]
    cur = rows[at == latest]
    inputs = psi_inputs(ref, cur, features, categorical)
    score_psi = float(psi_numeric(ref[SCORE].to_numpy(), cur[SCORE].to_numpy())[0])
    done = rows[at.isin(list(closed))]
    cal = calibration_in_the_large(done["label"], done[SCORE], done["as_of"])
    cal["window"] = np.where(cal["period"].isin(list(reference)), "fit", "out_of_time")
    cal = cal.rename(columns={"period": "as_of"})
    last = cal.iloc[-1] if len(cal) else None
    top = inputs.dropna()
    fig = {
        "reference": f"{min(reference):%Y-%m-%d}..{max(reference):%Y-%m-%d}" if reference else "",
        "reference_rows": len(ref),
        "latest_as_of": f"{latest:%Y-%m-%d}",
        "latest_rows": len(cur),
        "psi_score": score_psi,
        "psi_max_input": float(top.iloc[0]) if len(top) else math.nan,
        "psi_max_input_name": str(top.index[0]) if len(top) else None,
        "calibration_gap_latest": float(last["gap"]) if last is not None else math.nan,
        "calibration_latest_as_of": f"{last['as_of']:%Y-%m-%d}" if last is not None else None,
        "psi_inputs": {str(k): float(v) for k, v in inputs.items()},
        "calibration": [{**r, "as_of": f"{r['as_of']:%Y-%m-%d}"} for r in cal.to_dict(orient="records")],
    }
    fig["flags"] = flags(fig, cfg.monitoring.psi_flag, cfg.monitoring.calibration_flag)
    return fig


def flags(fig: Mapping[str, Any], psi_flag: float, calibration_flag: float) -> list[dict[str, Any]]:
    """The figures above their flag: ``{"name", "value", "limit"}`` each; ``psi_score``, then
    ``psi:<input>`` (largest first), then ``calibration_gap`` (the latest closed month's)."""
    out = []
    if _above(fig["psi_score"], psi_flag):
        out.append({"name": "psi_score", "value": fig["psi_score"], "limit": psi_flag})
    out += [
        {"name": f"psi:{name}", "value": v, "limit": psi_flag}
        for name, v in fig["psi_inputs"].items()
        if _above(v, psi_flag)
    ]
    if _above(fig["calibration_gap_latest"], calibration_flag):
        out.append({"name": "calibration_gap", "value": fig["calibration_gap_latest"], "limit": calibration_flag})
    return out


def _value(v: Any) -> float:
    """A figure as a float: None (not computed) is nan, the report's ``"inf"`` is infinity."""
    return math.nan if v is None else float(v)


def _above(value: Any, limit: float | None) -> bool:
    return limit is not None and _value(value) > limit  # nan > limit is False


# ----------------------------------------------------------------------------- the retrain's step
def sample_customers(customers: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` customers with the smallest hash of their id (all when fewer): a sample that stays
    the same from one export to the next, except for customers who come or go."""
    if len(customers) <= n:
        return customers
    h = pd.util.hash_pandas_object(customers["customer_id"].astype(str), index=False).to_numpy()
    return customers.iloc[np.sort(np.argsort(h, kind="stable")[:n])].reset_index(drop=True)


def scored_rows(
    cfg: Config, ws: Workspace, models: Mapping[str, Any], as_ofs: Sequence[pd.Timestamp]
) -> dict[str, pd.DataFrame]:
    """Each product's eligible candidates of the sampled customers at ``as_ofs``, with ``label``,
    the model's inputs (one Feast retrieval for every product) and the champion's :data:`SCORE`."""
    from training.candidates import eligible
    from training.dataset import entity_rows, feature_service, loan_product, read_base, screen_for, with_features_many

    customers, loans = read_base(ws)
    customers = sample_customers(customers, cfg.monitoring.sample_customers)
    as_ofs = list(as_ofs)
    screen = screen_for(cfg, ws, customers, as_ofs, list(models))
    parts = []
    for key in models:
        pc = cfg.products[key]
        ent = entity_rows(
            customers, loans, loan_product(key, pc), as_ofs, cfg.training.horizon_days, (screen, pc.eligibility)
        )
        parts.append((ent.drop(columns="_cust"), feature_service(key, pc)))
    out = {}
    for df, (key, model) in zip(with_features_many(cfg, ws, parts), models.items(), strict=True):
        df = df[eligible(df, cfg.products[key].eligibility).to_numpy()].reset_index(drop=True)
        out[key] = df.assign(**{SCORE: model.predict_proba(df) if len(df) else np.empty(0)})
    return out


def _reference_months(
    model: Any, as_ofs: Sequence[pd.Timestamp], closed: Sequence[pd.Timestamp], test: int, horizon_days: int
) -> list:
    """The as-of months the champion was fitted and calibrated on (``FittedModel.info``'s
    ``train_periods`` and ``calibration_periods``); without them, the fitting months of training's
    own split (:func:`training.pipeline.split_months`)."""
    from training.model import fitted_periods
    from training.pipeline import split_months

    have = set(as_ofs)
    got = [t for t in fitted_periods(model.info) if t in have]
    if got:
        return got

    return split_months(list(closed), test, horizon_days)[0]


def monitor(cfg: Config, ws: Workspace, latest: pd.Timestamp, versions: Mapping[str, int | None] | None = None) -> dict:
    """Every product's drift and calibration figures: written to ``Workspace.drift_report`` and
    logged to the product's MLflow run of this retrain (:func:`log_to_mlflow`).

    Args:
        latest: the latest as-of (the one the retrain scored).
        versions: the version each product registered in this retrain (its run gets the figures).

    Returns:
        The report (as written).
    """
    from training import registry
    from training.pipeline import export_date, feature_as_ofs

    t0 = time.perf_counter()
    exported = export_date(ws)
    as_ofs = [t for t in feature_as_ofs(ws) if t <= latest]
    closed = closed_months(as_ofs, exported, cfg.training.horizon_days)
    models, versions_used, missing = {}, {}, {}
    for key in cfg.products:
        try:
            models[key], versions_used[key] = registry.load_champion(ws, key)
        except ModelUnavailable as e:
            missing[key] = str(e)
    products: dict[str, Any] = {}
    if models:
        rows = scored_rows(cfg, ws, models, sorted(set(closed) | {latest}))
        for key, model in models.items():
            ref = _reference_months(model, as_ofs, closed, cfg.training.test_months, cfg.training.horizon_days)
            fig = product_figures(cfg, rows.pop(key), model.features, model.categorical, ref, latest, closed)
            products[key] = {"model_version": versions_used[key], **fig}
    report = {
        "bank": ws.bank,
        "written_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "export_date": f"{exported:%Y-%m-%d}",
        "latest_as_of": f"{latest:%Y-%m-%d}",
        "horizon_days": cfg.training.horizon_days,
        "sample_customers": cfg.monitoring.sample_customers,
        "psi_flag": cfg.monitoring.psi_flag,
        "calibration_flag": cfg.monitoring.calibration_flag,
        "products": products,
        "not_monitored": missing,
    }
    for key, fig in products.items():
        fig["mlflow_run"] = log_to_mlflow(ws, key, fig, (versions or {}).get(key))
    write_report(ws, report)
    log.info("drift: %d product(s) monitored in %.1f s -> %s", len(products), time.perf_counter() - t0, ws.drift_report)
    return report


def write_report(ws: Workspace, report: Mapping[str, Any]) -> None:
    """Write ``report`` to ``Workspace.drift_report`` atomically, as strict JSON (:func:`json_safe`)."""
    with jobs.atomic_write(ws.drift_report) as tmp:
        tmp.write_text(json.dumps(json_safe(report), ensure_ascii=False, indent=1), encoding="utf-8")


def json_safe(x: Any) -> Any:
    """``x`` for strict JSON: nan (not computed) as null, infinity (a gap with nothing realised) as ``"inf"``."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _run_of(client: Any, ws: Workspace, product: str, version: int | None) -> str | None:
    """The product's run of this retrain: the run of the version it registered, else the latest
    run this process started in the product's experiment (a skipped product's run)."""
    from training.registry import TAG_HOST, TAG_PID, model_name

    name = model_name(product, ws.bank)
    if version is not None:
        return client.get_model_version(name, str(version)).run_id
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.`{TAG_PID}` = '{os.getpid()}' and tags.`{TAG_HOST}` = '{jobs.host()}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_to_mlflow(ws: Workspace, product: str, fig: Mapping[str, Any], version: int | None) -> str | None:
    """Log one product's figures to its run of this retrain: metrics ``psi_score``, ``psi_max_input``,
    ``calibration_gap_latest``, the artifacts ``drift/drift.json`` (everything) and
    ``drift/psi_inputs.csv``, and the tag ``drift_flags`` (the flagged names, or ``none``).

    Returns:
        The run id, or None when this retrain left no run of the product.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from nbp import telemetry
    from nbp.sheets import write_csv
    from training.registry import tracking_uri

    telemetry.disable()
    uri = tracking_uri(ws)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = _run_of(client, ws, product, version)
    if run_id is None:
        log.warning("%s: no MLflow run of this retrain; drift figures only in %s", product, ws.drift_report)
        return None
    now = int(pd.Timestamp.now().timestamp() * 1000)
    names = ("psi_score", "psi_max_input", "calibration_gap_latest")
    finite = [k for k in names if fig[k] is not None and math.isfinite(fig[k])]
    client.log_batch(run_id, metrics=[Metric(k, float(fig[k]), now, 0) for k in finite])
    client.log_dict(run_id, json_safe(dict(fig)), "drift/drift.json")
    table = pd.DataFrame({"input": list(fig["psi_inputs"]), "psi": list(fig["psi_inputs"].values())})
    with jobs.tempdir(ws, "mlflow") as tmp:
        client.log_artifact(run_id, str(write_csv(table, tmp / "psi_inputs.csv")), "drift")
    client.set_tag(run_id, "drift_flags", (", ".join(f["name"] for f in fig["flags"]) or "none")[:5000])
    return run_id


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per product for the retrain's report: its flags, or its figures when none is raised."""
    lines = []
    for key, fig in report["products"].items():
        if fig["flags"]:
            # the score's and calibration's flags first, then the largest inputs' (all in the report)
            ranked = sorted(fig["flags"], key=lambda f: f["name"].startswith("psi:"))
            shown = ranked[: LINE_FLAGS + 2]
            more = f" (+{len(ranked) - len(shown)} more inputs in the report)" if len(ranked) > len(shown) else ""
            lines.append(
                f"drift {key}: {len(ranked)} flag(s): "
                + ", ".join(f"{f['name']} {_num(f['value'])} > {f['limit']:g}" for f in shown)
                + more
            )
        else:
            lines.append(
                f"drift {key}: no flag (PSI scores {_num(fig['psi_score'])}, largest input "
                f"{_num(fig['psi_max_input'])} {fig['psi_max_input_name'] or ''}, calibration gap "
                f"{_num(fig['calibration_gap_latest'])} at {fig['calibration_latest_as_of'] or 'no closed month'})"
            )
    lines += [f"drift {key}: not monitored: {why}" for key, why in report.get("not_monitored", {}).items()]
    return lines


def _num(v: Any) -> str:
    return "n/a" if math.isnan(_value(v)) else f"{_value(v):.3f}"


# ----------------------------------------------------------------------------- guardrails
GUARDRAILS = {  # guardrail -> (figure of the report, what it measures)
    "max_score_psi": ("psi_score", "PSI of the scores"),
    "max_input_psi": ("psi_max_input", "largest PSI of an input"),
    "max_calibration_gap": ("calibration_gap_latest", "calibration gap |mean predicted / realised - 1|"),
}


def guardrail_failures(report: Mapping[str, Any], limits: GuardrailsConfig) -> list[str]:
    """Each configured guardrail the report's figures exceed, as a phrase naming the product,
    the guardrail, the value and the limit (a figure that could not be computed fails nothing)."""
    out = []
    bank = f"bank {report['bank']} " if report.get("bank") else ""
    for key, fig in report.get("products", {}).items():
        for name, (figure, what) in GUARDRAILS.items():
            limit, value = getattr(limits, name), fig.get(figure)
            if _above(value, limit):
                detail = f" ({fig['psi_max_input_name']})" if figure == "psi_max_input" else ""
                detail = f" (as-of {fig['calibration_latest_as_of']})" if figure == "calibration_gap_latest" else detail
                out.append(f"{bank}{key}: monitoring.guardrails.{name}: {what}{detail} {_num(value)} > {limit:g}")
    return out


def check_guardrails(cfg: Config, wss: Sequence[Workspace]) -> None:
    """Raise when a configured guardrail fails in the drift report of any of ``wss``.

    Raises:
        GuardrailFailed: one line naming every failure (product, guardrail, value, limit).
    """
    failures = []
    for ws in wss:
        report = read_report(ws)
        if report is not None:
            failures += guardrail_failures(report, cfg.monitoring.guardrails)
    if failures:
        raise GuardrailFailed("retrain guardrail failed: " + "; ".join(failures) + " (everything was written)")


# ----------------------------------------------------------------------------- readers
def read_report(ws: Workspace) -> dict | None:
    """The last retrain's drift report of ``ws``; None when there is none (or it cannot be read)."""
    path = ws.drift_report
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable drift report: %s", path, e)
        return None


FLAG_COLUMNS = {  # column of flag_rows -> Chinese header of the sheet
    "product": "产品",
    "model_version": "模型版本",
    "reference": "基准窗口（训练月份）",
    "latest_as_of": "最新月份",
    "psi_score": "评分PSI",
    "psi_max_input": "最大输入PSI",
    "psi_max_input_name": "PSI最大的输入",
    "calibration_latest_as_of": "最近标签已结束月份",
    "mean_predicted": "平均预测办理概率",
    "realised": "实际办理率",
    "calibration_gap_latest": "整体校准偏差",
    "flags": "预警",
}


def flag_rows(report: Mapping[str, Any] | None) -> pd.DataFrame:
    """One row per monitored product, Chinese headers (:data:`FLAG_COLUMNS`), for an .xlsx sheet:
    its figures and its flags in one cell (``无`` when none)."""
    rows = []
    for key, fig in (report or {}).get("products", {}).items():
        last = fig["calibration"][-1] if fig.get("calibration") else {}
        rows.append(
            {
                **{c: fig.get(c) for c in FLAG_COLUMNS},
                "product": key,
                "mean_predicted": last.get("mean_predicted"),
                "realised": last.get("realised"),
                "flags": "；".join(f"{f['name']} {_num(f['value'])} > {f['limit']:g}" for f in fig["flags"]) or "无",
            }
        )
    return pd.DataFrame(rows, columns=list(FLAG_COLUMNS)).rename(columns=FLAG_COLUMNS)


CALIBRATION_COLUMNS = {  # column of calibration_rows -> Chinese header of the sheet
    "product": "产品",
    "as_of": "月份（as-of）",
    "window": "窗口",
    "rows": "候选客户数（抽样）",
    "uptakes": "办理数",
    "mean_predicted": "平均预测办理概率",
    "realised": "实际办理率",
    "gap": "整体校准偏差",
    "gap_se": "偏差标准误",
}
WINDOW_ZH = {"fit": "训练月份", "out_of_time": "训练后月份"}


def calibration_rows(report: Mapping[str, Any] | None) -> pd.DataFrame:
    """Calibration in the large month by month, every monitored product, Chinese headers
    (:data:`CALIBRATION_COLUMNS`), for an .xlsx sheet."""
    rows = [
        {**c, "product": key, "window": WINDOW_ZH.get(c.get("window"), c.get("window"))}
        for key, fig in (report or {}).get("products", {}).items()
        for c in fig.get("calibration", [])
    ]
    return pd.DataFrame(rows, columns=list(CALIBRATION_COLUMNS)).rename(columns=CALIBRATION_COLUMNS)
