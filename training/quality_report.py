"""The data-quality report (``nbp quality report``, the ``/quality/`` page): completeness of the
customer fields per ingest date, branch and manager, the rows ingest set aside, and each
manager's to-complete list (客户信息待完善清单).

Figures come from the snapshots every ingest writes (``bankexport/quality.py``: one file per
export date under ``Workspace.quality_dir``); the to-complete list is read from the stored
tables at the latest export, and ranked by what completing a customer is worth
(:data:`RANKING_RULE_ZH`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bankexport import quality
from bankexport.spec import ENUM_ZH
from nbp.config import Config
from nbp.errors import NbpError
from nbp.sheets import Sheet
from nbp.workspace import Workspace

log = logging.getLogger(__name__)

REPORT_XLSX = "quality_report.xlsx"
TREND_PNG = "quality_trend.png"
NO_MANAGER = "（无客户经理）"
NO_RULE = "（无剔除）"
ALL_FIELDS_ZH = "全部字段"
SHEETS = ("总览", "按支行", "按客户经理", "剔除记录", "待完善清单")
RANKING_RULE_ZH = (
    "排序规则：排序分 = 预期价值 × 缺失的模型字段数；预期价值 = 各产品最新批量评分的办理概率 × 产品价值之和。"
    "无批量评分时按缺失字段数排序。每位客户经理列前 {top} 名。"
)
RANKING_RULE_COUNT_ZH = "排序规则：暂无批量评分，按缺失字段数（其次缺失的模型字段数）排序。每位客户经理列前 {top} 名。"


class NoQualityHistory(NbpError):
    """No ingest has recorded data-quality figures in this workspace yet."""


@dataclass
class QualityReport:
    """The figures of one bank's report.

    Attributes:
        bank: the member bank (None: a single bank).
        fields: the tracked fields (``quality.fields``).
        dates: the export dates with a snapshot, oldest first.
        trend: ``export_date``, ``field`` (``ALL`` for every field together), ``applicable``,
            ``known``, ``completeness``: bank-wide per date.
        branches: the same per ``branch_id`` (every date); ``managers`` per ``branch_id``,
            ``manager_id`` (every date).
        set_aside: ``export_date``, ``table``, ``rule``, ``rows``, ``rows_read``.
        to_complete: the to-complete list (:func:`to_complete_list`).
        by_value: whether the list is ranked by expected value (batch scores found).
        names: ``branch_id`` -> name, ``manager_id`` -> name (from the optional tables).
    """

    bank: str | None
    fields: list[str]
    dates: list[pd.Timestamp]
    trend: pd.DataFrame
    branches: pd.DataFrame
    managers: pd.DataFrame
    set_aside: pd.DataFrame
    to_complete: pd.DataFrame
    by_value: bool
    names: dict[str, dict[str, str]]
    top: int


ALL = "__all__"
_NONE = ""  # a null branch or manager id while pivoting (ingest stores no empty id)


def _sums(fields_rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Counts of ``fields_rows`` summed per ``export_date`` × ``by`` × field, with a row ``ALL``
    per group summing every field (customers × applicable fields)."""
    keys = ["export_date", *by]
    per_field = fields_rows.groupby([*keys, "field"], dropna=False, sort=True)[["applicable", "known"]].sum()
    per_field = per_field.reset_index()
    overall = fields_rows.groupby(keys, dropna=False, sort=True)[["applicable", "known"]].sum().reset_index()
    out = pd.concat([overall.assign(field=ALL), per_field], ignore_index=True)
    out["applicable"] = out["applicable"].astype("int64")
    out["known"] = out["known"].astype("int64")
    out["completeness"] = out["known"] / out["applicable"].where(out["applicable"] > 0)
    return out


