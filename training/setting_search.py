"""Whether a product's fit searches every setting again or reuses its champion's (the monthly job).

A full fit cross-validates every setting of :data:`training.model.GRID` on the rolling folds and
keeps one (:func:`training.model.choose_on_folds`). After one new month the kept setting rarely
changes, so ``nbp retrain`` cross-validates only the setting of the product's current champion
(its rounds still early-stopped on this month's folds, so the model is exactly the one the full
search gives when it keeps that setting), unless one of these holds, checked in this order:

- ``forced``: ``nbp retrain --search``, and every ``nbp train``;
- ``no_champion``: the product has no champion;
- ``config_changed``: the fingerprint of what shapes the search (:func:`fingerprint`: the recipe,
  :data:`~training.model.GRID`, the training settings that shape the rows, the product's rules
  and feature service, the feature list, LightGBM's version) differs from the one recorded with
  the champion's search, or none was recorded;
- ``gate_failed``: the product's latest registered version is not its champion;
- ``drift``: the last drift report (``training/drift.py``, written by the previous retrain) flags
  the PSI of the champion's scores (``psi_score``). Not its inputs' PSI, which clock-like features
  raise every month, nor its calibration gap, which every fit corrects by calibrating again and
  which the report measures on a sample's few uptakes per month (decision 026);
- ``months_elapsed``: ``training.search_every_months`` months or more have passed since the
  search whose setting the champion carries (0: search every time), or that search is of a
  later month than this fit's cutoff.

Which one, the setting and the month of the search are tagged on the run
(:meth:`SearchPlan.tags`); why the rule reads what it reads: ``docs/decisions/026-*``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from nbp.config import Config
from training.model import GRID, ModelParams

log = logging.getLogger(__name__)

TAG_SEARCH = "nbp.setting_search"  # full | reused
TAG_REASON = "nbp.setting_search_reason"  # one of REASONS
TAG_MONTH = "nbp.setting_search_month"  # YYYY-MM of the cutoff of the search whose setting the model has
TAG_SETTING = "nbp.setting"  # the kept member of GRID (its overrides of the recipe), JSON
TAG_FINGERPRINT = "nbp.search_fingerprint"  # fingerprint() of the search
TAG_FROM = "nbp.setting_from_version"  # a reused setting: the champion version it came from

REASONS: tuple[str, ...] = (
    "forced",
    "no_champion",
    "config_changed",
    "gate_failed",
    "drift",
    "months_elapsed",
    "reused",
)
DRIFT_FLAGS = ("psi_score",)  # the drift flags that send a product back to the full search
NOT_SEARCH = frozenset(
    {
        "workers",  # fits side by side give the same models
        "auc_floor",  # the gate, after the fit
        "leak_margin",
        "leak_auc",
        "min_uptakes",  # whether a product is skipped, not how it is fitted
        "search_every_months",
        "scope",  # pooled products are always searched in full
        "pooled_max_rows",
        "min_bank_calibration_uptakes",
    }
)
"""Training settings that do not shape a bank's fit; every other one is in :func:`fingerprint`."""


@dataclass(frozen=True)
class ChampionRecord:
    """What the registry holds about a product's search (:func:`training.registry.search_record`).

    ``tags`` are the champion run's; ``latest`` is the product's latest registered version.
    """

    version: int
    tags: Mapping[str, str]
    latest: int


@dataclass(frozen=True)
class SearchPlan:
    """One product's fit: the full search or its champion's setting alone, and why."""

    mode: Literal["full", "reused"]
    reason: str  # one of REASONS
    why: str  # one sentence for the log
    fingerprint: str
    setting: dict[str, Any] | None = None  # reused: the champion's member of GRID
    month: str | None = None  # reused: the month of the search whose setting is reused
    from_version: int | None = None  # reused: the champion version
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def grid(self) -> tuple[dict[str, Any], ...] | None:
        """The settings to cross-validate (``training.model.fit_rolling``'s ``grid``); None: the full search."""
        return None if self.setting is None else (self.setting,)

    def tags(self, kept: Mapping[str, Any], cutoff: pd.Timestamp) -> dict[str, str]:
        """The run's tags once fitted with ``kept`` (``FittedModel.info["setting"]``) at ``cutoff``."""
        out = {
            TAG_SEARCH: self.mode,
            TAG_REASON: self.reason,
            TAG_MONTH: self.month if self.mode == "reused" and self.month else f"{cutoff:%Y-%m}",
            TAG_SETTING: setting_text(kept),
            TAG_FINGERPRINT: self.fingerprint,
        }
        if self.from_version is not None:
            out[TAG_FROM] = str(self.from_version)
        return out

    def line(self, product: str) -> str:
        """One line of the retrain's summary."""
        if self.mode == "reused":
            return f"{product}: setting search reused (setting of v{self.from_version}, searched {self.month})"
        return f"{product}: setting search full ({self.reason})"


