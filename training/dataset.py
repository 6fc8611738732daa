"""Point-in-time training sets: entities, labels, candidates, features from Feast.

For product P and as-of dates T1..Tn the rows are (customer_id, as_of) for every
customer whose relationship began before T (``open_date < T``), minus holders of
an active P loan at T; the label follows the spec (``training.labels``). Negatives
may be down-sampled *before* the feature retrieval (that is where the cost is),
with a compensating ``weight`` so probabilities stay calibrated. Features come
only from Feast's point-in-time join (``features.store.historical``); the
product's eligibility rules are then applied to those same feature values.

Most known customers are not candidates of a given product (business-flow: merchants
only), and the retrieval costs per row. So rows are first *screened* (:class:`Screen`):
the rule features stored at exactly each row's as-of date, read straight from the
feature tables, drop the rows that certainly fail a rule; the negatives of what
remains are down-sampled to ``training.max_rows``, retrieved from Feast, and the rules
applied again to the retrieved values. Where the feature table holds exactly one row
at (customer, T), Feast's point-in-time join returns that row, so the screen never
drops a row that the rules would keep (tested against the one-step path).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nbp.config import Config, EligibilityRule, ProductConfig
from nbp.errors import FeatureStoreError
from nbp.workspace import Workspace
from training.candidates import eligible, rule_mask
from training.labels import holds_active, label

log = logging.getLogger(__name__)

KEYS = ["customer_id", "as_of"]
META = ["customer_id", "as_of", "label", "weight", "_cust"]


def closed_as_ofs(as_ofs: list[pd.Timestamp], cutoff: pd.Timestamp, horizon_days: int) -> list[pd.Timestamp]:
    """The as-of dates whose label window (T, T+H] closed before ``cutoff``."""
    h = pd.Timedelta(days=horizon_days)
    return [t for t in as_ofs if t + h < cutoff]


def loan_product(key: str, pc: ProductConfig) -> str:
    """The value of ``loans.product`` that counts as uptake of this product."""
    return pc.loan_product or key


def feature_service(key: str, pc: ProductConfig) -> str:
    """The Feast feature service a product's model reads."""
    return pc.feature_service or f"{key}_v1"


def entity_rows(
    customers: pd.DataFrame,
    loans: pd.DataFrame,
    product: str,
    as_ofs: list[pd.Timestamp],
    horizon_days: int | None,
    screen: tuple[Screen, list[EligibilityRule]] | None = None,
) -> pd.DataFrame:
    """Candidate rows before eligibility: known customers minus active holders.

    Args:
        customers: ingested customers (``customer_id``, ``open_date``).
        loans: ingested loans.
        product: ``loans.product`` value.
        as_ofs: as-of dates.
        horizon_days: label horizon; ``None`` leaves the label out (scoring).
        screen: a :class:`Screen` and the product's rules: rows it excludes are dropped first.

    Returns:
        Columns ``customer_id``, ``as_of`` and, with a horizon, ``label``.
    """
    ent = base_rows(customers, as_ofs)
    if screen is not None:  # first drop what the screen excludes: holdings and labels cost per row
        n0 = len(ent)
        ent = ent[screen[0].keep(ent, screen[1])]
        log.info("%s: %s of %s (customer, as-of) rows pass the eligibility screen", product, f"{len(ent):,}", f"{n0:,}")
    ent = ent[~holds_active(ent, loans, product).to_numpy()].reset_index(drop=True)
    if horizon_days is not None:
        ent["label"] = label(ent, loans, product, horizon_days).to_numpy()
    return ent


def base_rows(customers: pd.DataFrame, as_ofs: list[pd.Timestamp]) -> pd.DataFrame:
    """Every (customer, as-of) with ``open_date < T``: ``customer_id``, ``as_of`` and
    ``_cust``, the customer's position in ``customers`` (the :class:`Screen`'s index)."""
    parts = []
    for t in as_ofs:
        pos = np.flatnonzero((customers["open_date"] < t).to_numpy())
        parts.append(pd.DataFrame({"customer_id": customers["customer_id"].to_numpy()[pos], "as_of": t, "_cust": pos}))
    ent = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*KEYS, "_cust"])
    ent["as_of"] = ent["as_of"].astype("datetime64[us]")
    return ent