def expected_values(cfg: Config, ws: Workspace) -> pd.Series | None:
    """Per customer, Σ over products of the latest batch score × the product's ``value``; None
    without batch scores (``Workspace.latest_scores``)."""
    if not ws.latest_scores.exists():
        return None
    s = pd.read_parquet(ws.latest_scores, columns=["customer_id", "product", "as_of", "score"])
    s = s[s["product"].isin(list(cfg.products))]
    if s.empty:
        return None
    s = s[s["as_of"] == s.groupby("product")["as_of"].transform("max")]
    value = s["product"].map({k: p.value for k, p in cfg.products.items()}).astype(float)
    return (s["score"].astype(float) * value).groupby(s["customer_id"].astype(str)).sum()


def to_complete_list(completeness: pd.DataFrame, values: pd.Series | None, top: int) -> tuple[pd.DataFrame, bool]:
    """Each manager's customers with missing applicable fields, most worth completing first.

    Args:
        completeness: :func:`bankexport.quality.customer_completeness` of the latest export.
        values: expected value per customer id (:func:`expected_values`), or None.
        top: customers kept per manager (``quality.to_complete_top``).

    Returns:
        (``branch_id``, ``manager_id``, ``rank`` (1 first, per manager), ``customer_id``,
        ``customer_type``, ``missing`` (field names), ``n_missing``, ``n_model_missing``,
        ``expected_value`` (NaN without scores), ``priority``), and whether it is ranked by value.
        Ranking: ``priority`` = expected value × ``n_model_missing`` (a customer with no score
        counts 0), ties by ``n_missing``; without scores by ``n_missing``, then
        ``n_model_missing``; then ``customer_id``.
    """
    fields = quality.completeness_fields(completeness)
    miss = completeness[[quality.KNOWN + f for f in fields]].eq(False).fillna(False).to_numpy(dtype=bool)
    model = np.array([quality.FIELD_RULES[f].model for f in fields], dtype=bool)
    df = completeness[["branch_id", "manager_id", "customer_id", "customer_type"]].copy()
    df["n_missing"] = miss.sum(axis=1)
    df["n_model_missing"] = miss[:, model].sum(axis=1) if model.any() else 0
    names = np.array(fields, dtype=object)
    df["missing"] = [list(names[row]) for row in miss]
    keep = df["n_missing"].to_numpy() > 0
    df = df[keep]
    by_value = values is not None
    if by_value:
        df["expected_value"] = df["customer_id"].map(values).fillna(0.0).astype(float)
        df["priority"] = df["expected_value"] * df["n_model_missing"]
        order = ["priority", "n_missing", "customer_id"]
    else:
        df["expected_value"] = np.nan
        df["priority"] = df["n_missing"].astype(float)
        order = ["n_missing", "n_model_missing", "customer_id"]
    df = df.sort_values(order, ascending=[False, False, True], kind="stable")
    df["rank"] = df.groupby(["branch_id", "manager_id"], dropna=False).cumcount() + 1
    df = df[df["rank"] <= top].sort_values(["branch_id", "manager_id", "rank"], kind="stable", na_position="last")
    cols = ["branch_id", "manager_id", "rank", "customer_id", "customer_type", "missing", "n_missing"]
    return df[[*cols, "n_model_missing", "expected_value", "priority"]].reset_index(drop=True), by_value


def _names(ws: Workspace) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"branch": {}, "manager": {}}
    for kind, table, key in (("branch", "branches", "branch_id"), ("manager", "managers", "manager_id")):
        if ws.table(table).exists():
            t = pd.read_parquet(ws.table(table), columns=[key, "name"]).dropna()
            out[kind] = dict(zip(t[key].astype(str), t["name"].astype(str), strict=True))
    return out


