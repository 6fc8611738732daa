"""A columnar SQLite online store for Feast: one row per customer and feature view.

Feast's own SQLite store keeps one row per (entity, feature) and converts every
value to a protobuf on the way in, one Python-level write per customer and feature
(docs/decisions/009a-columnar-sqlite-online-store.md). This store implements Feast's
``OnlineStore`` interface (reads go through ``FeatureStore.get_online_features``
as usual) with one table per feature view and one column per feature, keyed by
``customer_id``. :func:`write_arrow` is the fast materialisation path used by
:func:`features.store.materialize`: Feast's DuckDB offline store pulls the latest
rows, this writes them with ``executemany``; the registry records the interval.

Selected in ``RepoConfig`` as ``type: features.online.ColumnarSqliteOnlineStore``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import Entity, FeatureView, RepoConfig
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.types import Int64
from pydantic import StrictStr

from nbp.sqltext import ident

log = logging.getLogger(__name__)

TYPE = "features.online.ColumnarSqliteOnlineStore"
_TS = "_event_ts"
_KEY = "_entity_key"


class ColumnarSqliteOnlineStoreConfig(FeastConfigBaseModel):
    """Online store config: the SQLite file."""

    type: Literal["features.online.ColumnarSqliteOnlineStore"] = TYPE
    path: StrictStr = "online_store.db"


def _table(config: RepoConfig, fv: FeatureView) -> str:
    return ident(f"{config.project}__{fv.name}")


def _key(entity_key: EntityKeyProto) -> str:
    """The single join key's value as text (the store has one entity, ``customer``)."""
    v = entity_key.entity_values[0]
    return str(getattr(v, v.WhichOneof("val")))


def _value_proto(value: Any, is_int: bool) -> ValueProto:
    if value is None:
        return ValueProto()
    return ValueProto(int64_val=int(value)) if is_int else ValueProto(double_val=float(value))


def _iso_utc(column: pa.ChunkedArray) -> list[str | None]:
    """Timestamps as ISO text in UTC (naive = UTC), formatted once per distinct value."""
    ts = column.cast(pa.timestamp("us", tz="UTC"))
    uniq = pc.unique(ts)
    text = [None if t is None else t.isoformat() for t in uniq.to_pylist()]
    return [text[i] for i in pc.index_in(ts, value_set=uniq).to_numpy(zero_copy_only=False)]


def _sqlite_values(column: pa.ChunkedArray) -> list:
    """A numeric column as Python values for SQLite, through numpy (not ``to_pylist``, which
    makes a Python object per value first): floats with NaN for nulls (SQLite stores a bound NaN as NULL, and an
    integral REAL as INTEGER in an INTEGER column). Integers beyond 2**53 (not exact as
    float) and other types go through ``to_pylist``."""
    if pa.types.is_floating(column.type):
        return column.to_numpy(zero_copy_only=False).astype("float64", copy=False).tolist()
    if pa.types.is_integer(column.type):
        if column.null_count == 0:
            return column.to_numpy().tolist()
        lo, hi = pc.min_max(column).values()
        if lo.as_py() is None or max(abs(lo.as_py()), abs(hi.as_py())) <= 2**53:
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).tolist()
    return column.to_pylist()


def _from_proto(v: ValueProto) -> Any:
    kind = v.WhichOneof("val")
    return None if kind is None else getattr(v, kind)


