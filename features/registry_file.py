"""Feast's file registry, written atomically.

Feast's ``FileRegistryStore`` rewrites ``registry.db`` in place; a job killed during the
write (``feast apply``, or the interval a materialisation records) leaves a truncated file
that every later job fails to parse. This store writes the new registry beside it
(``nbp.jobs.atomic_write``) and renames it over the old one, so the file is always one
whole version. :func:`features.store.repo_config` names it as ``registry_store_type``.
"""

from __future__ import annotations

import os
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now

from nbp.jobs import atomic_write


class AtomicFileRegistryStore(FileRegistryStore):
    """:class:`FileRegistryStore` whose writes are a rename of a complete temporary file."""

    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        with atomic_write(self._filepath) as tmp, open(tmp, mode="wb", buffering=0) as f:
            f.write(registry_proto.SerializeToString())
            os.fsync(f.fileno())
