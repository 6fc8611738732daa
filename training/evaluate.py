"""Pure evaluation metrics of uptake probabilities, and their plots.

Every metric takes ``y`` (0/1 outcomes) and ``p`` (predicted probabilities or any
score where higher means likelier), as array-likes of the same length.

Defined behaviour at the limits:

- A ranking metric (AUC, PR-AUC, lift, capture, gain area) is ``nan`` when ``y`` holds
  one class only: there is nothing to rank. Brier and ECE stay defined.
- Ties in ``p`` are broken by row order (stable sort) for the top-k metrics; AUC counts
  ties as half.

Definitions:

- ``lift@k``: uptake rate among the top ``k`` share of rows by ``p`` (the first
  ``ceil(k * n)`` rows) divided by the overall uptake rate. ``capture@k``: the share of
  all uptakes found in those rows. ``lift@k = capture@k / k`` up to the rounding of
  ``k * n``.
- ``gain_area`` (ALIFT in Moro, Cortez and Rita 2014): area under the cumulative gain
  curve (x: share of rows contacted in order of ``p``, y: share of uptakes captured),
  by the trapezoid rule over every row, from (0, 0) to (1, 1). Random ranking gives
  0.5, a perfect one ``1 - base_rate / 2``.
- ``ece``: expected calibration error over 10 equal-mass bins of ``p`` (deciles of the
  predictions, so each bin holds about n/10 rows; equal-width bins would put almost
  every row of a 3 % uptake rate into the first bin):
  ``sum_b n_b / n * |mean(p_b) - mean(y_b)|``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

TOP_SHARES = (0.05, 0.10, 0.20)
ECE_BINS = 10


def _arrays(y: Iterable, p: Iterable) -> tuple[np.ndarray, np.ndarray]:
    ya = np.asarray(y, dtype=float).ravel()
    pa = np.asarray(p, dtype=float).ravel()
    if ya.shape != pa.shape:
        raise ValueError(f"y and p differ in length: {ya.size} vs {pa.size}")
    return ya, pa


def _one_class(y: np.ndarray) -> bool:
    return y.size == 0 or y.min() == y.max()


def auc(y: Iterable, p: Iterable) -> float:
    """Area under the ROC curve; ``nan`` with one class."""
    from sklearn.metrics import roc_auc_score

    ya, pa = _arrays(y, p)
    return float("nan") if _one_class(ya) else float(roc_auc_score(ya, pa))


def auc_se(auc_value: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from its value and class counts.

    ``nan`` when the AUC is ``nan`` or a class is empty. With tens of uptakes it is
    large (AUC 0.6 on 18 positives among 5,000 rows: about 0.07), which is what a gate
    or a report on a small window must say beside the AUC.
    """
    a, pos, neg = float(auc_value), int(positives), int(negatives)
    if math.isnan(a) or pos < 1 or neg < 1:
        return float("nan")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a)) / (pos * neg)
    return math.sqrt(max(var, 0.0))


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each positive the share of negatives it outranks
    (ties count one half), and for each negative the share of positives that outrank it."""
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    v10 = (np.searchsorted(neg_sorted, pos, "left") + np.searchsorted(neg_sorted, pos, "right")) / (2 * len(neg))
    v01 = 1 - (np.searchsorted(pos_sorted, neg, "left") + np.searchsorted(pos_sorted, neg, "right")) / (2 * len(pos))
    return v10, v01


def auc_difference(y: Iterable, p1: Iterable, p2: Iterable) -> tuple[float, float]:
    """AUC(p1) − AUC(p2) on the same rows and the standard error of that paired difference
    (DeLong, DeLong & Clarke-Pearson 1988); ``(nan, nan)`` with one class.

    Both scores rank the same uptakes, so their errors are correlated and the difference's
    error is smaller than the two AUCs' errors combined.
    """
    ya, a = _arrays(y, p1)
    _, b = _arrays(y, p2)
    if _one_class(ya):
        return float("nan"), float("nan")
    pos, neg = ya == 1, ya == 0
    v10a, v01a = _placements(a[pos], a[neg])
    v10b, v01b = _placements(b[pos], b[neg])
    d10, d01 = v10a - v10b, v01a - v01b
    var = np.var(d10, ddof=1) / pos.sum() + np.var(d01, ddof=1) / neg.sum() if min(pos.sum(), neg.sum()) > 1 else np.nan
    return float(v10a.mean() - v10b.mean()), float(np.sqrt(var))


def pr_auc(y: Iterable, p: Iterable) -> float:
    """Average precision (area under the precision-recall curve); ``nan`` with one class."""
    from sklearn.metrics import average_precision_score

    ya, pa = _arrays(y, p)
    return float("nan") if _one_class(ya) else float(average_precision_score(ya, pa))


def gain_curve(y: Iterable, p: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gain curve: (share of rows contacted, share of uptakes captured).

    Both arrays start at 0 and end at 1 (``n + 1`` points). With no uptakes the
    captured share is ``nan``.
    """
    ya, pa = _arrays(y, p)
    order = np.argsort(-pa, kind="mergesort")
    hits = np.concatenate([[0.0], np.cumsum(ya[order])])
    x = np.arange(ya.size + 1) / max(ya.size, 1)
    total = ya.sum()
    return x, (hits / total if total > 0 else np.full_like(hits, np.nan))