class ColumnarSqliteOnlineStore(OnlineStore):
    """Feast online store: SQLite, one table per feature view, one column per feature."""

    _conns: dict[str, sqlite3.Connection] = {}

    def _conn(self, config: RepoConfig) -> sqlite3.Connection:
        path = (
            str(Path(config.repo_path or ".") / config.online_store.path)
            if not Path(config.online_store.path).is_absolute()
            else config.online_store.path
        )
        if path not in self._conns:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conns[path] = conn
        return self._conns[path]

    # -- schema ------------------------------------------------------------------------------
    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        conn = self._conn(config)
        for fv in tables_to_delete:
            conn.execute(f"DROP TABLE IF EXISTS {_table(config, fv)}")
        for fv in tables_to_keep:
            cols = [f"{ident(f.name)} {'INTEGER' if f.dtype == Int64 else 'REAL'}" for f in fv.features]
            want = [_KEY, _TS] + [f.name for f in fv.features]
            have = [r[1] for r in conn.execute(f"PRAGMA table_info({_table(config, fv)})").fetchall()]
            if have and have != want:  # the view's features changed: rebuild (re-materialise after)
                conn.execute(f"DROP TABLE {_table(config, fv)}")
            # keyed by the customer alone (no rowid): one B-tree per table, a third less to write and
            # one search per read; a table made before keeps its rowid and works alike
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_table(config, fv)} "
                f"({_KEY} TEXT PRIMARY KEY, {_TS} TEXT, {', '.join(cols)}) WITHOUT ROWID"
            )

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        conn = self._conn(config)
        for fv in tables:
            conn.execute(f"DROP TABLE IF EXISTS {_table(config, fv)}")

    # -- writes ------------------------------------------------------------------------------
    def _upsert(self, config: RepoConfig, fv: FeatureView, names: list[str], rows: Iterable[tuple], bulk: bool) -> None:
        cols = ", ".join([_KEY, _TS] + [ident(n) for n in names])
        marks = ", ".join("?" * (len(names) + 2))
        conn = self._conn(config)
        if bulk:  # bulk load (materialisation): a crash means re-materialising anyway
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA cache_size=-262144")  # 256 MB of pages while loading (default 2 MB)
        conn.execute("BEGIN")
        try:
            conn.executemany(f"INSERT OR REPLACE INTO {_table(config, fv)} ({cols}) VALUES ({marks})", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-2000")

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Feast's generic write path (protobuf values); :func:`write_arrow` is the fast one."""
        names = [f.name for f in table.features]
        rows = [
            (
                _key(k),
                ts.astimezone(UTC).isoformat() if ts.tzinfo else ts.isoformat(),
                *[_from_proto(vals[n]) if n in vals else None for n in names],
            )
            for k, vals, ts, _ in data
        ]
        self._upsert(config, table, names, rows, len(rows) > 10_000)
        if progress:
            progress(len(data))

    def write_arrow(
        self, config: RepoConfig, table: FeatureView, data: pa.Table, join_key: str, timestamp_field: str
    ) -> int:
        """Write the rows of ``data`` (join key, timestamp, every feature of ``table``).

        Returns:
            The number of rows written.
        """
        names = [f.name for f in table.features]
        data = data.sort_by(join_key)  # B-tree inserts in key order touch each page once
        cols = [data.column(join_key).cast(pa.string()).to_pylist(), _iso_utc(data.column(timestamp_field))]
        cols += [_sqlite_values(data.column(n)) for n in names]
        self._upsert(config, table, names, zip(*cols, strict=True), data.num_rows > 10_000)
        return data.num_rows

    # -- reads -------------------------------------------------------------------------------
    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        feats = [f for f in table.features if requested_features is None or f.name in requested_features]
        keys = [_key(k) for k in entity_keys]
        cols = ", ".join([_KEY, _TS] + [ident(f.name) for f in feats])
        found: dict[str, tuple] = {}
        conn = self._conn(config)
        for i in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[i : i + 900]
            q = f"SELECT {cols} FROM {_table(config, table)} WHERE {_KEY} IN ({', '.join('?' * len(chunk))})"
            for row in conn.execute(q, chunk):
                found[row[0]] = row
        is_int = [f.dtype == Int64 for f in feats]
        out: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for k in keys:
            row = found.get(k)
            if row is None:
                out.append((None, None))
                continue
            ts = datetime.fromisoformat(row[1])
            ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
            out.append((ts, {f.name: _value_proto(v, ii) for f, v, ii in zip(feats, row[2:], is_int, strict=True)}))
        return out

    # -- bulk reads (serving's fast path) ------------------------------------------------------
    # Same rows and values as online_read → FeatureStore.get_online_features → float64, without
    # the protobuf round trip: the service reads one customer per request, and Feast's generic
    # response building costs several times the SQLite query.
    _local = threading.local()  # one read connection per thread (the writer keeps _conns)

    def _read_conn(self, config: RepoConfig) -> sqlite3.Connection:
        path = db_path(config)
        conns: dict[str, sqlite3.Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        if path not in conns:
            if not Path(path).exists():
                raise FileNotFoundError(f"online store {path} does not exist")
            conns[path] = sqlite3.connect(path, isolation_level=None, cached_statements=256)
        return conns[path]

    def read_matrix(
        self, config: RepoConfig, views: Sequence[tuple[FeatureView, Sequence[str]]], keys: Sequence[str]
    ) -> np.ndarray:
        """Features of ``keys`` from several feature views as one float64 matrix.

        Args:
            config: the repo config.
            views: (feature view, feature names) in the order wanted; columns follow it.
            keys: join-key values (customer ids); duplicates allowed.

        Returns:
            ``len(keys) × Σ len(names)`` float64 (see :class:`MatrixQuery`).

        Raises:
            FileNotFoundError: the store file is missing.
            sqlite3.Error: a table or column is missing (not materialised, view changed).
        """
        return self.matrix_query(config, views)(keys)

    def matrix_query(self, config: RepoConfig, views: Sequence[tuple[FeatureView, Sequence[str]]]) -> MatrixQuery:
        """:meth:`read_matrix` with its SQL built once (what the service keeps per feature service)."""
        return MatrixQuery(self, config, views)


class MatrixQuery:
    """One SELECT joining the tables of several feature views on the customer key.

    Calling it with keys returns a ``len(keys) × Σ len(names)`` float64 matrix: NaN
    where the store has no row for a key or the value is null. Integer features are
    truncated like :meth:`ColumnarSqliteOnlineStore.online_read` (``int(value)``), so
    values equal Feast's online response cast to float64. Duplicate keys are read once.
    """

    CHUNK = 900  # SQLite's bound-parameter limit is 999

    def __init__(
        self, store: ColumnarSqliteOnlineStore, config: RepoConfig, views: Sequence[tuple[FeatureView, Sequence[str]]]
    ) -> None:
        self.store, self.config = store, config
        self._path = db_path(config)
        sel: list[str] = []
        joins: list[str] = []
        ints: list[int] = []
        for i, (fv, names) in enumerate(views):
            dtypes = {f.name: f.dtype for f in fv.features}
            for n in names:
                if n not in dtypes:
                    raise KeyError(f"feature view {fv.name} has no feature {n!r}")
                if dtypes[n] == Int64:
                    ints.append(len(sel))
                sel.append(f"t{i}.{ident(n)}")
            joins.append(f"LEFT JOIN {_table(config, fv)} t{i} ON t{i}.{_KEY} = k.key")
        self.width = len(sel)
        self.ints = np.array(ints, dtype=np.intp)
        self._sql = f"SELECT k.key, {', '.join(sel) or 'NULL'} FROM {{keys}} k {' '.join(joins)}"
        self._one = self._sql.format(keys="(SELECT ? AS key)")

    def _query(self, n: int) -> str:
        if n == 1:
            return self._one
        return "WITH ks(key) AS (VALUES " + ", ".join(["(?)"] * n) + ") " + self._sql.format(keys="ks")

    def __call__(self, keys: Sequence[str]) -> np.ndarray:
        conn = getattr(self.store._local, "conns", {}).get(self._path) or self.store._read_conn(self.config)
        unique = list(dict.fromkeys(str(k) for k in keys))
        rows: list[tuple] = []
        for i in range(0, len(unique), self.CHUNK):
            chunk = unique[i : i + self.CHUNK]
            rows.extend(conn.execute(self._query(len(chunk)), chunk).fetchall())
        vals = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), self.width)  # None -> NaN
        if len(self.ints):
            vals[:, self.ints] = np.trunc(vals[:, self.ints])
        if len(unique) == len(keys) and all(r[0] == k for r, k in zip(rows, unique, strict=True)):
            return vals
        at = {r[0]: j for j, r in enumerate(rows)}
        return vals[[at[str(k)] for k in keys]]


def db_path(config: RepoConfig) -> str:
    """The SQLite file of the online store (relative paths are under the repo path)."""
    p = config.online_store.path
    return p if Path(p).is_absolute() else str(Path(config.repo_path or ".") / p)