def build_report(cfg: Config, ws: Workspace) -> QualityReport:
    """The report of ``ws``'s bank from its snapshot history and latest export.

    Raises:
        NoQualityHistory: no ingest has written a snapshot yet.
    """
    fields = quality.checked_fields(cfg.quality.fields)
    hist = quality.read_history(ws)
    rows = hist[(hist["kind"] == "field") & hist["field"].isin(fields)]
    if rows.empty:
        raise NoQualityHistory(
            f"no data-quality figures under {ws.quality_dir}: every `nbp ingest` records them; run it for this bank"
        )
    rows = rows.astype({"applicable": "int64", "known": "int64"})
    aside = hist[hist["kind"] == "set_aside"][["export_date", "table", "rule", "rows", "rows_read"]]
    comp = quality.customer_completeness(ws, fields)
    values = expected_values(cfg, ws)
    todo, by_value = to_complete_list(comp, values, cfg.quality.to_complete_top)
    return QualityReport(
        bank=ws.bank,
        fields=fields,
        dates=sorted(rows["export_date"].unique()),
        trend=_sums(rows, []),
        branches=_sums(rows, ["branch_id"]),
        managers=_sums(rows, ["branch_id", "manager_id"]),
        set_aside=aside.reset_index(drop=True),
        to_complete=todo,
        by_value=by_value,
        names=_names(ws),
        top=cfg.quality.to_complete_top,
    )


# ----------------------------------------------------------------------------- workbook
def field_zh(field: str) -> str:
    """A field's Chinese name (``ALL``: every field together)."""
    return ALL_FIELDS_ZH if field == ALL else quality.FIELD_RULES[field].zh


def _day(ts: Any) -> str:
    return f"{pd.Timestamp(ts):%Y-%m-%d}"


def _overview(r: QualityReport) -> tuple[pd.DataFrame, list[str]]:
    wide = r.trend.pivot(index="field", columns="export_date", values="completeness")
    days = [_day(d) for d in wide.columns]
    wide.columns = days
    latest = r.trend[r.trend["export_date"] == r.dates[-1]].set_index("field")
    rows = []
    for f in [ALL, *r.fields]:
        if f not in wide.index:
            continue
        rule = quality.FIELD_RULES.get(f)
        row = {
            "字段": "" if f == ALL else f,
            "字段名称": field_zh(f),
            "适用客户": "" if rule is None else quality.APPLIES_ZH[rule.applies],
            "模型使用": "" if rule is None else ("是" if rule.model else "否"),
            **{d: wide.at[f, d] for d in days},
        }
        if f in latest.index:
            row["最新适用数"] = int(latest.at[f, "applicable"])
            row["最新已填数"] = int(latest.at[f, "known"])
        row["较上期变化"] = wide.at[f, days[-1]] - wide.at[f, days[-2]] if len(days) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows), [*days, "较上期变化"]


