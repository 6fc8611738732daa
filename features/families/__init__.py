"""Feature families. Each module declares:

``FAMILY``
    its name (the Feast feature view's name).
``REQUIRES``
    the ingested tables it reads; without one of them every feature of the family is null.
``FEATURES``
    the catalogue entries, each with its SQL expression (:class:`features.schema.Feature`);
    a feature's name is written there once.
``sql(tables)``
    pure DuckDB SQL returning ``customer_id``, ``as_of`` and one column per feature, for
    every as-of at once, built from ``FEATURES`` (helpers in :mod:`features.families._sql`).
``SPINE_ROWS`` (optional)
    True when ``sql`` returns exactly one row per spine row (customer known at T, per
    as-of): the build writes it without joining it to the spine again, and checks the count.
"""
