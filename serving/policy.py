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
6. **Top N.** The first ``top`` treatment rows by the ranking key are ranked
   1..top. The key is ``rank_by``: propensity (the default), ``uplift`` (the
   modelled effect of a contact on uptake; a row without one comes last) or
   ``value`` (the expected value). Control rows do not count towards ``top`` and get no rank: the list
   also carries the held-out customers who would have made it, i.e. whose
   ranking key is at least the last treatment row's, and (for a manager whose
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
# what a list can be ranked by -> the candidates' column holding it (value: the expected value)
RANK_COLUMNS = {"propensity": "propensity", "uplift": "uplift", "value": "expected_value"}


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataContractError(
            f"{what}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})"
        )


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
    prefix = _campaign_prefix(campaign_id)
    u = np.fromiter((_draw(prefix, c) for c in customer_ids), dtype=float, count=len(customer_ids))
    return pd.Series(u < share, index=customer_ids.index, name="control")


def _campaign_prefix(campaign_id: str) -> bytes:
    return f"{campaign_id}\x1f".encode()


def _draw(prefix: bytes, customer_id: object) -> float:
    """The customer's uniform draw in [0, 1) for the campaign whose prefix is given."""
    digest = hashlib.blake2b(prefix + str(customer_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def percentile_among(sorted_scores: np.ndarray, values: np.ndarray | float) -> np.ndarray:
    """The percentile (0..100] of each value among ``sorted_scores`` (ascending, no NaN): the share
    of scores at or below it, × 100. The one definition behind :func:`percentile_in_branch` and the
    percentile of a ``/hints`` answer (``serving.engine.percentile_of``)."""
    return np.searchsorted(sorted_scores, values, side="right") / len(sorted_scores) * 100.0


def percentile_in_branch(scores: pd.DataFrame) -> pd.Series:
    """Each row's propensity percentile among its branch's candidates.

    Args:
        scores: columns ``branch_id``, ``propensity`` and, if present,
            ``product`` (percentiles are then per branch and product).

    Returns:
        Float Series on ``scores``' index, 0 < p <= 100 (:func:`percentile_among`
        within the row's group; the branch's best customer gets 100), NaN for a row
        without a propensity. Rows without a branch form one group.
    """
    _require(scores, ("branch_id", "propensity"), "scores")
    keys = [scores["branch_id"].fillna("").astype(str)]
    if "product" in scores.columns:
        keys.append(scores["product"].astype(str))
    pct = scores["propensity"].astype(float).groupby(keys).transform(_group_percentile)
    return pct.rename("percentile_in_branch")


def _group_percentile(group: pd.Series) -> pd.Series:
    values = group.to_numpy()
    known = ~np.isnan(values)
    out = np.full(len(values), np.nan)
    if known.any():
        out[known] = percentile_among(np.sort(values[known]), values[known])
    return pd.Series(out, index=group.index)


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


def _capacity_by_manager(managers: pd.DataFrame) -> pd.Series:
    """manager_id -> capacity (float; NaN where the table leaves it empty)."""
    return managers.drop_duplicates("manager_id").set_index("manager_id")["capacity_per_month"].astype(float)


def _row_capacity(rows: pd.DataFrame, cap: pd.Series) -> pd.Series:
    """Capacity of each row's manager; inf when none is known."""
    unknown = rows["manager_id"].notna() & ~rows["manager_id"].isin(cap.index)
    if unknown.any():
        log.warning(
            "policy: %d row(s) name a manager missing from the managers table; no capacity limit", unknown.sum()
        )
    return rows["manager_id"].map(cap).astype(float).fillna(np.inf)


class TargetPolicy:
    """The contact policy (module docstring) prepared once for a set of scored candidates.

    What does not depend on the request is done here, once: the expected values, the
    do-not-contact and cool-down masks (they refer to ``list_date``), the ranking by
    propensity, each row's manager capacity, the contacts of each campaign, and the
    rows of each branch and manager. :meth:`draw` then cuts one list in numpy, and
    draws the control group only for the rows it walks through (the list's rows and
    the control rows that would have made it), not for every candidate: a list of
    500 from 200,000 candidates hashes about 600 ids.

    Args:
        candidates, contacts, do_not_contact, managers, cfg, list_date: as
            :func:`build_target_list`.

    Raises:
        DataContractError: an input lacks a required column.
    """

    def __init__(
        self,
        candidates: pd.DataFrame,
        contacts: pd.DataFrame,
        do_not_contact: Iterable[str],
        managers: pd.DataFrame,
        cfg: Config,
        *,
        list_date: date,
        rank_by: str = "propensity",
    ) -> None:
        _require(candidates, CANDIDATE_COLUMNS, "candidates")
        if rank_by not in RANK_COLUMNS:
            raise ValueError(f"rank_by must be one of {', '.join(RANK_COLUMNS)}, got {rank_by!r}")
        if rank_by == "uplift":
            _require(candidates, ("uplift",), "candidates")
        self.rank_by = rank_by
        _require(contacts, CONTACT_COLUMNS[:3], "contacts")
        _require(managers, MANAGER_COLUMNS, "managers")
        self.share = cfg.serving.control_share
        df = candidates.reset_index(drop=True)
        self.frame = df
        ev = _expected_value(df, cfg).to_numpy(float)
        cid = df["customer_id"].astype(str).to_numpy(object)
        # rows in list order: the ranking key down (a missing key last), then customer id, then input order
        key = ev if rank_by == "value" else df[RANK_COLUMNS[rank_by]].to_numpy(float)
        key = np.where(np.isnan(key), -np.inf, key)
        codes, uniq = pd.factorize(cid, sort=True)
        order = np.lexsort((np.arange(len(df)), codes, -key))
        self.order = order
        self.cid = cid[order]
        self.cid_code = codes[order]
        self.rank_key = key[order]  # the ranking key: the list's order, its ties and each manager's cut
        self.ev = ev[order]
        self.product = df["product"].astype(str).to_numpy(object)[order]
        mgr = df["manager_id"]
        self.manager = mgr.to_numpy(object)[order]
        self.no_manager = mgr.isna().to_numpy()[order]
        self.capacity = _row_capacity(df, _capacity_by_manager(managers)).to_numpy(float)[order]
        # hash lookups throughout: numpy's isin on object arrays compares every pair
        self.dnc = pd.Series(self.cid).isin({str(c) for c in do_not_contact}).to_numpy()
        self.cooled = _cooled_down(df, contacts, list_date, cfg.serving.contact_cooldown_days).to_numpy()[order]
        self.unique_customers = len(uniq) == len(df)
        self.n_customers = len(uniq)
        products = pd.Index(sorted(set(self.product) | set(contacts["product"].astype(str))))
        self._n_products = max(len(products), 1)
        self.prod_code = products.get_indexer(self.product).astype(np.int64)
        # campaign -> its contacts of known customers as sorted unique keys customer code × products + product code
        self._campaigns: dict[str, np.ndarray] = {}
        if "campaign_id" in contacts.columns and not contacts.empty:
            c = contacts.dropna(subset=["campaign_id"])
            cust = pd.Index(uniq).get_indexer(c["customer_id"].astype(str))
            known = cust >= 0
            keys = (
                cust[known].astype(np.int64) * self._n_products + products.get_indexer(c["product"].astype(str))[known]
            )
            camps = c["campaign_id"].astype(str).to_numpy()[known]
            for name, k in pd.Series(keys).groupby(camps):
                self._campaigns[str(name)] = np.unique(k.to_numpy())
        self._rows_of: dict[str, dict[str, np.ndarray]] = {}
        for col in ("branch_id", "manager_id"):
            keys = df[col].to_numpy(object)[order]
            known = pd.notna(keys)
            codes_k, names = pd.factorize(keys[known].astype(str))
            pos = np.flatnonzero(known)[np.argsort(codes_k, kind="stable")]  # ascending within each key
            parts = np.split(pos, np.cumsum(np.bincount(codes_k, minlength=len(names)))[:-1])
            self._rows_of[col] = {str(k): p.astype(np.intp) for k, p in zip(names, parts[: len(names)], strict=True)}

    def rows(self, branch_id: str | None = None, manager_id: str | None = None) -> np.ndarray:
        """Positions (in list order) of the candidates of a branch and/or a manager (None: any)."""
        out: np.ndarray | None = None
        for col, key in (("branch_id", branch_id), ("manager_id", manager_id)):
            if key is None:
                continue
            hit = self._rows_of[col].get(str(key), np.empty(0, dtype=np.intp))
            out = hit if out is None else np.intersect1d(out, hit, assume_unique=True)
        return np.arange(len(self.cid), dtype=np.intp) if out is None else out

    def draw(self, campaign_id: str, top: int, rows: np.ndarray | None = None) -> pd.DataFrame:
        """One target list of the candidates at ``rows`` (:meth:`rows`; None: all).

        Returns:
            As :func:`build_target_list`.
        """
        if top < 1:
            raise ValueError(f"top must be at least 1, got {top}")
        sel = np.arange(len(self.cid), dtype=np.intp) if rows is None else np.asarray(rows, dtype=np.intp)
        dropped: dict[str, int] = {}
        gone = self.dnc[sel]
        dropped["do_not_contact"] = int(gone.sum())
        sel = sel[~gone]
        gone = self.cooled[sel]
        dropped["cooldown"] = int(gone.sum())
        sel = sel[~gone]
        pairs = self._campaigns.get(str(campaign_id))
        gone = np.zeros(len(sel), dtype=bool)
        if pairs is not None and len(sel):  # contacted in this campaign about a product other than the row's
            products_of = np.bincount(pairs // self._n_products, minlength=self.n_customers)
            cust = self.cid_code[sel].astype(np.int64)
            same = np.isin(cust * self._n_products + self.prod_code[sel], pairs)
            gone = products_of[cust] - same > 0
        dropped["other_product_in_campaign"] = int(gone.sum())
        sel = sel[~gone]
        before = len(sel)
        if not self.unique_customers and len(sel):  # best expected value per customer, then back in list order
            by_ev = np.lexsort((self.order[sel], self.cid_code[sel], -self.rank_key[sel], -self.ev[sel]))
            _, first = np.unique(self.cid_code[sel][by_ev], return_index=True)
            sel = np.sort(sel[by_ev[first]])
        dropped["one_product_per_customer"] = before - len(sel)

        prefix = _campaign_prefix(campaign_id)
        chosen: list[int] = []
        ctrl: list[int] = []
        used: dict[object, int] = {}  # manager -> treatment rows given
        last: dict[object, float] = {}  # manager -> propensity of its last treatment row
        passed_over = 0
        floor = -np.inf
        for k in sel.tolist():
            if len(chosen) == top:
                floor = self.rank_key[chosen[-1]]
                if not self.rank_key[k] >= floor:  # ties with the last row still come along as control
                    break
            if _draw(prefix, self.cid[k]) < self.share:
                ctrl.append(k)
                continue
            if len(chosen) == top:
                continue
            m = None if self.no_manager[k] else self.manager[k]
            if used.get(m, 0) < self.capacity[k]:
                chosen.append(k)
                used[m] = used.get(m, 0) + 1
                last[m] = self.rank_key[k]
            else:
                passed_over += 1
        dropped["manager_capacity"] = passed_over
        # control rows of a manager who reached capacity need that manager's last treatment propensity
        keep = []
        for k in ctrl:
            m = None if self.no_manager[k] else self.manager[k]
            if not self.rank_key[k] >= floor:
                continue
            if m is not None and self.capacity[k] <= used.get(m, 0) and not self.rank_key[k] >= last.get(m, np.inf):
                continue
            keep.append(k)
        return self._frame(np.array(chosen, dtype=np.intp), np.array(keep, dtype=np.intp), dropped, campaign_id)

    def _frame(self, chosen: np.ndarray, ctrl: np.ndarray, dropped: dict[str, int], campaign_id: str) -> pd.DataFrame:
        idx = np.concatenate([chosen, ctrl])
        out = self.frame.take(self.order[idx]).reset_index(drop=True)
        out["expected_value"] = self.ev[idx]
        out["control"] = np.arange(len(idx)) >= len(chosen)
        out["no_manager"] = self.no_manager[idx]
        out["rank"] = pd.array(list(range(1, len(chosen) + 1)) + [pd.NA] * len(ctrl), dtype="Int64")
        out.attrs["dropped"] = dropped
        log.info(
            "target list %s: %d treatment + %d control rows from %d candidates (dropped: %s)",
            campaign_id,
            len(chosen),
            len(ctrl),
            len(self.cid),
            ", ".join(f"{k} {v}" for k, v in dropped.items()),
        )
        return out


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

    One call of :class:`TargetPolicy`; the service prepares the policy once per
    product and draws each request's list from it.

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
        propensity. ``attrs["dropped"]`` counts the rows each rule removed
        (``manager_capacity``: the treatment rows passed over because their
        manager was full, before the list was complete).

    Raises:
        DataContractError: an input lacks a required column.
    """
    policy = TargetPolicy(candidates, contacts, do_not_contact, managers, cfg, list_date=list_date)
    return policy.draw(campaign_id, top)
