"""A Feast offline store for local Parquet feature tables: Feast's DuckDB store with a
one-statement point-in-time join.

Feast's own DuckDB offline store (``DuckDBOfflineStore``, through ibis) joins every
feature view's whole table, all columns, to the entity rows and then deduplicates per
entity row with a window, once per view (measured in
docs/decisions/009-offline-point-in-time-join.md). This store keeps Feast's interface
and semantics and plans the join differently, in one DuckDB statement over the Parquet
files:

1. per feature view, the entity rows are joined to the view's *keys only*
   (join keys, timestamp, Parquet row number) with ``feature_ts <= entity_ts`` and
   ``feature_ts >= entity_ts - ttl``; the row with the latest timestamp is kept
   (``arg_max``);
2. the features are fetched by that row number (one equi-join per view, which reads
   each column once and keeps only the matched rows);
3. every view is left-joined back onto the entity rows by row id, so each entity row
   comes back exactly once, in the order given, nulls where no feature row matched.

These are Feast's point-in-time semantics (``feast.infra.offline_stores.ibis``:
``feature_ts <= entity_ts``, ``feature_ts + ttl >= entity_ts``, latest row wins, no
TTL when it is zero/None). Timestamps are compared as UTC instants: naive Parquet
timestamps are read as UTC, like Feast does.

``pull_latest_from_table_or_query`` (materialisation) filters the timestamp range in
the Parquet scan before deduplicating, instead of deduplicating whole tables.

Anything this fast path does not handle falls back to Feast's implementation
(``super()``): an entity SQL query instead of a DataFrame, non-Parquet or remote
sources, field mappings, created-timestamp columns, substrait on-demand views.

Selected in ``RepoConfig`` as ``offline_store: {type: features.offline.ParquetDuckDBOfflineStore}``.

With ``compute.engine: spark`` the same statement runs on Spark (:func:`spark_point_in_time`,
transpiled by :func:`nbp.dialect.to_spark`): ``features/store.py`` opens :func:`on_spark` around
Feast's retrieval, so Feast still resolves the services, views and TTLs from its registry.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.saved_dataset import SavedDatasetStorage

from nbp.dialect import to_spark
from nbp.sqltext import ident, lit

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

TYPE = "features.offline.ParquetDuckDBOfflineStore"
_ROW = "__nbp_row"  # entity row id (position in the entity DataFrame)
_RN = "__nbp_rn"  # matched feature row (Parquet file row number)
ENTITY_ROW = _ROW  # the column of SparkRetrievalJob.to_spark_df naming each row's entity row
_SPARK: ContextVar[SparkSession | None] = ContextVar("nbp_offline_spark", default=None)


class ParquetDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Offline store config: Feast's DuckDB config plus DuckDB's resource limits."""

    type: Literal["features.offline.ParquetDuckDBOfflineStore"] = TYPE  # type: ignore[assignment]
    memory_limit: str | None = None  # DuckDB ``memory_limit`` (e.g. "8GB"); None: DuckDB's default
    threads: int | None = None  # DuckDB ``threads``; None: every core
    temp_directory: str | None = None  # where DuckDB spills; None: DuckDB's default


