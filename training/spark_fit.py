"""Training's fitting step on Spark (``compute.engine: spark``): every fit of a job in one grouped job.

The driver prepares each member bank's rows as :func:`training.pipeline.prepare` does for DuckDB
and stages them as Parquet in the job's scratch folder (:mod:`nbp.jobs`), one bank's frames in
memory at a time; a pooled product's rows (already a bounded sample: ``training.pooled_max_rows``,
every uptake kept, negatives sampled per bank with weights) are staged bank by bank the same way.
Spark reads the staged rows and runs ``groupBy(bank, product).applyInPandas``: each group is one
bank's product, fitted by the same recipe as on DuckDB (:func:`training.pipeline._fit_product`),
or one pooled product, fitted by :func:`training.pooled.fit_pooled` on one executor. A group
returns its model pickled with its test scores and metrics; the driver then logs, registers and
gates each model bank by bank, as :func:`training.pipeline.register` and
:func:`training.pooled.register_pooled` do for DuckDB. Fits are seeded and their thread counts
fixed, so both engines register the same models (``docs/decisions/020-training-on-spark.md``).

On a cluster the job's scratch folder (under ``$NBP_HOME``) must be a path every executor reads.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbp import jobs
from nbp.config import Config
from nbp.errors import NbpError
from nbp.workspace import Workspace
from training.model import FittedModel
from training.pipeline import Prepared, ProductResult, Skip, _fit_product, prepare, register
from training.pooled import BankRows, PooledFit, bank_rows, fit_pooled, pooled_cutoff, register_pooled

log = logging.getLogger(__name__)

GROUP, PRODUCT, PART, ROW, PAYLOAD = "nbp_group", "nbp_product", "nbp_part", "nbp_row", "nbp_payload"
"""Columns of the staged rows: the group (a bank, or :data:`POOLED`), the product, the part (``fit``,
``test``, or a pooled fit's bank) and the row's place in its frame; and the result's payload."""
STAGED = (GROUP, PRODUCT, PART, ROW)
POOLED = "*"  # the group of a pooled product (bank codes are letters and digits)

Fitted = tuple[FittedModel, pd.DataFrame, dict[str, float]] | Skip


@dataclass(frozen=True)
class Layout:
    """A staged frame's own columns, in order, and their pandas dtypes (restored after Spark)."""

    columns: list[str]
    dtypes: dict[str, Any]


def _portable(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` in types every staged file agrees on, whatever its bank or product: numbers and
    flags as float64 (exact for integers below 2**53), text as strings, times as they are."""
    out = {}
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            out[c] = col
        elif pd.api.types.is_numeric_dtype(col.dtype):  # bool included
            out[c] = col.astype("float64")
        else:
            out[c] = col.astype("string")
    return pd.DataFrame(out, index=df.index)


def _spark_type(dtype: Any) -> str:
    """The Spark SQL type of a column of :func:`_portable`'s output."""
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp" if getattr(dtype, "tz", None) is not None else "timestamp_ntz"
    return "double" if pd.api.types.is_float_dtype(dtype) else "string"


def restore(df: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """A staged frame as it was before staging: rows in their order, its own columns and dtypes."""
    df = df.sort_values(ROW, kind="stable") if ROW in df.columns else df
    df = df[layout.columns].reset_index(drop=True)
    for c, dtype in layout.dtypes.items():
        if df[c].dtype == dtype:
            continue
        if pd.api.types.is_object_dtype(dtype):
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        else:
            df[c] = df[c].astype(dtype)
    return df


@dataclass
class Stage:
    """A job's staged rows (``rows/``: what Spark reads; ``test/``: pooled test rows, read back by the
    driver only) and the fitted groups' payloads (``models/``), in the job's scratch folder."""

    ws: Workspace
    root: Path = field(init=False)
    tasks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    on_spark: set[tuple[str, str]] = field(default_factory=set)  # the tasks with rows in ``rows/``
    schema: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STAGED[:3], "string") | {ROW: "bigint"})

    def __post_init__(self) -> None:
        self.root = jobs.scratch(self.ws, "spark-fit")
        for sub in ("rows", "test", "models"):
            (self.root / sub).mkdir(exist_ok=True)

    def _file(self, sub: str, task: tuple[str, str], part: str) -> Path:
        return self.root / sub / f"{list(self.tasks).index(task)}.{part}.parquet"

    def _write(self, sub: str, task: tuple[str, str], part: str, df: pd.DataFrame) -> Layout:
        staged = pd.DataFrame({GROUP: task[0], PRODUCT: task[1], PART: part, ROW: np.arange(len(df))})
        staged = pd.concat([staged, _portable(df).reset_index(drop=True)], axis=1)
        staged.to_parquet(self._file(sub, task, part), index=False)
        if sub == "rows":
            self.on_spark.add(task)
            for c, dtype in staged.dtypes.items():
                self.schema.setdefault(str(c), _spark_type(dtype))
        return Layout(list(df.columns), dict(df.dtypes))

    def add_bank(self, bank: str, prep: Prepared) -> Prepared:
        """Stage each product of ``prep`` (fitting and test rows) and release them from ``prep``."""
        for key, (rows, te) in prep.data.items():
            task = (bank, key)
            plan = prep.plans.get(key)
            self.tasks[task] = {"kind": "bank", "grid": plan.grid if plan is not None else None}
            self.tasks[task] |= {
                "fit": self._write("rows", task, "fit", rows),
                "test": self._write("rows", task, "test", te),
            }
        prep.data = {}
        return prep

    def add_pooled(self, key: str, parts: Iterable[BankRows]) -> list[BankRows]:
        """Stage each bank's rows of pooled product ``key`` as they come; each part keeps only its
        labels (for counts), its test rows are read back with :meth:`pooled_test`."""
        task = (POOLED, key)
        self.tasks[task] = {"kind": "pooled", "banks": []}
        out = []
        for p in parts:
            fit = self._write("rows", task, p.bank, p.fit) if not p.fit.empty else None
            test = self._write("test", task, p.bank, p.test) if not p.test.empty else None
            self.tasks[task]["banks"].append((p.bank, p.window, p.skip, p.first, fit))
            self.tasks[task].setdefault("test", {})[p.bank] = test
            p.fit, p.test = p.fit[["label"]] if fit else p.fit, p.test[["label"]] if test else p.test
            out.append(p)
        return out

    def fit(self, cfg: Config) -> None:
        """Fit every staged group in one Spark job; each group's payload is written to ``models/``."""
        started = time.perf_counter()
        for i, (task, spec) in enumerate(self.tasks.items()):
            if task not in self.on_spark:  # a pooled product no bank has rows for: its Skip, here
                got = fit_pooled_group(cfg, spec, pd.DataFrame({PART: []}))
                (self.root / "models" / f"{i}.pkl").write_bytes(pickle.dumps(got))
        if not self.on_spark:
            return
        from nbp.spark import session

        spark = session(cfg)
        ddl = ", ".join(f"`{c}` {t}" for c, t in self.schema.items())  # the union of the files' columns, no inference
        rows = spark.read.schema(ddl).parquet(str(self.root / "rows"))
        schema = f"{GROUP} string, {PRODUCT} string, {PAYLOAD} binary"
        # as many partitions as groups (hashed: two groups may share one), so the fits spread over
        # the executors; adaptive execution keeps an explicit partition count. collect(), not
        # toLocalIterator(): the latter runs one partition after the other.
        fitted = rows.repartition(len(self.on_spark), GROUP, PRODUCT).groupBy(GROUP, PRODUCT)
        done = 0
        for r in fitted.applyInPandas(fit_group(cfg, self.tasks), schema=schema).collect():
            task = (r[GROUP], r[PRODUCT])
            (self.root / "models" / f"{list(self.tasks).index(task)}.pkl").write_bytes(r[PAYLOAD])
            done += 1
        if done != len(self.on_spark):
            raise NbpError(f"spark: {done} of {len(self.on_spark)} fits came back from the grouped job")
        log.info(
            "spark: %d fit(s) (bank × product, pooled) in one grouped job, %.1f s", done, time.perf_counter() - started
        )

    def result(self, task: tuple[str, str]) -> Any:
        """What group ``task`` returned (:func:`fit_group`)."""
        return pickle.loads((self.root / "models" / f"{list(self.tasks).index(task)}.pkl").read_bytes())

    def fitted(self, bank: str) -> dict[str, Fitted]:
        """Bank ``bank``'s fits as :func:`training.pipeline._fit_all` returns them: model, scored test rows, metrics."""
        out: dict[str, Fitted] = {}
        for task in [t for t in self.tasks if t[0] == bank]:
            key = task[1]
            got = self.result(task)
            if isinstance(got, Skip):
                out[key] = got
                continue
            model, scores, m = got
            te = restore(pd.read_parquet(self._file("rows", task, "test")), self.tasks[task]["test"])
            out[key] = (model, te.assign(score=scores), m)
        return out

    def pooled_test(self, key: str) -> Callable[[BankRows], pd.DataFrame]:
        """A reader of each bank's test rows of pooled product ``key`` (for :func:`register_pooled`)."""
        task = (POOLED, key)

        def read(p: BankRows) -> pd.DataFrame:
            return restore(pd.read_parquet(self._file("test", task, p.bank)), self.tasks[task]["test"][p.bank])

        return read

    def release(self) -> None:
        jobs.release(self.ws, "spark-fit")


def fit_group(cfg: Config, tasks: dict[tuple[str, str], dict[str, Any]]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The function of the grouped job: one group's staged rows in, one row out (group, product,
    pickled result: ``(model, test scores, metrics)`` or a :class:`Skip` for a bank's product; a
    :class:`PooledFit` without its rows (:meth:`PooledFit.slim`) or a Skip for a pooled product)."""

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        task = (str(pdf[GROUP].iat[0]), str(pdf[PRODUCT].iat[0]))
        spec = tasks[task]
        if spec["kind"] == "bank":
            got = fit_bank(cfg, spec, pdf)
        else:
            got = fit_pooled_group(cfg, spec, pdf)
        return pd.DataFrame({GROUP: [task[0]], PRODUCT: [task[1]], PAYLOAD: [pickle.dumps(got)]})

    return fit


def fit_bank(cfg: Config, spec: dict[str, Any], pdf: pd.DataFrame) -> Any:
    """One bank's product: :func:`training.pipeline._fit_product` on the restored rows."""
    part = pdf[PART].to_numpy()
    rows = restore(pdf[part == "fit"], spec["fit"])
    te = restore(pdf[part == "test"], spec["test"])
    del pdf
    got = _fit_product(cfg, rows, te, spec.get("grid"))
    if isinstance(got, Skip):
        return got
    model, scored, m = got
    return model, scored["score"].to_numpy(), m


def fit_pooled_group(cfg: Config, spec: dict[str, Any], pdf: pd.DataFrame) -> PooledFit | Skip:
    """One pooled product: :func:`training.pooled.fit_pooled` on every bank's restored rows, in bank order."""
    part = pdf[PART].to_numpy()
    parts = [
        BankRows(
            bank, restore(pdf[part == bank], layout) if layout else pd.DataFrame(), pd.DataFrame(), win, skip, first
        )
        for bank, win, skip, first, layout in spec["banks"]
    ]
    del pdf, part
    got = fit_pooled(cfg, parts)
    return got if isinstance(got, Skip) else got.slim()


def fit_banks(cfg: Config, ws: Workspace, preps: dict[str, Prepared]) -> dict[str, dict[str, Fitted]]:
    """Fit every product of ``preps`` (bank -> its prepared job) in one Spark job.

    Returns:
        Per bank, per product: the model, its scored test rows and metrics, or a Skip.
    """
    stage = Stage(ws)
    try:
        for bank, prep in preps.items():
            stage.add_bank(bank, prep)
        stage.fit(cfg)
        return {bank: stage.fitted(bank) for bank in preps}
    finally:
        stage.release()


@dataclass
class FederationRun:
    """What :class:`FederationJob` produced."""

    banks: dict[str, list[ProductResult]] = field(default_factory=dict)  # bank -> its scope-bank products
    pooled: dict[str, list[ProductResult]] = field(default_factory=dict)  # pooled product -> one result per bank
    failed: dict[str, str] = field(default_factory=dict)  # bank -> why it failed (``keep_going``)


class FederationJob:
    """``nbp train`` of a federation on Spark in three phases (:meth:`run` runs them):
    :meth:`prepare` each bank and stage its rows (its Feast store closed before the next bank),
    then every pooled product's rows; :meth:`fit` every group in one grouped Spark job;
    :meth:`register` each bank's models, bank after bank, then the pooled ones.

    Args:
        banks: the member banks whose ``own`` products are trained and that get a version of each
            ``pooled`` product (a pooled fit reads every member bank's rows).
        keep_going: a bank whose rows cannot be prepared or registered is reported in
            ``failed`` and left out of the rest (the monthly job); else its error stops the job.
        reuse: each bank's products reuse their champion's setting where
            :mod:`training.setting_search` allows (the monthly job); else every setting is searched.
    """

    def __init__(
        self,
        cfg: Config,
        ws: Workspace,
        banks: list[str],
        own: list[str],
        pooled: list[str],
        cutoff: pd.Timestamp | None = None,
        keep_going: bool = False,
        reuse: bool = False,
    ) -> None:
        self.cfg, self.ws, self.banks, self.own, self.pooled = cfg, ws, banks, own, pooled
        self.cutoff, self.keep_going, self.reuse = cutoff, keep_going, reuse
        self.stage = Stage(ws)
        self.preps: dict[str, Prepared] = {}
        self.parts: dict[str, list[BankRows]] = {}
        self.pooled_cutoff: pd.Timestamp | None = None
        self.out = FederationRun()

    def _failed(self, code: str, e: NbpError) -> None:
        if not self.keep_going:
            raise e
        log.error("bank %s: failed: %s", code, e)
        self.out.failed[code] = str(e)

    def prepare(self) -> None:
        """Retrieve and stage every bank's rows, one bank after the other, then the pooled products'."""
        from features.store import close_store

        for code in self.banks if self.own else []:
            bws = self.ws.for_bank(code)
            try:
                self.preps[code] = self.stage.add_bank(code, prepare(self.cfg, bws, self.cutoff, self.own, self.reuse))
            except NbpError as e:
                self._failed(code, e)
            finally:
                close_store(bws)
        if self.pooled:
            members = self.ws.banks()
            self.pooled_cutoff = at = pooled_cutoff(self.ws, members, self.cutoff)
            for key in self.pooled:
                self.parts[key] = self.stage.add_pooled(key, bank_rows(self.cfg, self.ws, key, members, at))

    def fit(self, cfg: Config | None = None) -> None:
        """Every staged fit in one grouped Spark job (``cfg``: the session's, default the job's)."""
        self.stage.fit(cfg or self.cfg)

    def register(self) -> FederationRun:
        """Log, register and gate every fitted model, bank after bank, then each pooled product."""
        for code, prep in self.preps.items():
            try:
                self.out.banks[code] = register(self.cfg, self.ws.for_bank(code), prep, self.stage.fitted(code))
            except NbpError as e:
                self._failed(code, e)
        members = [c for c in self.banks if c not in self.out.failed]
        for key in self.pooled:
            got = self.stage.result((POOLED, key))
            assert self.pooled_cutoff is not None  # set by prepare
            self.out.pooled[key] = register_pooled(
                self.cfg,
                self.ws,
                key,
                self.ws.banks(),
                self.parts[key],
                got,
                members,
                self.pooled_cutoff,
                self.stage.pooled_test(key),
            )
        return self.out

    def run(self) -> FederationRun:
        """:meth:`prepare`, :meth:`fit`, :meth:`register`; the staged rows are removed at the end."""
        try:
            self.prepare()
            self.fit()
            return self.register()
        finally:
            self.stage.release()