def gain_area(y: Iterable, p: Iterable) -> float:
    """Area under the cumulative gain curve (ALIFT); 0.5 for random ranking."""
    ya, pa = _arrays(y, p)
    if _one_class(ya):
        return float("nan")
    x, g = gain_curve(ya, pa)
    return float(np.sum((x[1:] - x[:-1]) * (g[1:] + g[:-1]) / 2))


def _top(y: Iterable, p: Iterable, share: float) -> np.ndarray | None:
    """Outcomes of the first ``ceil(share * n)`` rows by descending ``p``; None with one class."""
    ya, pa = _arrays(y, p)
    if _one_class(ya):
        return None
    k = max(1, math.ceil(share * ya.size))
    return ya[np.argsort(-pa, kind="mergesort")[:k]]


def capture_at(y: Iterable, p: Iterable, share: float) -> float:
    """Share of all uptakes among the top ``share`` of rows by ``p``."""
    top = _top(y, p, share)
    return float("nan") if top is None else float(top.sum() / np.sum(_arrays(y, p)[0]))


def lift_at(y: Iterable, p: Iterable, share: float) -> float:
    """Uptake rate in the top ``share`` of rows by ``p`` over the overall rate."""
    top = _top(y, p, share)
    return float("nan") if top is None else float(top.mean() / np.mean(_arrays(y, p)[0]))


def brier(y: Iterable, p: Iterable) -> float:
    """Mean squared error of the probabilities."""
    ya, pa = _arrays(y, p)
    return float(np.mean((pa - ya) ** 2)) if ya.size else float("nan")


def calibration_bins(y: Iterable, p: Iterable, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Equal-mass bins of ``p``.

    Returns:
        One row per non-empty bin: ``n``, ``p_mean`` (mean prediction), ``y_mean``
        (observed uptake rate).
    """
    ya, pa = _arrays(y, p)
    if ya.size == 0:
        return pd.DataFrame(columns=["n", "p_mean", "y_mean"])
    order = np.argsort(pa, kind="mergesort")
    bins = np.empty(ya.size, dtype=int)
    bins[order] = np.arange(ya.size) * n_bins // ya.size
    df = pd.DataFrame({"bin": bins, "p": pa, "y": ya})
    g = df.groupby("bin")
    return pd.DataFrame({"n": g.size(), "p_mean": g["p"].mean(), "y_mean": g["y"].mean()})


def ece(y: Iterable, p: Iterable, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-mass bins (see module docstring)."""
    b = calibration_bins(y, p, n_bins)
    if b.empty:
        return float("nan")
    return float((b["n"] / b["n"].sum() * (b["p_mean"] - b["y_mean"]).abs()).sum())


def metrics(y: Iterable, p: Iterable) -> dict[str, float]:
    """Every metric of one set of predictions.

    Returns:
        ``n``, ``positives``, ``base_rate``, ``mean_p``, ``auc``, ``pr_auc``,
        ``gain_area``, ``brier``, ``ece``, and ``lift_5``, ``capture_5`` (and 10, 20:
        lift and capture at the top 5 %, 10 %, 20 %).
    """
    ya, pa = _arrays(y, p)
    out: dict[str, float] = {
        "n": int(ya.size),
        "positives": int(ya.sum()),
        "base_rate": float(ya.mean()) if ya.size else float("nan"),
        "mean_p": float(pa.mean()) if ya.size else float("nan"),
        "auc": auc(ya, pa),
        "pr_auc": pr_auc(ya, pa),
        "gain_area": gain_area(ya, pa),
        "brier": brier(ya, pa),
        "ece": ece(ya, pa),
    }
    for s in TOP_SHARES:
        pct = round(s * 100)
        out[f"lift_{pct}"] = lift_at(ya, pa, s)
        out[f"capture_{pct}"] = capture_at(ya, pa, s)
    return out


def metrics_table(rows: Iterable[Mapping[str, object]], columns: list[str] | None = None, digits: int = 3) -> str:
    """A markdown table, one row per mapping; floats rounded, missing/nan shown as "–".

    Args:
        rows: mappings of column name to value (e.g. ``{"model": ..., **metrics(y, p)}``).
        columns: columns in order (default: keys of the first row, then new keys).
        digits: decimals of floats.
    """
    rows = list(rows)
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float | np.floating) and math.isnan(v)):
            return "–"
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, int | np.integer):
            return f"{v:,}"
        if isinstance(v, float | np.floating):
            return f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


