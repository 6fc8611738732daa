"""Bulk loading of the Redis online store, in exactly the layout Feast's ``RedisOnlineStore`` reads.

Feast's own Redis writes build a protobuf per value and a redis-py command per entity, which
costs minutes per million customers. This module writes the same bytes column by column:

* key: the entity key serialised as Feast's ``serialize_entity_key`` does (version 3, one
  string join key) followed by the Feast project, so member banks sharing one Redis never
  share a key (:func:`features.store.project`);
* one hash per key; per feature view the fields ``mmh3("<view>:<feature>")`` (4 bytes,
  Feast's ``_mmh3``) holding the serialised ``ValueProto`` (``int64_val`` or ``double_val``;
  a null, or a NaN, is the empty message, as Feast writes it) and ``_ts:<view>`` holding the
  event time as a serialised ``google.protobuf.Timestamp``.

Rows are encoded with Arrow and numpy into Redis protocol (RESP) commands, one ``HSET`` per
(customer, view), and streamed in chunks over one connection per writer: the connection is
opened by redis-py (so ``db``, ``password``, ``username`` and ``ssl`` of the connection string
mean what they mean to Feast), the chunk goes out with one ``sendall`` and its replies are
counted, not parsed one by one. Unlike Feast's write, a load replaces what is stored whatever
its timestamp (like the SQLite store): materialising an earlier as-of again rolls back.

With ``compute.engine: spark`` the rows are read from the feature tables by Spark and each
partition writes its own rows (:func:`load_spark`); otherwise the driver writes what the offline
store pulls (:class:`Writer`, called by :func:`features.store.materialize`). Nothing here
imports Feast at module level: Spark's Python workers import this module.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import EVENT_TS, JOIN_KEY
from nbp.errors import FeatureStoreError
from nbp.sqltext import timestamp

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

CHUNK_ROWS = 4_000  # HSETs per round trip: a few MB out, under 32 KB of replies back
_STRING = 2  # feast ValueType.STRING, as serialize_entity_key writes it
_INT_TAG, _DOUBLE_TAG = 0x20, 0x29  # ValueProto fields int64_val (4, varint) and double_val (5, fixed64)
_CRLF = b"\r\n"


@dataclass(frozen=True)
class ViewLayout:
    """What a load of one feature view writes: plain data, so Spark can ship it to executors.

    Attributes:
        name: the feature view's name as the online store keys it (Feast's versioned name).
        features: feature names, in the view's order.
        is_int: per feature, True for ``Int64`` (``int64_val``), False for ``Float64`` (``double_val``).
        fields: per feature, the 4-byte hash field ``mmh3("<name>:<feature>")``.
    """

    name: str
    features: tuple[str, ...]
    is_int: tuple[bool, ...]
    fields: tuple[bytes, ...]

    @property
    def ts_field(self) -> bytes:
        return f"_ts:{self.name}".encode()


@dataclass(frozen=True)
class Target:
    """Where and under which project to write (plain data, shipped to Spark executors).

    Attributes:
        host, port: the Redis server.
        params: the connection string's other settings (``db``, ``password``, ``ssl``, ...),
            parsed as Feast parses them, passed to ``redis.Redis``.
        project: the Feast project, the suffix of every key.
        key_ttl_seconds: Feast's ``key_ttl_seconds`` (an EXPIRE after each HSET), or None.
    """

    host: str
    port: int
    params: tuple[tuple[str, Any], ...]
    project: str
    key_ttl_seconds: int | None = None


def layout(fs: FeatureStore, fv: FeatureView) -> ViewLayout:
    """The :class:`ViewLayout` of a feature view, named as Feast's Redis store names it."""
    from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
    from feast.types import Int64

    name = compute_versioned_name(fv, fs.config.registry.enable_online_feature_view_versioning)
    feats = tuple(f.name for f in fv.features)
    return ViewLayout(
        name=name,
        features=feats,
        is_int=tuple(f.dtype == Int64 for f in fv.features),
        fields=tuple(_mmh3(f"{name}:{n}") for n in feats),
    )


