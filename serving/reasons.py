"""Why a customer is suggested: SHAP contributions turned into sentences.

A model's TreeSHAP contributions (LightGBM ``pred_contrib=True``) say how much
each feature moved one customer's score. The features that raised it most
become up to three reasons a customer manager can read, in Chinese by default
(``近6个月月均代发工资：1.2万元``) or English (``average monthly payroll, last 6
months: ¥12,000``).

The feature catalogue is an argument (a DataFrame or a list of dicts, e.g.
``features.catalog.catalog_frame()``): columns ``name``, ``zh``, ``en`` and,
optionally,

``kind``                 overrides the naming convention below
``categories``           comma-separated labels, value = position (categorical codes)
``categories_zh``        the same labels in Chinese, used for ``lang="zh"``
``reason_zh/reason_en``  a sentence template with ``{value}``, e.g. ``近6个月代发工资稳定``

How a value is shown follows the name, once window and aggregate tokens
(``_6m``, ``_prior3m``, ``_avg``, ``_sum``, ``_latest`` …) are stripped from
its end; the last token left decides:

- ``amount``, ``balance``, ``settlement``, ``paid``: money, ``3,500元`` /
  ``1.2万元`` (en ``¥3,500``);
- ``ratio``, ``share``: percent, ``35%``;
- ``months`` (also ``months_since`` anywhere): ``6个月`` / ``6 months``;
- ``days`` (also ``days_since`` anywhere): ``45天`` / ``45 days``;
- ``count``: an integer, ``1,234``;
- ``held``, or a zh description ending ``(1/0)``: flag, ``是``/``否`` (``yes``/``no``);
- anything else: the plain number (``1.35``; integers without decimals).

A technical note ending a description, such as ``(1/0)``, ``(编码)`` or
``(code: …)``, is not shown.

A feature missing from the catalogue (LightGBM's bias column among them) is
never a reason.

A reason is shown only when it raises the score (a positive contribution) **and** is
not an adverse fact. A model learns from the bank's past targeting: managers called
the customers the bank already scored high, so "the last contact was declined" can
carry a positive contribution although no manager can offer a loan *because* the
customer said no. Such facts are never shown as reasons to offer, whatever their sign
(:data:`ADVERSE`; a catalogue column ``adverse`` overrides it per feature):

``adverse``  comma-separated category labels (``declined,no_response``) that are
             adverse, or ``>0``: any value above zero is (counts of refusals,
             overdue days, write-offs); ``none``: nothing is; empty: :data:`ADVERSE`
             decides
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

Lang = Literal["zh", "en"]
KINDS = ("money", "percent", "months", "days", "count", "flag", "plain")
MAX_REASONS = 3

_WINDOW = re.compile(r"^(prior)?\d+[dwmy]$")
_AGGREGATES = {"avg", "mean", "sum", "min", "max", "std", "median", "last", "total", "latest", "prior"}
_KIND_OF_TOKEN = {
    "amount": "money",
    "balance": "money",
    "settlement": "money",
    "paid": "money",
    "ratio": "percent",
    "share": "percent",
    "months": "months",
    "days": "days",
    "count": "count",
    "held": "flag",
}
_FLAG_HINT = "(1/0)"  # catalogue descriptions of 0/1 features end so
_FLAG_TEXT = {"zh": ("否", "是"), "en": ("no", "yes")}
_TECH_NOTE = re.compile(r"\s*[(（][^()（）]*(?:编码|code|1/0|=0)[^()（）]*[)）]\s*$")
_SEP = {"zh": "：", "en": ": "}
_MISSING = {"zh": "无记录", "en": "none on record"}

# Adverse facts by feature name (first match wins), when the catalogue has no ``adverse``
# column: the outcomes of a contact other than acceptance, the two lowest tax credit grades,
# and counts of refusals, unpaid or overdue loans.
ADVERSE: tuple[tuple[str, str], ...] = (
    (r"^marketing_last_outcome", "declined,no_response,unreachable"),
    (r"^tax_credit_grade", "C,D"),
    (r"(declined|not_granted|written_off|overdue)", ">0"),
)
_POSITIVE = ">0"
_NONE = "none"

NOT_OFFERED: dict[str, dict[str, str]] = {
    "held": {"zh": "已持有该产品", "en": "already holds this product"},
    "not_eligible": {"zh": "不符合准入条件", "en": "does not meet the eligibility rules"},
    "contacted_recently": {"zh": "近期已就该产品联系过", "en": "contacted about this product recently"},
    "model_unavailable": {"zh": "模型暂不可用", "en": "model temporarily unavailable"},
    "do_not_contact": {"zh": "客户在勿扰名单中", "en": "on the do-not-contact list"},
}


def not_offered_reason(kind: str, lang: Lang = "zh") -> str:
    """Why a product is not suggested, as shown to staff.

    Args:
        kind: one of ``held``, ``not_eligible``, ``contacted_recently``,
            ``model_unavailable``, ``do_not_contact`` (keys of :data:`NOT_OFFERED`).
        lang: ``zh`` or ``en``.

    Raises:
        ValueError: unknown kind or language.
    """
    if kind not in NOT_OFFERED:
        raise ValueError(f"unknown not-offered reason '{kind}' (known: {', '.join(NOT_OFFERED)})")
    if lang not in ("zh", "en"):
        raise ValueError(f"unknown language '{lang}' (zh or en)")
    return NOT_OFFERED[kind][lang]


def value_kind(name: str) -> str:
    """How a feature's value is shown, from its name (table in the module docstring)."""
    if "months_since" in name:
        return "months"
    if "days_since" in name:
        return "days"
    tokens = name.split("_")
    while len(tokens) > 1 and (_WINDOW.match(tokens[-1]) or tokens[-1] in _AGGREGATES):
        tokens.pop()
    return _KIND_OF_TOKEN.get(tokens[-1], "plain")


