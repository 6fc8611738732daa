"""SQL pieces of the ingest validation, built from :mod:`bankexport.spec`.

Pure functions: each returns a DuckDB SQL expression or statement as a string.
Nothing here touches a connection. The rule names are the ones documented in
``docs/ingest-rules.md``.

Column naming inside the validation tables:
    ``r<i>``      raw cell of the file's i-th column (VARCHAR, as read)
    ``p_<name>``  parsed value of spec column ``name`` (typed, NULL if unknown/unparseable)
    ``b_<name>``  rule the cell broke (VARCHAR, NULL when the cell is fine)
    ``_why``      ``rule:column`` the row broke (NULL when the row is kept)
"""

from __future__ import annotations

from bankexport.spec import Column, Table

# Row-level rules (a row is set aside whole).
MISSING_REQUIRED = "missing_required"
UNPARSEABLE = "unparseable"
UNKNOWN_ENUM = "unknown_enum"
OUT_OF_RANGE = "out_of_range"
NON_POSITIVE = "non_positive"
DUPLICATE_KEY = "duplicate_key"
BROKEN_REFERENCE = "broken_reference"
MALFORMED_ROW = "malformed_row"
# Cell-level rule (an optional cell is nulled and reported).
MALFORMED_OPTIONAL = "malformed_optional"
# Stop rules (DataContractError).
MISSING_TABLE = "missing_table"
MISSING_COLUMN = "missing_column"
DUPLICATE_COLUMN = "duplicate_column"
AMBIGUOUS_TABLE = "ambiguous_table"
UNREADABLE_FILE = "unreadable_file"
BAD_MANIFEST = "bad_manifest"

_PATTERNS = {
    "date": r"\d{4}-\d{2}-\d{2}",
    "timestamp": r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?",
    "money": r"[+-]?\d{1,15}(\.\d{1,2})?",
    "int": r"[+-]?\d{1,18}(\.0+)?",
    "month": r"\d{4}-\d{2}",
}

DUCK_TYPES = {
    "string": "VARCHAR", "enum": "VARCHAR", "date": "TIMESTAMP", "timestamp": "TIMESTAMP",
    "month": "TIMESTAMP", "money": "DOUBLE", "int": "BIGINT",
}


