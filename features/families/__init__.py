"""Feature families: each module declares ``FAMILY``, ``REQUIRES`` (tables it reads),
``FEATURES`` (the catalogue entries) and ``sql(tables)`` (pure DuckDB SQL returning
``customer_id``, ``as_of`` and one column per feature, for every as-of at once)."""