class Screen:
    """The rule features of every (customer, as-of), as stored at exactly that as-of.

    Built once (one read of the feature tables per family, :func:`features.store.exact_grid`)
    and shared by every product and window of a job. :meth:`keep` is true unless a rule
    certainly fails: its feature's table holds exactly one row at (customer, T) and
    that value fails the rule. Where it says nothing (no row at T), the retrieval decides.
    """

    def __init__(
        self, ws: Workspace, customers: pd.DataFrame, as_ofs: list[pd.Timestamp], rules: list[EligibilityRule]
    ) -> None:
        from features import store

        self.as_ofs = {pd.Timestamp(t): i for i, t in enumerate(sorted(set(as_ofs)))}
        names = sorted({r.feature for r in rules})
        grids = (
            store.exact_grid(ws, customers["customer_id"].astype(str).tolist(), list(self.as_ofs), names)
            if names
            else {}
        )
        self.values = {n: v for n, (v, _) in grids.items()}
        self.found = {n: f for n, (_, f) in grids.items()}

    def keep(self, ent: pd.DataFrame, rules: list[EligibilityRule]) -> np.ndarray:
        """Rows of ``ent`` (with ``as_of`` and ``_cust``) that no rule certainly excludes."""
        missing = sorted({pd.Timestamp(t) for t in ent["as_of"].unique()} - set(self.as_ofs))
        if missing:
            raise ValueError(f"screen built without as-of date(s) {missing[:3]}")
        ti = ent["as_of"].map(self.as_ofs).to_numpy()
        ci = ent["_cust"].to_numpy()
        keep = np.ones(len(ent), dtype=bool)
        for r in rules:
            if r.feature not in self.values:
                raise ValueError(f"screen built without the rule feature '{r.feature}'")
            v = pd.DataFrame({r.feature: self.values[r.feature][ti, ci]})
            fails = ~rule_mask(v, r).to_numpy()
            keep &= ~(fails & self.found[r.feature][ti, ci])
        return keep


def screen_for(
    cfg: Config, ws: Workspace, customers: pd.DataFrame, as_ofs: list[pd.Timestamp], products: list[str] | None = None
) -> Screen:
    """One :class:`Screen` for the rules of ``products`` (default: all) over ``as_ofs``."""
    rules = [r for k in (products or list(cfg.products)) for r in cfg.products[k].eligibility]
    return Screen(ws, customers, as_ofs, rules)


def capped_rate(ent: pd.DataFrame, rate: float, max_rows: int) -> float:
    """The share of negatives to keep so that at most ``max_rows`` rows remain (every
    positive kept), and never more than ``rate``."""
    neg = int((ent["label"] == 0).sum())
    pos = len(ent) - neg
    if len(ent) <= max_rows or neg == 0:
        return rate
    return min(rate, max(max_rows - pos, 1) / neg)