def _connect(config: RepoConfig) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # naive timestamps <-> TIMESTAMPTZ as UTC
    oc = config.offline_store
    if getattr(oc, "memory_limit", None):
        con.execute(f"SET memory_limit = {lit(oc.memory_limit)}")
    if getattr(oc, "threads", None):
        con.execute(f"SET threads = {int(oc.threads)}")
    if getattr(oc, "temp_directory", None):
        Path(oc.temp_directory).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {lit(oc.temp_directory)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def _parquet_path(config: RepoConfig, source: DataSource | None) -> str | None:
    """The local Parquet file (or glob) of ``source``, or None when the fast path cannot read it."""
    if not isinstance(source, FileSource) or source.field_mapping or source.created_timestamp_column:
        return None
    fmt = source.file_format
    path = source.path
    if "://" in path or not (isinstance(fmt, ParquetFormat) or (fmt is None and path.endswith(".parquet"))):
        return None
    if not os.path.isabs(path) and config.repo_path is not None and (Path(config.repo_path) / path).exists():
        path = str(Path(config.repo_path) / path)
    return path


# A row's position across a table's files: its file's index in name order times this, plus its
# row number in the file (a file of 2**40 rows is beyond any Parquet writer here).
FILE_STRIDE = 1 << 40


def table_files(path: str) -> list[str]:
    """The files of a source path, in name order: a glob's matches, or the path itself."""
    return sorted(glob.glob(path)) if glob.has_magic(path) else [path]


def _scan(path: str, row_number: bool = False) -> str:
    """``read_parquet`` of ``path``; with ``row_number`` a relation whose ``file_row_number``
    names a row uniquely across the path's files (:data:`FILE_STRIDE`)."""
    if not row_number:
        return f"read_parquet({lit(path)})"
    files = ", ".join(lit(f) for f in table_files(path))
    return (
        f"(SELECT * EXCLUDE (file_row_number), CAST(file_index AS BIGINT) * {FILE_STRIDE} + file_row_number "
        f"AS file_row_number FROM read_parquet([{files}], file_row_number = true))"
    )


def _ts_type(con: duckdb.DuckDBPyConnection, path: str, column: str) -> str:
    """DuckDB type of a timestamp column of a Parquet file (from its metadata)."""
    rows = con.execute(f"DESCRIBE SELECT {ident(column)} FROM {_scan(path)}").fetchall()
    return str(rows[0][1])


def _ts_literal(when: datetime, column_type: str) -> str:
    """A literal comparable with a column of ``column_type`` without casting the column
    (so the Parquet reader can use it as a filter)."""
    utc = when.astimezone(UTC) if when.tzinfo else when
    if "TIME ZONE" in column_type.upper():
        return f"TIMESTAMPTZ {lit(utc.strftime('%Y-%m-%d %H:%M:%S.%f+00'))}"
    return f"CAST({lit(utc.replace(tzinfo=None).strftime('%Y-%m-%d %H:%M:%S.%f'))} AS {column_type})"


def _interval(ttl: timedelta) -> str:
    return f"INTERVAL {int(ttl / timedelta(microseconds=1))} MICROSECONDS"


class ArrowRetrievalJob(RetrievalJob):
    """A retrieval job whose result is computed by a function returning an Arrow table."""

    def __init__(
        self,
        compute: Any,
        full_feature_names: bool,
        on_demand_feature_views: list[OnDemandFeatureView],
        metadata: RetrievalMetadata | None,
        repo_path: str | None,
    ) -> None:
        super().__init__()
        self._compute = compute
        self._full_feature_names = full_feature_names
        self._odfvs = on_demand_feature_views
        self._metadata = metadata
        self._repo_path = repo_path

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return self._compute()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._odfvs

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def persist(self, storage: SavedDatasetStorage, allow_overwrite: bool = False, timeout: int | None = None) -> None:
        import ibis
        from feast.infra.offline_stores.duckdb import _write_data_source

        _write_data_source(
            ibis.memtable(self.to_arrow()), storage.to_data_source(), str(self._repo_path), "overwrite", allow_overwrite
        )


class SparkRetrievalJob(ArrowRetrievalJob):
    """A retrieval computed on Spark: :meth:`to_arrow` collects it in entity-row order (as the
    DuckDB path gives it); :meth:`to_spark_df` leaves it on the cluster."""

    def __init__(self, frame: Callable[[], SparkFrame], compute: Any, *args: Any) -> None:
        super().__init__(compute, *args)
        self._frame = frame

    def to_spark_df(self) -> SparkFrame:
        """:data:`ENTITY_ROW` (the row's position in the entity DataFrame) and every feature,
        one row per entity row, in no particular order."""
        return self._frame()


class _View:
    """What the join needs of one feature view."""

    def __init__(self, fv: FeatureView, path: str, refs: list[str], full_feature_names: bool) -> None:
        self.fv = fv
        self.path = path
        self.ts = fv.batch_source.timestamp_field
        keys = [e.name for e in fv.entity_columns]
        jkm = fv.projection.join_key_map or {}
        self.keys = [(k, jkm.get(k, k)) for k in keys]  # (feature table column, entity_df column)
        prefix = fv.projection.name_to_use()
        self.features = [r.split(":", 1)[1] for r in refs if r.startswith(f"{prefix}:")]
        base = fv.projection.name_alias or fv.name
        self.out = [f"{base}__{f}" if full_feature_names else f for f in self.features]
        self.ttl = fv.ttl if fv.ttl and fv.ttl > timedelta(0) else None


def point_in_time_sql(
    views: list[_View],
    entity: str,
    ts_col: str,
    ts_types: list[str],
    exact_first: bool = True,
    scan: Callable[[int, bool], str] | None = None,
    bounds: tuple[datetime, datetime] | None = None,
) -> str:
    """The one statement: entity rows (relation ``entity`` with ``_ROW``) -> ``_ROW`` + every feature.

    Written in DuckDB's dialect and kept portable: :func:`spark_point_in_time` runs the same
    statement on Spark through :func:`nbp.dialect.to_spark`.

    Args:
        views: the feature views and their requested features.
        entity: name of the entity relation (columns ``_ROW``, the join keys, ``ts_col``).
        ts_col: entity timestamp column (naive TIMESTAMP in UTC: comparing naive timestamps
            is several times cheaper in DuckDB than TIMESTAMPTZ arithmetic).
        ts_types: DuckDB type of each view's timestamp column.
        exact_first: first join the feature rows whose timestamp equals the entity row's
            (the latest possible row, always inside the TTL: the usual case when entity
            rows are as-of dates), fetching their features in the same pass; only the
            other entity rows go through the range join. A feature table with two rows
            for one (key, timestamp) then gives extra rows: the caller checks the row count
            and runs again with ``exact_first=False`` (``arg_max`` picks one row).
        scan: the relation of view ``i``, with a ``file_row_number`` column (the row's position
            among the table's Parquet files, :data:`FILE_STRIDE`) when the flag is true. The one
            piece that differs by engine: each exposes a Parquet row's position its own way.
            Default: DuckDB's (:func:`_scan`).
        bounds: the earliest and latest entity timestamp (naive UTC): feature rows after the
            latest, or older than the earliest minus the view's TTL, can match no entity row
            and are left out where each table is read (one as-of reads one month's rows).
    """
    if scan is None:

        def scan(i: int, row_number: bool) -> str:
            return _scan(views[i].path, row_number)

    ctes, joins, select = [], [], [f"e.{ident(_ROW)}"]
    row = ident(_ROW)
    for i, (v, ts_type) in enumerate(zip(views, ts_types, strict=True)):

        def fts(alias: str, v: _View = v, ts_type: str = ts_type) -> str:
            col = f"{alias}.{ident(v.ts)}"
            return col if ts_type.upper() == "TIMESTAMP" else f"CAST({col} AS TIMESTAMP)"

        def within(alias: str, v: _View = v, fts: Callable[[str], str] = fts) -> list[str]:
            if bounds is None:
                return []
            out = [f"{fts(alias)} <= {_ts_literal(bounds[1], 'TIMESTAMP')}"]
            if v.ttl is not None and bounds[0] - datetime.min > v.ttl:
                out.append(f"{fts(alias)} >= {_ts_literal(bounds[0] - v.ttl, 'TIMESTAMP')}")
            return out

        feats = ", ".join(f"f.{ident(c)} AS {ident(o)}" for c, o in zip(v.features, v.out, strict=True))
        feats = ", " + feats if feats else ""
        rest = entity
        if exact_first:
            on = [f"f.{ident(fk)} = e.{ident(ek)}" for fk, ek in v.keys] + [f"{fts('f')} = e.{ident(ts_col)}"]
            on += within("f")
            ctes.append(
                f"x{i} AS MATERIALIZED (SELECT e.{row}{feats} FROM {scan(i, False)} f "
                f"JOIN {entity} e ON {' AND '.join(on)})"
            )
            ctes.append(f"u{i} AS (SELECT * FROM {entity} e ANTI JOIN x{i} ON x{i}.{row} = e.{row})")
            rest = f"u{i}"
        on = [f"k.{ident(fk)} = e.{ident(ek)}" for fk, ek in v.keys] + [f"{fts('k')} <= e.{ident(ts_col)}"]
        if v.ttl is not None:
            on.append(f"{fts('k')} >= e.{ident(ts_col)} - {_interval(v.ttl)}")
        key_cols = ", ".join(dict.fromkeys([ident(fk) for fk, _ in v.keys] + [ident(v.ts)]))

        def where(alias: str, within: Callable[[str], list[str]] = within) -> str:
            conds = within(alias)
            return f" WHERE {' AND '.join(conds)}" if conds else ""

        ctes.append(
            f"m{i} AS (SELECT e.{row}, arg_max(k.file_row_number, {fts('k')}) AS {ident(_RN)} "
            f"FROM {rest} e JOIN (SELECT {key_cols}, file_row_number FROM {scan(i, True)} k{where('k')}) k "
            f"ON {' AND '.join(on)} GROUP BY e.{row})"
        )
        fetch = " AND ".join([f"f.file_row_number = m{i}.{ident(_RN)}", *within("f")])
        ranged = f"SELECT m{i}.{row}{feats} FROM {scan(i, True)} f JOIN m{i} ON {fetch}"
        ctes.append(f"v{i} AS ({ranged}{f' UNION ALL SELECT * FROM x{i}' if exact_first else ''})")
        joins.append(f"LEFT JOIN v{i} ON v{i}.{row} = e.{row}")
        select += [f"v{i}.{ident(o)}" for o in v.out]
    return f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM {entity} e {' '.join(joins)}"


@contextmanager
def on_spark(spark: SparkSession) -> Iterator[None]:
    """Point-in-time joins asked for in this block run on ``spark`` (``compute.engine: spark``).

    Feast calls the offline store with its own arguments only, so the session travels beside
    them; the retrieval job keeps the session it was created with.
    """
    token = _SPARK.set(spark)
    try:
        yield
    finally:
        _SPARK.reset(token)


def _spark_ts_type(dtype: object) -> str:
    """The DuckDB name of a Spark timestamp type, for :func:`point_in_time_sql`: Spark's
    ``TIMESTAMP_NTZ`` is DuckDB's naive ``TIMESTAMP``; anything else is cast to it (as UTC)."""
    from pyspark.sql.types import TimestampNTZType

    return "TIMESTAMP" if isinstance(dtype, TimestampNTZType) else "TIMESTAMP WITH TIME ZONE"


def spark_point_in_time(
    spark: SparkSession,
    views: list[_View],
    entity: pa.Table,
    ts_col: str,
    bounds: tuple[datetime, datetime] | None = None,
) -> SparkFrame:
    """:func:`point_in_time_sql` on Spark: ``_ROW`` and every feature, one row per entity row, not collected.

    The statement is the DuckDB one transpiled, with two engine pieces. Scans: each feature
    table is a temporary view of its Parquet files whose ``file_row_number`` is Spark's hidden
    ``_metadata.row_index`` offset by the file's place in name order (:data:`FILE_STRIDE`, as
    :func:`_scan` numbers DuckDB's rows), hinted to sort-merge joins: Spark sizes a Parquet
    scan by its compressed bytes and would broadcast a feature table many times larger in
    memory than on disk.
    No exact pass (``exact_first=False``): it relies on DuckDB's ``MATERIALIZED`` CTE, which
    Spark lacks; ``max_by`` keeps one row per entity row even where a feature table repeats
    a (key, timestamp), so no second run is needed either.

    Args:
        entity: ``_ROW``, the join keys and ``ts_col`` (naive UTC timestamps, µs).
        bounds: as :func:`point_in_time_sql`.
    """
    from pyspark.sql import functions as F

    tag = uuid4().hex[:12]
    names = [f"__nbp_entity_{tag}", *(f"__nbp_fv{i}_{tag}" for i in range(len(views)))]
    ent = spark.createDataFrame(entity)  # Arrow: a naive timestamp arrives as UTC wall time (session zone)
    ent.withColumn(ts_col, F.col(ts_col).cast("timestamp_ntz")).createOrReplaceTempView(names[0])
    types = []
    for name, v in zip(names[1:], views, strict=True):
        parts = [
            spark.read.parquet(f).selectExpr("*", f"_metadata.row_index + {j * FILE_STRIDE} AS file_row_number")
            for j, f in enumerate(table_files(v.path))
        ]
        table = reduce(lambda a, b: a.unionByName(b), parts).hint("merge")
        table.createOrReplaceTempView(name)
        types.append(_spark_ts_type(table.schema[v.ts].dataType))
    sql = point_in_time_sql(
        views, names[0], ts_col, types, exact_first=False, scan=lambda i, _: names[1 + i], bounds=bounds
    )
    try:
        return spark.sql(to_spark(sql))  # analysed now: the frame no longer needs the view names
    finally:
        for name in names:
            spark.catalog.dropTempView(name)


class ParquetDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store with a one-statement point-in-time join over Parquet."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        paths = [_parquet_path(config, fv.batch_source) for fv in feature_views]
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        if (
            not isinstance(entity_df, pd.DataFrame)
            or None in paths
            or filter_by_created_timestamp
            or any(o.mode == "substrait" for o in odfvs)
        ):
            if _SPARK.get() is not None:
                log.warning("point-in-time join: not a local Parquet fast path; runs on DuckDB (Feast's code)")
            return DuckDBOfflineStore.get_historical_features(
                config=config,
                feature_views=feature_views,
                feature_refs=feature_refs,
                entity_df=entity_df,
                registry=registry,
                project=project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
            )

        ts_col = offline_utils.infer_event_timestamp_from_entity_df(
            dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
        )
        views = [_View(fv, p, feature_refs, full_feature_names) for fv, p in zip(feature_views, paths, strict=True)]
        entity_keys = list(dict.fromkeys(ek for v in views for _, ek in v.keys))
        offline_utils.assert_expected_columns_in_entity_df(
            dict(zip(entity_df.columns, entity_df.dtypes, strict=True)), set(entity_keys), ts_col
        )
        ts = pd.to_datetime(entity_df[ts_col], utc=True)
        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=list(set(entity_df.columns) - {ts_col}),
            min_event_timestamp=ts.min().to_pydatetime() if len(ts) else None,
            max_event_timestamp=ts.max().to_pydatetime() if len(ts) else None,
        )

        spark = _SPARK.get()
        naive = ts.dt.tz_convert(None).astype("datetime64[us]")  # UTC wall time, µs like Parquet
        bounds = (naive.min().to_pydatetime(), naive.max().to_pydatetime()) if len(naive) else None

        def entity_table() -> pa.Table:
            ent = pa.Table.from_pandas(entity_df[entity_keys].assign(**{ts_col: naive}), preserve_index=False)
            return ent.append_column(_ROW, pa.array(np.arange(len(entity_df), dtype=np.int64)))

        def joined() -> pa.Table:
            if spark is not None:
                return spark_point_in_time(spark, views, entity_table(), ts_col, bounds).toArrow()
            con = _connect(config)
            try:
                con.register("__nbp_entity", entity_table())
                types = [_ts_type(con, v.path, v.ts) for v in views]
                got = con.sql(point_in_time_sql(views, "__nbp_entity", ts_col, types, bounds=bounds)).to_arrow_table()
                if got.num_rows != len(entity_df):  # a feature table repeats a (key, timestamp)
                    log.info("point-in-time join: repeated feature rows, joining again without the exact pass")
                    got = con.sql(
                        point_in_time_sql(views, "__nbp_entity", ts_col, types, exact_first=False, bounds=bounds)
                    ).to_arrow_table()
            finally:
                con.close()
            return got

        def compute() -> pa.Table:
            got = joined()
            if got.num_rows != len(entity_df):
                raise RuntimeError(f"point-in-time join returned {got.num_rows} rows for {len(entity_df)} entity rows")
            order = np.empty(got.num_rows, dtype=np.int64)
            order[got.column(_ROW).to_numpy()] = np.arange(got.num_rows)
            got = got.drop_columns([_ROW]).take(pa.array(order))
            out = pa.Table.from_pandas(entity_df.assign(**{ts_col: ts}), preserve_index=False)
            for name in got.column_names:
                out = out.append_column(name, got.column(name))
            return out

        if spark is not None:
            return SparkRetrievalJob(
                lambda: spark_point_in_time(spark, views, entity_table(), ts_col, bounds),
                compute,
                full_feature_names,
                odfvs,
                metadata,
                str(config.repo_path),
            )
        return ArrowRetrievalJob(compute, full_feature_names, odfvs, metadata, str(config.repo_path))

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        path = _parquet_path(config, data_source)
        if path is None or created_timestamp_column:
            return DuckDBOfflineStore.pull_latest_from_table_or_query(
                config=config,
                data_source=data_source,
                join_key_columns=join_key_columns,
                feature_name_columns=feature_name_columns,
                timestamp_field=timestamp_field,
                created_timestamp_column=created_timestamp_column,
                start_date=start_date,
                end_date=end_date,
            )

        def compute() -> pa.Table:
            con = _connect(config)
            try:
                ts_type = _ts_type(con, path, timestamp_field)
                cols = ", ".join(
                    ident(c) for c in dict.fromkeys([*join_key_columns, *feature_name_columns, timestamp_field])
                )
                ts = ident(timestamp_field)
                where = f"{ts} >= {_ts_literal(start_date, ts_type)} AND {ts} <= {_ts_literal(end_date, ts_type)}"
                dedup = (
                    (
                        f" QUALIFY row_number() OVER (PARTITION BY {', '.join(ident(k) for k in join_key_columns)} "
                        f"ORDER BY {ts} DESC) = 1"
                    )
                    if join_key_columns
                    else ""
                )
                return con.sql(f"SELECT {cols} FROM {_scan(path)} WHERE {where}{dedup}").to_arrow_table()
            finally:
                con.close()

        return ArrowRetrievalJob(compute, False, [], None, str(config.repo_path))
