"""SQL pieces of the ingest validation, built from :mod:`bankexport.spec`.

Pure functions: each returns a DuckDB SQL expression or statement as a string.
Nothing here touches a connection. The rule names are the ones documented in
``docs/ingest-rules.md``.

Column naming inside the checked table ``chk`` (one row per record, in file
order, so ``rowid`` is the record's position among those the reader accepted):
    ``r<i>``      (Parquet only) raw cell of the file's i-th column (VARCHAR as read; a
                  column of a fitting type stays typed), kept for typed and unknown columns;
                  for an enum column only where its ``p_`` is NULL (the unknown value).
                  A CSV's rows carry no raw text: the few rows a report shows are read
                  again from the file by their byte span
    ``p_<name>``  parsed value of spec column ``name`` (typed, NULL if unknown/unparseable;
                  an enum column is a DuckDB ``ENUM`` of the spec's values)
    ``b_<name>``  rule an optional cell broke (NULL when the cell is fine)
    ``_why``      ``rule:column`` the row broke (NULL when the row is kept)
"""

from __future__ import annotations

from dataclasses import replace

from bankexport.spec import BANK_COLUMN, Column, Table
from nbp.sqltext import ident, lit

# Row-level rules (a row is set aside whole).
MISSING_REQUIRED = "missing_required"
UNPARSEABLE = "unparseable"
UNKNOWN_ENUM = "unknown_enum"
OUT_OF_RANGE = "out_of_range"
NON_POSITIVE = "non_positive"
DUPLICATE_KEY = "duplicate_key"
BROKEN_REFERENCE = "broken_reference"
MALFORMED_ROW = "malformed_row"
# Row rule for a required date, cell rule for an optional one: dated after the export date.
FUTURE_DATE = "future_date"
# Cell-level rule (an optional cell is nulled and reported).
MALFORMED_OPTIONAL = "malformed_optional"
# Stop rules (DataContractError).
MISSING_TABLE = "missing_table"
MISSING_COLUMN = "missing_column"
DUPLICATE_COLUMN = "duplicate_column"
AMBIGUOUS_TABLE = "ambiguous_table"
UNREADABLE_FILE = "unreadable_file"
BAD_MANIFEST = "bad_manifest"
EMPTY_FILE = "empty_file"
EMPTY_TABLE = "empty_table"
TRUNCATED_FILE = "truncated_file"
WRONG_ENCODING = "wrong_encoding"
TOO_MANY_SET_ASIDE = "too_many_set_aside"
TABLE_SHRANK = "table_shrank"
# Stop rules of a federation workspace: --bank and the manifest's bank_code disagree; an
# import would put a member bank beside a single-bank store, or a bank-less export beside banks.
BANK_MISMATCH = "bank_mismatch"
MIXED_WORKSPACE = "mixed_workspace"

DATE_TYPES = ("date", "timestamp", "month")

_PATTERNS = {
    "date": r"\d{4}-\d{2}-\d{2}",
    "timestamp": r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?",
    "money": r"[+-]?\d{1,15}(\.\d{1,2})?",
    "int": r"[+-]?\d{1,18}(\.0+)?",
    "month": r"\d{4}-\d{2}",
}

DUCK_TYPES = {
    "string": "VARCHAR",
    "enum": "VARCHAR",
    "date": "TIMESTAMP",
    "timestamp": "TIMESTAMP",
    "month": "TIMESTAMP",
    "money": "DOUBLE",
    "int": "BIGINT",
}


def enum_type(col: Column) -> str:
    """The DuckDB ``ENUM`` type of an enum column's spec values (in spec order).

    Casting to it is the exact, case-sensitive membership test; its Parquet form is
    a dictionary-encoded string column, much cheaper to write than free strings.
    """
    return "ENUM(" + ", ".join(lit(e) for e in col.enum) + ")"


def parse_expr(col: Column, v: str) -> str:
    """Typed value of a trimmed, non-empty cell ``v``; NULL when it does not parse."""
    t = col.type
    if col.enum:
        return f"TRY_CAST({v} AS {enum_type(col)})"
    if t in ("string", "enum"):
        return v
    pat = lit(_PATTERNS[t])
    if t == "date":
        val = f"CAST(TRY_CAST({v} AS DATE) AS TIMESTAMP)"
    elif t == "timestamp":
        val = f"TRY_CAST({v} AS TIMESTAMP)"  # DuckDB reads the 'T' separator too
    elif t == "month":
        val = f"CAST(TRY_CAST({v} || '-01' AS DATE) AS TIMESTAMP)"
    elif t == "money":
        val = f"TRY_CAST({v} AS DOUBLE)"
    elif t == "int":
        val = f"TRY_CAST(regexp_replace({v}, '\\.0+$', '') AS BIGINT)"
    else:  # pragma: no cover - spec.py only has the types above
        raise ValueError(f"unknown column type {t!r}")
    return f"CASE WHEN regexp_full_match({v}, {pat}) THEN {val} END"


