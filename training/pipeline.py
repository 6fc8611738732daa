"""The training jobs: train (with the champion gate), score and backtest.

Only this module (with :mod:`training.registry`) does IO in ``training``: it reads
the ingested tables and Feast, calls the pure recipe in :mod:`training.model` and
:mod:`training.evaluate`, and logs to MLflow.

Time split for ``train(cutoff=C)``: the as-of dates whose label window closed
before C, in order; the latest ``test_months`` are the backtest window (metrics
and the champion gate); the months whose label windows close before that window's first
as-of (:func:`split_months`: one label horizon apart) go to :func:`training.model.fit_rolling`,
which chooses settings and rounds on rolling time-ordered folds (embargo = label
horizon), calibrates on the folds' out-of-time scores and refits on every fitting
month. Nothing is tuned on the
backtest window.

A product that cannot be fitted is *skipped* (:class:`Skip`, :func:`trainability`): no
eligible candidate in the fitting months (the reason names the export's missing tables when
an eligibility rule reads their features), fewer fitting months than the recipe needs, fewer
than ``training.min_uptakes`` uptakes, no uptake (or no non-uptake) in the test window, or the
recipe refusing the rows. The other products train; the reason, in Chinese and English, is
printed by ``nbp train`` and recorded in MLflow (:func:`training.registry.record_skip`), where
serving and ``nbp score`` read it.

Every job starts with :func:`recover`: the temporary files of jobs that were killed are
removed (:mod:`nbp.jobs`) and the registry is repaired (:func:`training.registry.recover`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from bankexport.spec import BANK_COLUMN
from features.catalog import BANK_FEATURES
from nbp import jobs
from nbp.config import Config, ProductConfig
from nbp.errors import ConfigError, FeatureStoreError, ModelUnavailable, NbpError
from nbp.workspace import Workspace
from training import evaluate, registry
from training.candidates import eligible
from training.dataset import (
    KEYS,
    closed_as_ofs,
    entity_rows,
    feature_columns,
    feature_service,
    loan_product,
    open_feature_store,
    read_base,
    screen_for,
    training_sets,
    with_features_many,
)
from training.model import FittedModel, ModelParams, fit_rolling
from training.setting_search import SearchPlan, fingerprint
from training.setting_search import plan as plan_search

log = logging.getLogger(__name__)


MIN_FIT_MONTHS = 5  # fitting as-of months: rolling folds or, without them, 2 to fit + 2 to calibrate


@dataclass(frozen=True)
class Skip:
    """Why a product was not trained: one sentence for staff (Chinese) and one for operators."""

    zh: str
    en: str


@dataclass
class ProductResult:
    """What one product's training produced."""

    product: str
    version: int | None
    alias: str | None
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    window: str = ""
    skip: Skip | None = None
    bank: str | None = None  # the member bank (a pooled model's per-bank result)
    search: SearchPlan | None = None  # a bank's own model: its setting search, full or reused


def result_line(r: ProductResult) -> str:
    """One line per product for the terminal: the gate's decision, or why it was skipped (both languages)."""
    if r.skip is not None:
        return f"{r.product}: skipped: {r.skip.en} / 已跳过：{r.skip.zh}"
    return f"{r.product}: {r.reason}"


def recover(ws: Workspace) -> None:
    """Clean up after jobs that were killed: their temporary files and half-registered models."""
    jobs.clean_stale(ws)
    registry.recover(ws)


def _no_candidates(ws: Workspace, pc: ProductConfig) -> Skip:
    """The reason a product has no eligible candidate, naming the export's missing tables if they explain it."""
    from features.build import absent_sources
    from features.catalog import CATALOG

    absent = absent_sources(ws, [r.feature for r in pc.eligibility if not r.allow_missing])
    if absent:
        tables = sorted({t for ts in absent.values() for t in ts})
        feats = ", ".join(sorted(absent))
        zh = "、".join(f"“{f.zh.split('(')[0]}”" for f in CATALOG if f.name in absent)  # staff read names, not codes
        return Skip(
            zh=f"无候选客户：资格规则所需的{zh}全部未知，因为数据中没有 {'、'.join(tables)} 表",
            en=f"no candidates: the eligibility rules read {feats}, unknown for every customer because "
            f"the export has no {', '.join(tables)} table",
        )
    return Skip(
        zh="无候选客户：训练月份内没有客户满足资格规则",
        en="no candidates: no customer meets the eligibility rules in the fitting months",
    )


