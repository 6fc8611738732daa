"""The feature build on Spark (``compute.engine: spark``): the same SQL, the same windows.

:class:`SparkEngine` is the :class:`features.build.Engine` of a Spark build; the build itself
(:func:`features.build.build`) is the same for both engines. The ingested Parquet tables
become temp views; the shared relations (``asofs``, ``months``, ``spine``, ``loan_mode``), the
monthly sources and every family's query are the DuckDB SQL of :mod:`features.build` and
:mod:`features.families`, transpiled by :func:`nbp.dialect.to_spark`. The customers and their
monthly rows are hash-partitioned by customer into buckets, and each bucket's windows are
computed by the same :mod:`features.windows` code as on DuckDB (a grouped Arrow UDF); they are
the view ``win``. Spark writes a family's rows as Parquet parts into the job's scratch folder
(``nbp.jobs``), and the build's DuckDB writer copies them into one new file of the family's
folder ``data/features/<family>/`` (:mod:`features.tables`: streaming, renamed into place), so
both engines write the same schema, column order and types.

Paths: the executors read the ingested tables and write the parts under ``$NBP_HOME``, and the
driver reads the parts, so on a cluster the workspace must be a filesystem that the driver and
every executor see at the same path (NFS, a mounted HDFS or object store); ``local[N]``
needs nothing more.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from features.build import SOURCES, customer_count, grid, month_index_of, source_sql
from features.schema import AS_OF, JOIN_KEY
from features.windows import MonthlySeries, Spine, Window, window_table
from nbp import jobs
from nbp.config import Config
from nbp.dialect import to_spark
from nbp.sqltext import lit
from nbp.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# Customers per bucket at most: one bucket's dense month arrays (months × customers doubles
# per monthly column) are held by one Python worker at a time.
BUCKET_CUSTOMERS = 50_000
_SPINE = "spine"  # the ``_src`` of the customers' rows in the bucketed frame
_SCRATCH = "spark-build"


class SparkEngine:
    """The statements of one bank's build on the process's Spark session (``nbp.spark.session``).

    Args:
        cfg: the config (Spark settings).
        ws: the workspace (a member bank's for a federation member).
        tables: the ingested tables present.
        as_of: the build's as-of dates.
    """

    def __init__(self, cfg: Config, ws: Workspace, tables: frozenset[str], as_of: Sequence[date]) -> None:
        from nbp.spark import session

        self.spark = session(cfg)
        self.ws, self.tables, self.as_of = ws, tables, list(as_of)
        self.views: list[str] = []
        self.cached: list[DataFrame] = []
        self.buckets = max(cfg.spark.shuffle_partitions, math.ceil(customer_count(ws) / BUCKET_CUSTOMERS))
        self._monthly: DataFrame | None = None
        self.scratch = jobs.scratch(ws, _SCRATCH)
        for t in sorted(tables):
            self._view(t, _read(self.spark, ws.table(t)))
        log.info("spark build: %s, windows in %d buckets of customers", self.spark.sparkContext.master, self.buckets)

    def _view(self, name: str, df: DataFrame) -> None:
        df.createOrReplaceTempView(name)
        self.views.append(name)

    def _cache(self, df: DataFrame) -> DataFrame:
        self.cached.append(df.cache())
        return df

    def sql(self, query: str) -> DataFrame:
        """A DuckDB query, transpiled, as a Spark DataFrame."""
        return self.spark.sql(to_spark(query))

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.sql(sql).collect()]

    def create(self, name: str, select: str) -> None:
        self._view(name, self._cache(self.sql(select)))

    def columns(self, select: str) -> list[str]:
        return self.sql(select).columns

    def register_windows(self, routed: dict[str, list[Window]]) -> None:
        self._view("win", self.windows(routed))

    def drop_windows(self) -> None:
        self.spark.catalog.dropTempView("win")

    def materialize(self, family: str, query: str) -> str:
        """Run ``query`` on Spark into Parquet parts; the DuckDB query that reads them back."""
        out = self.scratch / family
        self.sql(query).write.mode("overwrite").parquet(str(out))
        return f"SELECT * FROM read_parquet({lit(str(out / '*.parquet'))})"

    def close(self) -> None:
        for df in self.cached:
            df.unpersist()
        for name in self.views:
            self.spark.catalog.dropTempView(name)
        self.cached.clear()
        self.views.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)
        jobs.release(self.ws, _SCRATCH)

    def monthly(self) -> DataFrame:
        """The customers (``_src`` = ``spine``) and the rows of every monthly source present
        (``_src`` = its name), tagged with their customer's bucket, partitioned by it and cached."""
        from pyspark.sql import functions as F

        if self._monthly is None:
            parts = [self.sql(f"SELECT {JOIN_KEY}, open_date FROM customers").withColumn("_src", F.lit(_SPINE))]
            for src, (table, _, _) in SOURCES.items():
                if table in self.tables:
                    parts.append(self.sql(source_sql(src, self.as_of)).withColumn("_src", F.lit(src)))
            df = parts[0]
            for p in parts[1:]:
                df = df.unionByName(p, allowMissingColumns=True)
            bucket = F.pmod(F.xxhash64(F.col(JOIN_KEY)), F.lit(self.buckets))
            self._monthly = self._cache(df.withColumn("_bucket", bucket).repartition(self.buckets, "_bucket"))
        return self._monthly

    def windows(self, routed: dict[str, list[Window]]) -> DataFrame:
        """The relation ``win`` of ``routed`` (source -> windows): one row per spine row."""
        names = [w.name for wins in routed.values() for w in wins]
        cols = sorted({w.col for wins in routed.values() for w in wins})
        first, _ = grid(self.as_of)
        run = _bucket_windows(self.as_of, month_index_of(first), routed)
        schema = f"{JOIN_KEY} string, {AS_OF} timestamp_ntz, " + ", ".join(f"{n} double" for n in names)
        frame = self.monthly().select("_bucket", "_src", JOIN_KEY, "open_date", "mi", *cols)
        return frame.groupBy("_bucket").applyInArrow(run, schema)


def _read(spark: SparkSession, path: Path) -> DataFrame:
    """An ingested Parquet table, its schema taken from the file's footer (Spark would run a job
    to infer it); timestamps without a time zone stay ``timestamp_ntz``, as DuckDB reads them."""
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.read.schema(from_arrow_schema(pq.read_schema(path), prefer_timestamp_ntz=True)).parquet(str(path))


def _bucket_windows(
    as_of: list[date], first_mi: int, routed: dict[str, list[Window]]
) -> Callable[[pa.Table], pa.Table]:
    """The function a bucket's rows go through: :func:`features.windows.window_table` over the
    bucket's customers, the month series of each source built from the bucket's rows."""
    cols = {src: sorted({w.col for w in wins}) for src, wins in routed.items()}

    def run(tbl: pa.Table) -> pa.Table:
        src = tbl.column("_src")
        spine = Spine.from_arrow(tbl.filter(pc.equal(src, _SPINE)), as_of, first_mi)
        series = {
            s: MonthlySeries(tbl.filter(pc.equal(src, s)).select([JOIN_KEY, "mi", *c]), spine, SOURCES[s][2])
            for s, c in cols.items()
        }
        out = window_table(spine, series, routed)
        return out.set_column(0, JOIN_KEY, out.column(JOIN_KEY).cast(pa.string()))

    return run