def _number(v: float) -> str:
    if float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def format_value(value: Any, kind: str, lang: Lang = "zh", categories: tuple[str, ...] = ()) -> str:
    """Show one feature value to a customer manager.

    Args:
        value: the feature's value (None/NaN: "无记录" / "none on record").
        kind: one of :data:`KINDS` (see :func:`value_kind`).
        lang: ``zh`` or ``en``.
        categories: labels of a categorical feature; the value is the position.

    Returns:
        e.g. ``1.2万元``, ``¥12,000``, ``35%``, ``6个月``.
    """
    if value is None or pd.isna(value):
        return _MISSING[lang]
    v = float(value)
    if categories:
        i = int(v)
        return categories[i] if 0 <= i < len(categories) else _number(v)
    if kind == "money":
        if lang == "en":
            return f"¥{v:,.0f}"
        if abs(v) >= 10_000:
            return f"{v / 10_000:.1f}".removesuffix(".0") + "万元"
        return f"{v:,.0f}元"
    if kind == "percent":
        return f"{v * 100:.0f}%"
    if kind in ("months", "days"):
        n = round(v)
        if lang == "zh":
            return f"{n}个月" if kind == "months" else f"{n}天"
        unit = kind if n != 1 else kind[:-1]
        return f"{n} {unit}"
    if kind == "count":
        return f"{round(v):,}"
    if kind == "flag":
        return _FLAG_TEXT[lang][int(v != 0)]
    return _number(v)


@dataclass(frozen=True)
class _Entry:
    zh: str
    en: str
    kind: str
    categories: tuple[str, ...]
    categories_zh: tuple[str, ...]
    reason_zh: str | None
    reason_en: str | None
    adverse_codes: frozenset[int] = frozenset()  # category positions never shown as a reason
    adverse_positive: bool = False  # any value > 0 is never shown as a reason

    def adverse(self, value: Any) -> bool:
        """Whether ``value`` speaks against an offer (module docstring)."""
        if value is None or pd.isna(value):
            return False
        v = float(value)
        return (self.adverse_positive and v > 0) or (
            bool(self.adverse_codes) and v.is_integer() and int(v) in self.adverse_codes
        )