def target(fs: FeatureStore) -> Target:
    """The :class:`Target` of a store whose online store is Redis.

    Raises:
        FeatureStoreError: the online store is not a single Redis server.
    """
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType

    oc = fs.config.online_store
    if not isinstance(oc, RedisOnlineStoreConfig) or oc.redis_type != RedisType.redis:
        raise FeatureStoreError(
            f"online store of project {fs.project}: the bulk Redis load needs a single Redis server "
            f"(online_store type redis, redis_type redis), not {getattr(oc, 'type', oc)!r}"
        )
    nodes, params = RedisOnlineStore._parse_connection_string(oc.connection_string)
    return Target(
        host=nodes[0]["host"],
        port=int(nodes[0]["port"]),
        params=tuple(sorted(params.items())),
        project=fs.project,
        key_ttl_seconds=oc.key_ttl_seconds,
    )


# -- encoding ---------------------------------------------------------------------------------
def _ragged(rows: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """A binary array whose i-th value is the first ``lengths[i]`` bytes of ``rows[i]`` (uint8 matrix)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = rows[np.arange(rows.shape[1])[None, :] < lengths[:, None]]  # row-major: rows concatenated
    return pa.Array.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _varints(u: np.ndarray, tag: int) -> pa.BinaryArray:
    """``tag`` followed by each uint64 as a protobuf varint (negative int64 take 10 bytes, as in protobuf)."""
    n = len(u)
    rows = np.zeros((n, 11), dtype=np.uint8)
    rows[:, 0] = tag
    size = np.ones(n, dtype=np.int64)
    for k in range(10):
        part = (u >> np.uint64(7 * k)) & np.uint64(0x7F)
        rows[:, k + 1] = part
        more = (u >> np.uint64(7 * (k + 1))) != 0
        rows[more, k + 1] |= 0x80
        size += more
    return _ragged(rows, 1 + size)


def value_protos(column: pa.Array | pa.ChunkedArray, is_int: bool) -> pa.BinaryArray:
    """Each value of a numeric column as Feast's serialised ``ValueProto``, for a whole column at once.

    Equal to ``python_values_to_proto_values(column.to_numpy(), INT64 | DOUBLE)`` then
    ``SerializeToString``: null (and NaN) → ``b""``; ints → ``int64_val``; floats → ``double_val``.

    Raises:
        FeatureStoreError: the column is not numeric.
    """
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
        raise FeatureStoreError(f"online load: a numeric feature column holds {col.type}")
    if pa.types.is_null(col.type):
        return pa.array([b""] * len(col), pa.binary())
    if is_int and pa.types.is_floating(col.type):  # Feast: NaN is null, else int(value)
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        col = pc.cast(pc.trunc(col), pa.int64(), safe=False)
    present = col.is_valid().to_numpy(zero_copy_only=False)
    if is_int:
        values = col.cast(pa.int64()).fill_null(0).to_numpy().view(np.uint64)
        out = _varints(values, _INT_TAG)
        if present.all():
            return out
        return pc.if_else(pa.array(present), out, pa.scalar(b"", pa.binary()))
    values = col.cast(pa.float64()).fill_null(np.nan).to_numpy()
    present &= ~np.isnan(values)
    rows = np.empty((len(values), 9), dtype=np.uint8)
    rows[:, 0] = _DOUBLE_TAG
    rows[:, 1:] = values.astype("<f8").view(np.uint8).reshape(-1, 8)
    return _ragged(rows, np.where(present, 9, 0))


def timestamp_protos(column: pa.Array | pa.ChunkedArray) -> pa.BinaryArray:
    """Each event time as Feast writes it (``google.protobuf.Timestamp``; naive times are UTC),
    serialised once per distinct value."""
    from google.protobuf.timestamp_pb2 import Timestamp

    micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    if micros.null_count:
        raise FeatureStoreError("online load: an event timestamp is null")
    uniq = pc.unique(micros)
    text = [
        Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000).SerializeToString() for us in uniq.to_pylist()
    ]
    return pa.array(text, pa.binary()).take(pc.index_in(micros, value_set=uniq))


def entity_keys(ids: pa.Array | pa.ChunkedArray, project: str) -> pa.BinaryArray:
    """Redis keys of customer ids: Feast's ``serialize_entity_key`` (version 3, join key
    ``customer_id`` of type string) followed by the project."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    ids = ids.cast(pa.string()).cast(pa.binary())
    if ids.null_count:
        raise FeatureStoreError(f"online load: a {JOIN_KEY} is null")
    jk = JOIN_KEY.encode()
    head = struct.pack("<III", 1, _STRING, len(jk)) + jk + struct.pack("<I", _STRING)
    lengths = pc.binary_length(ids).cast(pa.uint32()).to_numpy().astype("<u4")
    size = _ragged(lengths.view(np.uint8).reshape(-1, 4), np.full(len(lengths), 4))
    return pc.binary_join_element_wise(head, size, ids, project.encode(), b"")


