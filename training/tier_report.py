"""The monthly tier-migration workbook (客户层级迁移表) that ``nbp retrain`` writes: per branch how
many customers moved up, down, stayed or are new, the from → to counts, and who moved."""

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


def write_migration(cfg: Config, ws: Workspace, as_of: date | None = None) -> Path | None:
    """Write ``Workspace.tiers_dir / migration-<YYYY-MM>.xlsx`` for the latest built month (or ``as_of``).

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
    return write_xlsx(
        path,
        [
            Sheet("按支行汇总", summary(migration), banner=f"{month:%Y年%m月} 客户层级迁移（与上月相比）"),
            Sheet("迁移明细", detail.drop(columns=["上月层级代码", "本月层级代码"])),
            Sheet("变动客户", movers),
        ],
    )