_INTS = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)
_FLOATS = ("FLOAT", "DOUBLE")
_TIMESTAMPS = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")


def native_ok(col: Column, duck_type: str) -> bool:
    """Whether a typed (Parquet) column of ``duck_type`` can be checked without a text round trip."""
    base = duck_type.split("(")[0]
    if col.type in ("string", "enum"):
        return base == "VARCHAR"
    if col.type == "timestamp":
        return base in _TIMESTAMPS
    if col.type in ("date", "month"):
        return base == "DATE" or base in _TIMESTAMPS
    if col.type in ("money", "int"):
        return base in _INTS or base in _FLOATS or base == "DECIMAL"
    return False


def native_parse_expr(col: Column, v: str, duck_type: str) -> str:
    """Typed value of a native (Parquet) value ``v``; NULL when it breaks the type's rules.

    Money must have at most 2 decimals (``round(x, 2) = x``), an int must be whole, a
    date given as a timestamp must be midnight, a month given as a date or timestamp
    must be the first day of the month at midnight.
    """
    base = duck_type.split("(")[0]
    if col.enum:
        return f"TRY_CAST({v} AS {enum_type(col)})"
    if col.type in ("string", "enum"):
        return v
    if col.type == "timestamp":
        return f"CAST({v} AS TIMESTAMP)"
    if col.type == "date":
        if base == "DATE":
            return f"CAST({v} AS TIMESTAMP)"
        return (
            f"CASE WHEN CAST(CAST({v} AS DATE) AS TIMESTAMP) = CAST({v} AS TIMESTAMP) THEN CAST({v} AS TIMESTAMP) END"
        )
    if col.type == "month":  # a typed month is the first day of the month (spec: YYYY-MM)
        return (
            f"CASE WHEN CAST(date_trunc('month', {v}) AS TIMESTAMP) = CAST({v} AS TIMESTAMP) "
            f"THEN CAST({v} AS TIMESTAMP) END"
        )
    d = f"CAST({v} AS DOUBLE)"
    if col.type == "money":
        return f"CASE WHEN isfinite({d}) AND round({d}, 2) = {d} THEN {d} END"
    if base in _INTS:
        return f"TRY_CAST({v} AS BIGINT)"
    return f"CASE WHEN isfinite({d}) AND trunc({d}) = {d} THEN TRY_CAST({v} AS BIGINT) END"


def can_break(col: Column) -> bool:
    """Whether a cell of this column can break any rule."""
    return col.required or col.type != "string"


def stored_break(col: Column) -> bool:
    """Whether the checked table keeps ``b_<name>``: optional cells that can be malformed."""
    return not col.required and col.type != "string"


def break_expr(col: Column, v: str | None = None, p: str | None = None) -> str:
    """Rule broken by the cell of ``col`` (uses ``v_<name>``, ``p_<name>``, or the cell ``v`` and
    its parsed value ``p`` given), or NULL."""
    v, p = v or ident("v_" + col.name), p or ident("p_" + col.name)

    def rule(name: str) -> str:  # an optional cell breaks one rule only: malformed_optional
        return lit(name if col.required else MALFORMED_OPTIONAL)

    whens = [f"WHEN {v} IS NULL THEN " + (lit(MISSING_REQUIRED) if col.required else "NULL")]
    if col.type not in ("string", "enum"):
        whens.append(f"WHEN {p} IS NULL THEN {rule(UNPARSEABLE)}")
    if col.enum:  # p is the cast to the column's ENUM type: NULL for any other value
        whens.append(f"WHEN {p} IS NULL THEN {rule(UNKNOWN_ENUM)}")
    whens += [f"WHEN {broken} THEN {rule(r)}" for broken, _, r in _value_checks(col, p)]
    other = f" ELSE {_variant_break(col, v)}" if col.by else ""
    return "CASE " + " ".join(whens) + other + " END"