def _bulk_len(values: pa.Array) -> pa.Array:
    """``$<length>\\r\\n`` of each value: the RESP bulk-string header."""
    return pc.binary_join_element_wise(b"$", pc.binary_length(values).cast(pa.string()).cast(pa.binary()), _CRLF, b"")


def hset_commands(keys: pa.Array, view: ViewLayout, values: Sequence[pa.Array], ts: pa.Array) -> pa.BinaryArray:
    """One RESP ``HSET key ts_field ts field value ...`` per row (the view's fields in order)."""
    nargs = 2 + 2 * (len(view.fields) + 1)
    parts: list[Any] = [f"*{nargs}\r\n$4\r\nHSET\r\n".encode(), _bulk_len(keys), keys, _CRLF]
    for field, col in zip((view.ts_field, *view.fields), (ts, *values), strict=True):
        parts += [b"$%d\r\n%s\r\n" % (len(field), field), _bulk_len(col), col, _CRLF]
    return pc.binary_join_element_wise(*parts, b"")


def _expire_commands(keys: pa.Array, seconds: int) -> pa.BinaryArray:
    tail = b"$%d\r\n%d\r\n" % (len(str(seconds)), seconds)
    return pc.binary_join_element_wise(b"*3\r\n$6\r\nEXPIRE\r\n", _bulk_len(keys), keys, _CRLF, tail, b"")


# -- writing ----------------------------------------------------------------------------------
class Writer:
    """One connection that loads feature-view rows into Redis (see the module docstring).

    Use as a context manager; :meth:`write` takes an Arrow table or batch per view.
    """

    def __init__(self, tgt: Target, chunk_rows: int = CHUNK_ROWS) -> None:
        import redis

        self.target, self.chunk_rows = tgt, chunk_rows
        self._client = redis.Redis(host=tgt.host, port=tgt.port, **dict(tgt.params))
        self._conn = self._client.connection_pool.make_connection()
        try:
            self._conn.connect()  # the handshake (AUTH, SELECT, TLS) done by redis-py
        except redis.RedisError as e:
            raise FeatureStoreError(f"online store: cannot connect to Redis at {tgt.host}:{tgt.port} ({e})") from e
        self._sock = self._conn._sock
        self._owed, self._partial = 0, b""  # replies not yet read; a reply cut by recv

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.disconnect()
        self._client.close()

    def write(self, view: ViewLayout, rows: pa.Table | pa.RecordBatch) -> int:
        """Write each row's features of ``view`` (columns ``customer_id``, ``event_timestamp``
        and the view's features) to its customer's hash.

        Returns:
            The number of rows written.

        Raises:
            FeatureStoreError: a column is missing, or Redis refused a command.
        """
        missing = [c for c in (JOIN_KEY, EVENT_TS, *view.features) if c not in rows.column_names]
        if missing:
            raise FeatureStoreError(f"online load of feature view {view.name}: column(s) {missing} missing")
        table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
        for part in table.combine_chunks().to_batches(max_chunksize=self.chunk_rows):
            keys = entity_keys(part.column(JOIN_KEY), self.target.project)
            values = [value_protos(part.column(n), i) for n, i in zip(view.features, view.is_int, strict=True)]
            cmds = [hset_commands(keys, view, values, timestamp_protos(part.column(EVENT_TS)))]
            if self.target.key_ttl_seconds:
                cmds.append(_expire_commands(keys, self.target.key_ttl_seconds))
            sent = self._send(cmds)
            self._drain(view, leave=sent)  # the previous chunk's replies: Redis works on this one meanwhile
        self._drain(view, leave=0)
        return rows.num_rows

    def _send(self, commands: Sequence[pa.BinaryArray]) -> int:
        """Send whole chunks of commands; returns how many were sent."""
        for cmd in commands:
            offsets = np.frombuffer(cmd.buffers()[1], dtype=np.int32)[cmd.offset : cmd.offset + len(cmd) + 1]
            self._sock.sendall(memoryview(cmd.buffers()[2])[offsets[0] : offsets[-1]])
        n = sum(len(c) for c in commands)
        self._owed += n
        return n

    def _drain(self, view: ViewLayout, leave: int) -> None:
        """Read replies until at most ``leave`` are outstanding. HSET and EXPIRE answer one line
        each (``:<n>`` or ``-<error>``), so replies are counted, not parsed."""
        while self._owed > leave:
            got = self._sock.recv(1 << 16)
            if not got:
                raise FeatureStoreError(f"online load of feature view {view.name}: Redis closed the connection")
            data = self._partial + got
            end = data.rfind(_CRLF) + 2
            lines, self._partial = data[:end], data[end:]
            if lines.startswith(b"-") or b"\r\n-" in lines:
                line = lines[lines.find(b"-") :].split(_CRLF, 1)[0].decode(errors="replace")
                raise FeatureStoreError(f"online load of feature view {view.name}: Redis refused a write ({line})")
            self._owed -= lines.count(_CRLF)


