"""Segments (客群): every customer a filter selects at one as-of date, counted by branch and tier.

A segment is a filter (:mod:`serving.segment_filter`) over one row per customer known at the
as-of date T (``open_date`` before T, as the feature build's spine), holding:

==========================  ==================================================================
``branch_id``, ``manager_id``  the ingested ``customers`` table (as ``serving/engine.py`` reads it)
every catalogue feature     its stored value at exactly T (``features.store.exact_grid``): the
                            families' features (holdings included) and the tier view's
``tier`` / ``tier_level``   the value tier at T (``features/tiers.py``), by key, Chinese name or code
``score_<product>``         the batch propensity at T (``Workspace.latest_scores``, or the dated
``uplift_<product>``        scores of T); missing where the customer was not a candidate
==========================  ==================================================================

Only the columns a filter names are read, plus branch, manager, tier and the scores. The default
as-of is the latest built one; a saved segment pins its own, so the same saved segment gives the
same customers until the feature tables of that date are rebuilt.

Saved segments are YAML files: shipped examples in ``configs/segments/`` (``name``, ``zh``,
``where``, optional ``as_of``) and the bank's own under ``Workspace.segments_dir`` (``name``,
``where``, ``as_of``, ``created_by``, ``created_at``), written atomically, never overwritten.
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.catalog import CATALOG, TIER_CATALOG, labels_zh
from nbp.config import CONFIG_DIR, Config
from nbp.errors import ConfigError, FeatureStoreError, SegmentError
from nbp.jobs import atomic_write, temp_sibling
from nbp.sheets import Sheet, write_xlsx
from nbp.workspace import Workspace
from serving.errors import Unprocessable, shown
from serving.schemas import MAX_SEGMENT_ROWS, SegmentBreakdownRow, SegmentsRequest, SegmentsResponse
from serving.segment_filter import Field, Filter, compile_filter, near_names

log = logging.getLogger(__name__)

SHIPPED_DIR = CONFIG_DIR / "segments"
NAME_RULE = "1-64 letters (Chinese too), digits, _ or -, starting with a letter or digit"
_NAME = re.compile(r"\w[\w-]{0,63}")
TIER_COLUMN = "tier_level"
NO_TIER_ZH = "未分层"
NO_BRANCH = "（无）"
CUSTOMER_COLUMNS = ("customer_id", "branch_id", "manager_id", "open_date")
HEADERS_ZH = {"customer_id": "客户号", "branch_id": "支行", "manager_id": "客户经理", "tier_zh": "客户层级"}
SEGMENT_KEYS = {"name", "zh", "where", "as_of", "created_by", "created_at"}


# ----------------------------------------------------------------------------- fields


def segment_fields(cfg: Config) -> dict[str, Field]:
    """Every field a filter may name (module docstring), by name."""
    tiers = cfg.tiers.levels
    tier = {
        "kind": "category",
        "column": TIER_COLUMN,
        "labels": tuple(lv.key for lv in tiers),
        "labels_zh": tuple(lv.zh for lv in tiers),
    }
    out: dict[str, Field] = {}
    for f in (*CATALOG, *TIER_CATALOG):
        out[f.name] = Field(
            f.name,
            "category" if f.categorical else "number",
            f.name,
            f.zh,
            f.en,
            labels=f.categories,
            labels_zh=labels_zh(f.categories) if f.categorical else (),
            group="tier" if f in TIER_CATALOG else "feature",
        )
    out[TIER_COLUMN] = Field(TIER_COLUMN, zh="客户价值层级", en="value tier (0 = the highest)", group="tier", **tier)
    out["tier"] = Field("tier", zh="客户价值层级", en="value tier", group="tier", **tier)
    for key, pc in cfg.products.items():
        out[f"score_{key}"] = Field(
            f"score_{key}", "number", f"score_{key}", f"{pc.name_zh}倾向分", f"propensity, {pc.name_en}", group="score"
        )
        out[f"uplift_{key}"] = Field(
            f"uplift_{key}", "number", f"uplift_{key}", f"{pc.name_zh}营销增益", f"uplift, {pc.name_en}", group="score"
        )
    out["branch_id"] = Field("branch_id", "text", "branch_id", "支行", "branch", group="customer")
    out["manager_id"] = Field("manager_id", "text", "manager_id", "客户经理", "relationship manager", group="customer")
    return out


def fields_frame(cfg: Config) -> pd.DataFrame:
    """The fields as a table for people: ``name``, ``group``, ``kind``, ``zh``, ``en``, ``values`` (a
    category's names with their Chinese labels)."""
    return pd.DataFrame(
        [
            {"name": f.name, "group": f.group, "kind": f.kind, "zh": f.zh, "en": f.en, "values": f.choices()}
            for f in segment_fields(cfg).values()
        ]
    )


# ----------------------------------------------------------------------------- the frame


def resolve_as_of(ws: Workspace, as_of: date | None) -> date:
    """``as_of`` if the feature tables hold it, else (None) the latest built as-of.

    Raises:
        FeatureStoreError: no feature tables were built.
        SegmentError: ``as_of`` is not a built as-of date (the message names the built range).
    """
    from features.build import built_as_of

    built = sorted(built_as_of(ws))
    if as_of is None:
        return built[-1]
    if as_of not in built:
        nearest = min(built, key=lambda d: abs((d - as_of).days))
        raise SegmentError(
            f"as-of {as_of:%Y-%m-%d}: no features built for that date (built: {built[0]:%Y-%m-%d} .. "
            f"{built[-1]:%Y-%m-%d}, month starts); the nearest is {nearest:%Y-%m-%d}"
        )
    return as_of


def _scores_at(ws: Workspace, as_of: date) -> pd.DataFrame | None:
    """The batch scores of ``as_of`` (latest file first, then the dated copies); None when none holds them."""
    dated = sorted(p for p in ws.scores_dir.glob("*.parquet") if p.stem == f"{as_of:%Y-%m-%d}")
    for path in [ws.latest_scores, *dated]:
        if not path.exists():
            continue
        df = pd.read_parquet(path)
        df = df[pd.to_datetime(df["as_of"]).dt.date == as_of]
        if len(df):
            return df
    return None


def _wide_scores(cfg: Config, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: ``score_<product>`` and ``uplift_<product>`` (NaN: not scored)."""
    s = scores[scores["product"].isin(list(cfg.products))].drop_duplicates(["customer_id", "product"], keep="last")
    s = s.assign(customer_id=s["customer_id"].astype(str))
    parts = [
        s.pivot(index="customer_id", columns="product", values=col).astype(float).add_prefix(f"{col}_")
        for col in ("score", "uplift")
        if col in s
    ]
    return pd.concat(parts, axis=1)


def segment_frame(cfg: Config, ws: Workspace, as_of: date, features: Sequence[str] = ()) -> pd.DataFrame:
    """One row per customer known at ``as_of``: ids, branch, manager, tier, ``features`` at exactly
    ``as_of``, and the batch scores of ``as_of`` when there are any.

    Args:
        cfg: the configuration (products, tiers).
        ws: a bank's workspace with ingested tables and built feature tables.
        as_of: a built as-of date (:func:`resolve_as_of`).
        features: catalogue feature names to read (those a filter names).

    Returns:
        Columns ``customer_id``, ``branch_id``, ``manager_id``, ``tier_level`` (Int64; missing
        without a tier table), each feature (Int64 or Float64) and ``score_<p>`` / ``uplift_<p>``
        (float) for the products scored at ``as_of``, sorted by ``customer_id``.

    Raises:
        FeatureStoreError: no ingested customers, or a feature table is missing.
    """
    from features.catalog import BY_NAME
    from features.store import exact_grid

    if not ws.table("customers").exists():
        raise FeatureStoreError(f"{ws.table('customers')} missing: run `nbp ingest` first")
    cust = pd.read_parquet(ws.table("customers"), columns=list(CUSTOMER_COLUMNS))
    t = pd.Timestamp(as_of)
    cust = cust[pd.to_datetime(cust["open_date"]) < t].drop(columns="open_date")
    frame = cust.astype({"customer_id": str}).sort_values("customer_id", ignore_index=True)
    for col in ("branch_id", "manager_id"):
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    has_tiers = bool(ws.feature_files("tier"))
    names = list(dict.fromkeys([*([TIER_COLUMN] if has_tiers else []), *features]))
    grid = exact_grid(ws, frame["customer_id"].tolist(), [t.to_pydatetime()], names) if names else {}
    for n in names:
        values = pd.array(grid[n][0][0], dtype="Float64")
        frame[n] = values.round().astype("Int64") if BY_NAME[n].dtype == "int" else values
    if not has_tiers:
        frame[TIER_COLUMN] = pd.array([pd.NA] * len(frame), dtype="Int64")
    scores = _scores_at(ws, as_of)
    if scores is not None:
        frame = frame.join(_wide_scores(cfg, scores), on="customer_id")
    return frame


# ----------------------------------------------------------------------------- saved segments


@dataclass(frozen=True)
class SavedSegment:
    """A named filter: shipped in ``configs/segments/`` or saved by the bank (module docstring)."""

    name: str
    where: str
    zh: str | None = None
    as_of: date | None = None
    created_by: str | None = None
    created_at: str | None = None
    shipped: bool = False
    path: Path | None = field(default=None, compare=False)


def check_name(name: str) -> str:
    """``name`` if it can name a saved segment (:data:`NAME_RULE`).

    Raises:
        SegmentError: it cannot.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SegmentError(f"segment name {name!r:.70}: {NAME_RULE}")
    return name


def _read_segment(path: Path, shipped: bool) -> SavedSegment:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the saved segment: {e}") from e
    if not isinstance(raw, dict) or not {"name", "where"} <= set(raw) or set(raw) - SEGMENT_KEYS:
        raise ConfigError(
            f"{path}: a saved segment is a mapping with name and where (and optionally "
            f"{', '.join(sorted(SEGMENT_KEYS - {'name', 'where'}))}), nothing else"
        )
    as_of = raw.get("as_of")
    if isinstance(as_of, str):
        try:
            as_of = date.fromisoformat(as_of)
        except ValueError as e:
            raise ConfigError(f"{path}: as_of {as_of!r} is not a date YYYY-MM-DD") from e
    if as_of is not None and not isinstance(as_of, date):
        raise ConfigError(f"{path}: as_of must be a date YYYY-MM-DD")
    try:
        name = check_name(str(raw["name"]))
    except SegmentError as e:
        raise ConfigError(f"{path}: {e}") from e
    if not isinstance(raw["where"], str):
        raise ConfigError(f"{path}: where must be the filter's text")
    return SavedSegment(
        name=name,
        where=raw["where"],
        zh=raw.get("zh"),
        as_of=as_of,
        created_by=raw.get("created_by"),
        created_at=None if raw.get("created_at") is None else str(raw["created_at"]),
        shipped=shipped,
        path=path,
    )


def saved_segments(ws: Workspace, shipped_dir: Path = SHIPPED_DIR) -> list[SavedSegment]:
    """The shipped segments, then the bank's own, each sorted by name.

    Raises:
        ConfigError: a file is not a valid saved segment, or two files give one name.
    """
    out: list[SavedSegment] = []
    for folder, shipped in ((shipped_dir, True), (ws.segments_dir, False)):
        if folder.is_dir():
            out += sorted(
                (_read_segment(p, shipped) for p in folder.glob("*.yaml") if not p.name.startswith(".")),
                key=lambda s: s.name,
            )
    seen: dict[str, Path | None] = {}
    for s in out:
        if s.name in seen:
            raise ConfigError(f"segment name {s.name!r} is given twice: {seen[s.name]} and {s.path}")
        seen[s.name] = s.path
    return out


def find_segment(ws: Workspace, name: str, shipped_dir: Path = SHIPPED_DIR) -> SavedSegment:
    """The saved segment called ``name``.

    Raises:
        SegmentError: there is none (the message names the nearest names).
    """
    known = saved_segments(ws, shipped_dir)
    for s in known:
        if s.name == name:
            return s
    near = near_names(name, [s.name for s in known])
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise SegmentError(f"no saved segment named {name!r:.70}{hint} (`nbp segment list` shows them)")


def save_segment(
    ws: Workspace,
    name: str,
    where: str,
    as_of: date,
    created_by: str,
    shipped_dir: Path = SHIPPED_DIR,
) -> SavedSegment:
    """Save a segment under the bank's ``segments_dir``, pinned to ``as_of`` (atomically).

    Saving the same name, filter and as-of again changes nothing; a name already used for
    anything else is refused, so a saved segment always means the same customers.

    Raises:
        SegmentError: a bad name, or the name is taken.
    """
    check_name(name)
    for s in saved_segments(ws, shipped_dir):
        if s.name == name:
            if s.where == where and s.as_of == as_of and not s.shipped:
                return s
            raise SegmentError(
                f"segment name {name!r} is taken ({'shipped example' if s.shipped else 'saved'} {s.path}); "
                f"choose another name"
            )
    path = ws.segments_dir / f"{name}.yaml"
    seg = SavedSegment(
        name=name,
        where=where,
        as_of=as_of,
        created_by=created_by,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        path=path,
    )
    record = {k: getattr(seg, k) for k in ("name", "where", "as_of", "created_by", "created_at")}
    record["as_of"] = as_of.isoformat()
    with atomic_write(path) as tmp:
        tmp.write_text(yaml.safe_dump(record, allow_unicode=True, sort_keys=False), encoding="utf-8")
    log.info("segment %s saved to %s", name, path)
    return seg


def cli_user() -> str:
    """Who saves a segment from the command line (the OS user)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SegmentResult:
    """One segment at one as-of.

    Attributes:
        where: the filter's text.
        as_of: the as-of date of the features and scores.
        count: customers selected.
        fields: the fields the filter names.
        breakdown: one row per branch and tier holding selected customers: ``branch_id``,
            ``tier_level`` (-1: no tier), ``tier`` (key), ``tier_zh``, ``customers``,
            ``branch_customers`` (the branch's customers at ``as_of``), ``share_of_branch``.
        customers: the selected customers, by branch then id: ``customer_id``, ``branch_id``,
            ``manager_id``, ``tier_zh``, the named fields (a category as its Chinese label) and the
            scores at ``as_of``.
        headers_zh: column of ``customers`` -> its Chinese header.
        name, zh: the saved segment's name and title, when it is one.
        bank: the member bank, in a federation.
    """

    where: str
    as_of: date
    count: int
    fields: tuple[str, ...]
    breakdown: pd.DataFrame
    customers: pd.DataFrame
    headers_zh: Mapping[str, str]
    name: str | None = None
    zh: str | None = None
    bank: str | None = None

    def summary_line(self) -> str:
        """One line for the CLI: name, as-of and count."""
        title = f"segment {self.name}" + (f" ({self.zh})" if self.zh else "") if self.name else "segment"
        head = f"bank {self.bank}: " if self.bank else ""
        return f"{head}{title} at {self.as_of:%Y-%m-%d}: {self.count:,} customers  [{self.where}]"


def _tier_names(cfg: Config, codes: pd.Series) -> tuple[list[str], list[str]]:
    levels = cfg.tiers.levels
    keys, zh = [], []
    for c in codes:
        ok = c is not None and not pd.isna(c) and 0 <= int(c) < len(levels)
        keys.append(levels[int(c)].key if ok else "")
        zh.append(levels[int(c)].zh if ok else NO_TIER_ZH)
    return keys, zh


def breakdown(cfg: Config, frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """Selected customers per branch and tier, with each branch's share (:class:`SegmentResult`)."""
    branch = frame["branch_id"].fillna("").astype(str)
    tier = frame[TIER_COLUMN].astype("Float64").fillna(-1).astype(int)
    sel = pd.DataFrame({"branch_id": branch[mask], TIER_COLUMN: tier[mask]})
    out = sel.groupby(["branch_id", TIER_COLUMN]).size().rename("customers").reset_index()
    out["branch_customers"] = out["branch_id"].map(branch.value_counts()).astype(int)
    out["share_of_branch"] = out["customers"] / out["branch_customers"]
    keys, zh = _tier_names(cfg, out[TIER_COLUMN].where(out[TIER_COLUMN] >= 0))
    out.insert(2, "tier", keys)
    out.insert(3, "tier_zh", zh)
    last = out[TIER_COLUMN].where(out[TIER_COLUMN] >= 0, len(cfg.tiers.levels))  # no tier after the tiers
    return out.iloc[np.lexsort((last.to_numpy(), out["branch_id"].to_numpy()))].reset_index(drop=True)


def breakdown_table(cfg: Config, result: SegmentResult) -> pd.DataFrame:
    """The breakdown as staff read it: a row per branch, a column per tier (counts), 合计,
    支行客户数 and 占支行客户比例 (the segment's share of the branch's customers)."""
    b = result.breakdown
    tiers = [lv.zh for lv in cfg.tiers.levels] + ([NO_TIER_ZH] if (b[TIER_COLUMN] < 0).any() else [])
    if b.empty:
        return pd.DataFrame(columns=["支行", *tiers, "合计", "支行客户数", "占支行客户比例"])
    wide = b.pivot_table(index="branch_id", columns="tier_zh", values="customers", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=tiers, fill_value=0).astype(int)
    wide["合计"] = wide.sum(axis=1)
    wide["支行客户数"] = b.groupby("branch_id")["branch_customers"].first()
    wide["占支行客户比例"] = wide["合计"] / wide["支行客户数"]
    wide = wide.reset_index().rename(columns={"branch_id": "支行"})
    wide["支行"] = wide["支行"].replace("", NO_BRANCH)
    wide.columns.name = None
    return wide


def _customer_list(
    cfg: Config, known: Mapping[str, Field], frame: pd.DataFrame, mask: np.ndarray, flt: Filter
) -> tuple[pd.DataFrame, dict[str, str]]:
    sel = frame[mask]
    out = sel[["customer_id", "branch_id", "manager_id"]].copy()
    out["tier_zh"] = _tier_names(cfg, sel[TIER_COLUMN])[1]
    headers = dict(HEADERS_ZH)
    shown = [n for n in flt.fields if n not in ("branch_id", "manager_id", "tier", TIER_COLUMN)]
    shown += [c for c in frame.columns if c.startswith(("score_", "uplift_")) and c not in shown]
    for n in shown:
        f = known[n]
        if n.startswith(("score_", "uplift_")) and n not in flt.fields and not sel[n].notna().any():
            continue  # a product without scores (or uplift) at this date
        col = sel[f.column]
        zh = f.zh
        if f.kind == "category":  # shown by name, so the header drops its "(编码)"-style note on codes
            names = f.labels_zh or f.labels
            col = col.map(lambda c, names=names: names[int(c)] if pd.notna(c) and 0 <= c < len(names) else None)
            zh = re.sub(r"\([^()]*\)$", "", zh)
        out[n] = col.to_numpy(object) if f.kind == "text" else col
        headers[n] = zh if zh not in headers.values() else f"{zh}（{n}）"
    out = out.sort_values(["branch_id", "customer_id"], na_position="last", ignore_index=True)
    return out, headers


def run_segment(
    cfg: Config,
    ws: Workspace,
    where: str | None = None,
    name: str | None = None,
    as_of: date | None = None,
    save_as: str | None = None,
    created_by: str | None = None,
    shipped_dir: Path = SHIPPED_DIR,
) -> SegmentResult:
    """Select a segment: a filter (``where``) or a saved segment (``name``) at an as-of date.

    Args:
        cfg: the configuration.
        ws: the bank's workspace (a member bank's own view in a federation).
        where: the filter's text (exactly one of ``where`` and ``name``).
        name: a saved segment's name; its ``as_of`` applies unless ``as_of`` is given.
        as_of: a built as-of date (default: the saved segment's, else the latest built).
        save_as: also save the filter under this name, pinned to the as-of used.
        created_by: who saves it (default: the OS user).
        shipped_dir: the shipped examples' folder.

    Raises:
        SegmentError: a bad filter, name or as-of.
        FeatureStoreError: no ingested customers or feature tables; a filter on scores or tiers
            the workspace does not hold at that date.
    """
    if (where is None) == (name is None):
        raise SegmentError("give either a filter (where) or a saved segment's name, not both and not neither")
    seg = find_segment(ws, name, shipped_dir) if name is not None else None
    text = seg.where if seg is not None else str(where)
    if save_as is not None:
        check_name(save_as)
    day = resolve_as_of(ws, as_of or (seg.as_of if seg is not None else None))
    known = segment_fields(cfg)
    flt = compile_filter(text, known)  # syntax, fields and enums before any read
    features = [known[n].column for n in flt.fields if known[n].group in ("feature", "tier")]
    frame = segment_frame(cfg, ws, day, [c for c in dict.fromkeys(features) if c != TIER_COLUMN])
    missing = [n for n in flt.fields if known[n].column not in frame.columns]
    if missing:
        raise FeatureStoreError(
            f"no batch scores at {day:%Y-%m-%d} for {', '.join(missing)}; score that date first "
            f"(`nbp score --as-of {day:%Y-%m-%d} --out {ws.latest_scores}`)"
        )
    if TIER_COLUMN in [known[n].column for n in flt.fields] and frame[TIER_COLUMN].isna().all():
        raise FeatureStoreError(f"no value tiers at {day:%Y-%m-%d} in {ws.feature_table('tier')}: run `nbp features`")
    for col in ("branch_id", "manager_id"):  # a branch or manager no customer has is a typo
        known[col] = replace(known[col], values=frozenset(frame[col].dropna().astype(str)))
    flt = compile_filter(text, known)
    mask = flt.select(known, frame)
    customers, headers = _customer_list(cfg, known, frame, mask, flt)
    if save_as is not None:
        save_segment(ws, save_as, text, day, created_by or cli_user(), shipped_dir)
    result = SegmentResult(
        where=text,
        as_of=day,
        count=int(mask.sum()),
        fields=flt.fields,
        breakdown=breakdown(cfg, frame, mask),
        customers=customers,
        headers_zh=headers,
        name=seg.name if seg is not None else save_as,
        zh=seg.zh if seg is not None else None,
        bank=ws.bank,
    )
    log.info("%s (%d of %d customers)", result.summary_line(), result.count, len(frame))
    return result


def write_workbook(cfg: Config, result: SegmentResult, path: Path) -> Path:
    """The segment as an ``.xlsx`` with Chinese headers (``nbp/sheets.py``): sheets 概要 (filter,
    as-of, count), 按支行和层级 (:func:`breakdown_table`) and 客户清单 (the customers)."""
    rows = [
        ("客群名称", result.name or ""),
        ("客群说明", result.zh or ""),
        ("筛选条件", result.where),
        ("数据日期", f"{result.as_of:%Y-%m-%d}"),
        ("客户数", result.count),
    ]
    if result.bank:
        rows.insert(0, ("银行", result.bank))
    summary = pd.DataFrame(rows, columns=["项目", "内容"])
    table = breakdown_table(cfg, result)
    listing = result.customers.rename(columns=dict(result.headers_zh))
    return write_xlsx(
        path,
        [
            Sheet("概要", summary, widths={"内容": 60}),
            Sheet("按支行和层级", table, percent=("占支行客户比例",)),
            Sheet("客户清单", listing),
        ],
    )


def default_workbook(ws: Workspace, result: SegmentResult) -> Path:
    """Where ``nbp segment`` writes a workbook without ``--out``: the segment's name (or ``segment``)
    and as-of under ``Workspace.segment_outputs_dir``."""
    return ws.segment_outputs_dir / f"{result.name or 'segment'}_{result.as_of:%Y-%m-%d}.xlsx"


@dataclass(frozen=True)
class SegmentWorkbook:
    """A segment's workbook as the service sends it (``"format": "xlsx"``): the file's bytes and its name."""

    data: bytes
    filename: str


def segment_answer(
    cfg: Config, ws: Workspace, req: SegmentsRequest, created_by: str
) -> tuple[SegmentsResponse | SegmentWorkbook, int]:
    """The ``/segments`` answer for one bank's workspace (the JSON, or with ``"format": "xlsx"`` the
    workbook of :func:`write_workbook`), and the number of customers it lists.

    Raises:
        Unprocessable: a bad filter, name, as-of or ``top`` (422, the message names what is wrong).
    """
    if not 0 <= req.top <= MAX_SEGMENT_ROWS:
        raise Unprocessable(f"top={req.top} is outside 0..{MAX_SEGMENT_ROWS:,}")
    try:
        day = date.fromisoformat(req.as_of) if req.as_of is not None else None
        result = run_segment(cfg, ws, req.where, req.name, day, req.save_as, created_by)
    except SegmentError as e:
        raise Unprocessable(str(e)) from e
    except ValueError as e:  # a date such as 2026-13-01
        raise Unprocessable(f"as_of {shown(req.as_of)!r} is not a date: {e}") from e
    if req.format == "xlsx":
        final = default_workbook(ws, result)
        tmp = temp_sibling(final)  # this process's own file: lists are answered one at a time per worker
        try:
            write_workbook(cfg, result, tmp)
            return SegmentWorkbook(tmp.read_bytes(), final.name), result.count
        finally:
            tmp.unlink(missing_ok=True)
    head = result.customers.head(req.top).astype(object)
    rows = [{k: None if _missing(v) else v for k, v in r.items()} for r in head.to_dict("records")]
    b = result.breakdown
    out = SegmentsResponse(
        bank_code=ws.bank or ws.recorded_bank(),
        name=result.name,
        where=result.where,
        as_of=result.as_of.isoformat(),
        count=result.count,
        fields=list(result.fields),
        breakdown=[
            SegmentBreakdownRow(
                branch_id=r.branch_id or None,
                tier=r.tier or None,
                tier_name=r.tier_zh,
                customers=int(r.customers),
                branch_customers=int(r.branch_customers),
                share_of_branch=float(r.share_of_branch),
            )
            for r in b.itertuples(index=False)
        ],
        columns=dict(result.headers_zh),
        rows=rows,
        saved=req.save_as is not None,
    )
    return out, len(rows)


def _missing(v: object) -> bool:
    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))
