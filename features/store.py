"""The only caller of Feast: apply, materialise, historical and online retrieval.

The store is built programmatically (``FeatureStore(config=RepoConfig(...))``):
registry ``$NBP_HOME/feast/registry.db``, offline store
:class:`features.offline.ParquetDuckDBOfflineStore` (Feast's DuckDB offline store with a
one-statement point-in-time join over the Parquet tables; it keeps every entity row), online
store SQLite ``$NBP_HOME/feast/online_store.db`` or Redis (``features.online_store``).

Values come back as float64 from both :func:`historical` and :func:`online`
(NaN = unknown; categorical codes are whole numbers), so training and serving see
the same dtypes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from bankexport.spec import BANK_COLUMN
from features import build as fbuild
from features.catalog import BY_NAME, CATALOG, MEMBER_CATALOG, modules
from features.schema import EVENT_TS, JOIN_KEY, Feature, feature_service_name
from nbp import jobs, telemetry
from nbp.config import Config
from nbp.errors import FeatureStoreError
from nbp.log import quiet_warnings
from nbp.sqltext import ident, lit, timestamp
from nbp.workspace import Workspace

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyspark.sql import DataFrame as SparkFrame

log = logging.getLogger(__name__)

PROJECT = "nbp"
REGISTRY_STORE = "features.registry_file.AtomicFileRegistryStore"  # registry.db is replaced whole
_STORES: dict[tuple[str, str, str], FeatureStore] = {}
_SERVICES: dict[tuple[str, str, str, str], object] = {}  # FeatureService objects, cleared by apply()


def _key(cfg: Config, ws: Workspace) -> tuple[str, str, str]:
    return (str(ws.feast_dir), cfg.features.online_store, cfg.features.redis_connection)


def project(ws: Workspace) -> str:
    """The Feast project: ``nbp``, or ``nbp_<bank>`` for a member bank, so that banks sharing one Redis
    never share a key (Feast allows letters, digits and ``_``: ``_`` is written ``_u`` and ``-`` ``_d``)."""
    if ws.bank is None:
        return PROJECT
    return f"{PROJECT}_" + ws.bank.replace("_", "_u").replace("-", "_d")


def offline_config(ws: Workspace) -> dict:
    """The offline store: :class:`features.offline.ParquetDuckDBOfflineStore` (Feast's DuckDB
    store with a one-statement point-in-time join), DuckDB memory capped like the build."""
    import os

    from features.offline import TYPE

    if os.environ.get("NBP_FEAST_OFFLINE") == "duckdb":  # Feast's stock DuckDB store (baseline, comparisons)
        return {"type": "duckdb"}
    return {
        "type": TYPE,
        "memory_limit": fbuild.DUCKDB_MEMORY_LIMIT,
        "temp_directory": str(ws.job_scratch(jobs.tag()) / "duckdb-feast"),
    }  # removed by nbp.jobs


def repo_settings(cfg: Config, ws: Workspace) -> dict:
    """The Feast repo's settings as ``feature_store.yaml`` holds them (one source for the
    ``RepoConfig`` nbp builds and the file Feast's own CLI opens)."""
    if cfg.features.online_store == "redis":
        online = {"type": "redis", "connection_string": cfg.features.redis_connection}
    else:
        from features.online import TYPE

        online = {"type": TYPE, "path": str(ws.online_store_db)}
    return {
        "project": project(ws),
        "provider": "local",
        "registry": {
            "path": str(ws.feast_registry),
            "cache_ttl_seconds": 60,
            "registry_store_type": REGISTRY_STORE,
        },
        "offline_store": offline_config(ws),
        "online_store": online,
        "entity_key_serialization_version": 3,
    }


def repo_config(cfg: Config, ws: Workspace):  # noqa: ANN201 (feast type imported lazily)
    """The Feast ``RepoConfig`` of a workspace."""
    from feast.repo_config import RegistryConfig, RepoConfig

    settings = repo_settings(cfg, ws)
    registry = RegistryConfig(**settings.pop("registry"))
    return RepoConfig(**settings, registry=registry, repo_path=ws.feast_dir)