# -- the loads ---------------------------------------------------------------------------------
def _partition_writer(tgt: Target, view: ViewLayout, chunk_rows: int):  # noqa: ANN202 (a closure for Spark)
    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        n = 0
        with Writer(tgt, chunk_rows) as w:
            for batch in batches:
                n += w.write(view, batch)
        yield pa.RecordBatch.from_pydict({"rows": [n]})

    return write


def _spark_ts(t: datetime) -> str:
    """An instant as a Spark timestamp literal's text, in UTC (the session's time zone)."""
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def load_spark(fs: FeatureStore, spark: Any, start: datetime, end: datetime, chunk_rows: int = CHUNK_ROWS) -> int:
    """Read each feature view's rows with event time in ``[start, end)`` from its Parquet table
    with Spark and write them from the executors, each partition over its own connection
    (``mapInArrow``), then record the interval in the registry.

    Every view's scan and write is one stage of a single Spark job, so the executors work
    on all views at once. A (customer, as-of) row is unique in the feature tables; should one
    repeat, the last one written is kept (the offline store's pull keeps one too), so no
    shuffle is spent on it.

    Returns:
        The largest number of rows written for one view.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    tgt, views = target(fs), fs.list_feature_views()
    if not views:
        return 0
    when = f"{EVENT_TS} >= {timestamp(_spark_ts(start))} AND {EVENT_TS} < {timestamp(_spark_ts(end))}"
    counts = []
    for fv in views:
        view = layout(fs, fv)
        rows = spark.read.parquet(fv.batch_source.path).where(F.expr(when)).select(JOIN_KEY, EVENT_TS, *view.features)
        written = rows.mapInArrow(_partition_writer(tgt, view, chunk_rows), "rows long")
        counts.append(written.select(F.lit(fv.name).alias("view"), "rows"))
    job = reduce(lambda x, y: x.unionAll(y), counts).groupBy("view").agg(F.sum("rows").alias("n"))
    try:
        done = {r["view"]: r["n"] for r in job.collect()}
    except Exception as e:  # Spark wraps an executor's error in its own exception
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise FeatureStoreError(
            f"online load on Spark into Redis at {tgt.host}:{tgt.port} (project {tgt.project}) failed: "
            f"{lines[-1][:300] if lines else type(e).__name__}"
        ) from e
    for fv in views:
        fs.registry.apply_materialization(fv, fs.project, start, end)
    n = max(done.values(), default=0)
    log.info(
        "online load (spark): %d feature views, up to %s rows each, %.1f s",
        len(views),
        f"{n:,}",
        time.perf_counter() - t0,
    )
    return n
