"""Pooled models: one booster fitted on every member bank's rows, calibrated and gated per bank.

A product with ``scope: pooled`` (``training.scope`` or ``products.<key>.scope``) in a
federation workspace is fitted once on the candidates of every member bank
(``docs/decisions/017-pooled-models.md``):

1. Each bank's rows are retrieved from that bank's own Feast repo (``Workspace.for_bank``),
   one bank after the other, with the same time split for every bank (the cutoff is the
   earliest export date of the banks, so no bank's test window lies inside another bank's
   fitting months). A bank's fitting rows start when it offers the product (:func:`while_offered`:
   the label window reaches its first application of it). Each bank gets an even share of
   ``training.pooled_max_rows``: beyond it every uptake is kept and a weighted sample of the rest
   (weights ``1 / rate``), so each bank still weighs as many rows as it has.
2. The rows are concatenated and fitted by the product recipe
   (:func:`training.model.fit_rolling`), with the bank features (:data:`BANK_FEATURES`) that
   tell the banks apart: their size and how long each product has been offered.
3. Calibration per bank: a bank with at least ``training.min_bank_calibration_uptakes``
   uptakes in the out-of-time fold months gets Platt fitted on its own fold scores
   (:func:`training.model.calibrate_group`); a bank with fewer keeps the pooled calibration.
4. For each bank a version of ``nbp-<bank>-<product>`` is registered holding the pooled
   booster with that bank's calibrator (tags ``nbp.scope=pooled`` and ``nbp.pooled_run``),
   and the champion gate runs on that bank's own backtest window
   (:func:`training.registry.promote`). A bank whose window holds no uptake (a product
   launched after it) cannot rank the model: it takes the version only when it has no
   champion and the pooled model passes the floor over every bank's window together
   (:func:`training.registry.promote_unevaluable`). A bank that has never had an
   application of the product (it does not offer it) is skipped.
5. The pooled run (experiment ``nbp-pooled-<product>``) holds each bank's AUC, its standard
   error, uptakes and ECE (``auc.<bank>`` ...) and the per-bank table ``banks.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from bankexport.spec import BANK_COLUMN
from features.catalog import BANK_FEATURES
from nbp.config import Config
from nbp.errors import ConfigError, FeatureStoreError, NbpError
from nbp.workspace import Workspace
from training import evaluate, registry
from training.dataset import closed_as_ofs, feature_columns, feature_service, loan_product
from training.model import FittedModel, ModelParams, RollingFit, calibrate_group, fit_rolling_parts
from training.pipeline import (
    MIN_FIT_MONTHS,
    ProductResult,
    Skip,
    _datasets,
    _fit_product,
    _no_candidates,
    _skipped,
    export_date,
    feature_as_ofs,
    recover,
    split_months,
    test_as_ofs,
    too_few_months,
    trainability,
    window_id,
)

log = logging.getLogger(__name__)


@dataclass
class BankRows:
    """One bank's rows of a pooled fit: fitting rows (already within the bank's share of the
    budget) and test rows (all), each with ``bank_code``; or why the bank takes no part."""

    bank: str
    fit: pd.DataFrame
    test: pd.DataFrame
    window: str
    skip: Skip | None = None
    first: pd.Timestamp | None = None  # the bank's first application of the product (:func:`first_application`)
    extra: dict = field(default_factory=dict)  # what a caller keeps beside the rows (backtest: per-bank scores)


@dataclass
class PooledFit:
    """The pooled model and each bank's calibrated model (:class:`FittedModel` sharing the booster)."""

    fit: RollingFit | None  # what was fitted on (None once shipped from a Spark executor: :meth:`slim`)
    models: dict[str, FittedModel]
    calibration: dict[str, tuple[str, int]]  # bank -> ("bank" | "pooled", uptakes in its fold months)
    model: FittedModel  # the booster with the pooled calibration
    fit_range: tuple[pd.Timestamp, pd.Timestamp]  # first and last as-of of the fitting rows

    def slim(self) -> PooledFit:
        """The models without the fitted rows and their design: what registering needs."""
        return replace(self, fit=None)