def write_feature_store_yaml(cfg: Config, ws: Workspace) -> Path:
    """Write the repo's ``feature_store.yaml`` beside its registry, so Feast's own tools open it
    (``PYTHONPATH=<checkout> feast -c <feast dir> feature-views list``; nbp's store classes are
    imported from the checkout). A job's DuckDB spill folder is left out: it is the job's own."""
    import yaml

    settings = repo_settings(cfg, ws)
    settings["offline_store"].pop("temp_directory", None)
    head = (
        "# Written by `nbp features` (Feast apply); nbp builds the same settings in code\n"
        "# (features/store.py: repo_settings). Feast's CLI: PYTHONPATH=<nbp checkout> feast -c <this folder> ...\n"
    )
    with jobs.atomic_write(ws.feast_yaml) as tmp:
        tmp.write_text(head + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return ws.feast_yaml


def get_store(cfg: Config, ws: Workspace) -> FeatureStore:
    """The workspace's FeatureStore, created once per process (importing Feast takes seconds)."""
    key = _key(cfg, ws)
    if key not in _STORES:
        telemetry.disable()
        from feast import FeatureStore

        quiet_warnings()  # importing feast put a "once" filter for all deprecations first
        ws.feast_dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger("feast.infra.registry.registry").setLevel(logging.WARNING)
        _STORES[key] = FeatureStore(repo_path=str(ws.feast_dir), config=repo_config(cfg, ws))
    return _STORES[key]


def close_store(ws: Workspace) -> None:
    """Forget the workspace's cached Feast store and services and hand the freed heap back
    (:func:`nbp.jobs.release_memory`), so a job that goes on to another member bank neither keeps
    this bank's registry and connections nor starts the next bank on its leftovers
    (``docs/decisions/019-federation-memory.md``)."""
    for cache in (_STORES, _SERVICES):
        for key in [k for k in cache if k[0] == str(ws.feast_dir)]:
            del cache[key]
    jobs.release_memory()


def service_names(cfg: Config) -> dict[str, str]:
    """Product key -> feature service name (``products.<key>.feature_service`` or ``<key>_v1``)."""
    return {k: p.feature_service or feature_service_name(k) for k, p in cfg.products.items()}


def apply(cfg: Config, ws: Workspace) -> None:
    """Register the entity, feature views and feature services (idempotent)."""
    from features.repo.definitions import objects

    t0 = time.perf_counter()
    get_store(cfg, ws).apply(objects(ws, service_names(cfg)))
    write_feature_store_yaml(cfg, ws)
    _SERVICES.clear()
    log.info(
        "feast apply: %d feature views, %d feature services, %.1f s",
        len(modules(ws.bank is not None)),
        len(cfg.products),
        time.perf_counter() - t0,
    )


def _utc(d: date | datetime) -> datetime:
    dt = d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _materialize_columnar(fs: FeatureStore, start: datetime, end: datetime, write: object = None) -> int:
    """The workspace's offline store (:mod:`features.offline`) pulls each view's latest rows in
    ``[start, end]``; ``write(view, rows)`` (default: the columnar online store's) writes them;
    the registry records the interval.

    The next view's pull (DuckDB, outside the GIL) runs in a thread while this view is written
    to SQLite, so the two cores overlap; at most two views' rows are held at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    provider = fs._get_provider()
    offline, online_store = provider.offline_store, provider.online_store
    views = fs.list_feature_views()

    def pull(fv: object) -> object:
        return offline.pull_latest_from_table_or_query(
            config=fs.config,
            data_source=fv.batch_source,
            join_key_columns=[JOIN_KEY],
            feature_name_columns=[f.name for f in fv.features],
            timestamp_field=EVENT_TS,
            created_timestamp_column=None,
            start_date=start,
            end_date=end,
        ).to_arrow()

    if write is None:
        write = lambda fv, table: online_store.write_arrow(fs.config, fv, table, JOIN_KEY, EVENT_TS)  # noqa: E731
    n = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(pull, views[0]) if views else None
        for i, fv in enumerate(views):
            table = pending.result()
            pending = pool.submit(pull, views[i + 1]) if i + 1 < len(views) else None
            n = max(n, write(fv, table))
            del table
            fs.registry.apply_materialization(fv, fs.project, start, end)
    return n


def materialize(cfg: Config, ws: Workspace, as_of: date | None = None) -> date:
    """Load the feature rows of one as-of (default: the latest built) into the online store.

    SQLite (default) takes the columnar fast path (:mod:`features.online`); Redis is loaded in
    Feast's layout by :mod:`features.redis_bulk`, from Spark's executors with
    ``compute.engine: spark``, else from this process.

    Returns:
        The as-of date materialised.
    """
    when = as_of or max(fbuild.built_as_of(ws))
    t0 = time.perf_counter()
    start, end = _utc(when), _utc(when) + timedelta(seconds=1)
    fs = get_store(cfg, ws)
    if cfg.features.online_store == "sqlite":
        n = _materialize_columnar(fs, start, end)
    elif cfg.compute.engine == "spark":
        from features import redis_bulk
        from nbp.spark import session

        n = redis_bulk.load_spark(fs, session(cfg), start, end)
    else:
        from features import redis_bulk

        with redis_bulk.Writer(redis_bulk.target(fs)) as w:
            n = _materialize_columnar(fs, start, end, lambda fv, table: w.write(redis_bulk.layout(fs, fv), table))
    log.info("online store: %s customers written", f"{n:,}")
    log.info(
        "materialised as-of %s into the %s online store, %.1f s",
        when,
        cfg.features.online_store,
        time.perf_counter() - t0,
    )
    return when


def _refs(cfg: Config, ws: Workspace, feature_service: str) -> object:
    """The FeatureService object, from the registry cache (a fresh read would drop Feast's
    per-service resolution cache and cost most of an online request)."""
    key = (*_key(cfg, ws), feature_service)
    if key in _SERVICES:
        return _SERVICES[key]
    store = get_store(cfg, ws)
    try:
        _SERVICES[key] = store.get_feature_service(feature_service, allow_cache=True)
        return _SERVICES[key]
    except Exception as e:  # feast raises its own FeatureServiceNotFoundException
        raise FeatureStoreError(
            f"feature service {feature_service!r}: not in the Feast registry at "
            f"{ws.feast_dir} ({type(e).__name__}); run `nbp features`"
        ) from e


def _entity_rows(entity_df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The entity rows as Feast takes them (string ids, UTC timestamps), and whether they were naive."""
    missing = {JOIN_KEY, EVENT_TS} - set(entity_df.columns)
    if missing:
        raise FeatureStoreError(f"entity_df: column(s) {sorted(missing)} missing (need {JOIN_KEY}, {EVENT_TS})")
    ent = entity_df[[JOIN_KEY, EVENT_TS]].copy()
    ts = pd.to_datetime(ent[EVENT_TS])
    naive = ts.dt.tz is None
    ent[EVENT_TS] = ts.dt.tz_localize("UTC") if naive else ts.dt.tz_convert("UTC")
    ent[JOIN_KEY] = ent[JOIN_KEY].astype(str)
    return ent, naive


def _engine(cfg: Config) -> AbstractContextManager:
    """Where the point-in-time join runs: DuckDB in process, or Spark with ``compute.engine: spark``
    (the offline store runs the same statement there; Feast still resolves the views and TTLs)."""
    if cfg.compute.engine != "spark":
        return nullcontext()
    from features.offline import on_spark
    from nbp.spark import session

    return on_spark(session(cfg))


def _retrieve(cfg: Config, ws: Workspace, entity_df: pd.DataFrame, features: object) -> pd.DataFrame:
    ent, naive = _entity_rows(entity_df)
    t0 = time.perf_counter()
    with _engine(cfg):
        job = get_store(cfg, ws).get_historical_features(entity_df=ent, features=features)
        out = _arrow_frame(job.to_arrow())
    # Arrow's allocator keeps the freed result for reuse; nothing reuses it after a
    # retrieval, so hand it back (docs/decisions/009e-arrow-memory-after-retrieval.md)
    pa.default_memory_pool().release_unused()
    if len(out) != len(ent):
        raise FeatureStoreError(
            f"historical retrieval: asked {len(ent):,} entity rows, Feast returned "
            f"{len(out):,}; check the feature tables ({ws.features_dir})"
        )
    if naive:
        out[EVENT_TS] = pd.to_datetime(out[EVENT_TS]).dt.tz_convert(None).astype("datetime64[us]")
    feats = [c for c in out.columns if c not in (JOIN_KEY, EVENT_TS)]
    log.info("historical: %s rows × %d features, %.1f s", f"{len(out):,}", len(feats), time.perf_counter() - t0)
    return out


def _arrow_frame(table: pa.Table) -> pd.DataFrame:
    """A retrieval's Arrow table as pandas: the entity columns as they are, the features cast
    to one float64 block (null = NaN). Cheaper than Feast's ``to_df`` followed by a cast: the
    features are converted once, and later ``frame[features].to_numpy()`` is a plain copy."""
    feats = [c for c in table.column_names if c not in (JOIN_KEY, EVENT_TS)]
    values = np.empty((table.num_rows, len(feats)), dtype=np.float64, order="F")  # columns contiguous
    for j, c in enumerate(feats):
        values[:, j] = table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False)
    keys = table.select([c for c in table.column_names if c not in feats]).to_pandas()
    return pd.concat([keys, pd.DataFrame(values, columns=feats, index=keys.index)], axis=1)


