"""Quoting for SQL text built in code: the one place identifiers and literals are escaped.

DuckDB parameter binding is used where a value can be bound; these cover what cannot be
(table and column names, and literals inside generated feature SQL).
"""

from __future__ import annotations


def ident(name: str) -> str:
    """A double-quoted SQL identifier (an embedded ``"`` doubled)."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """A single-quoted SQL string literal (an embedded ``'`` doubled)."""
    return "'" + value.replace("'", "''") + "'"


def timestamp(text: str) -> str:
    """A timestamp literal, ``TIMESTAMP '<text>'`` (naive; DuckDB and Spark read it alike)."""
    return f"TIMESTAMP {lit(text)}"