def _matrix(r: QualityReport, frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Latest date per group (``by``): every field's completeness, the overall one and its change."""
    last, prev = r.dates[-1], (r.dates[-2] if len(r.dates) > 1 else None)
    frame = frame.assign(**{c: frame[c].astype(object).fillna(_NONE) for c in by})  # pivots drop null keys
    cur = frame[frame["export_date"] == last]
    wide = cur.pivot_table(index=by, columns="field", values="completeness", dropna=False, aggfunc="first")
    counts = cur[cur["field"] == ALL].set_index(by)[["applicable", "known"]]
    out = pd.DataFrame(index=wide.index)
    out["总体完整率"] = wide[ALL]
    if prev is not None:
        before = frame[(frame["export_date"] == prev) & (frame["field"] == ALL)].set_index(by)["completeness"]
        out["较上期变化"] = out["总体完整率"] - before.reindex(out.index)
    else:
        out["较上期变化"] = np.nan
    out["应填字段数"] = counts["applicable"].reindex(out.index)
    out["已填字段数"] = counts["known"].reindex(out.index)
    for f in r.fields:
        out[field_zh(f)] = wide[f] if f in wide.columns else np.nan
    out = out.reset_index()
    for c in by:
        out[c] = out[c].where(out[c] != _NONE, None)
    return out


def _ids(frame: pd.DataFrame, r: QualityReport) -> pd.DataFrame:
    """Branch and manager ids with their names, in Chinese headers."""
    out = pd.DataFrame(index=frame.index)
    out["支行号"] = frame["branch_id"].astype(object)
    out["支行名称"] = frame["branch_id"].map(r.names["branch"]).astype(object)
    if "manager_id" in frame.columns:
        out["客户经理号"] = frame["manager_id"].astype(object).where(frame["manager_id"].notna(), NO_MANAGER)
        out["客户经理姓名"] = frame["manager_id"].map(r.names["manager"]).astype(object)
    return out


def _set_aside_sheet(r: QualityReport) -> pd.DataFrame:
    a = r.set_aside
    return pd.DataFrame(
        {
            "数据日期": [_day(d) for d in a["export_date"]],
            "表": a["table"].astype(object),
            "规则": a["rule"].astype(object).where(a["rule"].notna(), NO_RULE),
            "剔除行数": a["rows"].astype("int64"),
            "读入行数": a["rows_read"].astype("int64"),
            "剔除占比": a["rows"].astype(float) / a["rows_read"].astype(float).where(a["rows_read"] > 0),
        }
    )


def _to_complete_sheet(r: QualityReport) -> pd.DataFrame:
    t = r.to_complete
    out = _ids(t, r)
    out["名次"] = t["rank"].astype("int64")
    out["客户号"] = t["customer_id"].astype(object)
    out["客户类型"] = t["customer_type"].map(ENUM_ZH).astype(object)
    out["缺失字段"] = ["、".join(field_zh(f) for f in m) for m in t["missing"]]
    out["缺失字段数"] = t["n_missing"].astype("int64")
    out["缺失的模型字段数"] = t["n_model_missing"].astype("int64")
    if r.by_value:
        out["预期价值"] = t["expected_value"].round(2)
        out["排序分"] = t["priority"].round(2)
    return out


def workbook_sheets(r: QualityReport) -> list[Sheet]:
    """The five sheets of :data:`SHEETS`, headers in Chinese."""
    overview, pct = _overview(r)
    branches = _matrix(r, r.branches, ["branch_id"])
    managers = _matrix(r, r.managers, ["branch_id", "manager_id"])
    shares = ("总体完整率", "较上期变化", *(field_zh(f) for f in r.fields))
    rule = (RANKING_RULE_ZH if r.by_value else RANKING_RULE_COUNT_ZH).format(top=r.top)
    bank = f"（{r.bank}）" if r.bank else ""
    return [
        Sheet(
            SHEETS[0],
            overview,
            banner=f"客户信息完整率趋势{bank}：各字段在每次导入数据日期的完整率",
            percent=tuple(pct),
        ),
        Sheet(SHEETS[1], pd.concat([_ids(branches, r), branches.drop(columns="branch_id")], axis=1), percent=shares),
        Sheet(
            SHEETS[2],
            pd.concat([_ids(managers, r), managers.drop(columns=["branch_id", "manager_id"])], axis=1),
            percent=shares,
        ),
        Sheet(SHEETS[3], _set_aside_sheet(r), percent=("剔除占比",)),
        Sheet(SHEETS[4], _to_complete_sheet(r), banner=f"客户信息待完善清单{bank}。{rule}"),
    ]


def write_report(r: QualityReport, xlsx: Path, png: Path | None = None) -> dict[str, Path]:
    """Write the workbook at ``xlsx`` and the trend plot at ``png`` (default: beside the workbook,
    :data:`TREND_PNG`). Returns ``{"xlsx": path, "trend": path}``."""
    from nbp.sheets import write_xlsx
    from training.quality_plots import plot_trend

    xlsx = Path(xlsx)
    xlsx.parent.mkdir(parents=True, exist_ok=True)
    written = {"xlsx": write_xlsx(xlsx, workbook_sheets(r))}
    written["trend"] = plot_trend(r.trend, r.fields, png or xlsx.with_name(TREND_PNG), r.bank)
    return written


def summary_line(r: QualityReport) -> str:
    """One line for the terminal: the latest overall completeness, its change, the list's size."""
    t = r.trend[r.trend["field"] == ALL].sort_values("export_date")
    last = t["completeness"].iloc[-1]
    change = ""
    if len(t) > 1:
        change = f", {100 * (last - t['completeness'].iloc[-2]):+.1f} points since {_day(t['export_date'].iloc[-2])}"
    return (
        f"completeness {100 * last:.1f}% on {_day(t['export_date'].iloc[-1])}"
        f"{change} ({len(r.fields)} fields, {len(r.dates)} export date(s)); "
        f"to-complete list: {len(r.to_complete):,} customers of "
        f"{r.to_complete[['branch_id', 'manager_id']].drop_duplicates().shape[0]:,} managers"
    )


# ----------------------------------------------------------------------------- the page
def _share(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), 4)


