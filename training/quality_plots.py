"""The data-quality report's plot: completeness of each tracked field over the export dates.

Labels are Chinese when a CJK font is installed (the lookup of ``training/evaluate.py``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_trend(trend: pd.DataFrame, fields: list[str], path: Path, bank: str | None = None) -> Path:
    """Completeness per field (and of every field together, bold) over the export dates.

    Args:
        trend: ``QualityReport.trend`` (``export_date``, ``field``, ``completeness``; field
            ``training.quality_report.ALL`` for every field together).
        fields: the tracked fields, in legend order.
        path: the PNG to write.
        bank: the member bank, named in the title.
    """
    from matplotlib.ticker import PercentFormatter

    from training.campaign_plots import chinese_labels
    from training.evaluate import _save
    from training.quality_report import ALL, field_zh

    zh = chinese_labels()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    dates = sorted(trend["export_date"].unique())
    x = range(len(dates))  # one step per import, however far apart the export dates are
    colours = plt.get_cmap("tab10").colors  # then dashed: more fields than colours
    for i, f in enumerate([ALL, *fields]):
        t = trend[trend["field"] == f].set_index("export_date")["completeness"].reindex(dates)
        if t.notna().any():
            label = field_zh(f) if zh else ("all fields" if f == ALL else f)
            style = {"linewidth": 3, "color": "black"}
            if f != ALL:
                style = {"linewidth": 1.5, "color": colours[(i - 1) % 10], "linestyle": "-" if i <= 10 else "--"}
            ax.plot(x, t.to_numpy(float), marker="o", label=label, **style)
    ax.set_xticks(list(x), [f"{pd.Timestamp(d):%Y-%m-%d}" for d in dates])
    ax.set_xlim(-0.5, len(dates) - 0.5)
    title = "客户信息完整率趋势" if zh else "Completeness of customer fields"
    ax.set(
        title=f"{title} {bank}" if bank else title,
        xlabel="数据日期（每次导入）" if zh else "export date (each import)",
        ylabel="完整率" if zh else "completeness",
        ylim=(0, 1.02),
    )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    if len(dates) > 6:
        fig.autofmt_xdate()
    return _save(plt, fig, path)