def historical(cfg: Config, ws: Workspace, entity_df: pd.DataFrame, feature_service: str) -> pd.DataFrame:
    """Point-in-time features for training, through Feast's point-in-time join.

    Args:
        cfg: configuration.
        ws: workspace.
        entity_df: columns ``customer_id`` and ``event_timestamp`` (an as-of T; naive
            timestamps are read as UTC, like the feature tables).
        feature_service: e.g. ``consumer_v1``.

    Returns:
        ``customer_id``, ``event_timestamp`` (same tz-ness as given) and the service's
        features as float64, one row per entity row (order not guaranteed).

    Raises:
        FeatureStoreError: unknown service, missing columns, or a row-count mismatch.
    """
    return _retrieve(cfg, ws, entity_df, _refs(cfg, ws, feature_service))


def exact_grid(
    ws: Workspace, customer_ids: Sequence[str], as_ofs: Sequence[datetime], names: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stored values of some features at exactly each as-of date, for every customer: a cheap pre-filter.

    Reads the feature tables (the offline store's Parquet files) directly, one scan per
    family of only the columns asked for. Where a family holds exactly one row at
    (customer, T), Feast's point-in-time join for an entity row (customer, T) returns
    that row's values (the latest row at or before T is the one at T, and it is inside
    any TTL); elsewhere (no row at T, or a repeated one) this says nothing, and only
    :func:`historical` knows. Training uses it to drop ineligible rows before the full
    retrieval, and applies the rules again afterwards to the retrieved values.

    Args:
        ws: workspace with built feature tables.
        customer_ids: the customers (columns of the grids).
        as_ofs: as-of dates, naive UTC (rows of the grids).
        names: feature names (catalogue names).

    Returns:
        ``{name: (values, found)}``: float64 values (NaN where stored null or not found)
        and booleans, each of shape ``(len(as_ofs), len(customer_ids))``.

    Raises:
        FeatureStoreError: a name is not in the catalogue, or a feature table is missing.
    """
    family = {n: f.family for n, f in BY_NAME.items()}
    unknown = [n for n in names if n not in family]
    if unknown:
        raise FeatureStoreError(f"unknown feature(s) {unknown}: not in the feature catalogue")
    import duckdb

    shape = (len(as_ofs), len(customer_ids))
    out = {n: (np.full(shape, np.nan), np.zeros(shape, dtype=bool)) for n in names}
    if not len(as_ofs):
        return out
    cust = pa.table(
        {
            JOIN_KEY: pa.array([str(c) for c in customer_ids], pa.string()),
            "ci": pa.array(np.arange(len(customer_ids), dtype=np.int64)),
        }
    )
    dates = pa.table(
        {
            "ts": pa.array(pd.DatetimeIndex(as_ofs).astype("datetime64[us]").to_numpy()),
            "ti": pa.array(np.arange(len(as_ofs), dtype=np.int64)),
        }
    )
    # literal bounds let the Parquet reader skip row groups of other dates (tables are in date order)
    lo, hi = (pd.Timestamp(min(as_ofs)).isoformat(sep=" "), pd.Timestamp(max(as_ofs)).isoformat(sep=" "))
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        con.register("cust", cust)
        con.register("dates", dates)
        for fam in dict.fromkeys(family[n] for n in names):
            if not ws.feature_files(fam):
                raise FeatureStoreError(f"{ws.feature_table(fam)}: feature table missing; run `nbp features`")
            cols = [n for n in names if family[n] == fam]
            got = con.sql(
                f"SELECT d.ti, c.ci, {', '.join('f.' + ident(n) for n in cols)} "
                f"FROM read_parquet({lit(ws.feature_glob(fam))}) f JOIN dates d ON f.{EVENT_TS} = d.ts "
                f"JOIN cust c ON f.{JOIN_KEY} = c.{JOIN_KEY} "
                f"WHERE f.{EVENT_TS} BETWEEN {timestamp(lo)} AND {timestamp(hi)}"
            ).to_arrow_table()
            ti, ci = got.column("ti").to_numpy(), got.column("ci").to_numpy()
            flat = ti * shape[1] + ci
            once = (np.bincount(flat, minlength=shape[0] * shape[1]) == 1).reshape(shape)
            for n in cols:
                values, found = out[n]
                values[ti, ci] = got.column(n).to_numpy(zero_copy_only=False).astype("float64")
                found |= once
                values[~once] = np.nan
    finally:
        con.close()
    return out


def historical_union(
    cfg: Config, ws: Workspace, entity_df: pd.DataFrame, feature_services: Sequence[str]
) -> pd.DataFrame:
    """:func:`historical` for several services at once: one point-in-time join for the union
    of their features (scoring reads every product's features for the same rows).

    Returns:
        ``customer_id``, ``event_timestamp`` and each feature of any of the services once.
    """
    return _retrieve(cfg, ws, entity_df, _union_refs(cfg, ws, feature_services))


def _union_refs(cfg: Config, ws: Workspace, feature_services: Sequence[str]) -> list[str]:
    """``view:feature`` of every feature of any of the services, once each."""
    refs = [f"{view}:{feat}" for name in feature_services for view, feat in _service_refs(cfg, ws, name)]
    return list(dict.fromkeys(refs))


def historical_union_spark(
    cfg: Config, ws: Workspace, entity_df: pd.DataFrame, feature_services: Sequence[str]
) -> SparkFrame:
    """:func:`historical_union` run on Spark and left there (batch scoring reads it on the executors).

    Returns:
        A Spark DataFrame: ``entity_row`` (the row's position in ``entity_df``) and each feature
        of any of the services as double (null = unknown), one row per entity row, in no order.

    Raises:
        FeatureStoreError: missing columns.
    """
    from pyspark.sql import functions as F

    from features.offline import ENTITY_ROW, SparkRetrievalJob, on_spark
    from nbp.spark import session

    ent, _ = _entity_rows(entity_df)
    with on_spark(session(cfg)):
        job = get_store(cfg, ws).get_historical_features(entity_df=ent, features=_union_refs(cfg, ws, feature_services))
    if not isinstance(job, SparkRetrievalJob):
        raise FeatureStoreError(
            f"feature services {list(feature_services)}: the feature tables of {ws.features_dir} are not "
            "local Parquet files the Spark point-in-time join reads; run `nbp features`"
        )
    frame = job.to_spark_df()
    feats = [c for c in frame.columns if c != ENTITY_ROW]
    return frame.select(F.col(ENTITY_ROW).alias("entity_row"), *(F.col(c).cast("double").alias(c) for c in feats))


def _service_refs(cfg: Config, ws: Workspace, feature_service: str) -> list[tuple[str, str]]:
    """``(feature view, feature)`` of each feature of one service, in its order."""
    return [
        (proj.name_to_use(), f.name)
        for proj in _refs(cfg, ws, feature_service).feature_view_projections
        for f in proj.features
    ]


def service_features(cfg: Config, ws: Workspace, feature_service: str) -> list[str]:
    """The feature names of one service, in its order."""
    return [feat for _, feat in _service_refs(cfg, ws, feature_service)]


def online(cfg: Config, ws: Workspace, customer_ids: Sequence[str], feature_service: str) -> pd.DataFrame:
    """Latest materialised features of some customers, from the online store.

    SQLite (the default) reads through :func:`online_reader` (the columnar store's
    bulk read, the same rows Feast's ``get_online_features`` gives, without its
    per-call overhead); Redis goes through ``FeatureStore.get_online_features``.

    Returns:
        ``customer_id`` and the service's features as float64, one row per id, in the
        order given; a customer missing from the store has NaN features.

    Raises:
        FeatureStoreError: unknown service, or the online store cannot be read.
    """
    reader = online_reader(cfg, ws, feature_service)
    ids = [str(c) for c in customer_ids]
    out = pd.DataFrame(reader.read(ids), columns=list(reader.columns))
    out.insert(0, JOIN_KEY, ids)
    return out


def online_via_feast(cfg: Config, ws: Workspace, customer_ids: Sequence[str], feature_service: str) -> pd.DataFrame:
    """:func:`online` through ``FeatureStore.get_online_features`` (Redis; the reference for the fast path)."""
    service = _refs(cfg, ws, feature_service)
    ids = [str(c) for c in customer_ids]
    resp = get_store(cfg, ws).get_online_features(features=service, entity_rows=[{JOIN_KEY: c} for c in ids])
    got = resp.to_dict()
    got_ids = got.pop(JOIN_KEY)
    if len(got_ids) != len(ids):
        raise FeatureStoreError(f"online retrieval: asked {len(ids)} customers, got {len(got_ids)}")
    names = list(got)
    values = np.array([[np.nan if v is None else v for v in got[n]] for n in names], dtype="float64").T
    out = pd.DataFrame(values.reshape(len(ids), len(names)), columns=names)
    out.insert(0, JOIN_KEY, got_ids)
    return out


class OnlineReader:
    """One feature service's online read, resolved once: service → feature views → columns.

    :meth:`read` returns a float64 matrix (one row per id, one column per name in
    :attr:`columns`). With the columnar SQLite store it calls
    ``ColumnarSqliteOnlineStore.read_matrix`` (one indexed query per feature view on a
    per-thread connection); otherwise (Redis, or a service Feast must resolve itself)
    it goes through :func:`online_via_feast`. Made by :func:`online_reader`.
    """

    def __init__(self, cfg: Config, ws: Workspace, feature_service: str) -> None:
        self.cfg, self.ws, self.service = cfg, ws, feature_service
        self.source = _refs(cfg, ws, feature_service)  # the FeatureService this was resolved from
        store = get_store(cfg, ws)
        self._views: list[tuple[object, list[str]]] | None = None
        self._query = None
        from features.online import ColumnarSqliteOnlineStore

        online_store = store._get_provider().online_store
        if isinstance(online_store, ColumnarSqliteOnlineStore):
            try:
                views = []
                for proj in self.source.feature_view_projections:  # type: ignore[attr-defined]
                    fv = store.get_feature_view(proj.name, allow_registry_cache=True)
                    if fv.join_keys != [JOIN_KEY]:
                        raise ValueError(f"view {fv.name}: join keys {fv.join_keys}")
                    views.append((fv, [f.name for f in proj.features]))
                self._query = online_store.matrix_query(store.config, views)
                self._views = views
            except Exception as e:  # noqa: BLE001 - e.g. an on-demand view: Feast resolves it
                log.info("online reads of %s go through Feast (%s)", feature_service, e)
        if self._views is not None:
            self.columns: tuple[str, ...] = tuple(n for _, names in self._views for n in names)
        else:
            probe = online_via_feast(cfg, ws, ["-"], feature_service)
            self.columns = tuple(c for c in probe.columns if c != JOIN_KEY)

    @property
    def fast(self) -> bool:
        """True when reads skip Feast's response building (columnar SQLite store)."""
        return self._views is not None

    def read(self, customer_ids: Sequence[str]) -> np.ndarray:
        """Features of ``customer_ids`` (float64, NaN = unknown or not in the store), in :attr:`columns` order.

        Raises:
            FeatureStoreError: the online store cannot be read.
        """
        import sqlite3

        ids = [str(c) for c in customer_ids]
        if self._views is None:
            df = online_via_feast(self.cfg, self.ws, ids, self.service)
            return df[list(self.columns)].to_numpy(dtype=np.float64)
        try:
            return self._query(ids)  # type: ignore[misc]
        except (OSError, sqlite3.Error) as e:
            raise FeatureStoreError(
                f"online store of {self.ws.feast_dir} cannot be read for service "
                f"{self.service!r} ({type(e).__name__}: {e}); run `nbp features`"
            ) from e


_READERS: dict[tuple[str, str, str, str], OnlineReader] = {}


def online_reader(cfg: Config, ws: Workspace, feature_service: str) -> OnlineReader:
    """The :class:`OnlineReader` of a service, made once per process (again after :func:`apply`).

    Raises:
        FeatureStoreError: the service is not in the registry.
    """
    key = (*_key(cfg, ws), feature_service)
    reader = _READERS.get(key)
    if reader is None or reader.source is not _refs(cfg, ws, feature_service):
        reader = _READERS[key] = OnlineReader(cfg, ws, feature_service)
    return reader


def all_features(ws: Workspace) -> list[Feature]:
    """Every feature of the workspace's catalogue (a member bank's adds the bank family), in order."""
    return [*CATALOG, *(MEMBER_CATALOG if ws.bank is not None else ())]


def export(cfg: Config, ws: Workspace, as_of: date, out: Path) -> int:
    """Write the full feature table at one as-of: ``customer_id`` plus every feature (a member
    bank's table leads with ``bank_code`` and holds the bank family too).

    Rows are the customers known at ``as_of`` (those in the built tables), retrieved
    through Feast like training rows.

    Returns:
        The number of rows written.

    Raises:
        FeatureStoreError: ``as_of`` was not built.
    """
    import duckdb

    if as_of not in fbuild.built_as_of(ws):
        raise FeatureStoreError(f"as-of {as_of}: not built; run `nbp features --as-of {as_of}`")
    ids = duckdb.sql(
        f"SELECT {JOIN_KEY} FROM read_parquet({lit(ws.feature_glob('demo'))}) "
        f"WHERE {EVENT_TS} = {timestamp(str(as_of))}"
    ).df()[JOIN_KEY]
    ent = pd.DataFrame({JOIN_KEY: ids.astype(str), EVENT_TS: pd.Timestamp(as_of)})
    feats = all_features(ws)
    df = _retrieve(cfg, ws, ent, [f"{f.family}:{f.name}" for f in feats])
    df = df[[JOIN_KEY, *(f.name for f in feats)]].sort_values(JOIN_KEY).reset_index(drop=True)
    if ws.bank is not None:
        df.insert(0, BANK_COLUMN, ws.bank)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    log.info("exported %s customers × %d features at %s to %s", f"{len(df):,}", len(df.columns) - 1, as_of, out)
    return len(df)


def repair_registry(ws: Workspace) -> bool:
    """Remove a Feast registry that cannot be parsed (cut short by a killed job while Feast's own
    file store wrote it in place; :data:`REGISTRY_STORE` replaces it whole); :func:`apply` rebuilds
    it from the definitions. True if removed."""
    path = ws.feast_registry
    if not path.exists():
        return False
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
    from google.protobuf.message import DecodeError

    try:
        RegistryProto().ParseFromString(path.read_bytes())
        return False
    except DecodeError as e:
        log.warning("%s cannot be read (%s): a job was killed while writing it; rebuilt by feast apply", path, e)
        path.unlink()
        close_store(ws)  # a store may hold the broken file's cache
        return True


@dataclass
class PublishSummary:
    """What ``nbp features`` did."""

    build: fbuild.BuildSummary
    materialized: date

    def describe(self) -> str:
        return f"{self.build.describe()}\nonline store: as-of {self.materialized} materialised"


def publish(cfg: Config, ws: Workspace, as_of: Sequence[date] | None = None, full: bool = False) -> PublishSummary:
    """Build the feature tables, apply the Feast definitions, materialise the latest as-of.

    Args:
        as_of: as-of dates (default: ``features.as_of`` of the config, else every month start,
            built incrementally: :func:`features.build.build`).
        full: rebuild every as-of date.
    """
    repair_registry(ws)
    summary = fbuild.build(ws, list(as_of or cfg.features.as_of) or None, cfg=cfg, full=full)
    apply(cfg, ws)
    return PublishSummary(summary, materialize(cfg, ws))
