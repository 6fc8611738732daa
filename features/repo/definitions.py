"""Feast definitions: the ``customer`` entity, one file source and feature view per
family, one feature service per product.

Built from the catalogue (:mod:`features.catalog`) by functions, so paths come
from the workspace and products from the config; :mod:`features.store` applies
them with ``FeatureStore.apply``. This is the only definition of the features
that training (historical retrieval) and serving (online reads) use.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

from features import tiers
from features.catalog import family_features, modules
from features.schema import ENTITY, EVENT_TS, JOIN_KEY, PROFILE_SERVICE, feature_service_name
from nbp.workspace import Workspace

# A month's row stays valid until the next monthly build; a longer gap (a skipped
# build) gives nulls instead of silently reusing old features in training rows.
TTL = timedelta(days=45)
_DTYPES = {"int": Int64, "float": Float64}


# ENTITIES ---------------------------------------------------------------------
def customer_entity() -> Entity:
    """The entity every feature view is keyed on (join key ``customer_id``)."""
    return Entity(
        name=ENTITY,
        join_keys=[JOIN_KEY],
        value_type=ValueType.STRING,
        description="银行客户(ECIF客户号) / bank customer (ECIF pseudonymous key)",
    )


# DATA SOURCES AND FEATURE VIEWS -----------------------------------------------
def feature_view(family: str, path: str, entity: Entity) -> FeatureView:
    """The feature view of one family, reading the Parquet files of the glob ``path`` (``features/build.py`` output)."""
    source = FileSource(
        name=f"{family}_source",
        path=path,
        timestamp_field=EVENT_TS,
        description=f"feature table of family {family}",
    )
    fields = [Field(name=JOIN_KEY, dtype=String)] + [
        Field(
            name=f.name,
            dtype=_DTYPES[f.dtype],
            description=f.description,
            tags={
                "family": f.family,
                "zh": f.zh,
                "en": f.en,
                **({"categories": ",".join(f.categories)} if f.categories else {}),
            },
        )
        for f in family_features(family)
    ]
    module = tiers if family == tiers.FAMILY else modules(True)[family]
    doc = (module.__doc__ or family).strip().splitlines()[0]
    return FeatureView(
        name=family,
        entities=[entity],
        ttl=TTL,
        schema=fields,
        source=source,
        online=True,
        description=doc,
        tags={"family": family},
    )


def feature_views(ws: Workspace) -> list[FeatureView]:
    """One feature view per family, reading the family's table (:meth:`nbp.workspace.Workspace.feature_table`);
    a member bank's repo also holds the bank family's (:data:`features.catalog.MEMBER_MODULES`); the
    last is the tier view (:mod:`features.tiers`)."""
    entity = customer_entity()
    families = [*modules(ws.bank is not None), tiers.FAMILY]
    return [feature_view(fam, ws.feature_glob(fam), entity) for fam in families]


# FEATURE SERVICES -------------------------------------------------------------
def feature_services(views: list[FeatureView], products: Mapping[str, str | None]) -> list[FeatureService]:
    """One feature service per product: the features its model reads (every view but the tier view; a
    member bank's include the bank family, which only a pooled model reads, in training and serving alike),
    and :data:`features.schema.PROFILE_SERVICE`, every view, for segments and customer profiles.

    Args:
        views: the feature views.
        products: product key -> feature service name from the config (None: ``<key>_v1``).
    """
    inputs = [v for v in views if v.name != tiers.FAMILY]
    return [
        FeatureService(
            name=name or feature_service_name(key),
            features=inputs,
            description=f"features read by the {key} model",
            tags={"product": key},
        )
        for key, name in products.items()
    ] + [FeatureService(name=PROFILE_SERVICE, features=list(views), description="every feature view, tiers included")]


def objects(ws: Workspace, products: Mapping[str, str | None]) -> list:
    """Everything to apply: entity, feature views, feature services."""
    views = feature_views(ws)
    return [customer_entity(), *views, *feature_services(views, products)]