def lit(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def ident(s: str) -> str:
    """A quoted SQL identifier."""
    return '"' + s.replace('"', '""') + '"'


def parse_expr(col: Column, v: str) -> str:
    """Typed value of a trimmed, non-empty cell ``v``; NULL when it does not parse."""
    t = col.type
    if t in ("string", "enum"):
        return v
    pat = lit(_PATTERNS[t])
    if t == "date":
        val = f"CAST(TRY_CAST({v} AS DATE) AS TIMESTAMP)"
    elif t == "timestamp":
        val = f"TRY_CAST(replace({v}, 'T', ' ') AS TIMESTAMP)"
    elif t == "month":
        val = f"CAST(TRY_CAST({v} || '-01' AS DATE) AS TIMESTAMP)"
    elif t == "money":
        val = f"TRY_CAST({v} AS DOUBLE)"
    elif t == "int":
        val = f"TRY_CAST(regexp_replace({v}, '\\.0+$', '') AS BIGINT)"
    else:  # pragma: no cover - spec.py only has the types above
        raise ValueError(f"unknown column type {t!r}")
    return f"CASE WHEN regexp_full_match({v}, {pat}) THEN {val} END"


def can_break(col: Column) -> bool:
    """Whether a cell of this column can break any rule."""
    return col.required or col.type != "string"


def break_expr(col: Column) -> str:
    """Rule broken by the cell of ``col`` (uses ``v_<name>``, ``p_<name>``), or NULL."""
    v, p = ident("v_" + col.name), ident("p_" + col.name)

    def rule(name: str) -> str:  # an optional cell breaks one rule only: malformed_optional
        return lit(name if col.required else MALFORMED_OPTIONAL)

    whens = [f"WHEN {v} IS NULL THEN " + (lit(MISSING_REQUIRED) if col.required else "NULL")]
    if col.type not in ("string", "enum"):
        whens.append(f"WHEN {p} IS NULL THEN {rule(UNPARSEABLE)}")
    if col.enum:
        values = ", ".join(lit(e) for e in col.enum)
        whens.append(f"WHEN {p} NOT IN ({values}) THEN {rule(UNKNOWN_ENUM)}")
    if col.min is not None:
        whens.append(f"WHEN {p} < {col.min} THEN {rule(OUT_OF_RANGE)}")
    if col.max is not None:
        whens.append(f"WHEN {p} > {col.max} THEN {rule(OUT_OF_RANGE)}")
    if col.positive:
        whens.append(f"WHEN {p} <= 0 THEN {rule(NON_POSITIVE)}")
    return "CASE " + " ".join(whens) + " END"


def check_sql(table: Table, present: dict[str, int], src: str) -> str:
    """SELECT that parses and checks every cell of ``src`` (raw table with ``r<i>`` columns).

    Args:
        table: the spec table.
        present: spec column name -> index of its raw column ``r<i>`` in ``src``.
        src: name of the raw table; its ``rowid`` becomes ``_ord``.

    Returns:
        SQL yielding ``_ord``, ``p_<col>`` for every spec column (NULL-typed when the
        file lacks the optional column), ``b_<col>`` for columns that can break a rule,
        and ``_why`` (``rule:column`` of the first broken required column, else NULL).
    """
    cols = table.columns
    vs = []
    for c in cols:
        if c.name in present:
            vs.append(f"NULLIF(trim(r{present[c.name]}), '') AS {ident('v_' + c.name)}")
        else:
            vs.append(f"CAST(NULL AS VARCHAR) AS {ident('v_' + c.name)}")
    ps = [f"{parse_expr(c, ident('v_' + c.name))} AS {ident('p_' + c.name)}" for c in cols]
    vnames = ", ".join(ident("v_" + c.name) for c in cols)
    bs = [f"{break_expr(c)} AS {ident('b_' + c.name)}" for c in cols if can_break(c)]
    pnames = ", ".join(ident("p_" + c.name) for c in cols)
    req = [c for c in cols if c.required]
    why = " ".join(f"WHEN {ident('b_' + c.name)} IS NOT NULL THEN {ident('b_' + c.name)} || {lit(':' + c.name)}"
                   for c in req)
    why_expr = f"CASE {why} END" if why else "CAST(NULL AS VARCHAR)"
    bnames = ", ".join(ident("b_" + c.name) for c in cols if can_break(c))
    return (
        f"SELECT _ord, {pnames}, {bnames}, {why_expr} AS _why FROM ("
        f" SELECT _ord, {pnames}, {', '.join(bs)} FROM ("
        f"  SELECT _ord, {vnames}, {', '.join(ps)} FROM ("
        f"   SELECT rowid AS _ord, {', '.join(vs)} FROM {src})))"
    )


def stored_select(table: Table, src: str) -> str:
    """SELECT of the kept rows of a checked table, typed as stored (spec dtypes)."""
    out = []
    for c in table.columns:
        p = ident("p_" + c.name)
        if not c.required and can_break(c):
            p = f"CASE WHEN {ident('b_' + c.name)} IS NULL THEN {p} END"
        out.append(f"CAST({p} AS {DUCK_TYPES[c.type]}) AS {ident(c.name)}")
    return f"SELECT {', '.join(out)} FROM {src} WHERE _why IS NULL"


def duplicate_sql(table: Table, src: str) -> str:
    """SELECT ``_ord, _why`` of rows whose key repeats an earlier kept row's key.

    Keyless tables use the whole row (all parsed columns) as the key.
    """
    keys = list(table.key) if table.key else [c.name for c in table.columns]
    kp = [ident("p_" + k) for k in keys]
    on = " AND ".join(f"c.{k} IS NOT DISTINCT FROM d.{k}" for k in kp)
    label = lit(f"{DUPLICATE_KEY}:{'+'.join(table.key) if table.key else '*'}")
    return (
        f"SELECT c._ord, {label} AS _why FROM {src} c JOIN ("
        f" SELECT {', '.join(kp)}, min(_ord) AS _first FROM {src} WHERE _why IS NULL"
        f" GROUP BY ALL HAVING count(*) > 1) d ON {on}"
        f" WHERE c._why IS NULL AND c._ord <> d._first"
    )


def reference_sql(table: Table, src: str) -> str | None:
    """SELECT ``_ord, _why`` of rows pointing at a row that was not kept, or None.

    Targets are tables ``keys_<table>`` holding the kept keys of the referenced
    table (``keys_accounts`` also holds the owner ``customer_id``). A transaction
    whose ``customer_id`` is not the owner of its account breaks ``customer_id``.
    """
    refs = [c for c in table.columns if c.ref]
    if not refs:
        return None
    joins, whens = [], []
    for i, c in enumerate(refs):
        tgt_table, tgt_col = c.ref.split(".")
        a = f"k{i}"
        joins.append(f"LEFT JOIN keys_{tgt_table} {a} ON c.{ident('p_' + c.name)} = {a}.{ident(tgt_col)}")
        whens.append(f"WHEN {a}.{ident(tgt_col)} IS NULL THEN {lit(BROKEN_REFERENCE + ':' + c.name)}")
    names = [c.name for c in refs]
    if table.name == "transactions" and "account_id" in names and "customer_id" in names:
        a = f"k{names.index('account_id')}"
        whens.append(f"WHEN {a}.customer_id <> c.p_customer_id THEN {lit(BROKEN_REFERENCE + ':customer_id')}")
    why = "CASE " + " ".join(whens) + " END"
    return (f"SELECT * FROM (SELECT c._ord, {why} AS _why FROM {src} c {' '.join(joins)}"
            f" WHERE c._why IS NULL) WHERE _why IS NOT NULL")
