"""Feature store: DuckDB aggregates per as-of date, Feast feature views, offline and online stores.

Importing this package first switches off Feast's import-time typeguard instrumentation
(:func:`_feast_without_typeguard`): every module here that touches Feast lives in it.
"""

from __future__ import annotations

import sys


def _feast_without_typeguard() -> None:
    """Import Feast as ``python -O`` would: ``typeguard.typechecked`` returns its target.

    Feast decorates its feature-view and source classes with typeguard's ``@typechecked``,
    which re-parses and recompiles each class's module source when Feast is imported: most
    of Feast's import time, paid by every command that touches Feast
    (docs/decisions/009d-feast-import-without-typeguard.md). typeguard documents the
    decorator as a development aid that does nothing under ``-O``; no other installed
    package uses it. Feast's own validation (its protobuf round trips, registry checks)
    still runs. Without effect if Feast was imported before this package.
    """
    if "feast" in sys.modules:
        return
    import typeguard

    def typechecked(target=None, **_kwargs):  # noqa: ANN001, ANN003, ANN202 - the decorator's two forms
        return target if target is not None else (lambda t: t)

    typeguard.typechecked = typechecked


_feast_without_typeguard()
