"""What a campaign changed: uptake of its treatment arm against its randomised control arm.

For every remembered campaign (:mod:`nbp.campaigns`) of one bank, read against that bank's
latest ingested export (``docs/campaigns.md``):

- per arm: customers, customers **contacted** (a ``contacts`` row about the product dated in
  ``[list_date, list_date + training.horizon_days]``; by channel and outcome too), **uptakes**
  (a loan of the product granted in ``(list_date, list_date + horizon]``: the training label,
  :func:`training.labels.label`) and the uptake rate; each customer's window starts at the
  date of the first list of the campaign that named them;
- the **difference** of rates treatment − control with a 95 % interval by Newcombe's hybrid
  score method (his method 10: Wilson intervals of each rate combined; it stays inside
  [-1, 1] and keeps sensible width with zero or few uptakes and small arms, where the Wald
  interval collapses to zero width), incremental uptakes (difference × treatment customers)
  and incremental value (× the product's ``value``);
- the same by decile of the campaign's scores over both arms (an imported campaign has no
  scores, hence no decile table), and the observed Qini curve in the list's ranking order;
- **contamination** (control customers contacted about the product anyway) and **coverage**
  (treatment customers contacted at all) per branch and manager.

A campaign whose horizon has not ended at the export date is reported so far, with the days
observed. The verdict (:func:`verdict`) says plainly when a campaign is too small to show a
difference: fewer than ``campaigns.min_arm_customers`` customers in an arm, or, when its
interval spans 0, a minimum detectable difference (two-sided 5 %, power 80 %, at the pooled
uptake rate) larger than that rate itself, i.e. only a campaign that more than doubled uptake
could have been told apart from chance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbp.campaigns import CampaignStore, first_issue, folder_name
from nbp.config import Config
from nbp.errors import ConfigError, NbpError
from nbp.jobs import atomic_write
from nbp.workspace import Workspace
from training.dataset import loan_product
from training.drift import calibration_rows, flag_rows, json_safe, read_report
from training.labels import label
from training.uplift_metrics import qini_coefficient, qini_curve

log = logging.getLogger(__name__)

Z95 = 1.959963984540054  # two-sided 95 %
Z_POWER = 0.8416212335729143  # one-sided 80 % power
INTERVAL_METHOD = "Newcombe hybrid score (method 10), 95%"
DECILES = 10
NO_MANAGER = "（无客户经理）"
NOT_RECORDED = "（未记录）"
VERDICTS = {  # code -> (zh, en)
    "effective": ("有效", "effective"),
    "negative": ("负效果", "harmful"),
    "no_effect": ("未见效果", "no effect seen"),
    "too_small": ("无法判断（样本太少）", "cannot tell (too small)"),
    "window_open": ("窗口未结束", "window still open"),
}
REPORT_XLSX = "campaign_report.xlsx"
REPORT_JSON = "campaign_report.json"
PLOTS = "plots"


class UnknownCampaign(NbpError):
    """A campaign named on the command line was never issued or imported in this bank."""


# ----------------------------------------------------------------------------- statistics
def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``x / n`` (nan, nan when ``n`` is 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``p1 - p2`` and its interval by Newcombe's hybrid score method (nan when an arm is empty).

    ``L = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)``, ``U = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)``,
    with ``(l, u)`` each rate's Wilson interval (Newcombe 1998, Statistics in Medicine 17:873).
    """
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan, math.nan
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def min_detectable_difference(n_t: int, n_c: int, rate: float) -> float:
    """The smallest difference of rates a two-sided 5 % test finds with 80 % power, at ``rate``
    in both arms (normal approximation); nan when an arm is empty."""
    if n_t <= 0 or n_c <= 0 or not math.isfinite(rate):
        return math.nan
    return (Z95 + Z_POWER) * math.sqrt(rate * (1 - rate) * (1 / n_t + 1 / n_c))