def page_data(cfg: Config, ws: Workspace, branch_id: str | None = None) -> dict[str, Any]:
    """The ``/quality/`` page's figures of ``ws``'s bank (one branch's only, when given).

    Returns:
        ``fields`` [{field, zh, applies_zh}], ``dates`` [YYYY-MM-DD], ``trend`` [{field, zh,
        completeness: [share or None per date]}] (first the row of every field together),
        ``branches`` [{branch_id, name, completeness, change, applicable, known, fields:
        {field: share or None}}] at the latest date, and ``set_aside`` [{table, rule, rows,
        rows_read}] of the latest date (empty for a branch).
    """
    fields = quality.checked_fields(cfg.quality.fields)
    hist = quality.read_history(ws)
    rows = hist[(hist["kind"] == "field") & hist["field"].isin(fields)]
    if branch_id is not None:
        rows = rows[rows["branch_id"] == branch_id]
    out: dict[str, Any] = {
        "fields": [
            {"field": f, "zh": field_zh(f), "applies_zh": quality.APPLIES_ZH[quality.FIELD_RULES[f].applies]}
            for f in fields
        ],
        "dates": [],
        "trend": [],
        "branches": [],
        "set_aside": [],
    }
    if rows.empty:
        return out
    rows = rows.astype({"applicable": "int64", "known": "int64"})
    dates = sorted(rows["export_date"].unique())
    trend = _sums(rows, []).pivot(index="field", columns="export_date", values="completeness")
    out["dates"] = [_day(d) for d in dates]
    out["trend"] = [
        {"field": "" if f == ALL else f, "zh": field_zh(f), "completeness": [_share(trend.at[f, d]) for d in dates]}
        for f in [ALL, *fields]
        if f in trend.index
    ]
    per = _sums(rows, ["branch_id"])
    names = _names(ws)["branch"]
    last, prev = dates[-1], (dates[-2] if len(dates) > 1 else None)
    for b, g in per[per["export_date"] == last].groupby("branch_id", sort=True):
        g = g.set_index("field")
        before = per[(per["export_date"] == prev) & (per["branch_id"] == b) & (per["field"] == ALL)]
        change = g.at[ALL, "completeness"] - before["completeness"].iloc[0] if len(before) else None
        out["branches"].append(
            {
                "branch_id": str(b),
                "name": names.get(str(b)),
                "completeness": _share(g.at[ALL, "completeness"]),
                "change": _share(change),
                "applicable": int(g.at[ALL, "applicable"]),
                "known": int(g.at[ALL, "known"]),
                "fields": {f: _share(g.at[f, "completeness"]) if f in g.index else None for f in fields},
            }
        )
    if branch_id is None:
        a = hist[(hist["kind"] == "set_aside") & (hist["export_date"] == last)]
        out["set_aside"] = [
            {
                "table": str(t.table),
                "rule": None if pd.isna(t.rule) else str(t.rule),
                "rows": int(t.rows),
                "rows_read": int(t.rows_read),
            }
            for t in a.itertuples()
        ]
    return out