CJK_NAMES = ("CJK", "WenQuanYi", "SimHei", "Hei", "Song", "Sans SC")
CJK_FILES = ("wqy", "cjk", "simhei", "simsun", "msyh", "sourcehan", "droidsansfallback")
_font_scan: list[bool] = []  # one scan of the system's font files per process


def _cjk_fonts() -> list[str]:
    """Names of the CJK fonts matplotlib knows; a font installed after matplotlib built its font
    cache is missing from it, so the system's font files are scanned once and such fonts added."""
    from matplotlib import font_manager

    def known() -> list[str]:
        return [f.name for f in font_manager.fontManager.ttflist if any(k in f.name for k in CJK_NAMES)]

    if not known() and not _font_scan:
        _font_scan.append(True)
        for path in font_manager.findSystemFonts():
            if any(k in Path(path).name.lower() for k in CJK_FILES):
                font_manager.fontManager.addfont(path)
    return known()


def _labels() -> dict[str, str]:
    """Plot labels: Chinese when a CJK font is installed, otherwise English."""
    from matplotlib import rcParams

    cjk = _cjk_fonts()
    if cjk:
        rcParams["font.sans-serif"] = [cjk[0], *rcParams["font.sans-serif"]]
        rcParams["axes.unicode_minus"] = False
        return {
            "gain": "累计增益曲线",
            "contacted": "接触客户占比",
            "captured": "捕获的办理占比",
            "random": "随机",
            "model": "模型",
            "calibration": "校准曲线（等量分箱）",
            "predicted": "预测概率",
            "observed": "实际办理率",
            "ideal": "理想",
            "importance": "特征重要性（增益）",
            "gain_imp": "增益",
        }
    return {
        "gain": "Cumulative gain",
        "contacted": "share of customers contacted",
        "captured": "share of uptakes captured",
        "random": "random",
        "model": "model",
        "calibration": "Calibration (equal-mass bins)",
        "predicted": "predicted probability",
        "observed": "observed uptake rate",
        "ideal": "ideal",
        "importance": "Feature importance (gain)",
        "gain_imp": "gain",
    }


def _figure():  # noqa: ANN202 - matplotlib types
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(5.5, 4.5), dpi=100)


def plot_gain(y: Iterable, p: Iterable, path: Path, title: str = "") -> Path:
    """Save the cumulative gain curve (with lift@10 % in the legend) as a PNG."""
    lab = _labels()
    plt, fig, ax = _figure()
    x, g = gain_curve(y, p)
    ax.plot(x, g, label=f"{lab['model']} (lift@10% {lift_at(y, p, 0.1):.2f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label=lab["random"])
    ax.set(
        xlabel=lab["contacted"],
        ylabel=lab["captured"],
        title=f"{lab['gain']} {title}".strip(),
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="lower right")
    return _save(plt, fig, path)


def plot_calibration(y: Iterable, p: Iterable, path: Path, title: str = "") -> Path:
    """Save the reliability diagram (equal-mass bins) as a PNG."""
    lab = _labels()
    plt, fig, ax = _figure()
    b = calibration_bins(y, p)
    top = float(max(b["p_mean"].max(), b["y_mean"].max(), 1e-3) * 1.05) if len(b) else 1.0
    ax.plot([0, top], [0, top], "--", color="grey", label=lab["ideal"])
    ax.plot(b["p_mean"], b["y_mean"], "o-", label=f"{lab['model']} (ECE {ece(y, p):.3f})")
    ax.set(
        xlabel=lab["predicted"],
        ylabel=lab["observed"],
        title=f"{lab['calibration']} {title}".strip(),
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left")
    return _save(plt, fig, path)


def plot_importance(importance: pd.Series, path: Path, top: int = 20, title: str = "") -> Path:
    """Save a horizontal bar chart of the ``top`` largest importances as a PNG.

    Args:
        importance: importance per feature (index: feature names), e.g.
            ``FittedModel.importance("gain")``.
    """
    lab = _labels()
    plt, fig, ax = _figure()
    s = importance.sort_values(ascending=False).head(top)[::-1]
    fig.set_size_inches(6, max(3, 0.25 * len(s) + 1))
    ax.barh(s.index.astype(str), s.to_numpy())
    ax.set(xlabel=lab["gain_imp"], title=f"{lab['importance']} {title}".strip())
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:  # noqa: ANN001
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_plots(y: Iterable, p: Iterable, importance: pd.Series, out_dir: Path, title: str = "") -> dict[str, Path]:
    """Save the gain, calibration and importance plots in ``out_dir``.

    Returns:
        ``{"gain": path, "calibration": path, "importance": path}``.
    """
    out = Path(out_dir)
    return {
        "gain": plot_gain(y, p, out / "gain.png", title),
        "calibration": plot_calibration(y, p, out / "calibration.png", title),
        "importance": plot_importance(importance, out / "importance.png", title=title),
    }