def _variant_break(col: Column, v: str) -> str:
    """Rule the text ``v`` breaks as the variant of ``col`` its row's ``by`` column names
    (the variant's own type, enum and range rules, named as for a required cell), or NULL."""
    by = ident("p_" + col.by)
    whens = []
    for var in col.variants:
        # the variant's rules on the text itself: its cell is v, its parsed value the parse of v
        req = replace(var, required=True)
        check = break_expr(req, v, f"({parse_expr(req, v)})")
        whens.append(f"WHEN {lit(var.name)} THEN {check}")
    return f"(CASE CAST({by} AS VARCHAR) {' '.join(whens)} END)"


def _value_checks(col: Column, p: str) -> list[tuple[str, str, str]]:
    """The range rules of ``col`` on its parsed value ``p``: (broken, holds, rule) each,
    shared by :func:`break_expr` and :func:`ok_expr` so the two cannot disagree."""
    checks = []
    if col.min is not None:
        checks.append((f"{p} < {col.min}", f"{p} >= {col.min}", OUT_OF_RANGE))
    if col.max is not None:
        checks.append((f"{p} > {col.max}", f"{p} <= {col.max}", OUT_OF_RANGE))
    if col.positive:
        checks.append((f"{p} <= 0", f"{p} > 0", NON_POSITIVE))
    return checks


def ok_expr(col: Column) -> str:
    """True when the required cell of ``col`` breaks no rule (uses ``v_``/``p_``).

    The cheap test that lets nearly every row skip the rule-naming ``CASE`` of
    :func:`break_expr`; it must be false exactly where that ``CASE`` names a rule.
    """
    v, p = ident("v_" + col.name), ident("p_" + col.name)
    if col.by:  # the variant's rules depend on the row: no cheaper test than the rules themselves
        return f"({break_expr(col)}) IS NULL"
    conds = [f"{v} IS NOT NULL" if col.type == "string" and not col.enum else f"{p} IS NOT NULL"]
    conds += [holds for _, holds, _ in _value_checks(col, p)]
    return " AND ".join(conds)


def raw_kept(table: Table, present: dict[str, int], n_header: int) -> list[int]:
    """Header positions whose raw cell ``r<i>`` the checked table keeps.

    String and enum cells are stored as read (only an empty or blank cell becomes
    NULL), so their stored value is the original cell. Typed and unknown columns
    keep the raw text for the reject and cell reports.
    """
    string_pos = {i for n, i in present.items() if table.column(n).type in ("string", "enum")}
    return [i for i in range(n_header) if i not in string_pos]


def enum_kept(table: Table, present: dict[str, int]) -> dict[int, str]:
    """Header position -> name of enum columns: the checked table keeps their raw cell
    ``r<i>`` only where ``p_<name>`` is NULL (a value not in the spec, or blank), so a
    report shows ``COALESCE(p_<name>, r<i>)``, the cell as read."""
    return {i: n for n, i in present.items() if table.column(n).enum}


def _cell_value(col: Column, present: dict[str, int], native: dict[str, str]) -> str:
    """The cell of ``col`` as the rules see it (``v_<col>``): NULL when unknown (absent column, empty
    or all-blank cell, a float NaN), blanks around a number or date dropped, text as read."""
    if col.name not in present:
        return "CAST(NULL AS VARCHAR)"
    r = f"r{present[col.name]}"
    if col.name in native and native[col.name].split("(")[0] in _FLOATS:
        # NaN (how pandas writes 'unknown') is neither finite nor infinite; DuckDB 2.0
        # folds isnan() on Parquet columns to false, so it is not used here
        return f"CASE WHEN isfinite({r}) OR isinf({r}) THEN {r} END"
    if col.name in native and col.type not in ("string", "enum"):
        return r
    if col.type in ("string", "enum"):  # stored as read: no trimming
        return f"CASE WHEN {r} = '' OR (starts_with({r}, ' ') AND trim({r}) = '') THEN NULL ELSE {r} END"
    # surrounding blanks are not part of a number or date
    return f"NULLIF(CASE WHEN starts_with({r}, ' ') OR ends_with({r}, ' ') THEN trim({r}) ELSE {r} END, '')"


