"""One customer's profile for the staff page: what a manager reads before a call.

:func:`customer_profile` gathers, for one customer of a :class:`serving.engine.Recommender`:

==================  ===============================================================================
tier and trend      the tier table (``features.tiers.read``, its last :data:`TREND_MONTHS` built months
                    kept by :class:`TierMonths`): ``tier_level`` (a label from ``tiers.levels``) and
                    ``tier_score``; the trend compares the latest month's tier with the first shown
balance, turnover   the same rows: ``tier_deposit_balance_1m`` (average daily deposit balance) and
                    ``tier_turnover_1m`` (money in and out) of the month before each as-of
tenure, holdings    the online store's latest row of ``features.schema.PROFILE_SERVICE``:
                    ``demo_tenure_months``, and the holdings family's accounts by type, services and
                    active loans by product (:data:`HELD`)
contacts            the ingested ``contacts`` table the recommender holds, newest first, at most
                    :data:`LAST_CONTACTS`
products            :meth:`serving.engine.Recommender.hints`, as ``/hints`` answers
missing fields      ``bankexport.quality.missing_fields`` at the reference date: the applicable fields
                    of ``quality.fields`` the bank does not know (客户信息待完善)
==================  ===============================================================================

A part whose source is missing (a workspace built before the tier view, say) is left empty and
named in ``notes``; the profile itself still answers. Who may see the customer is decided by the
caller exactly as for ``/hints`` (``serving/service.py: NbpService.answer_profile``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bankexport.quality import FIELD_RULES, missing_fields
from bankexport.spec import (
    ACCOUNT_TYPES,
    ACCOUNT_TYPES_ZH,
    ENUM_ZH,
    LOAN_PRODUCTS,
    PRODUCT_NAMES_ZH,
    SERVICES,
    SERVICES_ZH,
)
from features import tiers
from features.build import built_as_of
from features.schema import PROFILE_SERVICE
from features.store import online
from nbp.errors import FeatureStoreError, NbpError
from nbp.workspace import Workspace
from serving.engine import LANGS, Recommender
from serving.errors import Unavailable, Unprocessable, shown
from serving.reasons import Lang
from serving.schemas import ContactRow, Holding, MissingField, MonthFigures, ProfileResponse, TierPoint

log = logging.getLogger(__name__)

TREND_MONTHS = 12  # months of tier history and of the sparklines
LAST_CONTACTS = 10  # contacts shown, newest first
TENURE = "demo_tenure_months"
BALANCE = "tier_deposit_balance_1m"
TURNOVER = "tier_turnover_1m"

# What the profile lists as held, and the holdings feature that says so (kind, enum value, feature, zh name).
HELD: tuple[tuple[str, str, str, str], ...] = (
    *(("account", t, f"holdings_account_{t}_held", ACCOUNT_TYPES_ZH[t]) for t in ACCOUNT_TYPES),
    *(("service", s, f"holdings_service_{s}_held", SERVICES_ZH[s]) for s in SERVICES),
    *(("loan", p, f"holdings_loans_active_{p}_count", PRODUCT_NAMES_ZH[p]) for p in LOAN_PRODUCTS),
)

_NOTES = {
    "tiers": ("尚未计算客户价值分层（请运行 nbp features）", "no value tiers built (run `nbp features`)"),
    "online": ("暂时无法读取客户的持有产品与客龄", "holdings and tenure cannot be read now"),
    "products": ("暂无可推荐的产品：模型或特征暂不可用", "no product can be suggested now"),
    "missing": ("暂时无法统计待完善信息", "missing profile fields cannot be counted now"),
}


def customer_profile(rec: Recommender, customer_id: str, lang: Lang = "zh") -> ProfileResponse:
    """The profile of one customer of ``rec``'s bank (module docstring).

    Args:
        rec: the bank's recommender.
        customer_id: the customer.
        lang: ``zh`` or ``en``: labels, reasons and notes.

    Raises:
        NotFound: the customer is not in the bank's customers table.
        Unprocessable: unknown language.
    """
    if lang not in LANGS:
        raise Unprocessable(f"unknown lang '{shown(lang)}'; use zh or en")
    branch = rec.branch_of(customer_id)
    notes: list[str] = []
    history = _tier_history(rec, customer_id, notes, lang)
    points = [
        TierPoint(
            as_of=d.isoformat(),
            level=_int(lv),
            tier=tiers.level_label(rec.cfg, lv, lang),
            score=_float(s),
        )
        for d, lv, s in zip(history["as_of"], history["tier_level"], history["tier_score"], strict=True)
    ]
    row = _online_row(rec, customer_id, notes, lang)
    try:
        hint = rec.hints(customer_id, lang)
        products, problem = hint.products, None
    except Unavailable as e:  # the reason, for the log and English readers (it names models and paths)
        log.warning("profile %s: no products: %s", shown(customer_id), e)
        products, problem = [], _NOTES["products"][0] if lang == "zh" else f"{_NOTES['products'][1]}: {e}"
    return ProfileResponse(
        customer_id=customer_id,
        bank_code=rec.bank,
        branch_id=branch,
        lang=lang,
        as_of=points[-1].as_of if points else None,
        tier=points[-1] if points else None,
        tier_trend=tier_trend(points),
        tier_history=points,
        tenure_months=_int(row.get(TENURE)),
        holdings=holdings_of(row, lang),
        months=[
            MonthFigures(month=_month_before(d), balance=_float(b), turnover=_float(t))
            for d, b, t in zip(history["as_of"], history[BALANCE], history[TURNOVER], strict=True)
        ],
        contacts=last_contacts(rec.contacts, customer_id, lang),
        products=products,
        products_problem=problem,
        missing_fields=_missing(rec, customer_id, notes, lang),
        notes=notes,
    )


@dataclass(frozen=True)
class TierMonths:
    """The tier table's last :data:`TREND_MONTHS` built months, by customer: what the trend and the
    sparklines read. The table holds one row group of every customer and month, so one customer's
    rows cost a scan of the whole file; it is read once per version of the file instead, the
    figures as float32 (about 17 bytes a customer and month; shown rounded to cents)."""

    frame: pd.DataFrame  # as_of, tier_level, tier_score, BALANCE, TURNOVER; by customer, then as_of
    rows: dict[str, slice]  # customer -> their rows of ``frame``

    @classmethod
    def read(cls, ws: Workspace) -> TierMonths:
        """Read the months from the workspace's tier table.

        Raises:
            FileNotFoundError: no tier table (``nbp features`` has not built it).
            FeatureStoreError: no feature tables built.
        """
        df = tiers.read(ws, as_of=built_as_of(ws)[-TREND_MONTHS:])
        df = df.sort_values(["customer_id", "as_of"], kind="stable", ignore_index=True)
        ids = df["customer_id"].astype(str).to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.empty(0, dtype=np.intp)
        ends = np.r_[starts[1:], len(ids)]
        frame = df[["tier_level", "tier_score", BALANCE, TURNOVER]].astype("float32")
        frame.insert(0, "as_of", pd.to_datetime(df["as_of"]).dt.date.astype("category"))
        return cls(
            frame=frame,
            rows={ids[a]: slice(a, b) for a, b in zip(starts, ends, strict=True)},
        )

    def of(self, customer_id: str) -> pd.DataFrame:
        """The customer's rows, oldest first (none when the tier table does not know the customer)."""
        return self.frame.iloc[self.rows.get(customer_id, slice(0, 0))]