def cap_rows(rows: pd.DataFrame, max_rows: int, seed: int = 7) -> pd.DataFrame:
    """``rows`` with at most ``max_rows`` rows: every uptake kept, negatives sampled and their
    ``weight`` multiplied by ``1 / rate`` (unchanged when already within the budget)."""
    neg = int((rows["label"] == 0).sum())
    if len(rows) <= max_rows or neg == 0:
        return rows
    rate = max(max_rows - (len(rows) - neg), 1) / neg
    keep = (rows["label"] == 1).to_numpy() | (np.random.default_rng(seed).random(len(rows)) < rate)
    out = rows[keep].copy()
    out["weight"] = np.where(out["label"] == 1, out["weight"], out["weight"] / rate)
    return out.reset_index(drop=True)


def bank_share(cfg: Config, n_banks: int) -> int:
    """Each bank's share of ``training.pooled_max_rows`` (at least 1,000 rows)."""
    return max(cfg.training.pooled_max_rows // max(n_banks, 1), 1_000)


def pooled_params(cfg: Config) -> ModelParams:
    """The recipe's settings for a pooled fit: as a bank's (:func:`training.pipeline.model_params`),
    with LightGBM's threads left to the row count (a pooled fit runs alone, not beside other products)."""
    t = cfg.training
    return ModelParams(
        folds=t.rolling_folds, search_folds=t.search_folds, simplest=t.simplest, se_floor=t.se_floor, num_threads=0
    )


def pooled_features(rows: pd.DataFrame, bank: str) -> list[str]:
    """The features of a pooled fit: every feature of the rows (the bank features included).

    Raises:
        FeatureStoreError: the bank's rows lack the bank features (its Feast repo predates them).
    """
    missing = sorted(BANK_FEATURES - set(rows.columns))
    if missing:
        raise FeatureStoreError(
            f"bank {bank}: its feature service lacks the bank features {missing[:3]}; "
            f"run `nbp features --bank {bank}` to build and publish them"
        )
    return [c for c in feature_columns(rows) if c != BANK_COLUMN]


def first_application(ws: Workspace, product: str) -> pd.Timestamp | None:
    """The bank's first application of the loan product in its export (None: it does not offer it)."""
    loans = pd.read_parquet(ws.table("loans"), columns=["product", "application_date"])
    dates = loans.loc[loans["product"] == product, "application_date"]
    return None if dates.empty else pd.Timestamp(dates.min())


def while_offered(rows: pd.DataFrame, first: pd.Timestamp | None, horizon_days: int) -> pd.DataFrame:
    """The fitting rows whose label window ``(T, T + horizon]`` reaches the bank's first
    application of the product: before that the bank did not sell it, so its customers' zeros
    say nothing about them, and a pooled model would learn the bank's months without the
    product as the bank's own low propensity (and keep it after the launch). ``first`` None: all rows."""
    if first is None:
        return rows
    return rows[(rows["as_of"] + pd.Timedelta(days=horizon_days)).to_numpy() >= first.to_datetime64()]


def bank_rows(
    cfg: Config,
    ws: Workspace,
    key: str,
    banks: list[str],
    cutoff: pd.Timestamp,
    n_test: int | None = None,
    budget: int | None = None,
) -> Iterator[BankRows]:
    """Each bank's rows for a pooled fit of ``key``, one bank after the other (a caller may stage or
    release a bank's rows before the next is retrieved).

    Args:
        cutoff: only label windows closed before it are fitted on.
        n_test: ``None`` (training): the latest ``training.test_months`` closed months are the
            test window; a number (backtest): the ``n_test`` months from ``cutoff`` on.
        budget: fitting rows retrieved per bank (default: the bank's share of
            ``training.pooled_max_rows``).
    """
    t = cfg.training
    share = bank_share(cfg, len(banks))
    for code in banks:
        bws = ws.for_bank(code)
        closed = closed_as_ofs(feature_as_ofs(bws), cutoff, t.horizon_days)
        if n_test is None:
            fit_ofs, test_ofs = split_months(closed, t.test_months, t.horizon_days)
            if len(fit_ofs) < MIN_FIT_MONTHS:
                yield BankRows(code, pd.DataFrame(), pd.DataFrame(), "", too_few_months(closed, fit_ofs, cfg, cutoff))
                continue
        else:
            fit_ofs, test_ofs = closed, test_as_ofs(bws, cutoff, t.horizon_days, n_test)
        win = window_id(test_ofs) if test_ofs else ""
        first = first_application(bws, loan_product(key, cfg.products[key]))
        if first is None:
            skip = Skip(
                zh="本行数据中没有该产品的任何申请：本行未开办该产品",
                en=f"the export holds no application of {loan_product(key, cfg.products[key])}: the bank does not "
                f"offer the product",
            )
            yield BankRows(code, pd.DataFrame(), pd.DataFrame(), win, skip)
            continue
        fit, te = _datasets(cfg, bws, [key], fit_ofs, test_ofs, max_rows=budget or share)[key]
        if fit.empty and te.empty:
            yield BankRows(code, fit, te, win, _no_candidates(bws, cfg.products[key]))
            continue
        n_pos = int(fit["label"].sum())
        log.info("%s: bank %s: %d fitting rows (%d uptakes), %d test rows", key, code, len(fit), n_pos, len(te))
        yield BankRows(code, fit.assign(**{BANK_COLUMN: code}), te.assign(**{BANK_COLUMN: code}), win, first=first)


def fit_pooled(cfg: Config, parts: list[BankRows], budget: int | None = None) -> PooledFit | Skip:
    """Fit the pooled model on the banks' fitting rows and calibrate it per bank.

    Args:
        budget: rows per bank in the fit (default: the bank's share of ``training.pooled_max_rows``);
            banks' rows beyond it are capped (:func:`cap_rows`).

    Returns:
        The fit and each bank's model, or a :class:`Skip` when the rows cannot be fitted.
    """
    t = cfg.training
    usable = [p for p in parts if p.skip is None and not p.fit.empty]
    if not usable:
        return Skip(zh="没有任何一家成员行有可用的候选客户", en="no member bank has candidates to fit on")
    share = budget or bank_share(cfg, len(parts))
    rows = pd.concat(
        [cap_rows(while_offered(p.fit, p.first, t.horizon_days), share) for p in usable], ignore_index=True
    )
    pos = int(rows["label"].sum())
    if rows["as_of"].nunique() < MIN_FIT_MONTHS or pos < t.min_uptakes:
        return Skip(
            zh=f"所有成员行合计仅有 {pos} 笔办理，至少需要 {t.min_uptakes} 笔",
            en=f"{pos} uptake(s) over {rows['as_of'].nunique()} month(s) in every bank's fitting rows together; "
            f"the recipe needs {t.min_uptakes} uptakes and {MIN_FIT_MONTHS} months",
        )
    feats = pooled_features(rows, usable[0].bank)
    try:
        fit = fit_rolling_parts(
            rows, feats, "label", "as_of", pooled_params(cfg), "weight", pd.Timedelta(days=t.horizon_days)
        )
    except ValueError as e:
        return Skip(zh=f"模型无法拟合：{e}", en=f"the model cannot be fitted: {e}")
    del rows
    banks = fit.rows[BANK_COLUMN].to_numpy()
    models, calibration = {}, {}
    for p in parts:
        own = banks == p.bank
        fold_pos = int(fit.design.y[fit.cross.idx][own[fit.cross.idx]].sum()) if fit.cross is not None else 0
        if fit.cross is not None and fold_pos >= t.min_bank_calibration_uptakes:
            cal, kind = calibrate_group(fit, own, fit.model.params.get("calibration", "platt")), "bank"
        else:
            cal, kind = fit.model.calibrator, "pooled"
        models[p.bank] = replace(
            fit.model, calibrator=cal, info={**fit.model.info, "calibration": kind, "calibration_uptakes": fold_pos}
        )
        calibration[p.bank] = (kind, fold_pos)
    ofs = fit.rows["as_of"]
    return PooledFit(fit, models, calibration, fit.model, (pd.Timestamp(ofs.min()), pd.Timestamp(ofs.max())))


def _bank_metrics(te: pd.DataFrame) -> dict[str, float]:
    """Metrics of one bank's scored test rows, with the AUC's standard error."""
    m = evaluate.metrics(te["label"], te["score"])
    m["auc_se"] = evaluate.auc_se(m["auc"], int(m["positives"]), int(m["n"] - m["positives"]))
    return m


def train_pooled(
    cfg: Config,
    ws: Workspace,
    key: str,
    banks: list[str],
    register: list[str] | None = None,
    cutoff: pd.Timestamp | None = None,
) -> list[ProductResult]:
    """Fit product ``key`` pooled over ``banks``, register and gate one version per bank (module docstring).

    Args:
        ws: the federation workspace (``ws.bank`` None).
        banks: member banks whose rows are fitted on (every bank, normally).
        register: banks that get a version (default: ``banks``).
        cutoff: label windows closed before it (default: the earliest export date of the banks).

    Returns:
        One :class:`ProductResult` per registered bank, ``product`` = ``key`` and ``bank`` set.
    """
    cutoff = pooled_cutoff(ws, banks, cutoff)
    parts = list(bank_rows(cfg, ws, key, banks, cutoff))
    return register_pooled(cfg, ws, key, banks, parts, fit_pooled(cfg, parts), register or banks, cutoff)


def pooled_cutoff(ws: Workspace, banks: list[str], cutoff: pd.Timestamp | None) -> pd.Timestamp:
    """Check that ``ws`` is a federation workspace, clean up after killed jobs, and return the
    cutoff of a pooled fit (default: the earliest export date of ``banks``).

    Raises:
        ConfigError: ``ws`` is a member bank's or a single bank's workspace.
    """
    if ws.bank is not None or not ws.banks():
        raise ConfigError(f"{ws.home}: a pooled model is trained on a federation workspace's member banks")
    recover(ws)
    return cutoff or min(export_date(ws.for_bank(b)) for b in banks)


def register_pooled(
    cfg: Config,
    ws: Workspace,
    key: str,
    banks: list[str],
    parts: list[BankRows],
    got: PooledFit | Skip,
    register: list[str],
    cutoff: pd.Timestamp,
    test_rows: Callable[[BankRows], pd.DataFrame] | None = None,
) -> list[ProductResult]:
    """Score each bank's test rows with its version of the pooled fit ``got``, then log the pooled
    run and register and gate a version for each bank of ``register`` (arguments as :func:`train_pooled`).

    Args:
        test_rows: a bank's full test rows (default ``p.test``); a caller that keeps them on disk
            reads them here, one bank at a time (``p.test`` then needs only the ``label`` column).
    """
    load = test_rows or (lambda p: p.test)
    results = []
    if isinstance(got, Skip):
        for p in parts:
            if p.bank in register:
                results.append(_bank_result(_skipped(ws.for_bank(p.bank), key, p.skip or got, p.window), p.bank))
        return results
    model = got.model
    scored = []
    for p in parts:
        if p.skip is None and not p.test.empty:
            p.extra["score"] = got.models[p.bank].predict_proba(load(p), num_threads=model.info["threads"])
            scored.append(pd.DataFrame({"label": p.test["label"].to_numpy(), "score": p.extra["score"]}))
    federation = _bank_metrics(pd.concat(scored, ignore_index=True)) if scored else {"auc": float("nan")}
    win = next((p.window for p in parts if p.window), "")
    run_id = registry.start_pooled_run(
        ws,
        key,
        model.params
        | {f"fit_{k}": v for k, v in model.info.items()}
        | {
            "cutoff": f"{cutoff:%Y-%m-%d}",
            "banks": ",".join(banks),
            "backtest_window": win,
            "pooled_calibrator": repr(model.calibrator),
        },
    )
    table, metrics = [], {f"{k}.federation": v for k, v in federation.items()}
    for p in parts:
        if p.bank not in register:
            continue
        bws = ws.for_bank(p.bank)
        if p.skip is not None or p.test.empty:
            skip = p.skip or Skip(zh="检验月份内无候选客户，模型无法评估", en="no candidates in the test months")
            r = _skipped(bws, key, skip, p.window)
            table.append({"bank": p.bank, "alias": "skipped", "reason": r.reason})
            results.append(_bank_result(r, p.bank))
            continue
        r = _register_bank(cfg, bws, key, got, p, load(p).assign(score=p.extra.pop("score")), federation, run_id)
        kind, cal_pos = got.calibration[p.bank]
        m = r.metrics
        for name in ("auc", "auc_se", "positives", "n", "ece", "brier"):
            metrics[f"{name}.{p.bank}"] = m.get(name, float("nan"))
        table.append(
            {
                "bank": p.bank,
                "window": p.window,
                "n": m.get("n"),
                "uptakes": m.get("positives"),
                "auc": m.get("auc"),
                "auc_se": m.get("auc_se"),
                "ece": m.get("ece"),
                "brier": m.get("brier"),
                "fit_rows": len(p.fit),
                "fit_uptakes": int(p.fit["label"].sum()),
                "calibration": kind,
                "calibration_uptakes": cal_pos,
                "calibrator": repr(got.models[p.bank].calibrator),
                "version": r.version,
                "alias": r.alias,
                "reason": r.reason,
            }
        )
        results.append(r)
    registry.end_pooled_run(ws, run_id, metrics, pd.DataFrame(table))
    return results


def _bank_result(r: ProductResult, bank: str) -> ProductResult:
    r.bank = bank
    return r


def _register_bank(
    cfg: Config, bws: Workspace, key: str, got: PooledFit, p: BankRows, te: pd.DataFrame, federation: dict, run_id: str
) -> ProductResult:
    """Register bank ``p.bank``'s version of the pooled model and run its gate (``te``: its scored test rows)."""
    model = got.models[p.bank]
    m = _bank_metrics(te)
    tags = {registry.TAG_SCOPE: "pooled", registry.TAG_POOLED_RUN: run_id}
    out = bws.train_outputs(key)
    out.mkdir(parents=True, exist_ok=True)
    plots = evaluate.save_plots(te["label"], te["score"], model.importance(), out, title=f"{p.bank} {key} pooled")
    fit_ofs = got.fit_range
    version = registry.log_and_register(
        bws,
        key,
        model,
        m,
        params=model.params | {"scope": "pooled", "pooled_run": run_id, "calibration": model.info["calibration"]},
        plots=plots,
        feature_info={"feature_service": feature_service(key, cfg.products[key])},
        as_of_range=(f"{pd.Timestamp(fit_ofs[0]):%Y-%m-%d}", f"{pd.Timestamp(fit_ofs[-1]):%Y-%m-%d}"),
        backtest_window=p.window,
        input_example=te.head(5),
        tags=tags,
    )
    if int(m["positives"]) in (0, int(m["n"])):
        d = registry.promote_unevaluable(
            bws, key, version, f"no uptake in this bank's window {p.window}", federation, cfg.training.auc_floor
        )
    else:
        leak = m["auc"] > cfg.training.leak_auc
        d = registry.promote(
            bws, key, version, m, cfg.training.auc_floor, leak, window_rows=te, horizon_days=cfg.training.horizon_days
        )
    return ProductResult(key, version, d.alias, f"pooled: {d.reason}", m, p.window, bank=p.bank)


def backtest_pooled(
    cfg: Config,
    ws: Workspace,
    as_of: pd.Timestamp,
    key: str,
    banks: list[str],
    n_test: int = 4,
    oracles: dict[str, pd.DataFrame] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """The pooled model and each bank's own model (today's recipe), both fitted with cutoff
    ``as_of`` and scored on the same test rows of each bank; nothing is registered.

    Each bank's rows are retrieved once with the per-bank budget (``training.max_rows``): its own
    model fits on them; the pooled fit takes the bank's share of ``training.pooled_max_rows`` of
    them (:func:`cap_rows`).

    Returns:
        Per bank, its test rows (``customer_id``, ``as_of``, ``label``, ``score_pooled``,
        ``score_bank``: NaN where the bank's own model cannot be trained, and the oracle's
        ``p_true``/``p_asof`` with ``oracles``); and per bank a summary (fitting uptakes, the
        calibration used, why the bank's own model or the bank was skipped).
    """
    from training.pipeline import with_oracle

    parts = list(bank_rows(cfg, ws, key, banks, as_of, n_test, budget=cfg.training.max_rows))
    info: dict[str, dict] = {}
    for p in parts:
        if p.skip is not None or p.test.empty:
            info[p.bank] = {"skip": (p.skip.en if p.skip else "no test rows")}
            continue
        own = trainability(cfg, ws.for_bank(p.bank), key, p.fit, p.test) or _fit_product(cfg, p.fit, p.test)
        bank_score = np.full(len(p.test), np.nan)
        if isinstance(own, Skip):
            info[p.bank] = {"bank_model": own.en}
        else:
            bank_score = own[1]["score"].to_numpy()
            info[p.bank] = {"bank_model": "trained"}
        info[p.bank] |= {"fit_uptakes": int(p.fit["label"].sum()), "fit_rows": len(p.fit)}
        p.extra["score_bank"] = bank_score
        # fit_pooled's cap, applied now to free the rows its own model needed
        p.fit = cap_rows(while_offered(p.fit, p.first, cfg.training.horizon_days), bank_share(cfg, len(banks)))
    got = fit_pooled(cfg, parts)
    if isinstance(got, Skip):
        raise NbpError(f"{key}: the pooled model cannot be fitted: {got.en}")
    out = {}
    for p in parts:
        if p.bank not in info or "skip" in info[p.bank]:
            continue
        te = p.test[["customer_id", "as_of", "label"]].assign(
            score_pooled=got.models[p.bank].predict_proba(p.test, num_threads=got.model.info["threads"]),
            score_bank=p.extra["score_bank"],
        )
        if oracles and p.bank in oracles:
            te = with_oracle(te, oracles[p.bank], key)
        info[p.bank] |= dict(zip(("calibration", "calibration_uptakes"), got.calibration[p.bank], strict=True))
        out[p.bank] = te
    return out, info


def retrain_federation(cfg: Config, ws: Workspace, banks: list[str], reuse: bool = True) -> tuple[str, list[str]]:
    """The monthly job of a federation workspace, for the member banks ``banks``.

    Each bank's features are published and its ``scope: bank`` products trained, bank by bank
    (with ``reuse``, each reusing its champion's setting where :mod:`training.setting_search` allows);
    then each pooled product is fitted once on every member bank and registered and gated for
    ``banks``; then each bank is scored with its champions. With ``compute.engine: spark`` every
    bank's and pooled product's fit runs in one Spark job once all banks are published
    (:class:`training.spark_fit.FederationJob`). A bank that fails is reported and left out of
    the later steps; the others go on.

    Returns:
        The report for the terminal and the banks that failed.
    """
    from features.store import close_store, publish
    from training.pipeline import score_and_report, train

    keys = list(cfg.products)
    pooled = [k for k in keys if cfg.scope(k) == "pooled"]
    own = [k for k in keys if k not in pooled]
    spark = cfg.compute.engine == "spark"
    done, failed, lines = {}, [], []
    recover(ws)
    for code in banks:
        bws = ws.for_bank(code)
        try:
            done[code] = (publish(cfg, bws), train(cfg, bws, products=own, reuse=reuse) if own and not spark else [])
        except NbpError as e:
            lines.append(f"bank {code}: failed: {e}")
            failed.append(code)
        close_store(bws)
    if spark:
        from training.spark_fit import FederationJob

        fed = FederationJob(cfg, ws, list(done), own, pooled, keep_going=True, reuse=reuse).run()
        for code, why in fed.failed.items():
            lines.append(f"bank {code}: failed: {why}")
            failed.append(code)
            del done[code]
        for code, results in fed.banks.items():
            done[code][1].extend(results)
        for r in (r for results in fed.pooled.values() for r in results):
            done[r.bank][1].append(r)
    for key in pooled if not spark else []:
        for r in train_pooled(cfg, ws, key, ws.banks(), [c for c in banks if c in done]):
            done[r.bank][1].append(r)
    for code, (pub, results) in done.items():
        lines.append(f"bank {code}: models: " + ", ".join(f"{k} ({cfg.scope(k)})" for k in keys))
        try:
            lines.append(score_and_report(cfg, ws.for_bank(code), pub, results))
        except NbpError as e:
            lines.append(f"bank {code}: failed: {e}")
            failed.append(code)
        close_store(ws.for_bank(code))
    return "\n".join(lines), failed