def check_sql(
    table: Table,
    present: dict[str, int],
    n_header: int,
    src: str,
    extra: str = "",
    native: dict[str, str] | None = None,
    raw: bool = True,
) -> str:
    """SELECT that parses and checks every cell read from ``src``.

    Args:
        table: the spec table.
        present: spec column name -> position ``i`` of its raw column ``r<i>`` in ``src``.
        n_header: number of columns in the file (``r0`` .. ``r<n-1>``, all VARCHAR).
        src: a table expression yielding ``r<i>`` columns (e.g. ``read_csv(...)``).
        extra: further columns of ``src`` to carry through (e.g. ``, _line``).
        native: spec column -> DuckDB type of columns ``src`` gives typed (Parquet),
            checked by :func:`native_parse_expr`; every other ``r<i>`` is VARCHAR.
        raw: whether to keep the raw cells of :func:`raw_kept` and :func:`enum_kept`
            (False for a CSV, whose reported rows are read again from the file).

    Returns:
        SQL yielding ``p_<col>`` for every spec column (typed NULL when the file lacks
        the optional column), ``b_<col>`` for columns that can break a rule, ``_why``
        (``rule:column`` of the first broken required column, else NULL) and, with ``raw``,
        the raw cells of :func:`raw_kept`. Rows come out in file order.
    """
    cols = table.columns
    keep = "".join(f", r{i}" for i in raw_kept(table, present, n_header) if raw) + extra
    enum_raw = "".join(
        f", CASE WHEN {ident('p_' + n)} IS NULL THEN {ident('v_' + n)} END AS r{i}"
        for i, n in enum_kept(table, present).items()
        if raw
    )
    native = native or {}
    vs = [f"{_cell_value(c, present, native)} AS {ident('v_' + c.name)}" for c in cols]
    ps = [
        (
            native_parse_expr(c, ident("v_" + c.name), native[c.name])
            if c.name in native
            else parse_expr(c, ident("v_" + c.name))
        )
        + f" AS {ident('p_' + c.name)}"
        for c in cols
    ]
    vnames = ", ".join(ident("v_" + c.name) for c in cols)
    stored_b = [c for c in cols if stored_break(c)]
    bs = [f"{break_expr(c)} AS {ident('b_' + c.name)}" for c in stored_b]
    pnames = ", ".join(ident("p_" + c.name) for c in cols)
    # each required cell's rule is computed once, inside the COALESCE, and only for rows
    # that fail the cheap all-fine test (DuckDB evaluates a CASE branch on its rows only)
    req = [f"({break_expr(c)}) || {lit(':' + c.name)}" for c in cols if c.required]
    ok = " AND ".join(f"({ok_expr(c)})" for c in cols if c.required)
    why_expr = f"CASE WHEN {ok} THEN NULL ELSE COALESCE({', '.join(req)}) END" if req else "CAST(NULL AS VARCHAR)"
    bnames = "".join(", " + ident("b_" + c.name) for c in stored_b)
    return (
        f"SELECT {pnames}{bnames}, {why_expr} AS _why{keep}{enum_raw} FROM ("
        f"  SELECT {vnames}, {', '.join(ps + bs)}{keep} FROM ("
        f"   SELECT {', '.join(vs)}{keep} FROM {src}))"
    )


def stored_select(table: Table, src: str, bank: str | None = None) -> str:
    """SELECT of the kept rows of a checked table, typed as stored (spec dtypes).

    Enum columns stay ``ENUM``: DuckDB writes them as Parquet strings (dictionary
    encoded), which read back as ``string`` like any other text column. With ``bank``
    (a member bank of a federation), a last column ``bank_code`` holds it on every row
    (one value, so dictionary encoded too).
    """
    out = []
    for c in table.columns:
        p = ident("p_" + c.name)
        if not c.required and can_break(c):
            p = f"CASE WHEN {ident('b_' + c.name)} IS NULL THEN {p} END"
        out.append(f"{p} AS {ident(c.name)}" if c.enum else f"CAST({p} AS {DUCK_TYPES[c.type]}) AS {ident(c.name)}")
    if bank is not None:
        out.append(f"CAST({lit(bank)} AS VARCHAR) AS {ident(BANK_COLUMN)}")
    return f"SELECT {', '.join(out)} FROM {src} WHERE _why IS NULL"


def key_columns(table: Table) -> list[str]:
    """The key of a table; a keyless table's key is the whole row (all parsed columns)."""
    return list(table.key) if table.key else [c.name for c in table.columns]


def key_hash_sql(table: Table, src: str) -> str:
    """SELECT the 64-bit hash of the key of every kept row (column ``h``), the cheap first
    look for repeated keys: a key that repeats has a hash that repeats."""
    return f"SELECT hash({', '.join(ident('p_' + k) for k in key_columns(table))}) AS h FROM {src} WHERE _why IS NULL"