def _adverse_rule(name: str, row: Mapping[str, Any]) -> str:
    own = _text(row, "adverse")
    if own is not None:
        return "" if own.strip().lower() == _NONE else own
    return next((rule for pattern, rule in ADVERSE if re.search(pattern, name)), "")


def _text(row: Mapping[str, Any], key: str) -> str | None:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
        return None
    return str(v)


class ReasonCatalog:
    """The feature catalogue, prepared for phrasing reasons.

    Args:
        catalog: DataFrame or dicts with ``name``, ``zh``, ``en`` and optionally
            ``kind``, ``categories``, ``categories_zh``, ``reason_zh``, ``reason_en``
            (module docstring).

    Raises:
        ValueError: a required field is missing, a ``kind`` is unknown, or an ``adverse``
            label is not one of the feature's categories.
    """

    def __init__(self, catalog: pd.DataFrame | Iterable[Mapping[str, Any]]) -> None:
        rows = catalog.to_dict("records") if isinstance(catalog, pd.DataFrame) else list(catalog)
        self._entries: dict[str, _Entry] = {}
        for row in rows:
            missing = [k for k in ("name", "zh", "en") if _text(row, k) is None]
            if missing:
                raise ValueError(f"feature catalogue row {row!r}: missing {', '.join(missing)}")
            name = str(row["name"])
            kind = _text(row, "kind") or value_kind(name)
            if kind == "plain" and str(row["zh"]).endswith(_FLAG_HINT):
                kind = "flag"
            if kind not in KINDS:
                raise ValueError(f"feature catalogue '{name}': unknown kind '{kind}' (kinds: {', '.join(KINDS)})")
            cats = _text(row, "categories")
            cats_zh = _text(row, "categories_zh")
            labels = tuple(c.strip() for c in cats.split(",")) if cats else ()
            rule = _adverse_rule(name, row)
            codes: frozenset[int] = frozenset()
            if rule and rule != _POSITIVE:
                wanted = [a.strip() for a in rule.split(",") if a.strip()]
                unknown = [a for a in wanted if a not in labels]
                if unknown and _text(row, "adverse"):
                    raise ValueError(
                        f"feature catalogue '{name}': adverse label(s) {', '.join(unknown)} are not "
                        f"among its categories ({cats or 'none'})"
                    )
                codes = frozenset(labels.index(a) for a in wanted if a in labels)
            self._entries[name] = _Entry(
                zh=_TECH_NOTE.sub("", str(row["zh"])),
                en=_TECH_NOTE.sub("", str(row["en"])),
                kind=kind,
                categories=tuple(c.strip() for c in cats.split(",")) if cats else (),
                categories_zh=tuple(c.strip() for c in cats_zh.split(",")) if cats_zh else (),
                reason_zh=_text(row, "reason_zh"),
                reason_en=_text(row, "reason_en"),
                adverse_codes=codes,
                adverse_positive=rule == _POSITIVE,
            )

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def supports(self, name: str, value: Any) -> bool:
        """Whether this feature's value may be shown as a reason to offer (not an adverse fact)."""
        return not self._entries[name].adverse(value)

    def phrase(self, name: str, value: Any, lang: Lang = "zh") -> str:
        """One feature and its value as a sentence (template, else ``<description>：<value>``)."""
        e = self._entries[name]
        shown = format_value(value, e.kind, lang, (e.categories_zh or e.categories) if lang == "zh" else e.categories)
        template = e.reason_zh if lang == "zh" else e.reason_en
        if template:
            return template.format(value=shown)
        return f"{e.zh if lang == 'zh' else e.en}{_SEP[lang]}{shown}"

    def top_reasons(
        self, contributions: pd.Series, values: pd.Series | Mapping[str, Any], lang: Lang = "zh", k: int = MAX_REASONS
    ) -> list[str]:
        """The ``k`` features that raised one customer's score most, as sentences.

        Args:
            contributions: feature name -> SHAP contribution for one row.
            values: feature name -> that row's value.
            lang: ``zh`` or ``en``.
            k: at most this many reasons.

        Returns:
            Up to ``k`` sentences, largest positive contribution first (ties by
            name); features not in the catalogue, contributions <= 0 and adverse facts
            are skipped.
        """
        if lang not in _SEP:
            raise ValueError(f"unknown language '{lang}' (zh or en)")
        names = sorted(n for n in contributions.index if n in self._entries)
        skipped = len(contributions) - len(names)
        if skipped:
            log.debug("reasons: %d contribution(s) not in the catalogue skipped", skipped)
        vals = np.array([values.get(n) for n in names], dtype=object)
        return self.top_reasons_at(names, contributions.loc[names].to_numpy(float), vals, lang, k)

    def top_reasons_at(
        self,
        names: Sequence[str],
        contributions: np.ndarray,
        values: np.ndarray,
        lang: Lang = "zh",
        k: int = MAX_REASONS,
    ) -> list[str]:
        """:meth:`top_reasons` on aligned arrays (the per-request path of the service).

        Args:
            names: catalogue features, sorted by name (ties go to the first).
            contributions: their SHAP contributions for one row.
            values: their values in that row.
            lang: ``zh`` or ``en``.
            k: at most this many reasons.
        """
        if lang not in _SEP:
            raise ValueError(f"unknown language '{lang}' (zh or en)")
        return [self.phrase(names[j], values[j], lang) for j in self._best(names, contributions, values, k)]

    def _best(self, names: Sequence[str], contributions: np.ndarray, values: Any, k: int) -> list[int]:
        """Positions of the ``k`` largest positive contributions that are not adverse facts."""
        out: list[int] = []
        for j in np.argsort(-contributions, kind="stable"):
            if len(out) == k or not contributions[j] > 0:
                break
            if self.supports(names[j], values[j]):
                out.append(int(j))
        return out

    def reasons_for_frame(
        self, contributions: pd.DataFrame, values: pd.DataFrame, lang: Lang = "zh", k: int = MAX_REASONS
    ) -> pd.Series:
        """:meth:`top_reasons` for many rows (e.g. a target list).

        Args:
            contributions: one row per customer, one column per feature (SHAP).
            values: the same rows (same index), feature columns.
            lang: ``zh`` or ``en``.
            k: at most this many reasons per row.

        Returns:
            Series of lists of sentences, on ``contributions``' index.
        """
        cols = sorted(c for c in contributions.columns if c in self._entries)  # ties by name
        c = contributions[cols].to_numpy(dtype=float)
        vals = values.reindex(index=contributions.index, columns=cols)
        out: list[list[str]] = []
        v = vals.to_numpy(dtype=object)
        for i in range(len(c)):
            out.append([self.phrase(cols[j], v[i, j], lang) for j in self._best(cols, c[i], v[i], k)])
        return pd.Series(out, index=contributions.index, name="reasons", dtype=object)


def top_reasons(
    contributions: pd.Series,
    values: pd.Series | Mapping[str, Any],
    catalog: ReasonCatalog | pd.DataFrame | Iterable[Mapping[str, Any]],
    lang: Lang = "zh",
    k: int = MAX_REASONS,
) -> list[str]:
    """The top ``k`` reasons for one row; see :meth:`ReasonCatalog.top_reasons`.

    Pass a prepared :class:`ReasonCatalog` when calling this per request.
    """
    cat = catalog if isinstance(catalog, ReasonCatalog) else ReasonCatalog(catalog)
    return cat.top_reasons(contributions, values, lang, k)
