"""Spreadsheet-safe files: every ``.csv`` and ``.xlsx`` nbp writes goes through here.

A cell that starts with ``=``, ``+``, ``-`` or ``@`` is a formula to Excel, WPS and
LibreOffice, and a leading tab or carriage return can hide one; a customer or manager id
such as ``=HYPERLINK("http://evil","x")`` would then run on a marketer's machine
(CSV/formula injection, OWASP). Every text cell is therefore written as text and
*neutralised* as OWASP's guidance says: a value that starts with one of those characters
gets a single quote ``'`` in front of it.

What counts as starting with a trigger (:func:`needs_guard`):

- ``=`` ``+`` ``-`` ``@``, a tab or a carriage return as the first character;
- the same four after leading spaces (ASCII, no-break or the ideographic space ``\\u3000``),
  since some spreadsheet programs trim before they parse;
- the full-width forms ``＝`` ``＋`` ``－`` ``＠`` a Chinese input method types, which some
  versions read as their ASCII forms;
- any of the above behind one or more quotes ``'`` already (so the guard is reversible).

In CSV, every text field is also quoted (``"'=1+1"``). In xlsx, text goes into string
cells (never formula cells: openpyxl on its own turns any string starting with ``=``
into a formula) and carries the same quote, so a cell copied out or re-saved as CSV
stays harmless. Numbers are written as numbers; a negative number is not text and is
not touched. A carriage return and the other control characters XML cannot carry (all
C0 controls but tab and newline) are written in OOXML's own escape ``_x000D_``, as
Excel does (and a literal ``_x000D_`` as ``_x005F_x000D_``); :func:`from_xlsx_text`
reads them back, openpyxl alone does not. A text longer than an Excel cell holds
(32,767 characters) is cut and ends in ``…``: Excel would refuse the whole file.

Round trip for the bank's systems. :func:`restore` undoes the guard exactly: when a text
cell starts with ``'`` and the rest would need the guard, the first ``'`` is dropped;
any other value is left alone. ``serving.export.read_target_list`` does this. A bank
re-importing a file with its own tools applies the same rule: strip ONE leading ``'``
when the next character (after any spaces) is ``=`` ``+`` ``-`` ``@`` a tab, a carriage
return, a full-width ``＝＋－＠`` or another ``'``. An id that itself began with a quote
before a trigger gets a second quote and comes back with one.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbp.jobs import atomic_write

GUARD = "'"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FULL_WIDTH_TRIGGERS = ("＝", "＋", "－", "＠")
_LEAD = "[=+\\-@＝＋－＠]"
_SPACES = "[ \u00a0\u3000]"
_TAIL = f"'*(?:[\t\r]|{_SPACES}*{_LEAD})"
_NEEDS = re.compile(_TAIL)
# the same pattern for Arrow's RE2 (pyarrow.compute), anchored
ARROW_PATTERN = "^" + _TAIL
_XLSX_CONTROL = re.compile("[\x00-\x08\x0b\x0c\r\x0e-\x1f]")
_XLSX_ESCAPE = re.compile("_(x[0-9A-Fa-f]{4}_)")
_XLSX_ESCAPED = re.compile("_x([0-9A-Fa-f]{4})_")
BOM = "\ufeff"
MAX_WIDTH = 60  # xlsx column width cap, in characters
XLSX_MAX_CHARS = 32_767  # what one Excel cell holds


def needs_guard(value: str) -> bool:
    """Whether a text cell would start a formula (module docstring)."""
    return _NEEDS.match(value) is not None


def neutralise(value: Any) -> Any:
    """A text cell made safe (``'`` in front when :func:`needs_guard`); other values unchanged."""
    if isinstance(value, str) and _NEEDS.match(value):
        return GUARD + value
    return value


def restore(value: Any) -> Any:
    """Undo :func:`neutralise`: drop one leading ``'`` exactly when the rest needs the guard."""
    if isinstance(value, str) and value.startswith(GUARD) and _NEEDS.match(value, 1):
        return value[1:]
    return value


def _is_text(s: pd.Series) -> bool:
    return (
        pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype)
    )


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells are neutralised (numbers and missing values kept)."""
    out = df.copy()
    for col in out.columns:
        if _is_text(out[col]):
            out[col] = out[col].astype(object).map(neutralise)
    return out


def restore_frame(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``df`` with :func:`restore` applied to ``columns`` (default: every text column), in place."""
    for col in columns if columns is not None else [c for c in df.columns if _is_text(df[c])]:
        df[col] = df[col].map(restore, na_action="ignore")
    return df


def safe_header(names: Sequence[str]) -> list[str]:
    """Column headers neutralised too (a header can come from a bank's file)."""
    return [neutralise(str(n)) for n in names]


def write_csv(df: pd.DataFrame, path: str | Path, bom: bool = True) -> Path:
    """Write ``df`` as CSV: text neutralised and quoted, numbers bare, UTF-8 (with BOM for Excel).

    The file is written beside ``path`` and moved into place. Missing values are empty.

    Returns:
        The path written.
    """
    path = Path(path)
    frame = neutralise_frame(df)
    frame.columns = safe_header(list(frame.columns))
    with atomic_write(path) as tmp:
        frame.to_csv(
            tmp,
            index=False,
            encoding="utf-8-sig" if bom else "utf-8",
            quoting=csv.QUOTE_NONNUMERIC,
            lineterminator="\r\n",
        )
    return path


def neutralise_batch(batch: Any) -> Any:
    """A ``pyarrow.RecordBatch`` (or Table) whose string columns are neutralised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for col in batch.columns:
        t = col.type
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))
        ):
            col = col.cast(pa.string()) if not (pa.types.is_string(t) or pa.types.is_large_string(t)) else col
            hit = pc.match_substring_regex(col, ARROW_PATTERN)
            col = pc.if_else(hit, pc.binary_join_element_wise(GUARD, col, ""), col)
        cols.append(col)
    names = [neutralise(n) for n in batch.schema.names]
    return type(batch).from_arrays(cols, names=names)


def write_csv_batches(reader: Any, path: str | Path) -> Path:
    """Stream a ``pyarrow.RecordBatchReader`` to CSV with every text field neutralised and quoted.

    UTF-8 with BOM (Excel opens Chinese correctly); the caller decides where ``path`` is
    (ingest writes into its staging folder, which is moved into place as a whole).
    """
    import pyarrow.csv as pacsv

    path = Path(path)
    first = True
    with path.open("wb") as f:
        f.write(BOM.encode())
        writer = None
        try:
            for batch in reader:
                safe = neutralise_batch(batch)
                if writer is None:
                    writer = pacsv.CSVWriter(
                        f, safe.schema, write_options=pacsv.WriteOptions(quoting_style="all_valid")
                    )
                writer.write_batch(safe)
                first = False
            if first:  # no rows: the header alone
                import pyarrow as pa

                empty = pa.RecordBatch.from_pylist([], schema=reader.schema)
                writer = pacsv.CSVWriter(
                    f, neutralise_batch(empty).schema, write_options=pacsv.WriteOptions(quoting_style="all_valid")
                )
        finally:
            if writer is not None:
                writer.close()
    return path


@dataclass
class Sheet:
    """One worksheet of :func:`write_xlsx`.

    Attributes:
        title: the sheet's name (at most 31 characters, none of ``[]:*?/\\``).
        frame: the rows; column names are the header.
        banner: a line written above the header in bold red (e.g. ``对照组——请勿营销``).
        percent: columns holding shares (0..1), shown as ``12.34%``.
        widths: column -> width in characters (default: from the longest cell, capped).
    """

    title: str
    frame: pd.DataFrame
    banner: str | None = None
    percent: tuple[str, ...] = ()
    widths: Mapping[str, float] = field(default_factory=dict)


def to_xlsx_text(value: str) -> str:
    """A neutralised text cell in OOXML's escapes (module docstring)."""
    text = _XLSX_ESCAPE.sub(r"_x005F_\1", neutralise(value))
    text = _XLSX_CONTROL.sub(lambda m: f"_x{ord(m.group(0)):04X}_", text)
    return text if len(text) <= XLSX_MAX_CHARS else text[: XLSX_MAX_CHARS - 1] + "…"


def from_xlsx_text(value: Any) -> Any:
    """Undo OOXML's escapes in a text cell read by openpyxl (the guard quote stays: :func:`restore`)."""
    if isinstance(value, str) and "_x" in value:
        return _XLSX_ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value)
    return value


def _display_width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)  # CJK characters take two columns


def _xlsx_value(v: Any) -> Any:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, str):
        return to_xlsx_text(v)
    if hasattr(v, "item"):  # numpy scalar
        return v.item()
    return v


def write_xlsx(path: str | Path, sheets: Sequence[Sheet]) -> Path:
    """Write sheets to an ``.xlsx``: text in string cells (never formulas), neutralised.

    Each sheet gets a bold header (below the banner, if any), frozen panes under it, an
    autofilter over the header and rows, and column widths that fit the content. The
    file is written beside ``path`` and moved into place.

    Returns:
        The path written.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    path = Path(path)
    wb = Workbook()
    wb.remove(wb.active)
    for sh in sheets:
        ws = wb.create_sheet(sh.title)
        r0 = 1
        if sh.banner:
            c = ws.cell(row=1, column=1, value=to_xlsx_text(sh.banner))
            c.data_type = "s"
            c.font = Font(bold=True, color="C00000", size=14)
            r0 = 2
        cols = list(sh.frame.columns)
        width = {str(name): _display_width(str(name)) for name in cols}
        for j, name in enumerate(cols, start=1):
            c = ws.cell(row=r0, column=j, value=_xlsx_value(str(name)))
            c.data_type = "s"
            c.font = Font(bold=True)
        pct = {cols.index(p) for p in sh.percent if p in cols}
        for i, row in enumerate(sh.frame.itertuples(index=False, name=None), start=r0 + 1):
            for j, v in enumerate(row):
                val = _xlsx_value(v)
                if val is None:
                    continue
                c = ws.cell(row=i, column=j + 1, value=val)
                if isinstance(val, str):
                    c.data_type = "s"  # openpyxl reads a leading '=' as a formula otherwise
                    width[str(cols[j])] = max(width[str(cols[j])], _display_width(val))
                elif j in pct:
                    c.number_format = "0.00%"
                else:
                    width[str(cols[j])] = max(width[str(cols[j])], len(str(val)))
        for j, name in enumerate(cols, start=1):
            w = sh.widths.get(str(name), min(MAX_WIDTH, width[str(name)] + 2))
            ws.column_dimensions[get_column_letter(j)].width = max(w, 8 if j - 1 in pct else 4)
        last = get_column_letter(max(len(cols), 1))
        ws.auto_filter.ref = f"A{r0}:{last}{r0 + len(sh.frame)}"
        ws.freeze_panes = f"A{r0 + 1}"
    with atomic_write(path) as tmp:
        wb.save(tmp)
    return path