def trainability(cfg: Config, ws: Workspace, key: str, rows: pd.DataFrame, te: pd.DataFrame) -> Skip | None:
    """Why ``key`` cannot be fitted on ``rows`` and tested on ``te`` (None: it can).

    Args:
        rows: the fitting rows (``as_of``, ``label``).
        te: the test window's rows.
    """
    pc = cfg.products[key]
    if rows.empty:
        return _no_candidates(ws, pc)
    months, pos = rows["as_of"].nunique(), int(rows["label"].sum())
    if months < MIN_FIT_MONTHS:
        return Skip(
            zh=f"候选客户只出现在 {months} 个月份，至少需要 {MIN_FIT_MONTHS} 个月",
            en=f"candidates in only {months} fitting month(s); the recipe needs {MIN_FIT_MONTHS}",
        )
    if pos < cfg.training.min_uptakes:
        return Skip(
            zh=f"训练月份内仅有 {pos} 笔办理，至少需要 {cfg.training.min_uptakes} 笔",
            en=f"only {pos} uptake(s) in the fitting months; training.min_uptakes is {cfg.training.min_uptakes}",
        )
    te_pos = int(te["label"].sum())
    if te.empty or te_pos in (0, len(te)):
        what_zh, what_en = (
            ("无候选客户", "no candidates")
            if te.empty
            else (("无办理", "no uptake") if te_pos == 0 else ("全部办理", "only uptakes"))
        )
        return Skip(
            zh=f"检验月份内{what_zh}，模型无法评估", en=f"{what_en} in the test months: the model cannot be evaluated"
        )
    return None


def check_federation(cfg: Config, ws: Workspace, products: list[str]) -> None:
    """Pooled products need a federation workspace.

    Raises:
        ConfigError: a product of ``products`` has scope pooled and ``ws`` holds no member bank.
    """
    pooled = [k for k in products if k in cfg.products and cfg.scope(k) == "pooled"]
    if pooled and ws.bank is None and not ws.banks():
        raise ConfigError(
            f"product(s) {', '.join(pooled)}: scope pooled (training.scope or products.<key>.scope), but "
            f"{ws.home} is a single-bank workspace; a pooled model is fitted on the member banks of a "
            f"federation: set the scope to bank"
        )


def _skipped(ws: Workspace, key: str, skip: Skip, window: str) -> ProductResult:
    registry.record_skip(ws, key, skip.zh, skip.en, window)
    return ProductResult(key, None, None, f"skipped: {skip.en}", window=window, skip=skip)


def export_date(ws: Workspace) -> pd.Timestamp:
    """The export date recorded by ingest (:meth:`Workspace.export_date`).

    Raises:
        FeatureStoreError: nothing was ingested into this workspace yet.
    """
    day = ws.export_date()
    if day is None:
        raise FeatureStoreError(f"{ws.ingest_meta} missing: run `nbp ingest` first")
    return pd.Timestamp(day)


def feature_as_ofs(ws: Workspace) -> list[pd.Timestamp]:
    """The as-of dates the feature build covers by default."""
    from features.build import default_as_of

    return [pd.Timestamp(d) for d in default_as_of(ws)]


def window_id(as_ofs: list[pd.Timestamp]) -> str:
    return f"{as_ofs[0]:%Y-%m-%d}..{as_ofs[-1]:%Y-%m-%d}"


def split_months(
    as_ofs: list[pd.Timestamp], test_months: int, horizon_days: int
) -> tuple[list[pd.Timestamp], list[pd.Timestamp]]:
    """Split ordered as-of dates into fitting months and the test window (the latest ``test_months``).

    The fitting months are those whose label window closes before the test window's first as-of,
    as in the folds' embargo and the backtest: a loan granted in the test window would otherwise
    also be a positive of the fitting months just before it, for the same customer with nearly the
    same features, and the gate would reward models that memorise those customers
    (``docs/decisions/030-the-gate-window-embargo.md``). Fewer fitting months than the recipe needs
    is the caller's to report.
    """
    if len(as_ofs) <= test_months:
        return [], list(as_ofs)
    test = as_ofs[-test_months:]
    return closed_as_ofs(as_ofs[:-test_months], test[0], horizon_days), test


def too_few_months(closed: list[pd.Timestamp], fit_ofs: list[pd.Timestamp], cfg: Config, cutoff: pd.Timestamp) -> Skip:
    """The reason a bank with ``closed`` label-closed as-of months (``fit_ofs`` of them left to fit
    by :func:`split_months`) cannot train."""
    t = cfg.training
    return Skip(
        zh=f"数据只有 {len(closed)} 个标签期已结束的月份：留出 {t.test_months} 个测试月份及其前 {t.horizon_days} "
        f"天的标签期后剩 {len(fit_ofs)} 个训练月份，至少需要 {MIN_FIT_MONTHS} 个",
        en=f"only {len(closed)} as-of month(s) with closed label windows before {cutoff:%Y-%m-%d}: after the "
        f"{t.test_months} test month(s) and the {t.horizon_days}-day label horizon before them, {len(fit_ofs)} "
        f"remain to fit; the recipe needs {MIN_FIT_MONTHS}",
    )


