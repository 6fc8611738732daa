"""DuckDB SQL → Spark SQL: the one translation that lets feature logic be written once.

Feature families, the point-in-time join and the monthly sources are written in DuckDB's
dialect, kept to a portable subset. :func:`to_spark` transpiles a statement with SQLGlot and
refuses the constructs SQLGlot is known to pass through wrongly (``ASOF JOIN``, which Spark
rejects; ``list(x ORDER BY ...)``, which becomes an unordered ``collect_list``).
"""

from __future__ import annotations

import re
from functools import lru_cache

from nbp.errors import FeatureStoreError

_REFUSED = (
    (re.compile(r"\bASOF\s+(LEFT\s+)?JOIN\b", re.I), "ASOF JOIN (Spark has none)"),
    (
        re.compile(r"\b(list|array_agg|string_agg)\s*\([^()]*\bORDER\s+BY\b", re.I),
        "an ordered list aggregate (SQLGlot drops the order)",
    ),
)


@lru_cache(maxsize=512)
def to_spark(sql: str) -> str:
    """The Spark SQL of one DuckDB statement.

    Raises:
        FeatureStoreError: the statement uses a construct outside the portable subset.
    """
    import sqlglot

    for pattern, what in _REFUSED:
        if pattern.search(sql):
            raise FeatureStoreError(f"SQL for Spark: {what} is outside the portable subset:\n{sql[:400]}")
    out = sqlglot.transpile(sql, read="duckdb", write="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)
    if len(out) != 1:
        raise FeatureStoreError(f"SQL for Spark: expected one statement, got {len(out)}")
    return out[0]