def setting_text(setting: Mapping[str, Any]) -> str:
    """A setting as the canonical JSON text recorded on the run."""
    return json.dumps(dict(setting), sort_keys=True)


def fingerprint(cfg: Config, product: str, features: Sequence[str], params: ModelParams) -> str:
    """A hash of everything that shapes a product's search: the recipe ``params``, :data:`GRID`, the
    training settings but :data:`NOT_SEARCH`, the product's candidate rules and feature service,
    the sorted feature list and LightGBM's version. Names, values and texts shown to staff are left out."""
    import lightgbm

    pc = cfg.products[product]
    shaped = {
        "recipe": params.model_dump(),
        "grid": [dict(g) for g in GRID],
        "training": cfg.training.model_dump(exclude=set(NOT_SEARCH)),
        "product": pc.model_dump(include={"loan_product", "feature_service", "eligibility"}),
        "features": sorted(features),
        "lightgbm": lightgbm.__version__,
    }
    text = json.dumps(shaped, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def months_between(earlier: str, later: pd.Timestamp) -> int:
    """Calendar months from the month ``earlier`` (YYYY-MM) to ``later``'s month."""
    t = pd.Timestamp(f"{earlier}-01")
    return (later.year - t.year) * 12 + later.month - t.month


def drift_flags(report: Mapping[str, Any] | None, product: str, version: int) -> list[str]:
    """The :data:`DRIFT_FLAGS` the drift report ``report`` raised for ``product``'s champion
    ``version`` (none when the report is of another version or there is none)."""
    fig = (report or {}).get("products", {}).get(product)
    if not fig or fig.get("model_version") != version:
        return []
    return [f["name"] for f in fig.get("flags", []) if f["name"] in DRIFT_FLAGS]


def plan(
    cfg: Config,
    product: str,
    fp: str,
    cutoff: pd.Timestamp,
    record: ChampionRecord | None,
    report: Mapping[str, Any] | None,
    force: bool = False,
    member: Callable[[str | None], dict[str, Any] | None] | None = None,
) -> SearchPlan:
    """The search of ``product``'s fit at ``cutoff`` (module docstring: the rule and its order).

    Args:
        fp: :func:`fingerprint` of this fit.
        record: the registry's record of the product's champion (None: no champion).
        report: the last drift report (:func:`training.drift.read_report`), or None.
        force: search in full whatever the record says.
        member: reads the recorded :data:`TAG_SETTING` into a setting the search can take, None
            when it cannot (default :func:`grid_member`; the uplift models read their own choice).
    """

    def full(reason: str, why: str, **detail: Any) -> SearchPlan:
        return SearchPlan("full", reason, why, fp, detail=detail)

    if force:
        return full("forced", "a full search was asked for")
    if record is None:
        return full("no_champion", "no champion to take a setting from")
    tags = record.tags
    setting = (member or grid_member)(tags.get(TAG_SETTING))
    if tags.get(TAG_FINGERPRINT) != fp or setting is None or not tags.get(TAG_MONTH):
        recorded = tags.get(TAG_FINGERPRINT)
        why = (
            f"champion v{record.version} records no search fingerprint"
            if recorded is None
            else f"the search's configuration changed since champion v{record.version}'s ({recorded} -> {fp})"
        )
        return full("config_changed", why if setting is not None else f"{why}; its setting is not in the grid")
    if record.latest != record.version:
        return full("gate_failed", f"the latest version v{record.latest} is not the champion v{record.version}")
    flagged = drift_flags(report, product, record.version)
    if flagged:
        return full("drift", f"the last drift report flags champion v{record.version}: {', '.join(flagged)}")
    month = tags[TAG_MONTH]
    every = cfg.training.search_every_months
    elapsed = months_between(month, cutoff)
    if elapsed >= every or elapsed < 0:
        return full(
            "months_elapsed",
            f"{elapsed} month(s) since the search of {month}; training.search_every_months is {every}",
        )
    return SearchPlan(
        "reused",
        "reused",
        f"champion v{record.version}'s setting, searched {month} ({elapsed} month(s) ago)",
        fp,
        setting=setting,
        month=month,
        from_version=record.version,
    )


def grid_member(text: str | None) -> dict[str, Any] | None:
    """The member of :data:`GRID` recorded as ``text`` (:func:`setting_text`); None when it is none of them."""
    if not text:
        return None
    try:
        got = json.loads(text)
    except ValueError:
        return None
    return next((dict(g) for g in GRID if setting_text(g) == setting_text(got)), None)
