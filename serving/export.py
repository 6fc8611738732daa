"""Target lists as files for branch staff: Excel (two sheets) or CSV (two files).

The format follows the file's suffix (``.xlsx`` or ``.csv``). The customers to contact
and the control group are never in the same table:

``.xlsx``  sheet ``目标客户``: the customers to contact, in rank order; sheet
           ``对照组——请勿营销``: the control group, under a red banner with that text
``.csv``   ``<name>.csv``: the customers to contact; ``<name>.control.csv`` beside it: the
           control group, every row starting with the column ``说明`` = ``对照组——请勿营销``

Columns of the contact list, with Chinese headers::

    客户号 customer_id   支行 branch_id    支行名称 branch_name   客户经理 manager_id
    客户经理姓名 manager_name   产品 product   倾向分 propensity   排名 rank
    推荐理由 reasons (joined by "；")

A list of a bank that has a code (every member bank of a federation) starts with the column
``银行 bank_code`` on every row of both tables, so a file or a row passed on still says whose
customers these are. A list drawn for a campaign (every list nbp issues) then carries
``营销活动 campaign_id`` and ``排序依据 rank_by`` (倾向分 / 营销增益 / 预期价值) on every row,
and a list ranked by uplift adds ``营销增益 uplift`` (a percentage) to the contact list.

The control group has the same columns without 排名 and 推荐理由 (nothing to sell them).
Names come from the bank's optional ``branches``/``managers`` tables
(:func:`display_names`) and are blank without them. The propensity is a percentage:
a number formatted ``0.00%`` in Excel, the text ``12.34%`` in CSV (two decimals: a
rare uptake must not read as 0.0%). Excel sheets have column widths that fit, a
filter on the header and the header frozen.

Every text cell goes through :mod:`nbp.sheets`: ids are written as text (leading zeros
survive) and a value that would start a formula gets a guard quote, which
:func:`read_target_list` removes again (see ``nbp.sheets`` for the rule a bank's own
tools apply). The CSV has a BOM so Excel opens the Chinese intact. Files are written
beside their target and moved into place, so a reader never sees half a list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from nbp.errors import DataContractError
from nbp.sheets import Sheet, from_xlsx_text, restore_frame, write_csv, write_xlsx
from nbp.workspace import Workspace
from serving.errors import Unprocessable

log = logging.getLogger(__name__)

HEADERS_ZH: dict[str, str] = {
    "customer_id": "客户号",
    "branch_id": "支行",
    "branch_name": "支行名称",
    "manager_id": "客户经理",
    "manager_name": "客户经理姓名",
    "product": "产品",
    "propensity": "倾向分",
    "rank": "排名",
    "reasons": "推荐理由",
}
BANK_COLUMN, BANK_HEADER = "bank_code", "银行"  # first column of a list that carries its bank
# a list drawn for a campaign says, on every row, which campaign and which ranking
CAMPAIGN_HEADERS = {"campaign_id": "营销活动", "rank_by": "排序依据"}
RANK_BY_ZH = {"propensity": "倾向分", "uplift": "营销增益", "value": "预期价值"}
UPLIFT_HEADER = "营销增益"  # the modelled effect of a contact, when the list was ranked by it
TIER_HEADER = "客户层级"  # the customer's value tier (features/tiers.py), when the list carries it
CONTROL_COLUMNS = ("customer_id", "branch_id", "branch_name", "manager_id", "manager_name", "product", "propensity")
SUFFIXES = (".csv", ".xlsx")
SHEET = "目标客户"
CONTROL_SHEET = "对照组——请勿营销"
CONTROL_NOTE = "说明"  # first column of the control CSV, CONTROL_SHEET on every row
REASON_SEP = "；"
REQUIRED = ("customer_id", "branch_id", "manager_id", "product", "propensity", "rank", "control")
_TEXT_COLUMNS = ("customer_id", "branch_id", "branch_name", "manager_id", "manager_name", "product")
_WIDTHS = {"推荐理由": 60.0}


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise Unprocessable(f"{path}: cannot write a target list as '{suffix or '(no suffix)'}'; use .csv or .xlsx")
    return suffix


def control_path(path: str | Path) -> Path:
    """Where the control group of a CSV target list goes: ``<name>.control.csv`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.control{path.suffix}")


def display_names(ws: Workspace) -> tuple[dict[str, str], dict[str, str]]:
    """Branch and manager names from the ingested ``branches``/``managers`` tables.

    Returns:
        (branch_id -> name, manager_id -> name); empty for a table the export did not
        have, and without entries for blank names.
    """
    out: list[dict[str, str]] = []
    for table, key in (("branches", "branch_id"), ("managers", "manager_id")):
        path = ws.table(table)
        names: dict[str, str] = {}
        if path.exists():
            import pyarrow.parquet as pq

            if "name" in pq.read_schema(path).names:
                df = pd.read_parquet(path, columns=[key, "name"]).dropna()
                names = {str(k): str(v) for k, v in zip(df[key], df["name"], strict=True) if str(v).strip()}
        out.append(names)
    return out[0], out[1]


def _names(df: pd.DataFrame, col: str, key: str, names: Mapping[str, str] | None) -> pd.Series:
    if col in df.columns:
        return df[col].astype("string")
    ids = df[key].astype("string")
    return ids.map(lambda i: (names or {}).get(i, pd.NA), na_action="ignore").astype("string")


def _frame(
    df: pd.DataFrame,
    product_names: Mapping[str, str] | None,
    branch_names: Mapping[str, str] | None,
    manager_names: Mapping[str, str] | None,
) -> pd.DataFrame:
    """The list in export columns (English names), control rows last, in the given order otherwise."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataContractError(f"target list: missing column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=df.index)
    if BANK_COLUMN in df.columns and df[BANK_COLUMN].notna().any():
        out[BANK_COLUMN] = df[BANK_COLUMN].astype("string")
    for col in ("customer_id", "branch_id", "manager_id", "product"):
        out[col] = df[col].astype("string")
    out["branch_name"] = _names(df, "branch_name", "branch_id", branch_names)
    out["manager_name"] = _names(df, "manager_name", "manager_id", manager_names)
    if product_names:
        out["product"] = out["product"].map(lambda p: product_names.get(p, p), na_action="ignore").astype("string")
    out["propensity"] = df["propensity"].astype(float)
    out["rank"] = df["rank"].astype("Int64")
    out["control"] = df["control"].astype(bool)
    reasons = df["reasons"] if "reasons" in df.columns else pd.Series([[]] * len(df), index=df.index)
    out["reasons"] = [
        REASON_SEP.join(r) if isinstance(r, (list, tuple)) else ("" if r is None else str(r)) for r in reasons
    ]
    return out.reset_index(drop=True)


def _percent_text(p: pd.Series) -> pd.Series:
    return p.map(lambda v: f"{v * 100:.2f}%", na_action="ignore")


def write_target_list(
    df: pd.DataFrame,
    path: str | Path,
    product_names: Mapping[str, str] | None = None,
    branch_names: Mapping[str, str] | None = None,
    manager_names: Mapping[str, str] | None = None,
) -> Path:
    """Write a target list for staff (module docstring for the layout).

    Args:
        df: columns ``customer_id, branch_id, manager_id, product, propensity, rank,
            control`` and optionally ``reasons`` (list of sentences or text),
            ``branch_name``, ``manager_name``, ``bank_code`` (written first when set);
            other columns are not written.
        path: ``*.xlsx`` or ``*.csv``; parent folders are created. A CSV's control
            group goes to :func:`control_path`.
        product_names: product key -> name to show (e.g. ``消费贷``); default: the key.
        branch_names: branch id -> name (:func:`display_names`), when ``df`` has no
            ``branch_name``; default: blank.
        manager_names: manager id -> name, likewise.

    Returns:
        The path written.

    Raises:
        Unprocessable: the suffix is neither ``.csv`` nor ``.xlsx``.
        DataContractError: a required column is missing.
    """
    path = Path(path)
    suffix = _suffix(path)
    full = _frame(df, product_names, branch_names, manager_names)
    lead = [BANK_COLUMN] if BANK_COLUMN in full.columns else []
    if "campaign_id" in df.attrs:
        full["campaign_id"] = df.attrs["campaign_id"]
        full["rank_by"] = RANK_BY_ZH.get(df.attrs.get("rank_by", "propensity"), df.attrs.get("rank_by"))
        lead += list(CAMPAIGN_HEADERS)
    uplift = []
    if df.attrs.get("rank_by") == "uplift" and "uplift" in df.columns:
        full["uplift"] = df["uplift"].astype(float).to_numpy()
        uplift = ["uplift"]
    tier = []
    if "tier" in df.columns:
        full["tier"] = df["tier"].astype("string").to_numpy()
        tier = ["tier"]
    contact = full.loc[~full["control"], [*lead, *HEADERS_ZH, *uplift, *tier]]
    control = full.loc[full["control"], [*lead, *CONTROL_COLUMNS]]
    headers = {**HEADERS_ZH, BANK_COLUMN: BANK_HEADER, **CAMPAIGN_HEADERS, "uplift": UPLIFT_HEADER, "tier": TIER_HEADER}
    if suffix == ".csv":
        if uplift:
            contact = contact.assign(uplift=_percent_text(contact["uplift"]))
        write_csv(contact.assign(propensity=_percent_text(contact["propensity"])).rename(columns=headers), path)
        ctrl = control.assign(propensity=_percent_text(control["propensity"])).rename(columns=headers)
        ctrl.insert(0, CONTROL_NOTE, CONTROL_SHEET)
        write_csv(ctrl, control_path(path))
    else:
        write_xlsx(
            path,
            [
                Sheet(
                    SHEET,
                    contact.rename(columns=headers),
                    percent=(HEADERS_ZH["propensity"], *([UPLIFT_HEADER] if uplift else [])),
                    widths=_WIDTHS,
                ),
                Sheet(
                    CONTROL_SHEET,
                    control.rename(columns=headers),
                    banner=CONTROL_SHEET,
                    percent=(HEADERS_ZH["propensity"],),
                ),
            ],
        )
    log.info("target list: %d to contact, %d control → %s", len(contact), len(control), path)
    return path


def read_target_list(path: str | Path, product_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a list written by :func:`write_target_list` back (both sheets, or both CSV files).

    Args:
        path: the ``.csv`` or ``.xlsx`` file (a CSV's control file is found beside it).
        product_names: the mapping used when writing, to restore product keys.

    Returns:
        Columns ``bank_code`` and ``campaign_id, rank_by`` (only when the file has them), ``customer_id, branch_id,
        branch_name, manager_id, manager_name, product`` (string, guard quotes removed),
        ``propensity`` (float; from CSV to 0.01 percentage point), ``rank`` (Int64),
        ``control`` (bool), ``reasons`` (list of str); the contact rows, then the control rows.
    """
    path = Path(path)
    back = (
        {zh: en for en, zh in HEADERS_ZH.items()}
        | {BANK_HEADER: BANK_COLUMN}
        | {zh: en for en, zh in CAMPAIGN_HEADERS.items()}
    )
    text = {HEADERS_ZH[c]: str for c in _TEXT_COLUMNS} | {HEADERS_ZH["reasons"]: str, BANK_HEADER: str}
    text |= {zh: str for zh in CAMPAIGN_HEADERS.values()}
    if _suffix(path) == ".csv":

        def read(p: Path) -> pd.DataFrame:
            raw = pd.read_csv(
                p,
                encoding="utf-8-sig",
                dtype=text | {HEADERS_ZH["propensity"]: str},
                keep_default_na=False,
                na_values={HEADERS_ZH["rank"]: [""]},
            )
            raw[HEADERS_ZH["propensity"]] = [
                float(v.rstrip("%")) / 100 if v else float("nan") for v in raw[HEADERS_ZH["propensity"]]
            ]
            return raw

        contact = read(path)
        control = read(control_path(path)).drop(columns=[CONTROL_NOTE])
    else:
        contact = pd.read_excel(path, sheet_name=SHEET, dtype=text, engine="openpyxl")
        control = pd.read_excel(path, sheet_name=CONTROL_SHEET, dtype=text, engine="openpyxl", header=1)
        contact, control = (f.map(from_xlsx_text) for f in (contact, control))
    contact, control = contact.rename(columns=back), control.rename(columns=back)
    contact["control"], control["control"] = False, True
    control["rank"] = pd.NA
    control["reasons"] = ""
    df = pd.concat([contact, control], ignore_index=True)
    texts = [*([BANK_COLUMN] if BANK_COLUMN in df.columns else []), *_TEXT_COLUMNS]
    for col in (*texts, "reasons"):
        df[col] = df[col].astype("string").replace("", pd.NA)
    restore_frame(df, [*texts, "reasons"])
    df[texts] = df[texts].astype("string")
    if product_names:
        names = {name: key for key, name in product_names.items()}
        df["product"] = df["product"].map(lambda p: names.get(p, p), na_action="ignore").astype("string")
    df["propensity"] = df["propensity"].astype(float)
    df["rank"] = df["rank"].astype("Int64")
    df["control"] = df["control"].astype(bool)
    df["reasons"] = [r.split(REASON_SEP) if isinstance(r, str) and r else [] for r in df["reasons"]]
    bank = [BANK_COLUMN] if BANK_COLUMN in df.columns else []
    campaign = [c for c in CAMPAIGN_HEADERS if c in df.columns]
    for col in campaign:
        df[col] = df[col].astype("string")
    return df[[*bank, *campaign, *(c for c in HEADERS_ZH if c != "reasons"), "control", "reasons"]]