def too_small(n_t: int, n_c: int, x_t: int, x_c: int, min_arm: int) -> tuple[str, str] | None:
    """Why a campaign cannot show a difference (zh, en), or None when it can (module docstring)."""
    if min(n_t, n_c) < min_arm:
        arm_zh, arm_en, n = ("实验组", "treatment", n_t) if n_t <= n_c else ("对照组", "control", n_c)
        return (
            f"{arm_zh}只有 {n:,} 名客户，少于 {min_arm:,} 名：样本太少，看不出营销是否有效。",
            f"the {arm_en} arm has {n:,} customers, fewer than {min_arm:,}: too small to show a difference.",
        )
    pooled = (x_t + x_c) / (n_t + n_c)
    if pooled == 0:
        return (
            "两组都还没有客户办理：样本太少，看不出营销是否有效。",
            "no customer in either arm has taken the product up yet: too small to show a difference.",
        )
    mdd = min_detectable_difference(n_t, n_c, pooled)
    if mdd > pooled:
        return (
            f"按这两组的客户数和整体办理率 {pooled:.2%}，办理率差要达到 {mdd:.2%} 以上才能有八成把握看出来，"
            "相当于营销让办理率翻倍以上：样本太少，无法判断。",
            f"with these arms and a pooled uptake rate of {pooled:.2%}, only a difference above {mdd:.2%} "
            "(more than doubling uptake) would be found with 80% power: too small to show a difference.",
        )
    return None


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Outcomes:
    """The tables of one bank's latest export a report reads."""

    export_date: pd.Timestamp
    loans: pd.DataFrame  # customer_id, product, grant_date, end_date, term_months
    contacts: pd.DataFrame | None  # customer_id, product, contact_date, channel, outcome; None: no table
    customers: pd.DataFrame  # customer_id, branch_id, manager_id


def read_outcomes(ws: Workspace) -> Outcomes:
    """Read the bank's ingested ``loans``, ``contacts`` (optional) and ``customers``.

    Raises:
        ConfigError: nothing has been ingested in ``ws`` yet.
    """
    export = ws.export_date()
    if export is None or not ws.table("loans").exists():
        raise ConfigError(f"{ws.ingested_dir}: no ingested export; run `nbp ingest` on a later export first")
    loans = pd.read_parquet(
        ws.table("loans"), columns=["customer_id", "product", "grant_date", "end_date", "term_months"]
    )
    contacts = None
    if ws.table("contacts").exists():
        contacts = pd.read_parquet(
            ws.table("contacts"), columns=["customer_id", "product", "contact_date", "channel", "outcome"]
        )
    customers = pd.read_parquet(ws.table("customers"), columns=["customer_id", "branch_id", "manager_id"])
    return Outcomes(pd.Timestamp(export), loans, contacts, customers)


# ----------------------------------------------------------------------------- one campaign
@dataclass
class CampaignResult:
    """The figures of one campaign (``figures``: the JSON) and its tables for the workbook."""

    figures: dict[str, Any]
    deciles: pd.DataFrame
    contacts: pd.DataFrame
    branches: pd.DataFrame
    qini: tuple[np.ndarray, np.ndarray] | None = None


def _customers_of(rows: pd.DataFrame, data: Outcomes) -> pd.DataFrame:
    """One row per customer of the campaign: first list's date, arm, branch and manager (from
    the customers table where the issued list names none), ranking columns."""
    df = first_issue(rows).copy()
    df["customer_id"] = df["customer_id"].astype(str)
    df["list_date"] = pd.to_datetime(df["list_date"])
    home = data.customers.assign(customer_id=data.customers["customer_id"].astype(str)).set_index("customer_id")
    for col in ("branch_id", "manager_id"):
        known = df["customer_id"].map(home[col])
        df[col] = df[col].where(df[col].notna(), known).astype(object)
    df["branch_id"] = df["branch_id"].where(df["branch_id"].notna(), NOT_RECORDED)
    df["manager_id"] = df["manager_id"].where(df["manager_id"].notna(), NO_MANAGER)
    return df.reset_index(drop=True)


def _arm_figures(df: pd.DataFrame, contacts_known: bool) -> dict[str, Any]:
    n, x = len(df), int(df["uptake"].sum())
    lo, hi = wilson(x, n)
    return {
        "customers": n,
        "contacted": int(df["contacted"].sum()) if contacts_known else None,
        "uptakes": x,
        "rate": x / n if n else None,
        "rate_ci_low": lo,
        "rate_ci_high": hi,
    }