def duplicate_sql(table: Table, src: str, hashes: str) -> str:
    """SELECT ``_ord`` (rowid), ``_why`` of rows whose key repeats an earlier kept row's key.

    Only rows whose key hash is in table ``hashes`` (column ``h``: the hashes that repeat,
    see :func:`key_hash_sql`) are compared, by their keys themselves, so a hash collision
    sets nothing aside. Keys compare with ``IS NOT DISTINCT FROM`` (NULL equals NULL).
    """
    kp = [ident("p_" + k) for k in key_columns(table)]
    on = " AND ".join(f"c.{k} IS NOT DISTINCT FROM d.{k}" for k in kp)
    label = lit(f"{DUPLICATE_KEY}:{'+'.join(table.key) if table.key else '*'}")
    return (
        f"WITH _cand AS (SELECT rowid AS _r, {', '.join(kp)} FROM {src}"
        f" WHERE _why IS NULL AND hash({', '.join(kp)}) IN (SELECT h FROM {hashes}))"
        f" SELECT c._r AS _ord, {label} AS _why FROM _cand c JOIN ("
        f" SELECT {', '.join(kp)}, min(_r) AS _first FROM _cand GROUP BY ALL) d ON {on}"
        f" WHERE c._r <> d._first"
    )


def reference_sql(table: Table, src: str) -> str | None:
    """SELECT ``_ord`` (rowid), ``_why`` of rows pointing at a row that was not kept, or None.

    Targets are tables ``keys_<table>`` holding the kept keys of the referenced
    table (``keys_accounts`` also holds the owner ``customer_id``). A transaction
    whose ``customer_id`` is not the owner of its account breaks ``customer_id``.
    That owner check also covers the transaction's own reference to customers (a
    kept account's owner is a kept customer), so that join is not made.
    """
    refs = [c for c in table.columns if c.ref]
    if not refs:
        return None
    names = [c.name for c in refs]
    owner = table.name == "transactions" and "account_id" in names and "customer_id" in names
    joins, whens = [], []
    for i, c in enumerate(refs):
        tgt_table, tgt_col = c.ref.split(".")
        if owner and c.name == "customer_id":
            continue
        a = f"k{i}"
        joins.append(f"LEFT JOIN keys_{tgt_table} {a} ON c.{ident('p_' + c.name)} = {a}.{ident(tgt_col)}")
        whens.append(f"WHEN {a}.{ident(tgt_col)} IS NULL THEN {lit(BROKEN_REFERENCE + ':' + c.name)}")
    if owner:
        a = f"k{names.index('account_id')}"
        whens.append(f"WHEN {a}.customer_id <> c.p_customer_id THEN {lit(BROKEN_REFERENCE + ':customer_id')}")
    why = "CASE " + " ".join(whens) + " END"
    return (
        f"SELECT * FROM (SELECT c.rowid AS _ord, {why} AS _why FROM {src} c {' '.join(joins)}"
        f" WHERE c._why IS NULL) WHERE _why IS NOT NULL"
    )


def future_sql(table: Table, src: str, export_date: str) -> list[str]:
    """UPDATE statements applying rule ``future_date`` to ``src`` (a checked table).

    Nothing in an export can happen after the day it was exported, so a required
    date, timestamp or month after ``export_date`` (``YYYY-MM-DD``; a month after it
    is one that starts after it) sets its row aside, and an optional one (an end or
    close date, a birth date) is made unknown and reported, like a malformed cell.
    Only rows still kept are looked at.
    """
    cutoff = f"(DATE {lit(export_date)} + INTERVAL 1 DAY)"
    req = [c for c in table.columns if c.type in DATE_TYPES and c.required]
    opt = [c for c in table.columns if c.type in DATE_TYPES and stored_break(c)]
    out = []
    if req:
        after = {c.name: f"{ident('p_' + c.name)} >= {cutoff}" for c in req}
        whens = " ".join(f"WHEN {cond} THEN {lit(FUTURE_DATE + ':' + n)}" for n, cond in after.items())
        out.append(f"UPDATE {src} SET _why = CASE {whens} END WHERE _why IS NULL AND ({' OR '.join(after.values())})")
    for c in opt:
        b = ident("b_" + c.name)
        out.append(
            f"UPDATE {src} SET {b} = {lit(FUTURE_DATE)} "
            f"WHERE _why IS NULL AND {b} IS NULL AND {ident('p_' + c.name)} >= {cutoff}"
        )
    return out


def daily_counts_sql(src: str, column: str) -> str:
    """SELECT ``d`` (day), ``n`` (rows kept so far) of a checked table's date column, by day."""
    return (
        f"SELECT CAST({ident('p_' + column)} AS DATE) AS d, count(*) AS n FROM {src} "
        f"WHERE _why IS NULL AND {ident('p_' + column)} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )
