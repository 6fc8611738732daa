"""Target lists as files for branch staff: CSV (UTF-8 with BOM) or Excel.

The format follows the file's suffix (``.csv`` or ``.xlsx``). Columns, in
order, with Chinese headers::

    客户号 customer_id   支行 branch_id   客户经理 manager_id   产品 product
    倾向分 propensity    排名 rank        对照组 control (是/否)  推荐理由 reasons (joined by "；")

Ids are written as text, so leading zeros survive. The BOM lets Excel open
the CSV with Chinese intact. The file is written beside its target and moved
into place, so a reader never sees half a list. :func:`read_target_list`
reads either format back into the original columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from nbp.errors import DataContractError
from serving.errors import Unprocessable

log = logging.getLogger(__name__)

HEADERS_ZH: dict[str, str] = {
    "customer_id": "客户号",
    "branch_id": "支行",
    "manager_id": "客户经理",
    "product": "产品",
    "propensity": "倾向分",
    "rank": "排名",
    "control": "对照组",
    "reasons": "推荐理由",
}
SUFFIXES = (".csv", ".xlsx")
SHEET = "目标客户"
REASON_SEP = "；"
_YES, _NO = "是", "否"
_TEXT_COLUMNS = ("customer_id", "branch_id", "manager_id", "product")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise Unprocessable(f"{path}: cannot write a target list as '{suffix or '(no suffix)'}'; use .csv or .xlsx")
    return suffix


def _to_sheet(df: pd.DataFrame, product_names: Mapping[str, str] | None) -> pd.DataFrame:
    required = [c for c in HEADERS_ZH if c != "reasons"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataContractError(f"target list: missing column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=df.index)
    for col in _TEXT_COLUMNS:
        out[col] = df[col].astype("string")
    if product_names:
        out["product"] = out["product"].map(lambda p: product_names.get(p, p), na_action="ignore")
    out["propensity"] = df["propensity"].astype(float)
    out["rank"] = df["rank"].astype("Int64")
    out["control"] = df["control"].astype(bool).map({True: _YES, False: _NO})
    reasons = df["reasons"] if "reasons" in df.columns else pd.Series([[]] * len(df), index=df.index)
    out["reasons"] = [REASON_SEP.join(r) if isinstance(r, (list, tuple)) else ("" if r is None else str(r)) for r in reasons]
    return out.rename(columns=HEADERS_ZH).reset_index(drop=True)


def write_target_list(df: pd.DataFrame, path: str | Path, product_names: Mapping[str, str] | None = None) -> Path:
    """Write a target list for staff.

    Args:
        df: columns ``customer_id, branch_id, manager_id, product, propensity,
            rank, control`` and optionally ``reasons`` (list of sentences or
            text); other columns are not written.
        path: ``*.csv`` or ``*.xlsx``; parent folders are created.
        product_names: product key -> name to show (e.g. ``消费贷``); default:
            the key.

    Returns:
        The path written.

    Raises:
        Unprocessable: the suffix is neither ``.csv`` nor ``.xlsx``.
        DataContractError: a required column is missing.
    """
    path = Path(path)
    suffix = _suffix(path)
    sheet = _to_sheet(df, product_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        if suffix == ".csv":
            sheet.to_csv(tmp, index=False, encoding="utf-8-sig")
        else:
            with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
                sheet.to_excel(xw, index=False, sheet_name=SHEET, freeze_panes=(1, 0))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("target list: %d rows → %s", len(sheet), path)
    return path


def read_target_list(path: str | Path, product_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a file written by :func:`write_target_list` back.

    Args:
        path: the ``.csv`` or ``.xlsx`` file.
        product_names: the mapping used when writing, to restore product keys.

    Returns:
        Columns ``customer_id, branch_id, manager_id, product`` (string),
        ``propensity`` (float), ``rank`` (Int64), ``control`` (bool),
        ``reasons`` (list of str).
    """
    path = Path(path)
    text = {HEADERS_ZH[c]: str for c in _TEXT_COLUMNS}
    if _suffix(path) == ".csv":
        raw = pd.read_csv(path, encoding="utf-8-sig", dtype=text, keep_default_na=False, na_values={"排名": [""]})
    else:
        raw = pd.read_excel(path, sheet_name=SHEET, dtype=text, engine="openpyxl")
    df = raw.rename(columns={zh: en for en, zh in HEADERS_ZH.items()})
    for col in _TEXT_COLUMNS:
        df[col] = df[col].astype("string").replace("", pd.NA)
    if product_names:
        back = {name: key for key, name in product_names.items()}
        df["product"] = df["product"].map(lambda p: back.get(p, p), na_action="ignore").astype("string")
    df["propensity"] = df["propensity"].astype(float)
    df["rank"] = df["rank"].astype("Int64")
    df["control"] = df["control"].map({_YES: True, _NO: False}).astype(bool)
    df["reasons"] = [r.split(REASON_SEP) if isinstance(r, str) and r else [] for r in df["reasons"]]
    return df[list(HEADERS_ZH)]
