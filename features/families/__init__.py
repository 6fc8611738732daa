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
    The same string runs on Spark (``compute.engine: spark``) through ``nbp.dialect.to_spark``,
    so it keeps to SQL both engines answer alike: calendar arithmetic through
    ``_sql.months_between``, ``days_between`` and ``add_months`` rather than ``date_diff`` or
    ``to_months`` (``tests/features/test_spark_build.py`` checks every family).
``SPINE_ROWS`` (optional)
    True when ``sql`` returns exactly one row per spine row (customer known at T, per
    as-of): the build writes it without joining it to the spine again, and checks the count.
"""
