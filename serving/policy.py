"""Contact policy: from scored candidates to a target list (pure pandas).

:func:`build_target_list` applies, in this order:

1. **Do not contact.** Customers in the do-not-contact set are dropped.
2. **Cool-down.** A customer contacted about the same product less than
   ``serving.contact_cooldown_days`` (N) days before the list date is dropped:
   a contact on day D blocks D .. D+N-1; from D+N on the customer is back.
   Contacts dated after the list date are ignored (point in time). N = 0 turns
   the rule off.
3. **One product per customer per campaign.** A customer already contacted in
   this campaign about another product is dropped; when several products are
   ranked together each customer keeps only the product of highest expected
   value (propensity × the product's ``value``).
4. **Control group.** A fixed share (``serving.control_share``, 10 %) of
   customers is held out: ``control=True``, do not contact. Membership is a
   hash of (campaign_id, customer_id), so the same customer is control in
   every re-draw of a campaign, and the draw differs between campaigns.
5. **Manager capacity.** A manager gets at most ``capacity_per_month``
   treatment rows (managers table; a missing or null capacity is no limit).
   Customers without a manager are kept and flagged ``no_manager=True``.
6. **Top N.** The first ``top`` treatment rows by propensity are ranked
   1..top. Control rows do not count towards ``top`` and get no rank: the list
   also carries the held-out customers who would have made it, i.e. whose
   propensity is at least the last treatment row's, and (for a manager whose
   capacity was reached) at least that manager's last treatment row's. So
   about ``top × share / (1 − share)`` control rows come along, drawn from the
   same part of the ranking, and the lift is treatment minus control uptake.

Capacity is per list: contacts of other campaigns this month are not known
here (the contacts table has no manager).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import date

import numpy as np
import pandas as pd

from nbp.config import Config
from nbp.errors import DataContractError

log = logging.getLogger(__name__)

CANDIDATE_COLUMNS = ("customer_id", "branch_id", "manager_id", "product", "propensity")
CONTACT_COLUMNS = ("customer_id", "product", "contact_date", "campaign_id")
MANAGER_COLUMNS = ("manager_id", "capacity_per_month")


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataContractError(f"{what}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})")


def default_campaign_id(product: str, list_date: date) -> str:
    """The campaign a list belongs to when the request names none: ``<product>-<YYYYMM>``."""
    return f"{product}-{list_date:%Y%m}"


def control_flags(customer_ids: pd.Series, campaign_id: str, share: float) -> pd.Series:
    """Which customers are held out of a campaign.

    Args:
        customer_ids: customer ids (any index).
        campaign_id: the campaign; the draw is fixed per campaign.
        share: expected share of control customers, 0 <= share < 1.

    Returns:
        Boolean Series on ``customer_ids``' index: True for control. The same
        (campaign_id, customer_id) always gives the same answer.
    """
    prefix = f"{campaign_id}\x1f".encode()

    def _u(cid: object) -> float:
        digest = hashlib.blake2b(prefix + str(cid).encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    u = np.fromiter((_u(c) for c in customer_ids), dtype=float, count=len(customer_ids))
    return pd.Series(u < share, index=customer_ids.index, name="control")


def percentile_in_branch(scores: pd.DataFrame) -> pd.Series:
    """Each row's propensity percentile among its branch's candidates.

    Args:
        scores: columns ``branch_id``, ``propensity`` and, if present,
            ``product`` (percentiles are then per branch and product).

    Returns:
        Float Series on ``scores``' index, 0 < p <= 100: the share of the
        group's rows with a propensity at or below this row's, × 100 (the
        branch's best customer gets 100). Rows without a branch form one group.
    """
    _require(scores, ("branch_id", "propensity"), "scores")
    keys = [scores["branch_id"].fillna("").astype(str)]
    if "product" in scores.columns:
        keys.append(scores["product"].astype(str))
    pct = scores["propensity"].groupby(keys).rank(method="max", pct=True) * 100.0
    return pct.rename("percentile_in_branch")


def _expected_value(candidates: pd.DataFrame, cfg: Config) -> pd.Series:
    if "expected_value" in candidates.columns:
        return candidates["expected_value"].astype(float)
    unknown = sorted(set(candidates["product"]) - set(cfg.products))
    if unknown:
        log.warning("policy: product(s) %s not in configs/products.yaml; value 1.0", ", ".join(unknown))
    values = candidates["product"].map({p: pc.value for p, pc in cfg.products.items()}).fillna(1.0)
    return candidates["propensity"].astype(float) * values


def _cooled_down(cands: pd.DataFrame, contacts: pd.DataFrame, list_date: date, days: int) -> pd.Series:
    """True for candidate rows contacted about their product within the cool-down."""
    if days <= 0 or contacts.empty:
        return pd.Series(False, index=cands.index)
    since = (pd.Timestamp(list_date) - pd.to_datetime(contacts["contact_date"])).dt.days
    recent = contacts.loc[(since >= 0) & (since < days), ["customer_id", "product"]].drop_duplicates()
    key = pd.MultiIndex.from_frame(cands[["customer_id", "product"]].astype(str))
    return pd.Series(key.isin(pd.MultiIndex.from_frame(recent.astype(str))), index=cands.index)


def _in_campaign_elsewhere(cands: pd.DataFrame, contacts: pd.DataFrame, campaign_id: str) -> pd.Series:
    """True for rows whose customer was contacted in this campaign about another product."""
    if "campaign_id" not in contacts.columns or contacts.empty:
        return pd.Series(False, index=cands.index)
    same = contacts.loc[contacts["campaign_id"].astype(str) == campaign_id, ["customer_id", "product"]]
    products_by_customer = same.groupby(same["customer_id"].astype(str))["product"].agg(set)
    contacted = cands["customer_id"].astype(str).map(products_by_customer)
    return pd.Series(
        [isinstance(s, set) and bool(s - {p}) for s, p in zip(contacted, cands["product"], strict=True)],
        index=cands.index,
    )


def _capacity_by_manager(managers: pd.DataFrame) -> pd.Series:
    """manager_id -> capacity (float; NaN where the table leaves it empty)."""
    return managers.drop_duplicates("manager_id").set_index("manager_id")["capacity_per_month"].astype(float)


def _row_capacity(rows: pd.DataFrame, cap: pd.Series) -> pd.Series:
    """Capacity of each row's manager; inf when none is known."""
    unknown = rows["manager_id"].notna() & ~rows["manager_id"].isin(cap.index)
    if unknown.any():
        log.warning("policy: %d row(s) name a manager missing from the managers table; no capacity limit", unknown.sum())
    return rows["manager_id"].map(cap).astype(float).fillna(np.inf)


def _manager_floor(ctrl: pd.DataFrame, chosen: pd.DataFrame, cap: pd.Series) -> pd.Series:
    """For control rows: the propensity a treatment row of the same manager needed.

    A manager who reached capacity in ``chosen`` (or has capacity 0) sets a
    floor (his last chosen row's propensity; inf for capacity 0); others none.
    """
    per_mgr = chosen.groupby("manager_id")["propensity"].agg(["size", "min"])
    full = per_mgr.loc[per_mgr["size"] >= cap.reindex(per_mgr.index).fillna(np.inf), "min"]
    floors = pd.concat([full, pd.Series(np.inf, index=cap.index[cap == 0])])
    return ctrl["manager_id"].map(floors).astype(float).fillna(-np.inf)


def build_target_list(
    candidates: pd.DataFrame,
    contacts: pd.DataFrame,
    do_not_contact: Iterable[str],
    managers: pd.DataFrame,
    cfg: Config,
    *,
    list_date: date,
    campaign_id: str,
    top: int,
) -> pd.DataFrame:
    """Apply the contact policy (module docstring) and cut the target list.

    Args:
        candidates: scored candidates, one row per (customer, product), with
            columns ``customer_id, branch_id, manager_id, product, propensity``
            and optionally ``expected_value`` (else propensity × the product's
            value from ``cfg.products``); other columns are carried through.
        contacts: contact history ``customer_id, product, contact_date`` and
            optionally ``campaign_id`` (also ``channel, outcome``, unused).
        do_not_contact: customer ids never to contact.
        managers: ``manager_id, capacity_per_month`` (``branch_id`` unused).
        cfg: ``cfg.serving.contact_cooldown_days``, ``cfg.serving.control_share``
            and product values.
        list_date: the day the list is drawn (cool-down reference).
        campaign_id: the campaign (fixes the control group).
        top: number of treatment rows wanted (>= 1).

    Returns:
        The candidates' columns plus ``expected_value``, ``control`` (bool),
        ``no_manager`` (bool) and ``rank`` (Int64, 1..top for treatment, <NA>
        for control); treatment rows first by rank, then control rows by
        propensity. ``attrs["dropped"]`` counts the rows each rule removed.

    Raises:
        DataContractError: an input lacks a required column.
    """
    _require(candidates, CANDIDATE_COLUMNS, "candidates")
    _require(contacts, CONTACT_COLUMNS[:3], "contacts")
    _require(managers, MANAGER_COLUMNS, "managers")
    scfg = cfg.serving
    df = candidates.copy()
    df["expected_value"] = _expected_value(df, cfg)
    dropped: dict[str, int] = {}

    def _drop(mask: pd.Series, rule: str) -> None:
        nonlocal df
        dropped[rule] = int(mask.sum())
        df = df.loc[~mask]

    dnc = {str(c) for c in do_not_contact}
    _drop(df["customer_id"].astype(str).isin(dnc), "do_not_contact")
    _drop(_cooled_down(df, contacts, list_date, scfg.contact_cooldown_days), "cooldown")
    _drop(_in_campaign_elsewhere(df, contacts, campaign_id), "other_product_in_campaign")
    df = df.sort_values(["expected_value", "propensity", "customer_id"], ascending=[False, False, True], kind="stable")
    before = len(df)
    df = df.drop_duplicates("customer_id", keep="first")
    dropped["one_product_per_customer"] = before - len(df)

    df = df.sort_values(["propensity", "customer_id"], ascending=[False, True], kind="stable")
    df["control"] = control_flags(df["customer_id"], campaign_id, scfg.control_share)
    df["no_manager"] = df["manager_id"].isna()
    cap = _capacity_by_manager(managers)

    treat = df.loc[~df["control"]]
    slot = treat.groupby(treat["manager_id"].fillna("\x00")).cumcount()
    within = slot < _row_capacity(treat, cap)
    dropped["manager_capacity"] = int((~within).sum())
    chosen = treat.loc[within].head(top).copy()
    chosen["rank"] = pd.array(range(1, len(chosen) + 1), dtype="Int64")

    # Control rows that would have made the list (module docstring, rule 6).
    ctrl = df.loc[df["control"]].copy()
    floor = chosen["propensity"].min() if len(chosen) == top else -np.inf
    keep = (ctrl["propensity"] >= floor) & (ctrl["propensity"] >= _manager_floor(ctrl, chosen, cap))
    ctrl = ctrl.loc[keep]
    ctrl["rank"] = pd.array([pd.NA] * len(ctrl), dtype="Int64")

    out = pd.concat([chosen, ctrl])
    out.attrs["dropped"] = dropped
    log.info(
        "target list %s: %d treatment + %d control rows from %d candidates (dropped: %s)",
        campaign_id,
        len(chosen),
        len(ctrl),
        len(candidates),
        ", ".join(f"{k} {v}" for k, v in dropped.items()),
    )
    return out.reset_index(drop=True)
