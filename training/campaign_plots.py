"""The campaign report's plots: uptake by score decile and arm, and the observed Qini curve.

Labels are Chinese when a CJK font is installed. Matplotlib lists the system's fonts once, in
a cache that predates a font installed later, so a CJK font file found on the system is added
to its list before the labels are chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def chinese_labels() -> bool:
    """Whether plots can be labelled in Chinese (a CJK font found, and made matplotlib's first)."""
    from training.evaluate import _labels

    return _labels()["model"] == "模型"


def plot_deciles(result: Any, path: Path) -> Path | None:
    """Uptake rate by score decile and arm (bars) of a ``CampaignResult``; None without deciles."""
    from matplotlib.ticker import PercentFormatter

    from training.evaluate import _figure, _save

    d = result.deciles
    if d.empty:
        return None
    zh = chinese_labels()
    plt, fig, ax = _figure()
    x = d["decile"].to_numpy()
    ax.bar(x - 0.2, d["treatment_rate"].to_numpy(float), 0.4, label="实验组" if zh else "treatment")
    ax.bar(x + 0.2, d["control_rate"].to_numpy(float), 0.4, label="对照组" if zh else "control", color="#999999")
    ax.set(
        xlabel="分数十分位（1=最高）" if zh else "score decile (1 = highest)",
        ylabel="办理率" if zh else "uptake rate",
        title=f"{'各分数十分位办理率' if zh else 'Uptake by score decile'} {result.figures['campaign_id']}",
        xticks=x,
    )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend()
    return _save(plt, fig, path)


def plot_qini(result: Any, path: Path) -> Path | None:
    """Cumulative incremental uptakes in the list's ranking order (the observed Qini curve of
    ``training.uplift_metrics``) against random order; None when an arm has no ranked customer."""
    from training.evaluate import _figure, _save

    if result.qini is None:
        return None
    zh = chinese_labels()
    share, inc = result.qini
    plt, fig, ax = _figure()
    coef = result.figures["qini_coefficient"]
    ax.plot(share, inc, label=f"{'名单排序' if zh else 'list order'} (Qini {coef:.2f})")
    ax.plot([0, 1], [0, inc[-1]], "--", color="grey", label="随机顺序" if zh else "random order")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set(
        xlabel="按名单顺序接触的客户占比" if zh else "share of customers, in list order",
        ylabel="累计增量办理数" if zh else "cumulative incremental uptakes",
        title=f"{'累计增量办理曲线（Qini）' if zh else 'Qini curve'} {result.figures['campaign_id']}",
        xlim=(0, 1),
    )
    ax.legend(loc="best")
    return _save(plt, fig, path)