def model_params(cfg: Config) -> ModelParams:
    """The recipe's settings: ``training.rolling_folds`` rolling folds, the latest ``search_folds`` of
    them searched, the one-SE rule's ``simplest``, one LightGBM thread (products are fitted side by
    side instead, :func:`_fit_all`), the rest :class:`ModelParams`."""
    t = cfg.training
    return ModelParams(
        folds=t.rolling_folds, search_folds=t.search_folds, simplest=t.simplest, se_floor=t.se_floor, num_threads=1
    )


def _datasets(
    cfg: Config, ws: Workspace, keys: list[str], fit_ofs: list, test_ofs: list, max_rows: int | None = None
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each product's fitting rows (negatives down-sampled to ``max_rows``, default
    ``training.max_rows``) and test rows (all), from one eligibility screen and one Feast
    retrieval for every product."""
    open_feature_store(cfg, ws)  # before the data work: it caps the job's memory
    base = read_base(ws)
    screen = screen_for(cfg, ws, base[0], [*fit_ofs, *test_ofs], keys)
    t = cfg.training
    cap = max_rows or t.max_rows
    reqs = [r for k in keys for r in ((k, fit_ofs, t.negative_rate, cap), (k, test_ofs, 1.0, None))]
    sets = training_sets(cfg, ws, reqs, screen, base)
    return {k: (sets[2 * i], sets[2 * i + 1]) for i, k in enumerate(keys)}


def own_features(rows: pd.DataFrame) -> list[str]:
    """The inputs of a bank's own model: the training set's features but the bank features
    (:data:`features.catalog.BANK_FEATURES`): within one bank they are a constant and a clock,
    which only a model pooled over banks can use."""
    return [f for f in feature_columns(rows) if f not in BANK_FEATURES and f != BANK_COLUMN]


def fit_rows(
    cfg: Config, rows: pd.DataFrame, params: ModelParams, grid: tuple[dict[str, Any], ...] | None = None
) -> FittedModel:
    """:func:`training.model.fit_rolling` on a product's fitting rows as training fits a bank's own
    model: inputs :func:`own_features`, the rows' weights, the label horizon as the folds' embargo
    (``grid``: the settings to cross-validate; None: every setting)."""
    return fit_rolling(
        rows,
        own_features(rows),
        "label",
        "as_of",
        params,
        weight="weight",
        embargo=pd.Timedelta(days=cfg.training.horizon_days),
        grid=grid,
    )


def _fit_product(
    cfg: Config, rows: pd.DataFrame, te: pd.DataFrame, grid: tuple[dict[str, Any], ...] | None = None
) -> tuple[FittedModel, pd.DataFrame, dict[str, float]] | Skip:
    """Fit a bank's own model on ``rows`` (inputs :func:`own_features`), score the test rows ``te``.

    Args:
        grid: the settings to cross-validate (:attr:`SearchPlan.grid`); None: every setting.

    Returns:
        The model, the scored test rows and the test metrics; or a :class:`Skip` when the
        recipe refuses the rows (too few periods, one class in the rows it fits on).
    """
    try:
        model = fit_rows(cfg, rows, model_params(cfg), grid)
    except ValueError as e:  # fit_rolling's documented refusals
        return Skip(zh=f"模型无法拟合：{e}", en=f"the model cannot be fitted: {e}")
    # other products may still be training: predict with their thread count (model.training_threads)
    te = te.assign(score=model.predict_proba(te, num_threads=model.info["threads"]))
    return model, te, evaluate.metrics(te["label"], te["score"])


def _fit_all(
    cfg: Config,
    data: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    desc: str,
    grids: dict[str, tuple[dict[str, Any], ...] | None] | None = None,
) -> dict[str, tuple[FittedModel, pd.DataFrame, dict[str, float]] | Skip]:
    """:func:`_fit_product` for every product, ``training.workers`` at a time (``grids``: each
    product's settings to cross-validate, :attr:`SearchPlan.grid`; default every setting).

    Products are independent and LightGBM releases the interpreter lock while it trains,
    so threads run them side by side, each booster on one thread: two OpenMP threads on
    one booster wait for each other at every split on a loaded machine
    (``docs/decisions/004-lightgbm-thread-count.md``). Each fit is single-threaded and
    seeded, so the models do not depend on the number of workers.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    out = {}
    with ThreadPoolExecutor(max_workers=max(1, min(cfg.training.workers, len(data)))) as pool:
        jobs = {pool.submit(_fit_product, cfg, *rows, (grids or {}).get(key)): key for key, rows in data.items()}
        for job in tqdm(as_completed(jobs), total=len(jobs), desc=desc, disable=None):
            out[jobs[job]] = job.result()
    return {key: out[key] for key in data}


@dataclass
class Prepared:
    """One bank's training job up to the fit (:func:`prepare`): the time split, each product's
    fitting and test rows, and the products skipped before any fit."""

    keys: list[str]
    cutoff: pd.Timestamp
    fit_ofs: list[pd.Timestamp]
    test_ofs: list[pd.Timestamp]
    window: str
    data: dict[str, tuple[pd.DataFrame, pd.DataFrame]]  # products to fit: (fitting rows, test rows)
    skips: dict[str, Skip]
    plans: dict[str, SearchPlan] = field(default_factory=dict)  # products to fit: full or reused search


def prepare(
    cfg: Config,
    ws: Workspace,
    cutoff: pd.Timestamp | None = None,
    products: list[str] | None = None,
    reuse: bool = False,
) -> Prepared:
    """The first phase of :func:`train`: the time split, one retrieval of every product's rows,
    :func:`trainability` and each product's setting search (:func:`plan_searches`; arguments as
    :func:`train`)."""
    recover(ws)
    cutoff = cutoff or export_date(ws)
    as_ofs = closed_as_ofs(feature_as_ofs(ws), cutoff, cfg.training.horizon_days)
    keys = products or list(cfg.products)
    for key in keys:
        if key not in cfg.products:
            raise NbpError(f"unknown product '{key}'; configured: {', '.join(cfg.products)}")
    check_federation(cfg, ws, keys)
    fit_ofs, test_ofs = split_months(as_ofs, cfg.training.test_months, cfg.training.horizon_days)
    if len(fit_ofs) < MIN_FIT_MONTHS:
        skip = too_few_months(as_ofs, fit_ofs, cfg, cutoff)
        return Prepared(keys, cutoff, [], [], "", {}, dict.fromkeys(keys, skip))
    data = _datasets(cfg, ws, keys, fit_ofs, test_ofs)
    skips = {k: s for k in keys if (s := trainability(cfg, ws, k, *data[k])) is not None}
    data = {k: v for k, v in data.items() if k not in skips}
    plans = plan_searches(cfg, ws, cutoff, data, reuse)
    return Prepared(keys, cutoff, fit_ofs, test_ofs, window_id(test_ofs), data, skips, plans)


def plan_searches(
    cfg: Config, ws: Workspace, cutoff: pd.Timestamp, data: dict[str, tuple[pd.DataFrame, pd.DataFrame]], reuse: bool
) -> dict[str, SearchPlan]:
    """Each product's setting search (:mod:`training.setting_search`): with ``reuse``, its champion's
    setting unless the rule asks for the full search; without, the full search (reason ``forced``)."""
    from training.drift import read_report

    report = read_report(ws) if reuse else None
    out = {}
    for key, (rows, _) in data.items():
        fp = fingerprint(cfg, key, own_features(rows), model_params(cfg))
        record = registry.search_record(ws, key) if reuse else None
        out[key] = got = plan_search(cfg, key, fp, cutoff, record, report, force=not reuse)
        log.info("%s: setting search %s (%s): %s", key, got.mode, got.reason, got.why)
    return out


def fit_prepared(
    cfg: Config, ws: Workspace, prep: Prepared
) -> dict[str, tuple[FittedModel, pd.DataFrame, dict[str, float]] | Skip]:
    """The fitting phase of :func:`train`: every product of ``prep`` on threads (:func:`_fit_all`), or
    with ``compute.engine: spark`` as one grouped Spark job (:mod:`training.spark_fit`). Releases
    ``prep.data``."""
    if cfg.compute.engine == "spark":
        from training.spark_fit import fit_banks

        return fit_banks(cfg, ws, {ws.bank or "": prep})[ws.bank or ""]
    fitted = _fit_all(cfg, prep.data, "train", {k: p.grid for k, p in prep.plans.items()})
    prep.data = {}
    return fitted


def train(
    cfg: Config,
    ws: Workspace,
    cutoff: pd.Timestamp | None = None,
    products: list[str] | None = None,
    oracle_auc: dict[str, float] | None = None,
    reuse: bool = False,
) -> list[ProductResult]:
    """Train, evaluate, register and gate one model per product: :func:`prepare`, :func:`fit_prepared`,
    :func:`register`.

    Args:
        cfg: configuration.
        ws: workspace with ingested tables and built features.
        cutoff: only label windows closed before it are used (default: export date).
        products: product keys (default: all in config).
        oracle_auc: optional oracle AUC per product on the same window (leak alarm).
        reuse: cross-validate only each champion's setting where :mod:`training.setting_search`
            allows it (the monthly job); otherwise every setting.

    Returns:
        One :class:`ProductResult` per product; a product that cannot be fitted has
        ``skip`` set and no version (module docstring). Then one per product with a
        randomised campaign, for its uplift model ``<product>-uplift`` (:mod:`training.uplift`).
    """
    prep = prepare(cfg, ws, cutoff, products, reuse)
    results = register(cfg, ws, prep, fit_prepared(cfg, ws, prep), oracle_auc)
    from training.uplift import train_uplift  # after the propensity models: products with randomised campaigns

    return results + train_uplift(cfg, ws, prep.cutoff, prep.keys, feature_as_ofs(ws), reuse)


def register(
    cfg: Config,
    ws: Workspace,
    prep: Prepared,
    fitted: dict[str, tuple[FittedModel, pd.DataFrame, dict[str, float]] | Skip],
    oracle_auc: dict[str, float] | None = None,
) -> list[ProductResult]:
    """The last phase of :func:`train`: log, register and gate each fitted product, record each skip.

    Args:
        fitted: per product of ``prep.data``: the model, its scored test rows and their metrics, or a Skip.
    """
    results = []
    cutoff, fit_ofs, win = prep.cutoff, prep.fit_ofs, prep.window
    for key in prep.keys:
        got = prep.skips.get(key) or fitted.pop(key)
        if isinstance(got, Skip):
            results.append(_skipped(ws, key, got, win))
            continue
        model, te, m = got
        leak = m["auc"] > cfg.training.leak_auc or (
            oracle_auc is not None and key in oracle_auc and m["auc"] > oracle_auc[key] + cfg.training.leak_margin
        )
        out = ws.train_outputs(key)
        out.mkdir(parents=True, exist_ok=True)
        plots = evaluate.save_plots(te["label"], te["score"], model.importance(), out, title=key)
        plan = prep.plans.get(key)
        version = registry.log_and_register(
            ws,
            key,
            model,
            m,
            params=model.params | {"cutoff": f"{cutoff:%Y-%m-%d}"},
            plots=plots,
            feature_info={"feature_service": feature_service(key, cfg.products[key])},
            as_of_range=(f"{fit_ofs[0]:%Y-%m-%d}", f"{fit_ofs[-1]:%Y-%m-%d}"),
            backtest_window=win,
            input_example=te.head(5),
            tags=plan.tags(model.info["setting"], cutoff) if plan is not None else None,
        )
        d = registry.promote(
            ws, key, version, m, cfg.training.auc_floor, leak, window_rows=te, horizon_days=cfg.training.horizon_days
        )
        log.info("%s: %s", key, d.reason)
        results.append(ProductResult(key, version, d.alias, d.reason, m, win, search=plan))
    return results


def score(cfg: Config, ws: Workspace, as_ofs: list[pd.Timestamp], products: list[str] | None = None) -> pd.DataFrame:
    """Score every eligible candidate with each product's champion.

    Returns:
        Columns ``customer_id``, ``product``, ``as_of``, ``score`` (calibrated
        probability), ``model_version``, ``uplift`` (the uplift champion's estimate of
        p(uptake | contact) - p(uptake | no contact); NaN for a product without one) and
        ``uplift_version``; a member bank's lead with ``bank_code``. A product
        without a champion is skipped with a warning.
    """
    from training.uplift import load_uplift

    recover(ws)
    customers, loans = read_base(ws)
    models, ents = {}, {}
    missing = []
    for key in products or list(cfg.products):
        try:
            models[key] = registry.load_champion(ws, key)
        except ModelUnavailable as e:
            log.warning("%s: not scored: %s", key, e)
            missing.append(str(e))
    if not models:
        raise ModelUnavailable("no product has a champion model: " + " | ".join(missing))
    lifts = {k: got for k in models if (got := load_uplift(ws, k)) is not None}
    screen = screen_for(cfg, ws, customers, as_ofs, list(models))
    for key in models:
        pc = cfg.products[key]
        ents[key] = entity_rows(customers, loans, loan_product(key, pc), as_ofs, None, (screen, pc.eligibility))
    # one retrieval for every product: the union of the screened rows and of the services' features
    if cfg.compute.engine == "spark":  # retrieved and scored on the executors
        from training.spark_score import predict_on_spark

        scored = predict_on_spark(
            cfg,
            ws,
            [
                (ents[k][KEYS], feature_service(k, cfg.products[k]), m, cfg.products[k].eligibility)
                for k, (m, _) in models.items()
            ],
        )
        for df, key in zip(scored, models, strict=True):  # the uplift champion reads the same features
            if key in lifts:
                feats = with_features_many(cfg, ws, [(df[KEYS], feature_service(key, cfg.products[key]))])[0]
                df["uplift"] = lifts[key][0].uplift(feats)
    else:
        dfs = with_features_many(cfg, ws, [(ents[k][KEYS], feature_service(k, cfg.products[k])) for k in models])
        scored = []
        for df, (key, (model, _)) in zip(dfs, models.items(), strict=True):
            df = df[eligible(df, cfg.products[key].eligibility).to_numpy()]
            scored.append(df[KEYS].assign(score=model.predict_proba(df)))
            if key in lifts:
                scored[-1]["uplift"] = lifts[key][0].uplift(df)
    parts = []
    for df, (key, (_, version)) in zip(scored, models.items(), strict=True):
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": df["customer_id"].to_numpy(),
                    "product": key,
                    "as_of": df["as_of"].to_numpy(),
                    "score": df["score"].to_numpy(),
                    "model_version": version,
                    "uplift": df["uplift"].to_numpy(float) if "uplift" in df else float("nan"),
                    "uplift_version": pd.array([lifts[key][1] if key in lifts else None] * len(df), "Int64"),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    if ws.bank is not None:  # a member bank's scores say whose they are (ids are unique within a bank only)
        out.insert(0, BANK_COLUMN, ws.bank)
    return out


def write_scores(df: pd.DataFrame, path: Path) -> Path:
    """Write scores as Parquet (atomic rename; a killed job's temporary file is removed by :mod:`nbp.jobs`)."""
    with jobs.atomic_write(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def test_as_ofs(ws: Workspace, as_of: pd.Timestamp, horizon_days: int, n: int) -> list[pd.Timestamp]:
    """Up to ``n`` month-start as-of dates from ``as_of`` on whose windows closed by the export date."""
    return [t for t in closed_as_ofs(feature_as_ofs(ws), export_date(ws), horizon_days) if t >= as_of][:n]


def _default_lightgbm_auc(train_rows: pd.DataFrame, test_rows: pd.DataFrame, feats: list[str]) -> float:
    """AUC of LightGBM with default settings on the same rows: the plain reference."""
    import lightgbm as lgb

    clf = lgb.LGBMClassifier(n_jobs=1, verbose=-1, random_state=7)  # one thread: see _fit_all
    clf.fit(train_rows[feats], train_rows["label"], sample_weight=train_rows.get("weight"))
    return evaluate.auc(test_rows["label"], clf.predict_proba(test_rows[feats])[:, 1])


def with_oracle(rows: pd.DataFrame, oracle: pd.DataFrame, product: str) -> pd.DataFrame:
    """``rows`` (``customer_id``, ``as_of``) with the simulator oracle's ``p_true`` (and ``p_asof``
    where the oracle has it) for ``product``; rows the oracle omits get 0 (not a candidate)."""
    known = [c for c in ("p_true", "p_asof") if c in oracle.columns]
    o = oracle[oracle["product"] == product][["customer_id", "as_of", *known]].copy()
    o["as_of"] = pd.to_datetime(o["as_of"]).astype(rows["as_of"].dtype)
    o["customer_id"] = o["customer_id"].astype(rows["customer_id"].dtype)
    return rows.merge(o, on=["customer_id", "as_of"], how="left").fillna(dict.fromkeys(known, 0.0))


BACKTEST_COLUMNS = [
    "product",
    "test",
    "n",
    "positives",
    "auc",
    "oracle_auc",
    "auc_ratio",
    "asof_oracle_auc",
    "asof_ratio",
    "default_lgbm_auc",
    "pr_auc",
    "lift_10",
    "capture_10",
    "brier",
    "ece",
    "rounds",
    "leaves",
]
"""Columns of the backtest report's table, in order (those no row has are left out)."""


def oracle_ratios(te: pd.DataFrame, auc: float) -> dict[str, float]:
    """The oracles' AUCs on the scored rows ``te`` and the recipe's ``auc`` over each.

    ``p_true`` gives ``oracle_auc`` and ``auc_ratio``; ``p_asof`` (the oracle from the as-of
    month's drivers only) ``asof_oracle_auc`` and ``asof_ratio``; a column ``te`` lacks is left out.
    """
    out: dict[str, float] = {}
    for col, (auc_key, ratio_key) in {
        "p_true": ("oracle_auc", "auc_ratio"),
        "p_asof": ("asof_oracle_auc", "asof_ratio"),
    }.items():
        if col in te.columns:
            out[auc_key] = evaluate.auc(te["label"], te[col])
            out[ratio_key] = auc / out[auc_key]
    return out


def _write_backtest_report(
    cfg: Config,
    out: Path,
    as_of: pd.Timestamp,
    closed: list[pd.Timestamp],
    test_ofs: list[pd.Timestamp],
    rows: list[dict],
    fits: dict[str, dict],
    skips: dict[str, Skip],
) -> Path:
    """``out/report.md``: how the models were fitted, the metric table, each fold search, the
    skipped products and the plots of each product."""
    table = evaluate.metrics_table(rows, [c for c in BACKTEST_COLUMNS if any(c in r for r in rows)])
    first = fits[rows[0]["product"]]
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text(
        f"# Backtest at {as_of:%Y-%m-%d}\n\nFitted on the as-of dates {window_id(closed)} (labels closed before "
        f"the cutoff): settings and rounds chosen on rolling time-ordered folds, booster refit on the months "
        f"up to {first['train_periods'][-1][:10]}, Platt calibration on "
        f"{'out-of-time fold scores of ' if first.get('calibrate_on') == 'folds' else ''}"
        f"{', '.join(p[:7] for p in first['calibration_periods'])}; tested on "
        f"{window_id(test_ofs)} (horizon {cfg.training.horizon_days} days).\n\n{table}\n\n"
        + "".join(f"- {k}: fold search {json.dumps(v['search'])}\n" for k, v in fits.items())
        + "".join(f"- {k}: skipped: {v.en}\n" for k, v in skips.items())
        + "\n"
        + "".join(
            f"## {r['product']}\n\n![gain]({r['product']}/gain.png)"
            f" ![calibration]({r['product']}/calibration.png)"
            f" ![importance]({r['product']}/importance.png)\n\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    return report


def backtest(
    cfg: Config,
    ws: Workspace,
    as_of: pd.Timestamp,
    products: list[str] | None = None,
    oracle: pd.DataFrame | None = None,
    n_test: int = 4,
    baseline: bool = True,
) -> tuple[list[dict], Path]:
    """Train with cutoff ``as_of``, score the next ``n_test`` monthly as-of dates, compare with uptake.

    Nothing is registered: a backtest measures the recipe, it does not move aliases.

    Args:
        oracle: optional simulator oracle (``customer_id``, ``product``, ``as_of``,
            ``p_true``, optionally ``p_asof``; absent rows mean 0) for the oracle's AUC
            on the same rows (and the as-of oracle's: drivers frozen at the as-of month).
        baseline: also fit LightGBM with default settings on the same rows.

    Returns:
        Metric rows (one per product) and the path of the written report.
    """
    closed = closed_as_ofs(feature_as_ofs(ws), as_of, cfg.training.horizon_days)
    if len(closed) < 5:
        raise NbpError(f"backtest at {as_of:%Y-%m-%d}: only {len(closed)} as-of dates with closed labels before it")
    test_ofs = test_as_ofs(ws, as_of, cfg.training.horizon_days, n_test)
    if not test_ofs:
        raise NbpError(
            f"backtest at {as_of:%Y-%m-%d}: no as-of date from it on has a label window closed "
            f"by the export date {export_date(ws):%Y-%m-%d}"
        )
    out = ws.backtest_outputs(as_of)
    rows, fits = [], {}
    keys = products or list(cfg.products)
    data = _datasets(cfg, ws, keys, closed, test_ofs)
    skips = {k: s for k in keys if (s := trainability(cfg, ws, k, *data[k])) is not None}
    data = {k: v for k, v in data.items() if k not in skips}
    fit_rows = {key: rows for key, (rows, _) in data.items()}
    fitted = _fit_all(cfg, data, "backtest")
    skips |= {k: v for k, v in fitted.items() if isinstance(v, Skip)}
    if len(skips) == len(keys):
        raise NbpError(
            f"backtest at {as_of:%Y-%m-%d}: no product can be fitted: "
            + "; ".join(f"{k}: {v.en}" for k, v in skips.items())
        )
    for key in keys:
        if key in skips:
            log.warning("%s: skipped: %s", key, skips[key].en)
            continue
        model, te, m = fitted.pop(key)
        fits[key] = model.info
        row = {"product": key, "test": window_id(test_ofs), **m}
        if oracle is not None:
            te = with_oracle(te, oracle, key)
            row |= oracle_ratios(te, row["auc"])
        if baseline:  # the same rows the recipe saw (fitting and calibration months)
            row["default_lgbm_auc"] = _default_lightgbm_auc(fit_rows.pop(key), te, model.features)
        row["rounds"] = model.best_iteration
        row["leaves"] = model.params["num_leaves"]
        evaluate.save_plots(te["label"], te["score"], model.importance(), out / key, title=key)
        rows.append(row)
    report = _write_backtest_report(cfg, out, as_of, closed, test_ofs, rows, fits, skips)
    return rows, report


def retrain(cfg: Config, ws: Workspace, reuse: bool = True) -> str:
    """The monthly job, start to end; re-running it is safe.

    Builds every as-of's features and materialises the latest into the online
    store, trains and gates each product (a worse model never becomes champion; with
    ``reuse``, each product's fit cross-validates only its champion's setting unless
    :mod:`training.setting_search` asks for the full search),
    scores every candidate at the latest as-of with the champions, and writes the
    scores to ``Workspace.latest_scores`` (read by the service's target lists) and a dated copy,
    then each champion's drift and calibration figures (:func:`training.drift.monitor`) to
    ``Workspace.drift_report``. Guardrails are checked by the caller once all is written
    (:func:`training.drift.check_guardrails`).

    Returns:
        A short report for the terminal, ending with each product's setting search and the
        wall time of each stage (features, train, score, reports).

    Raises:
        ModelUnavailable: no product has a champion after training (every reason is in the message).
    """
    from features.store import publish

    recover(ws)
    started = time.perf_counter()
    pub = publish(cfg, ws)
    stages = {"features": _stage_done("features", started)}
    started = time.perf_counter()
    results = train(cfg, ws, reuse=reuse)
    stages["train"] = _stage_done("train", started)
    return score_and_report(cfg, ws, pub, results, stages)


def _stage_done(stage: str, started: float) -> float:
    """Seconds since ``started``, logged as the retrain's stage ``stage``."""
    took = time.perf_counter() - started
    log.info("retrain stage %s: %.1f s", stage, took)
    return took


def score_and_report(
    cfg: Config, ws: Workspace, pub: Any, results: list[ProductResult], stages: dict[str, float] | None = None
) -> str:
    """The end of the monthly job: score every candidate at the latest materialised as-of with the
    champions, write the scores (latest and a dated copy) and the drift report, and report
    ``results``, the counts, each product's drift flags and setting search, and the stages' times.

    Args:
        pub: what :func:`features.store.publish` returned (its ``materialized`` as-of and ``describe``).
        stages: seconds of the job's stages so far (``features``, ``train``); ``score`` and
            ``reports`` are added.

    Raises:
        ModelUnavailable: no product has a champion.
    """
    stages = dict(stages or {})
    started = time.perf_counter()
    latest = pd.Timestamp(pub.materialized)
    df = score(cfg, ws, [latest])
    dated = write_scores(df, ws.scores_dir / f"{latest:%Y-%m-%d}.parquet")
    write_scores(df, ws.latest_scores)
    stages["score"] = _stage_done("score", started)
    started = time.perf_counter()
    lines = [
        pub.describe(),
        evaluate.metrics_table(
            [
                {
                    "product": r.product,
                    "version": r.version,
                    "alias": r.alias or "skipped",
                    "auc": r.metrics.get("auc"),
                    "lift_10": r.metrics.get("lift_10"),
                    "ece": r.metrics.get("ece"),
                }
                for r in results
            ]
        ),
    ]
    lines += [result_line(r) for r in results]
    counts = df.groupby("product").size()
    lines.append(f"scores at {latest:%Y-%m-%d}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + f" -> {dated}")
    from training import drift  # drift and calibration of every champion, written beside the scores

    report = drift.monitor(cfg, ws, latest, {r.product: r.version for r in results})
    lines += drift.report_lines(report) + [f"drift report -> {ws.drift_report}"]
    from training.tier_report import write_migration

    migration = write_migration(cfg, ws)
    lines.append(f"tier migration -> {migration}" if migration else "tier migration: fewer than two months of tiers")
    lines += [r.search.line(r.product) for r in results if r.search is not None]
    stages["reports"] = _stage_done("reports", started)
    lines.append("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    return "\n".join(lines)
