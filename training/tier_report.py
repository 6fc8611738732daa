"""The monthly tier-migration workbook (客户层级迁移表) that ``nbp retrain`` writes: per branch how
many customers are in each tier and how many moved up, down, stayed or are new, the from → to
counts, and who moved; beside it a plot of the same per branch."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from features import tiers
from nbp.config import Config
from nbp.sheets import Sheet, write_xlsx
from nbp.workspace import Workspace

_MOVERS_ZH = {
    "customer_id": "客户号",
    "branch_id": "支行",
    "manager_id": "客户经理",
    "from_tier": "上月层级",
    "to_tier": "本月层级",
    "direction": "变动",
    "score_before": "上月综合贡献度",
    "score_now": "本月综合贡献度",
}


def summary(migration: pd.DataFrame) -> pd.DataFrame:
    """Per branch: customers of the month, moved up, moved down, unchanged, new (Chinese headers)."""
    counts = migration.pivot_table(
        index="branch_id", columns="direction", values="customers", aggfunc="sum", fill_value=0
    ).reindex(columns=list(tiers.DIRECTION_ZH), fill_value=0)
    counts.insert(0, "total", counts.sum(axis=1))
    out = counts.reset_index().rename(columns={"branch_id": "支行", "total": "客户数", **tiers.DIRECTION_ZH})
    return out


def distribution(migration: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per branch: customers in each tier this month, and the branch's total (Chinese headers)."""
    names = [lv.zh for lv in tiers.levels(cfg)]
    counts = migration.pivot_table(
        index="branch_id", columns="to_tier", values="customers", aggfunc="sum", fill_value=0
    ).reindex(columns=names, fill_value=0)
    counts["合计"] = counts.sum(axis=1)
    return counts.reset_index().rename(columns={"branch_id": "支行"})


def plot_migration(dist: pd.DataFrame, moves: pd.DataFrame, cfg: Config, path: Path, title: str) -> Path:
    """Two panels per branch: the share of its customers in each tier, and customers moved up and down."""
    from matplotlib.ticker import PercentFormatter

    from training.campaign_plots import chinese_labels
    from training.evaluate import _save

    zh = chinese_labels()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [lv.zh for lv in tiers.levels(cfg)]
    labels = names if zh else [lv.en for lv in tiers.levels(cfg)]
    branches = dist["支行"].astype(str).tolist()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(branches) + 2), dpi=100)
    start = pd.Series(0.0, index=dist.index)
    shades = plt.get_cmap("Blues")  # the highest tier darkest
    for i, (name, label) in enumerate(zip(names, labels, strict=True)):
        share = dist[name] / dist["合计"].where(dist["合计"] > 0)
        colour = shades(0.9 - 0.6 * i / max(len(names) - 1, 1))
        left.barh(branches, share.fillna(0), left=start, label=label, color=colour)
        start += share.fillna(0)
    left.set_xlim(0, 1)
    left.xaxis.set_major_formatter(PercentFormatter(1.0))
    left.set_xlabel("客户占比" if zh else "share of the branch's customers")
    left.legend(loc="lower right", fontsize=8)
    y = range(len(branches))
    up = moves.set_index("支行").reindex(dist["支行"])["上升"].fillna(0).to_numpy()
    down = moves.set_index("支行").reindex(dist["支行"])["下降"].fillna(0).to_numpy()
    right.barh([i + 0.2 for i in y], up, height=0.4, color="tab:green", label="上升" if zh else "up")
    right.barh([i - 0.2 for i in y], down, height=0.4, color="tab:red", label="下降" if zh else "down")
    right.set_yticks(list(y), branches)
    right.set_xlabel("客户数" if zh else "customers")
    right.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


def write_migration(cfg: Config, ws: Workspace, as_of: date | None = None) -> Path | None:
    """Write ``Workspace.tiers_dir / migration-<YYYY-MM>.xlsx`` (and its ``.png``) for the latest built
    month (or ``as_of``).

    Returns:
        The workbook's path; None when the tier table holds fewer than two months.
    """
    migration = tiers.migration(ws, cfg, as_of)
    if migration.empty or migration["from_level"].isna().all():
        return None
    month = migration["as_of"].iloc[0]
    detail = migration.assign(direction=migration["direction"].map(tiers.DIRECTION_ZH)).rename(
        columns=tiers.MIGRATION_ZH
    )
    movers = tiers.movers(ws, cfg, as_of)
    movers = movers.assign(direction=movers["direction"].map(tiers.DIRECTION_ZH)).rename(columns=_MOVERS_ZH)
    path = ws.tiers_dir / f"migration-{month:%Y-%m}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    dist, moves = distribution(migration, cfg), summary(migration)
    title = f"{month:%Y年%m月} 客户层级分布与迁移" + (f"（{ws.bank}）" if ws.bank else "")
    plot_migration(dist, moves, cfg, path.with_suffix(".png"), title)
    return write_xlsx(
        path,
        [
            Sheet("层级分布", dist, banner=f"{month:%Y年%m月} 各支行客户层级分布"),
            Sheet("按支行汇总", moves, banner=f"{month:%Y年%m月} 客户层级迁移（与上月相比）"),
            Sheet("迁移明细", detail.drop(columns=["上月层级代码", "本月层级代码"])),
            Sheet("变动客户", movers),
        ],
    )