def _difference(df: pd.DataFrame) -> tuple[int, int, int, int, tuple[float, float, float]]:
    t, c = df[df["arm"] == "treatment"], df[df["arm"] == "control"]
    n_t, x_t, n_c, x_c = len(t), int(t["uptake"].sum()), len(c), int(c["uptake"].sum())
    return n_t, x_t, n_c, x_c, newcombe(x_t, n_t, x_c, n_c)


def _decile_table(df: pd.DataFrame) -> pd.DataFrame:
    """Arms' uptake per decile of the score over both arms (1 = the highest scores)."""
    scored = df[df["score"].notna()].sort_values(["score", "customer_id"], ascending=[False, True])
    n = len(scored)
    scored = scored.assign(decile=(np.arange(n) * DECILES // max(n, 1)) + 1)
    out = []
    for d, part in scored.groupby("decile", sort=True):
        n_t, x_t, n_c, x_c, (est, lo, hi) = _difference(part)
        out.append(
            {
                "decile": int(d),
                "score_min": float(part["score"].min()),
                "score_max": float(part["score"].max()),
                "treatment_customers": n_t,
                "treatment_uptakes": x_t,
                "treatment_rate": x_t / n_t if n_t else math.nan,
                "control_customers": n_c,
                "control_uptakes": x_c,
                "control_rate": x_c / n_c if n_c else math.nan,
                "difference": est,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(out, columns=list(DECILE_HEADERS))


def _contact_table(hits: pd.DataFrame) -> pd.DataFrame:
    """Contacts in the window by arm, channel and outcome: contacts and distinct customers."""
    if hits.empty:
        return pd.DataFrame(columns=["arm", "channel", "outcome", "contacts", "customers"])
    h = hits.assign(
        channel=hits["channel"].astype(object).where(hits["channel"].notna(), NOT_RECORDED),
        outcome=hits["outcome"].astype(object).where(hits["outcome"].notna(), NOT_RECORDED),
    )
    g = h.groupby(["arm", "channel", "outcome"], sort=True)
    out = g.agg(contacts=("customer_id", "size"), customers=("customer_id", "nunique")).reset_index()
    return out.sort_values(["arm", "contacts"], ascending=[False, False], kind="stable").reset_index(drop=True)


def _scope_table(df: pd.DataFrame) -> pd.DataFrame:
    """Coverage of the treatment arm and contamination of the control arm per branch and per manager."""
    d = df.assign(
        t=df["arm"] == "treatment",
        c=df["arm"] == "control",
        tc=(df["arm"] == "treatment") & df["contacted"],
        cc=(df["arm"] == "control") & df["contacted"],
    )
    parts = []
    for level, keys in (("branch", ["branch_id"]), ("manager", ["branch_id", "manager_id"])):
        g = d.groupby(keys, sort=True)[["t", "c", "tc", "cc"]].sum().reset_index()
        if level == "branch":
            g["manager_id"] = "（全部）"
        g.insert(0, "level", level)
        parts.append(g)
    out = pd.concat(parts, ignore_index=True).rename(
        columns={
            "t": "treatment_customers",
            "tc": "treatment_contacted",
            "c": "control_customers",
            "cc": "control_contacted",
        }
    )
    out["not_contacted"] = out["treatment_customers"] - out["treatment_contacted"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["coverage"] = out["treatment_contacted"] / out["treatment_customers"].replace(0, np.nan)
        out["contamination"] = out["control_contacted"] / out["control_customers"].replace(0, np.nan)
    return out[list(SCOPE_HEADERS)]


def verdict(n_t: int, x_t: int, n_c: int, x_c: int, closed: bool, min_arm: int) -> tuple[str, list[str], list[str]]:
    """The campaign's verdict (a key of :data:`VERDICTS`) and why, in notes (zh, en).

    An arm under ``min_arm`` customers: too small, whatever the figures. Otherwise, while the
    window is open: window_open (figures so far). Then an interval that excludes 0 is a finding
    (effective, or negative), said to be uncertain in size when the campaign was underpowered;
    an interval that spans 0 is too_small when the campaign could not have shown a plausible
    difference (:func:`too_small`), else no_effect.
    """
    reason = too_small(n_t, n_c, x_t, x_c, min_arm)
    _, lo, hi = newcombe(x_t, n_t, x_c, n_c)
    if min(n_t, n_c) < min_arm:
        code = "too_small"
    elif not closed:
        code = "window_open"
    elif lo > 0 or hi < 0:
        code = "effective" if lo > 0 else "negative"
        if reason is not None:
            return (
                code,
                ["区间不含0，结论成立；但样本较小，实际效果可能比估计值小得多。"],
                ["the interval excludes 0, but the campaign is small: the true effect may be much smaller."],
            )
        return code, [], []
    else:
        code = "too_small" if reason is not None else "no_effect"
    return (code, [reason[0]], [reason[1]]) if reason is not None else (code, [], [])


def campaign_figures(cfg: Config, record: Mapping[str, Any], rows: pd.DataFrame, data: Outcomes) -> CampaignResult:
    """Every figure of one campaign (module docstring) from its issued rows and the export.

    Args:
        record: the campaign's record (``CampaignStore.campaigns()``).
        rows: its issued rows (``CampaignStore.issued``), every list.
        data: the bank's export (:func:`read_outcomes`).
    """
    product = str(record["product"])
    pc = cfg.products.get(product)
    lp = loan_product(product, pc) if pc else product
    value = pc.value if pc else math.nan
    horizon = cfg.training.horizon_days
    h = pd.Timedelta(days=horizon)
    df = _customers_of(rows, data)
    df["uptake"] = label(df[["customer_id"]].assign(as_of=df["list_date"]), data.loans, lp, horizon).to_numpy()

    contacts_known = data.contacts is not None
    if contacts_known:
        c = data.contacts[data.contacts["product"] == lp]
        hits = c.assign(customer_id=c["customer_id"].astype(str)).merge(
            df[["customer_id", "list_date", "arm"]], on="customer_id"
        )
        hits = hits[(hits["contact_date"] >= hits["list_date"]) & (hits["contact_date"] <= hits["list_date"] + h)]
        df["contacted"] = df["customer_id"].isin(set(hits["customer_id"]))
    else:
        hits = pd.DataFrame(columns=["customer_id", "arm", "channel", "outcome"])
        df["contacted"] = False

    first, last = df["list_date"].min(), df["list_date"].max()
    observed = int(min(max((data.export_date - last).days, 0), horizon)) if len(df) else 0
    closed = bool(len(df)) and data.export_date >= last + h
    n_t, x_t, n_c, x_c, diff = _difference(df)
    min_arm = cfg.campaigns.min_arm_customers
    code, why_zh, why_en = verdict(n_t, x_t, n_c, x_c, closed, min_arm)
    pooled = (x_t + x_c) / (n_t + n_c) if n_t + n_c else math.nan
    has_scores = bool(df["score"].notna().any())
    deciles = _decile_table(df) if has_scores else pd.DataFrame(columns=list(DECILE_HEADERS))
    rank_by = str(rows["rank_by"].dropna().iloc[0]) if rows["rank_by"].notna().any() else "propensity"
    order_col = {"uplift": "uplift", "value": "expected_value"}.get(rank_by, "score")
    if not df[order_col].notna().any():
        order_col = "score"
    qini = None
    ranked = df[df[order_col].notna()]
    if len(ranked) and ranked["arm"].nunique() == 2:
        args = (ranked["uptake"], ranked["arm"] == "treatment", ranked[order_col])
        qini = qini_curve(*args)
        qini_coef = qini_coefficient(*args)
    else:
        qini_coef = math.nan

    notes_zh, notes_en = [], []
    if not closed:
        notes_zh.append(
            f"观察窗口 {horizon} 天中已观察 {observed} 天（导出日期 {data.export_date:%Y-%m-%d}），"
            "以下为截至目前的数字。"
        )
        notes_en.append(
            f"{observed} of the horizon's {horizon} days observed (export {data.export_date:%Y-%m-%d}): figures so far."
        )
    notes_zh += why_zh
    notes_en += why_en
    if not has_scores:
        notes_zh.append("该活动没有模型分数（导入的活动），没有十分位表。")
        notes_en.append("no model scores (an imported campaign): no decile table.")
    if not contacts_known:
        notes_zh.append("导出中没有接触记录（contacts 表），无法统计接触、覆盖和污染。")
        notes_en.append("the export has no contacts table: contacted, coverage and contamination are unknown.")
    lists = record.get("lists", [])
    source = "import" if lists and lists[0].get("params", {}).get("source") == "import" else "nbp"
    inc = [d * n_t for d in diff]
    figures = {
        "campaign_id": record["campaign_id"],
        "bank_code": record.get("bank_code"),
        "product": product,
        "product_name": pc.name_zh if pc else product,
        "source": source,
        "rank_by": rank_by,
        "list_date": f"{first:%Y-%m-%d}" if len(df) else None,
        "last_list_date": f"{last:%Y-%m-%d}" if len(df) else None,
        "export_date": f"{data.export_date:%Y-%m-%d}",
        "horizon_days": horizon,
        "days_observed": observed,
        "window_closed": closed,
        "arms": {
            "treatment": _arm_figures(df[df["arm"] == "treatment"], contacts_known),
            "control": _arm_figures(df[df["arm"] == "control"], contacts_known),
        },
        "difference": {"estimate": diff[0], "ci_low": diff[1], "ci_high": diff[2]},
        "interval_method": INTERVAL_METHOD,
        "incremental_uptakes": {"estimate": inc[0], "ci_low": inc[1], "ci_high": inc[2]},
        "incremental_value": {"estimate": inc[0] * value, "ci_low": inc[1] * value, "ci_high": inc[2] * value},
        "product_value": value,
        "pooled_rate": pooled,
        "min_detectable_difference": min_detectable_difference(n_t, n_c, pooled),
        "too_small": too_small(n_t, n_c, x_t, x_c, min_arm) is not None,
        "verdict": code,
        "verdict_zh": VERDICTS[code][0],
        "verdict_en": VERDICTS[code][1],
        "verdict_note_zh": " ".join(why_zh),
        "verdict_note_en": " ".join(why_en),
        "notes_zh": notes_zh,
        "notes_en": notes_en,
        "qini_coefficient": qini_coef,
        "qini_order": order_col,
    }
    contact_table = _contact_table(hits)
    scope = _scope_table(df)
    figures["deciles"] = deciles.to_dict(orient="records") if has_scores else None
    figures["contacts"] = contact_table.to_dict(orient="records")
    figures["branches"] = scope.to_dict(orient="records")
    return CampaignResult(figures, deciles, contact_table, scope, qini)


# ----------------------------------------------------------------------------- the report
@dataclass
class Report:
    """The figures of every campaign asked for, and the drift report shown beside them."""

    bank: str | None
    export_date: str
    campaigns: list[CampaignResult]
    drift: dict | None  # the last retrain's drift report (training.drift.read_report), None without one

    def json(self) -> list[dict[str, Any]]:
        """The ``--json`` list: one object per campaign, its product's drift figures under ``drift``."""
        products = (self.drift or {}).get("products", {})
        return [json_safe({**c.figures, "drift": products.get(c.figures["product"])}) for c in self.campaigns]


def _store(ws: Workspace) -> CampaignStore:
    return CampaignStore(ws.campaigns_dir, ws.bank or ws.recorded_bank())


def _records(ws: Workspace, campaign_ids: Sequence[str] | None) -> list[dict]:
    """The bank's campaign records (named ones, or all); a federation's bank sees only records of its own bank.

    Raises:
        UnknownCampaign: a named campaign is not among them.
    """
    records = _store(ws).campaigns()
    if ws.bank is not None:
        records = [r for r in records if r.get("bank_code") == ws.bank]
    if campaign_ids:
        known = {r["campaign_id"] for r in records}
        unknown = [c for c in campaign_ids if c not in known]
        if unknown:
            where = f"bank {ws.bank}" if ws.bank else str(ws.home)
            raise UnknownCampaign(
                f"no campaign {', '.join(map(repr, unknown))} in {where}; `nbp campaign list` shows the campaigns"
            )
        records = [r for r in records if r["campaign_id"] in set(campaign_ids)]
    return records


def build_report(cfg: Config, ws: Workspace, campaign_ids: Sequence[str] | None = None) -> Report:
    """Figures of the named campaigns (None: every one) of ``ws``'s bank against its latest export.

    Raises:
        UnknownCampaign: a named campaign was never issued or imported in this bank.
        ConfigError: nothing has been ingested yet.
    """
    records = _records(ws, campaign_ids)
    data = read_outcomes(ws)
    results = []
    if records:
        rows = _store(ws).issued([r["campaign_id"] for r in records])
        results = [campaign_figures(cfg, r, rows[rows["campaign_id"] == r["campaign_id"]], data) for r in records]
    return Report(ws.bank, f"{data.export_date:%Y-%m-%d}", results, read_report(ws))


# ----------------------------------------------------------------------------- workbook
SUMMARY_HEADERS = {
    "campaign_id": "活动编号",
    "product_name": "产品",
    "source": "来源",
    "list_date": "名单日期",
    "export_date": "导出日期",
    "days_observed": "已观察天数",
    "horizon_days": "观察窗口（天）",
    "treatment_customers": "实验组客户数",
    "treatment_contacted": "实验组已接触",
    "treatment_uptakes": "实验组办理数",
    "treatment_rate": "实验组办理率",
    "control_customers": "对照组客户数",
    "control_contacted": "对照组被接触",
    "control_uptakes": "对照组办理数",
    "control_rate": "对照组办理率",
    "difference": "办理率差（实验−对照）",
    "ci_low": "95%区间下限",
    "ci_high": "95%区间上限",
    "min_detectable_difference": "最小可检测差异",
    "incremental_uptakes": "增量办理数",
    "incremental_value": "增量价值",
    "verdict_zh": "结论",
    "notes_zh": "说明",
}
DECILE_HEADERS = {
    "decile": "分数十分位（1=最高）",
    "score_min": "分数下限",
    "score_max": "分数上限",
    "treatment_customers": "实验组客户数",
    "treatment_uptakes": "实验组办理数",
    "treatment_rate": "实验组办理率",
    "control_customers": "对照组客户数",
    "control_uptakes": "对照组办理数",
    "control_rate": "对照组办理率",
    "difference": "办理率差",
    "ci_low": "95%区间下限",
    "ci_high": "95%区间上限",
}
CONTACT_HEADERS = {"arm": "组别", "channel": "渠道", "outcome": "结果", "contacts": "接触次数", "customers": "客户数"}
SCOPE_HEADERS = {
    "level": "层级",
    "branch_id": "支行",
    "manager_id": "客户经理",
    "treatment_customers": "实验组客户数",
    "treatment_contacted": "实验组已接触",
    "not_contacted": "实验组未接触",
    "coverage": "覆盖率",
    "control_customers": "对照组客户数",
    "control_contacted": "对照组被接触",
    "contamination": "污染率",
}
ARM_ZH = {"treatment": "实验组", "control": "对照组"}
LEVEL_ZH = {"branch": "支行", "manager": "客户经理"}
SOURCE_ZH = {"nbp": "nbp名单", "import": "导入"}
SHEETS = ("活动汇总", "按分数十分位", "接触渠道与结果", "支行与客户经理", "模型漂移", "模型校准（逐月）")


def summary_row(f: Mapping[str, Any]) -> dict[str, Any]:
    """One campaign's line of the summary sheet (English keys of :data:`SUMMARY_HEADERS`)."""
    t, c = f["arms"]["treatment"], f["arms"]["control"]
    return {
        **{k: f.get(k) for k in SUMMARY_HEADERS},
        "source": SOURCE_ZH.get(f["source"], f["source"]),
        **{f"treatment_{k}": t[k] for k in ("customers", "contacted", "uptakes", "rate")},
        **{f"control_{k}": c[k] for k in ("customers", "contacted", "uptakes", "rate")},
        "difference": f["difference"]["estimate"],
        "ci_low": f["difference"]["ci_low"],
        "ci_high": f["difference"]["ci_high"],
        "incremental_uptakes": f["incremental_uptakes"]["estimate"],
        "incremental_value": f["incremental_value"]["estimate"],
        "notes_zh": " ".join(f["notes_zh"]),
    }


def _with_campaign(frame: pd.DataFrame, cid: str, headers: Mapping[str, str]) -> pd.DataFrame:
    out = frame[list(headers)].rename(columns=headers)
    out.insert(0, "活动编号", cid)
    return out


def workbook_sheets(report: Report) -> list[Any]:
    """The report's sheets (:data:`SHEETS`), Chinese headers, shares as percentages."""
    from nbp.sheets import Sheet

    summary = pd.DataFrame([summary_row(c.figures) for c in report.campaigns], columns=list(SUMMARY_HEADERS))
    summary = summary.rename(columns=SUMMARY_HEADERS)
    deciles = [_with_campaign(c.deciles, c.figures["campaign_id"], DECILE_HEADERS) for c in report.campaigns]
    contacts = [
        _with_campaign(c.contacts.assign(arm=c.contacts["arm"].map(ARM_ZH)), c.figures["campaign_id"], CONTACT_HEADERS)
        for c in report.campaigns
    ]
    scope = [
        _with_campaign(
            c.branches.assign(level=c.branches["level"].map(LEVEL_ZH)), c.figures["campaign_id"], SCOPE_HEADERS
        )
        for c in report.campaigns
    ]

    def joined(parts: list[pd.DataFrame], headers: Mapping[str, str]) -> pd.DataFrame:
        cols = ["活动编号", *headers.values()]
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)

    none = pd.DataFrame({"说明": ["尚无模型漂移报告（运行 nbp retrain 后生成）"]})
    drift = flag_rows(report.drift) if report.drift else none
    calibration = calibration_rows(report.drift) if report.drift else none
    rates = ("实验组办理率", "对照组办理率", "95%区间下限", "95%区间上限")
    return [
        Sheet(
            SHEETS[0],
            summary,
            banner=f"营销活动效果报告（导出日期 {report.export_date}；区间为95%置信区间，Newcombe方法）",
            percent=(*rates, "办理率差（实验−对照）", "最小可检测差异"),
        ),
        Sheet(SHEETS[1], joined(deciles, DECILE_HEADERS), percent=(*rates, "办理率差")),
        Sheet(SHEETS[2], joined(contacts, CONTACT_HEADERS)),
        Sheet(SHEETS[3], joined(scope, SCOPE_HEADERS), percent=("覆盖率", "污染率")),
        Sheet(SHEETS[4], drift),
        Sheet(SHEETS[5], calibration),
    ]


# ----------------------------------------------------------------------------- writing
def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Write the workbook, the JSON and the plots under ``out``; plots of campaigns no longer
    reported are removed. Returns name -> path of everything written."""
    from nbp.sheets import write_xlsx
    from training.campaign_plots import plot_deciles, plot_qini

    out.mkdir(parents=True, exist_ok=True)
    written = {"xlsx": write_xlsx(out / REPORT_XLSX, workbook_sheets(report))}
    with atomic_write(out / REPORT_JSON) as tmp:
        tmp.write_text(json.dumps(report.json(), ensure_ascii=False, indent=1), encoding="utf-8")
    written["json"] = out / REPORT_JSON
    plots = out / PLOTS
    keep = set()
    for c in report.campaigns:
        stem = folder_name(c.figures["campaign_id"])
        for kind, draw in (("deciles", plot_deciles), ("qini", plot_qini)):
            p = draw(c, plots / f"{stem}-{kind}.png")
            if p is not None:
                written[f"{stem}-{kind}"] = p
                keep.add(p.name)
    if plots.is_dir():  # only this report's own kinds of file: --out may name a folder holding others
        for p in [*plots.glob("*-deciles.png"), *plots.glob("*-qini.png")]:
            if p.name not in keep:
                p.unlink()
    return written


def experiment_name(bank: str | None) -> str:
    """MLflow experiment of campaign reports: ``nbp-campaigns``, per member bank ``nbp-<bank>-campaigns``."""
    return "nbp-campaigns" if bank is None else f"nbp-{bank}-campaigns"


def log_to_mlflow(ws: Workspace, report: Report, written: Mapping[str, Path]) -> str:
    """One run per report: per campaign the metrics ``<campaign>.difference`` (and its interval,
    both rates, incremental uptakes, days observed), the workbook, JSON and plots as artifacts.

    Returns:
        The run id.
    """
    from mlflow.entities import Metric

    from training.registry import _connect, _experiment_id, bank_tag, job_tags

    client = _connect(ws)
    name = experiment_name(ws.bank)
    run = client.create_run(
        _experiment_id(client, ws, name),
        run_name=f"{name} {report.export_date}",
        tags={**bank_tag(ws), **job_tags(), "nbp.export_date": report.export_date},
    )
    now, metrics = int(time.time() * 1000), []
    for c in report.campaigns:
        f, key = c.figures, folder_name(c.figures["campaign_id"])
        values = {
            "difference": f["difference"]["estimate"],
            "ci_low": f["difference"]["ci_low"],
            "ci_high": f["difference"]["ci_high"],
            "treatment_rate": f["arms"]["treatment"]["rate"],
            "control_rate": f["arms"]["control"]["rate"],
            "incremental_uptakes": f["incremental_uptakes"]["estimate"],
            "days_observed": f["days_observed"],
            "qini_coefficient": f["qini_coefficient"],
        }
        metrics += [
            Metric(f"{key}.{k}", float(v), now, 0) for k, v in values.items() if v is not None and math.isfinite(v)
        ]
    for i in range(0, len(metrics), 900):  # MLflow takes at most 1,000 metrics per batch
        client.log_batch(run.info.run_id, metrics=metrics[i : i + 900])
    client.log_param(run.info.run_id, "campaigns", ", ".join(c.figures["campaign_id"] for c in report.campaigns)[:6000])
    for key, path in written.items():
        client.log_artifact(run.info.run_id, str(path), PLOTS if key not in ("xlsx", "json") else None)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


# ----------------------------------------------------------------------------- the page
_CACHE: dict[tuple, tuple[tuple, list[dict[str, Any]]]] = {}  # (home, bank) -> (state, page rows)


def _state(ws: Workspace) -> tuple:
    """What the page's figures depend on: the export's record and every campaign record's file."""
    files = [ws.ingest_meta]
    if ws.campaigns_dir.is_dir():
        files += sorted(ws.campaigns_dir.glob("*/campaign.json"))
    stat = []
    for p in files:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        stat.append((str(p), st.st_mtime_ns, st.st_size))
    return (ws.export_date(), *stat)


def page_summaries(cfg: Config, ws: Workspace) -> list[dict[str, Any]]:
    """The campaigns page's rows of ``ws``'s bank, newest list first, cached per process and bank
    until the export or a campaign record changes (a page load does not read the loans again)."""
    state = (_state(ws), cfg.training.horizon_days, cfg.campaigns.min_arm_customers)
    cached = _CACHE.get((str(ws.home), ws.bank))
    if cached is not None and cached[0] == state:
        return cached[1]
    rows = [_page_row(c.figures) for c in build_report(cfg, ws).campaigns] if _records(ws, None) else []
    rows.sort(key=lambda r: (r["list_date"] or "", r["campaign_id"]), reverse=True)
    _CACHE[(str(ws.home), ws.bank)] = (state, rows)
    return rows


def _page_row(f: Mapping[str, Any]) -> dict[str, Any]:
    arms = {a: {k: f["arms"][a][k] for k in ("customers", "uptakes", "rate")} for a in ("treatment", "control")}
    return json_safe(
        {
            "campaign_id": f["campaign_id"],
            "product": f["product"],
            "product_name": f["product_name"],
            "list_date": f["list_date"],
            "days_observed": f["days_observed"],
            "horizon_days": f["horizon_days"],
            "arms": arms,
            "difference": dict(f["difference"]),
            "incremental_uptakes": f["incremental_uptakes"]["estimate"],
            "verdict": f["verdict"],
            "verdict_zh": f["verdict_zh"],
            "note_zh": f["verdict_note_zh"],
        }
    )


def summary_line(f: Mapping[str, Any]) -> str:
    """One campaign for the terminal: arms, difference with its interval, verdict (and why, on a second line)."""
    t, c, d = f["arms"]["treatment"], f["arms"]["control"], f["difference"]

    def pct(v: Any, sign: str = "") -> str:
        return "-" if v is None or not math.isfinite(v) else f"{v:{sign}.2%}"

    return (
        f"{f['campaign_id']}  {f['product']}  list {f['list_date']}  "
        f"treatment {t['customers']:,} {pct(t['rate'])}  control {c['customers']:,} {pct(c['rate'])}  "
        f"difference {pct(d['estimate'], '+')} [{pct(d['ci_low'], '+')}, {pct(d['ci_high'], '+')}]  "
        f"{f['days_observed']}/{f['horizon_days']} days  {f['verdict_zh']} / {f['verdict_en']}"
    ) + (f"\n    {f['verdict_note_zh']} / {f['verdict_note_en']}" if f["verdict_note_en"] else "")