def downsample(ent: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    """Keep every positive and a ``rate`` share of negatives, weighted 1/rate."""
    if rate >= 1.0:
        return ent.assign(weight=1.0)
    rng = np.random.default_rng(seed)
    keep = (ent["label"] == 1) | (rng.random(len(ent)) < rate)
    out = ent[keep].copy()
    out["weight"] = np.where(out["label"] == 1, 1.0, 1.0 / rate)
    return out.reset_index(drop=True)


def with_features(cfg: Config, ws: Workspace, ent: pd.DataFrame, service: str) -> pd.DataFrame:
    """Join point-in-time features from Feast onto entity rows (row count checked)."""
    return with_features_many(cfg, ws, [(ent, service)])[0]


def read_base(ws: Workspace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ingested ``customers`` (id, open date) and ``loans`` tables that entity rows need."""
    customers = pd.read_parquet(ws.table("customers"), columns=["customer_id", "open_date"])
    return customers, pd.read_parquet(ws.table("loans"))


def historical_services(cfg: Config, ws: Workspace, ent: pd.DataFrame, services: list[str]) -> pd.DataFrame:
    """Point-in-time features of several feature services for the rows ``ent[KEYS]``, one retrieval.

    Returns:
        ``customer_id``, ``as_of`` and the union of the services' features, one row per
        row of ``ent`` (rows must be unique).
    """
    from features import store

    req = ent[KEYS].rename(columns={"as_of": "event_timestamp"})
    got = store.historical_union(cfg, ws, req, services)
    if len(got) != len(ent):
        raise FeatureStoreError(f"feature services {services}: asked {len(ent)} rows, got {len(got)}")
    got.columns = ["as_of" if c == "event_timestamp" else c for c in got.columns]  # no copy, unlike rename
    got["as_of"] = got["as_of"].astype("datetime64[us]")
    return got


def candidate_rows(
    cfg: Config,
    ws: Workspace,
    key: str,
    as_ofs: list[pd.Timestamp],
    negative_rate: float = 1.0,
    seed: int = 7,
    screen: Screen | None = None,
    base: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    max_rows: int | None = None,
) -> pd.DataFrame:
    """The rows of one product that the retrieval will be asked for (no features yet).

    Entity rows (:func:`entity_rows`) that pass the eligibility screen, negatives kept
    at ``negative_rate`` and, beyond ``max_rows`` rows, fewer (every positive kept,
    kept negatives weighted ``1/rate``).

    Args:
        screen: a :class:`Screen` covering ``as_ofs`` and the product's rules, shared
            between products and windows (default: one built for this call).
        base: ``(customers, loans)`` as :func:`read_base` gives (default: read here).
        max_rows: row budget (``None``: no budget).

    Returns:
        Columns ``customer_id``, ``as_of``, ``label``, ``weight``.
    """
    pc = cfg.products[key]
    customers, loans = base or read_base(ws)
    screen = screen or screen_for(cfg, ws, customers, as_ofs, [key])
    ent = entity_rows(
        customers, loans, loan_product(key, pc), as_ofs, cfg.training.horizon_days, (screen, pc.eligibility)
    )
    rate = capped_rate(ent, negative_rate, max_rows) if max_rows else negative_rate
    if rate < negative_rate:
        log.info(
            "%s: %s rows > training.max_rows %s: negatives kept at %.4f (weights 1/rate)",
            key,
            f"{len(ent):,}",
            f"{max_rows:,}",
            rate,
        )
    return downsample(ent.drop(columns="_cust"), rate, seed)


def open_feature_store(cfg: Config, ws: Workspace) -> None:
    """Import Feast and create the workspace's FeatureStore now.

    Training jobs call it before their pandas and DuckDB work: Feast imported after that
    work leaves gigabytes the process never gets back
    (``docs/decisions/005-feast-import-first.md``).
    """
    from features import store

    store.get_store(cfg, ws)


def union_keys(frames: list[pd.DataFrame]) -> tuple[np.ndarray, pd.DataFrame]:
    """The distinct (customer, as-of) rows of several frames, for one retrieval.

    Returns:
        Each row's entity row (its position in the distinct rows, all frames' rows in order) and
        the distinct rows in first-appearance order (``as_of`` in µs, like Parquet).
    """
    keys = pd.concat([f[KEYS] for f in frames], ignore_index=True)
    keys["as_of"] = keys["as_of"].astype("datetime64[us]")
    code = keys.groupby(KEYS, sort=False).ngroup().to_numpy()
    return code, keys.drop_duplicates(KEYS).reset_index(drop=True)  # row i is group i


def with_features_many(cfg: Config, ws: Workspace, parts: list[tuple[pd.DataFrame, str]]) -> list[pd.DataFrame]:
    """Features for several entity frames, each with its feature service, in one retrieval.

    A retrieval reads the feature tables whatever the number of rows, so one call for
    the union of the rows (and of the services' features) is cheaper than one per frame.

    Returns:
        One frame per part: its columns, then its service's features.
    """
    from features import store

    if not parts:
        return []
    code, uniq = union_keys([p for p, _ in parts])
    got = historical_services(cfg, ws, uniq, list(dict.fromkeys(s for _, s in parts)))
    if not (
        (got["customer_id"].astype(str).to_numpy() == uniq["customer_id"].astype(str).to_numpy()).all()
        and (got["as_of"].to_numpy() == uniq["as_of"].to_numpy()).all()
    ):
        got = uniq.merge(got, on=KEYS, how="left", validate="one_to_one")
    names = [c for c in got.columns if c not in KEYS]
    matrix = got[names].to_numpy(dtype="float64")  # once: every part takes its rows and columns from it
    where = {c: j for j, c in enumerate(names)}
    out, at = [], 0
    for ent, service in parts:
        cols = [c for c in store.service_features(cfg, ws, service) if c not in ent.columns]
        take = code[at : at + len(ent)]
        at += len(ent)
        feats = pd.DataFrame(matrix[np.ix_(take, [where[c] for c in cols])], columns=cols)
        base = ent.reset_index(drop=True).assign(as_of=ent["as_of"].astype("datetime64[us]").to_numpy())
        out.append(pd.concat([base, feats], axis=1))
    return out


def training_sets(
    cfg: Config,
    ws: Workspace,
    requests: list[tuple[str, list[pd.Timestamp], float, int | None]],
    screen: Screen | None = None,
    base: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    seed: int = 7,
) -> list[pd.DataFrame]:
    """Point-in-time training sets of several (product, as-of dates) requests, one retrieval.

    Args:
        requests: ``(product, as_ofs, negative_rate, max_rows)`` each.
        screen: shared :class:`Screen` (default: one for every request's dates and rules).
        base: ``(customers, loans)``.

    Returns:
        One frame per request: ``customer_id``, ``as_of``, ``label``, ``weight`` and every
        feature of the product's feature service; eligible candidates only.
    """
    base = base or read_base(ws)
    if screen is None:
        dates = sorted({t for _, ofs, _, _ in requests for t in ofs})
        screen = screen_for(cfg, ws, base[0], dates, list(dict.fromkeys(k for k, _, _, _ in requests)))
    ents = [candidate_rows(cfg, ws, key, ofs, rate, seed, screen, base, cap) for key, ofs, rate, cap in requests]
    dfs = with_features_many(
        cfg,
        ws,
        [(e, feature_service(key, cfg.products[key])) for e, (key, _, _, _) in zip(ents, requests, strict=True)],
    )
    out = []
    for df, (key, ofs, _, _) in zip(dfs, requests, strict=True):
        ok = eligible(df, cfg.products[key].eligibility).to_numpy()
        if not ok.all():
            log.info(
                "%s: %d screened rows fail the rules on retrieved features (no row at their as-of)",
                key,
                int((~ok).sum()),
            )
        df = df[ok].reset_index(drop=True)
        log.info("%s: %d rows over %d as-of dates, %d uptakes", key, len(df), len(ofs), int(df["label"].sum()))
        out.append(df)
    return out


def training_set(
    cfg: Config, ws: Workspace, key: str, as_ofs: list[pd.Timestamp], negative_rate: float = 1.0
) -> pd.DataFrame:
    """:func:`training_sets` for one product and window, without a screen or a row budget."""
    return training_sets(cfg, ws, [(key, as_ofs, negative_rate, None)])[0]


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Feature columns of a training set (everything but keys, label, weight)."""
    return [c for c in df.columns if c not in META]