_CACHE: weakref.WeakKeyDictionary[Recommender, dict[str, tuple[tuple, Any]]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _cached(rec: Recommender, name: str, files: Sequence[Path], build: Callable[[], Any]) -> Any:
    """``build()``, kept per recommender until one of ``files`` changes (size or modification time),
    so a profile follows ``nbp features`` as the online store does. Built under a lock: requests
    arriving meanwhile wait for it rather than read the files again. A failed build is not kept."""
    stamp = tuple((st.st_mtime_ns, st.st_size) if (st := _stat(f)) else None for f in files)
    with _CACHE_LOCK:
        mine = _CACHE.setdefault(rec, {})
        if name in mine and mine[name][0] == stamp:
            return mine[name][1]
        value = build()
        mine[name] = (stamp, value)
        return value


def _stat(path: Path) -> Any:
    try:
        return path.stat()
    except OSError:
        return None


def warm_profiles(rec: Recommender) -> None:
    """Read what profiles share ahead of requests: the tier months, every customer's missing fields,
    and the online store's reader of the profile service."""
    notes: list[str] = []
    _tier_months(rec, notes, "zh")
    _missing_all(rec, notes, "zh")
    if len(rec.customers):
        _online_row(rec, str(rec.customers.index[0]), notes, "zh")
    if notes:
        log.warning("profile: %s", "; ".join(notes))


def _tier_months(rec: Recommender, notes: list[str], lang: Lang) -> TierMonths | None:
    try:
        return _cached(
            rec,
            "tiers",
            [rec.ws.feature_table(tiers.FAMILY), rec.ws.features_build_meta],
            lambda: TierMonths.read(rec.ws),
        )
    except (FileNotFoundError, FeatureStoreError) as e:
        log.warning("profile: %s", e)
        notes.append(_NOTES["tiers"][lang == "en"])
        return None


def _tier_history(rec: Recommender, customer_id: str, notes: list[str], lang: Lang) -> pd.DataFrame:
    """The customer's rows of the tier table, the last :data:`TREND_MONTHS` built months, oldest first."""
    months = _tier_months(rec, notes, lang)
    if months is None:
        return pd.DataFrame({c: [] for c in ("as_of", "tier_level", "tier_score", BALANCE, TURNOVER)})
    return months.of(customer_id)


def _online_row(rec: Recommender, customer_id: str, notes: list[str], lang: Lang) -> dict[str, float]:
    """The customer's latest features of the profile service (empty, with a note, when unreadable)."""
    try:
        df = online(rec.cfg, rec.ws, [customer_id], PROFILE_SERVICE)
    except FeatureStoreError as e:
        log.warning("profile: online store: %s", e)
        notes.append(_NOTES["online"][lang == "en"])
        return {}
    return {c: float(v) for c, v in df.iloc[0].drop("customer_id").items()}


def _missing_all(rec: Recommender, notes: list[str], lang: Lang) -> dict[str, list[str]] | None:
    """Every customer's missing fields at the reference date (None, with a note, when they cannot be
    counted): one query for the bank instead of a scan of its tables per profile."""
    files = [rec.ws.table(t) for t in ("customers", "profile_updates", "tax_records")]
    try:
        return _cached(
            rec,
            "missing",
            files,
            lambda: missing_fields(rec.ws, rec.cfg, list(rec.customers.index), as_of=rec.ref_date),
        )
    except NbpError as e:
        log.warning("profile: missing fields: %s", e)
        notes.append(_NOTES["missing"][lang == "en"])
        return None


def _missing(rec: Recommender, customer_id: str, notes: list[str], lang: Lang) -> list[MissingField] | None:
    """The applicable ``quality.fields`` unknown at the reference date (None when they cannot be
    counted, or for a customer opened after it)."""
    got = _missing_all(rec, notes, lang)
    if got is None or customer_id not in got:
        return None
    return [
        MissingField(field=f, name=FIELD_RULES[f].zh if lang == "zh" else f.replace("_", " ")) for f in got[customer_id]
    ]


def tier_trend(points: list[TierPoint]) -> str | None:
    """``up``/``down``/``same``: the latest tier against the first one shown (a lower level is a
    higher tier); None with fewer than two scored months."""
    known = [p.level for p in points if p.level is not None]
    if len(known) < 2:
        return None
    first, last = known[0], known[-1]
    return "up" if last < first else "down" if last > first else "same"


def holdings_of(row: dict[str, float], lang: Lang = "zh") -> list[Holding]:
    """Accounts by type, services and active loans by product held, from one row of features
    (:data:`HELD`); a feature that is missing or null counts as not held."""
    out = []
    for kind, key, feature, zh in HELD:
        v = row.get(feature)
        if v is None or not np.isfinite(v) or v <= 0:
            continue
        name = zh if lang == "zh" else key.replace("_", " ")
        out.append(Holding(kind=kind, key=key, name=name, count=int(v) if kind == "loan" else None))
    return out


def last_contacts(
    contacts: pd.DataFrame, customer_id: str, lang: Lang = "zh", n: int = LAST_CONTACTS
) -> list[ContactRow]:
    """The customer's latest ``n`` contacts, newest first (same day: the table's later row first).

    Args:
        contacts: ``customer_id, product, contact_date, channel, outcome, campaign_id`` (the contacts table).
    """
    mine = contacts[contacts["customer_id"] == customer_id]
    day = pd.to_datetime(mine["contact_date"]).to_numpy()
    order = np.lexsort((np.arange(len(mine)), day))[::-1][:n]  # newest day first, then the later row
    mine = mine.iloc[order].assign(contact_date=day[order])
    return [
        ContactRow(
            contact_date=pd.Timestamp(r.contact_date).date().isoformat(),
            product=str(r.product),
            product_name=_label(str(r.product), lang),
            channel=_text(r.channel),
            channel_name=None if _text(r.channel) is None else _label(str(r.channel), lang),
            outcome=_text(r.outcome),
            outcome_name=None if _text(r.outcome) is None else _label(str(r.outcome), lang),
            campaign_id=_text(r.campaign_id),
        )
        for r in mine.itertuples(index=False)
    ]


def _label(value: str, lang: Lang) -> str:
    return ENUM_ZH.get(value, value) if lang == "zh" else value.replace("_", " ")


def _text(v: object) -> str | None:
    return None if v is None or pd.isna(v) else str(v)


def _float(v: object, digits: int = 2) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), digits)  # type: ignore[arg-type]


def _int(v: object) -> int | None:
    f = _float(v)
    return None if f is None else int(f)


def _month_before(as_of: date) -> str:
    """``YYYY-MM`` of the month before an as-of date (the month a ``_1m`` figure covers)."""
    y, m = divmod(as_of.year * 12 + as_of.month - 2, 12)
    return f"{y:04d}-{m + 1:02d}"
