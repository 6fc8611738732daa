"""What the service and ``nbp targets`` compute: hints for one customer, target lists.

:class:`Recommender` is loaded once (:meth:`Recommender.load`) and then answers
requests from memory plus the online feature store. It imports no BentoML:
``serving/service.py`` wraps it in HTTP, ``nbp targets`` calls
:meth:`Recommender.target_list` directly, so both share one code path.

What is loaded, and from where:

=====================  ==============================================================
champions              ``training.registry.load_champion`` per product; a product
                       without one is *degraded* (its hint says the model is
                       unavailable), the others still serve
online features        ``features.store.online_reader`` per request: one read per set
                       of columns (the services share them), resolved once at load;
                       a champion whose features are missing from the online store is
                       never served (503 with the missing names)
customers              ``customers`` table: ``branch_id``, ``manager_id``
holdings               ``training.labels.holds_active`` on the ``loans`` table at the
                       reference date (see :func:`reference_date`)
contacts               ``contacts`` table: the cool-down of the contact policy, a profile's last contacts
managers               ``managers`` table: capacity per month
do-not-contact         optional ``Workspace.do_not_contact``, one id a line
batch scores           ``Workspace.latest_scores``, written by ``nbp retrain``
                       or ``nbp score``: target lists and the percentile in a branch.
                       Used for a product only when its ``model_version`` is the
                       loaded champion's (else 503 with both versions)
=====================  ==============================================================
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.catalog import catalog_frame
from features.store import OnlineReader, online, online_reader, service_names
from features.tiers import FAMILY as TIER_FAMILY
from features.tiers import level_label
from features.tiers import months as built_months
from features.tiers import read as read_tiers
from nbp.campaigns import CampaignConflict, CampaignStore, ListParams, check_campaign_id
from nbp.config import Config, EligibilityRule
from nbp.errors import ConfigError, DataContractError, FeatureStoreError, ModelUnavailable, NbpError
from nbp.workspace import Workspace
from serving.errors import NotFound, Unavailable, Unprocessable, shown
from serving.policy import RANK_COLUMNS, TargetPolicy, default_campaign_id, percentile_among
from serving.reasons import Lang, ReasonCatalog, not_offered_reason
from serving.schemas import HintResponse, HintRow, validate_product, validate_top
from training.candidates import rule_holds
from training.dataset import loan_product
from training.labels import holds_active

if TYPE_CHECKING:  # training.model and training.registry import LightGBM and MLflow: loaded by load()
    from training.model import FittedModel

log = logging.getLogger(__name__)

LANGS = ("zh", "en")
_EMPTY = np.empty(0)
REASON_CHUNK = 500  # customers per online() call when reasons are computed in bulk
SERVING_THREADS = 1
"""LightGBM threads of every prediction in the service. LightGBM's thread count is one
process-wide setting that each call rewrites (docs/decisions/004-lightgbm-thread-count.md), and a predictor
sizes its per-thread buffers from it when it is built. The service predicts on several
threads at once (requests, and the reasons warmed in the background): a batch predictor
built while a request had set 1 thread, then run after another call had set 2, would index
a buffer it does not have. With one count for every call the setting never changes."""


def reference_date(ws: Workspace, today: date | None = None) -> date:
    """The day hints and lists refer to: today, but never after the day following the export.

    A loan or contact dated on the export date is known from the next day on; a
    workspace holding an old export is read as of that next day.

    Raises:
        FeatureStoreError: no export date recorded (nothing ingested).
    """
    exported = ws.export_date()
    if exported is None:
        raise FeatureStoreError(f"{ws.ingest_meta} missing: run `nbp ingest` first")
    day_after = exported + timedelta(days=1)
    return min(today or date.today(), day_after)


@dataclass
class ProductState:
    """One product as the service holds it."""

    key: str
    service: str
    model: FittedModel | None = None
    version: int | None = None
    problem: str | None = None  # why the product is not served (None: ready)
    skipped: dict[str, str] | None = None  # why the last training skipped it ({"zh", "en"}), if it did
    uplift_skipped: dict[str, str] | None = None  # why the last training skipped its uplift model, if it did
    scores: pd.DataFrame | None = None  # latest batch scores with branch/manager, if they match
    scores_problem: str | None = None  # why the batch scores cannot be used
    branch_scores: dict[str, np.ndarray] = field(default_factory=dict)  # branch -> sorted scores
    holders: frozenset[str] = frozenset()
    columns: tuple[str, ...] = ()  # what the online store returns for the service
    fast: HintPlan | None = None  # the per-request path, resolved once (ready products)

    @property
    def ready(self) -> bool:
        return self.model is not None and self.problem is None

    def ranking_problem(self, rank_by: str) -> str | None:
        """Why a list cannot be ranked by ``rank_by`` (None: it can); only uplift can be missing."""
        if rank_by != "uplift" or self.scores is None or self.scores["uplift"].notna().any():
            return None
        if self.uplift_skipped is not None:  # the training's own reason (too little randomised history)
            return (
                f"no uplift model of '{self.key}': {self.uplift_skipped['en']}; ranked by propensity / "
                f"暂无可用的营销增益模型：{self.uplift_skipped['zh']}；已按倾向分排序"
            )
        return (
            f"no uplift model of '{self.key}' has passed its gate (randomised campaigns with a closed horizon, "
            "a held-out Qini above campaigns.qini_floor; see `nbp train`); ranked by propensity / "
            "暂无可用的营销增益模型（随机对照营销历史不足或检验未通过），已按倾向分排序"
        )


_DOUBLE_P = ctypes.POINTER(ctypes.c_double)


class SingleRowContrib:
    """TreeSHAP contributions of one row through LightGBM's single-row fast path.

    ``Booster.predict(pred_contrib=True)`` builds a new predictor on every call: it parses
    the parameters and walks every tree again before predicting, which costs more than the
    prediction of one row. ``LGBM_BoosterPredictForMatSingleRowFastInit`` does that once;
    each call then only predicts. Same numbers as ``Booster.predict(m, pred_contrib=True,
    num_iteration=..., num_threads=1)`` (tests/serving/test_fast_path.py).

    Args:
        booster: the model's booster (numerical features only: no pandas categories).
        num_iteration: as ``Booster.predict``; <= 0 means every tree.
    """

    def __init__(self, booster: Any, num_iteration: int) -> None:
        from lightgbm.basic import _LIB, _safe_call

        self._lib, self._check = _LIB, _safe_call
        self._booster = booster  # keeps the handle alive as long as this object
        self.ncol = booster.num_feature()
        self.nout = (self.ncol + 1) * booster.num_model_per_iteration()  # per feature, then the bias
        self._handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(3),  # C_API_PREDICT_CONTRIB
                ctypes.c_int(0),
                ctypes.c_int(num_iteration if num_iteration and num_iteration > 0 else -1),
                ctypes.c_int(1),
                ctypes.c_int32(self.ncol),  # C_API_DTYPE_FLOAT64
                ctypes.c_char_p(f"num_threads={SERVING_THREADS}".encode()),
                ctypes.byref(self._handle),
            )
        )
        self._out_len = ctypes.c_int64(0)
        self._lock = threading.Lock()  # the fast config holds per-call state: one caller at a time

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Contributions of one float64 row of ``ncol`` values (features, then bias)."""
        x = np.ascontiguousarray(row, dtype=np.float64)
        if x.shape != (self.ncol,):
            raise ValueError(f"expected {self.ncol} features, got shape {x.shape}")
        out = np.empty(self.nout, dtype=np.float64)
        with self._lock:
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    ctypes.c_void_p(x.ctypes.data),
                    ctypes.byref(self._out_len),
                    ctypes.cast(out.ctypes.data, _DOUBLE_P),
                )
            )
            n = self._out_len.value
        if n != self.nout:
            raise ValueError(f"LightGBM returned {n} contributions, expected {self.nout}")
        return out

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._lib.LGBM_FastConfigFree(handle)


@dataclass(frozen=True)
class HintPlan:
    """What a hint for one product needs, resolved at load: indices instead of names.

    ``features`` picks the model's inputs out of the reader's row (None when the
    model has categorical columns: those go through ``FittedModel.matrix``);
    ``reason_names`` are the catalogue's features among the model's, sorted by name
    (ties), with their positions in the SHAP vector and in the row; ``rules`` are
    the eligibility rules with the position of their feature (None: not served).
    """

    reader: OnlineReader
    features: np.ndarray | None
    reason_names: tuple[str, ...]
    reason_contrib: np.ndarray
    reason_values: np.ndarray
    rules: tuple[tuple[EligibilityRule, int | None], ...]
    single_row: SingleRowContrib | None = None  # the fast TreeSHAP call (numerical models)

    @classmethod
    def build(
        cls, model: FittedModel, reader: OnlineReader, rules: Sequence[EligibilityRule], catalog: ReasonCatalog
    ) -> HintPlan:
        at = {c: j for j, c in enumerate(reader.columns)}
        feats = None if model.categories else np.array([at[f] for f in model.features], dtype=np.intp)
        names = sorted(f for f in set(model.features) if f in catalog)
        pos = {f: j for j, f in enumerate(model.features)}
        return cls(
            reader=reader,
            features=feats,
            reason_names=tuple(names),
            reason_contrib=np.array([pos[n] for n in names], dtype=np.intp),
            reason_values=np.array([at[n] for n in names], dtype=np.intp),
            rules=tuple((r, at.get(r.feature)) for r in rules),
            single_row=None if feats is None else SingleRowContrib(model.booster, model.best_iteration),
        )

    def contributions(self, model: FittedModel, row: np.ndarray) -> np.ndarray:
        """TreeSHAP contributions of one row (features, then bias), as ``FittedModel.contributions``."""
        if self.features is None:
            m = model.matrix(pd.DataFrame(row.reshape(1, -1), columns=list(self.reader.columns)))
        elif self.single_row is not None:
            return self.single_row(row[self.features])
        else:
            m = row[self.features].reshape(1, -1)
        return model.booster.predict(
            m, pred_contrib=True, num_iteration=model.best_iteration, num_threads=SERVING_THREADS
        )[0]


def failed_rules_at(row: np.ndarray, rules: Sequence[tuple[EligibilityRule, int | None]]) -> list[EligibilityRule]:
    """The rules one customer's online row fails: ``training.candidates.failed_rules`` on a numpy row.

    Each rule is decided by ``training.candidates.rule_holds``, the per-value form of
    ``rule_mask`` (the DataFrame form costs several times a whole hint). ``rules`` pairs
    each rule with the position of its feature in ``row``.

    Raises:
        ConfigError: a rule's feature is not in the row (position None), as ``rule_mask`` says it.
    """
    failed = []
    for rule, j in rules:
        if j is None:
            raise ConfigError(
                f"eligibility rule on unknown feature '{rule.feature}' (not in the product's feature service)"
            )
        if not rule_holds(float(row[j]), rule):
            failed.append(rule)
    return failed


def latest_tiers(ws: Workspace, ref: date) -> dict[str, int]:
    """Customer -> ``tier_level`` at the latest built month on or before ``ref`` (empty without a tier table)."""
    if not ws.feature_files(TIER_FAMILY):
        return {}
    months = [m for m in built_months(ws) if m <= ref]
    if not months:
        return {}
    t = read_tiers(ws, as_of=max(months)).dropna(subset=["tier_level"])
    return dict(zip(t["customer_id"].astype(str), t["tier_level"].astype(int), strict=True))


def _read_table(ws: Workspace, name: str, columns: Sequence[str]) -> pd.DataFrame:
    path = ws.table(name)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.read_parquet(path, columns=list(columns))


def missing_features(model_features: Sequence[str], online_columns: Sequence[str]) -> list[str]:
    """Features a model reads that the online store does not return."""
    have = set(online_columns)
    return [f for f in model_features if f not in have]


def percentile_of(sorted_scores: np.ndarray, p: float) -> float | None:
    """Percentile (0..100] of ``p`` among a branch's sorted batch scores (``policy.percentile_among``);
    None without scores or for a score that is not finite."""
    if len(sorted_scores) == 0 or not np.isfinite(p):
        return None
    return float(percentile_among(sorted_scores, p))


def list_from_issued(rows: pd.DataFrame) -> pd.DataFrame:
    """A stored list (:data:`nbp.campaigns.ISSUED_COLUMNS`) in the columns a target list answers with."""
    return pd.DataFrame(
        {
            "customer_id": rows["customer_id"].astype(str).to_numpy(),
            "branch_id": rows["branch_id"].to_numpy(object),
            "manager_id": rows["manager_id"].to_numpy(object),
            "product": rows["product"].astype(str).to_numpy(),
            "propensity": rows["score"].to_numpy(float),
            "uplift": rows["uplift"].to_numpy(float),
            "expected_value": rows["expected_value"].to_numpy(float),
            "control": (rows["arm"] == "control").to_numpy(),
            "no_manager": rows["manager_id"].isna().to_numpy(),
            "rank": pd.array(rows["rank"], dtype="Int64"),
        }
    )


class Recommender:
    """Hints and target lists over one bank's workspace (a member bank's: ``Workspace.for_bank``;
    see the module docstring). Every hint and list carries :attr:`bank`."""

    def __init__(
        self,
        cfg: Config,
        ws: Workspace,
        products: dict[str, ProductState],
        customers: pd.DataFrame,
        contacts: pd.DataFrame,
        managers: pd.DataFrame,
        do_not_contact: frozenset[str],
        ref_date: date,
        catalog: ReasonCatalog | None = None,
    ) -> None:
        self.cfg = cfg
        self.ws = ws
        self.bank = ws.bank or ws.recorded_bank()  # every hint and list carries it (None: none recorded)
        self.products = products
        self.customers = customers  # index customer_id; columns branch_id, manager_id
        self.contacts = contacts
        self.managers = managers
        self.do_not_contact = do_not_contact
        self.ref_date = ref_date
        self.catalog = catalog or ReasonCatalog(catalog_frame())
        self._recent = self._recent_contacts()
        b = customers["branch_id"]
        self._branch: dict[str, str | None] = {  # customer -> branch, for the per-request lookup
            str(c): None if pd.isna(v) else str(v) for c, v in zip(customers.index, b, strict=True)
        }
        self._reason_cache: dict[tuple[str, int, str, str], list[str]] = {}
        # what a list request may name (404 otherwise), and the contact policy per product, prepared once
        m = customers["manager_id"]
        self._branches = {str(v) for v in b.dropna()} | {str(v) for v in managers["branch_id"].dropna()}
        self._managers = {str(v) for v in m.dropna()} | {str(v) for v in managers["manager_id"].dropna()}
        both = b.notna() & m.notna()
        self._manager_branches = set(zip(b[both].astype(str), m[both].astype(str), strict=True))
        # manager -> branch: the managers table's (its first row), else the one branch of the manager's customers
        of_customers: dict[str, set[str]] = {}
        for branch, manager in self._manager_branches:
            of_customers.setdefault(manager, set()).add(branch)
        self._manager_branch = {k: next(iter(v)) for k, v in of_customers.items() if len(v) == 1}
        first = managers.assign(manager_id=managers["manager_id"].astype(str)).drop_duplicates("manager_id")
        for manager, branch in zip(first["manager_id"], first["branch_id"], strict=True):
            if not pd.isna(branch):
                self._manager_branch[manager] = str(branch)
        self._policies: dict[tuple[str, str], TargetPolicy] = {}
        self._policy_lock = threading.Lock()
        self.tier_levels: dict[str, int] = {}  # customer -> tier code of the latest built month (features/tiers.py)

    def tier_label(self, customer_id: str, lang: Lang = "zh") -> str | None:
        """The customer's value tier (e.g. 高端) at the latest built month; None when not built."""
        return level_label(self.cfg, self.tier_levels.get(str(customer_id)), lang)

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, cfg: Config, ws: Workspace, today: date | None = None) -> Recommender:
        """Load champions, tables and batch scores (module docstring).

        Raises:
            FeatureStoreError: the workspace has no ingested data.
        """
        from training.registry import load_champion, skip_of

        t0 = time.perf_counter()
        if not ws.table("customers").exists():
            raise FeatureStoreError(f"{ws.table('customers')} missing: run `nbp ingest` first")
        ref = reference_date(ws, today)
        customers = _read_table(ws, "customers", ["customer_id", "branch_id", "manager_id"])
        customers = customers.astype({"customer_id": str}).set_index("customer_id")
        loans = _read_table(ws, "loans", ["customer_id", "product", "grant_date", "end_date", "term_months"])
        contacts = _read_table(
            ws, "contacts", ["customer_id", "product", "contact_date", "channel", "outcome", "campaign_id"]
        )
        managers = _read_table(ws, "managers", ["manager_id", "branch_id", "capacity_per_month"])
        dnc_file = ws.do_not_contact
        dnc = (
            frozenset(
                line.strip()
                for line in dnc_file.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")
            )
            if dnc_file.exists()
            else frozenset()
        )
        scores = pd.read_parquet(ws.latest_scores) if ws.latest_scores.exists() else None
        names = service_names(cfg)
        catalog = ReasonCatalog(catalog_frame())
        ent = pd.DataFrame({"customer_id": customers.index, "as_of": pd.Timestamp(ref)})
        states: dict[str, ProductState] = {}
        for key, pc in cfg.products.items():
            st = ProductState(key=key, service=names[key])
            held = holds_active(ent, loans, loan_product(key, pc))
            st.holders = frozenset(ent.loc[held.to_numpy(), "customer_id"])
            try:
                st.model, st.version = load_champion(ws, key)
            except ModelUnavailable as e:
                st.problem = str(e)
                log.warning("%s: degraded: %s", key, e)
            st.skipped = skip_of(ws, key)
            st.uplift_skipped = skip_of(ws, f"{key}-uplift")  # training.uplift.uplift_key
            if st.model is not None:
                st.problem, st.columns = cls._check_online(cfg, ws, st, customers.index[:1])
            if st.model is not None and st.problem is None:
                st.fast = HintPlan.build(st.model, online_reader(cfg, ws, st.service), pc.eligibility, catalog)
            st.scores, st.scores_problem = cls._product_scores(ws, st, scores, customers)
            if st.scores is not None:
                st.branch_scores = {
                    b: np.sort(g["propensity"].dropna().to_numpy(float))
                    for b, g in st.scores.groupby(st.scores["branch_id"].fillna(""))
                }
            states[key] = st
        rec = cls(cfg, ws, states, customers, contacts, managers, dnc, ref, catalog)
        rec.tier_levels = latest_tiers(ws, ref)
        for key, st in states.items():  # the first list request of a product finds its policy ready
            if st.ready and st.scores is not None:
                rec.target_policy(key)
        log.info(
            "serving: %d customers, products ready: %s; degraded: %s; loaded in %.1f s",
            len(customers),
            ", ".join(k for k, s in states.items() if s.ready) or "none",
            ", ".join(k for k, s in states.items() if not s.ready) or "none",
            time.perf_counter() - t0,
        )
        return rec

    @staticmethod
    def _check_online(
        cfg: Config, ws: Workspace, st: ProductState, probe_ids: Sequence[str]
    ) -> tuple[str | None, tuple[str, ...]]:
        """Why the champion cannot be served from the online store (None: it can), and the store's columns."""
        from training.registry import model_name

        try:
            cols = tuple(online(cfg, ws, list(probe_ids) or ["-"], st.service).columns)
        except FeatureStoreError as e:
            return str(e), ()
        missing = missing_features(st.model.features if st.model else [], cols)
        if missing:
            return (
                f"{model_name(st.key, ws.bank)} v{st.version}: {len(missing)} feature(s) missing from the online store "
                f"(service {st.service}): {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; "
                f"run `nbp features` or retrain"
            ), cols
        return None, cols

    @staticmethod
    def _product_scores(
        ws: Workspace, st: ProductState, scores: pd.DataFrame | None, customers: pd.DataFrame
    ) -> tuple[pd.DataFrame | None, str | None]:
        if scores is None:
            return None, (
                f"no batch scores at {ws.latest_scores}; run `nbp retrain` "
                f"(or `nbp score --as-of T --out {ws.latest_scores}`)"
            )
        mine = scores[scores["product"] == st.key]
        if mine.empty:
            return None, f"{ws.latest_scores} holds no scores for '{st.key}'; run `nbp score` again"
        latest = mine["as_of"].max()
        mine = mine[mine["as_of"] == latest]
        versions = sorted({int(v) for v in mine["model_version"]})
        if st.version is None or versions != [st.version]:
            return None, (
                f"batch scores of '{st.key}' ({ws.latest_scores}, as-of {latest:%Y-%m-%d}) come from model "
                f"version {', '.join(map(str, versions))}, the loaded champion is "
                f"{st.version if st.version is not None else 'missing'}; run `nbp score` again"
            )
        out = pd.DataFrame(
            {
                "customer_id": mine["customer_id"].astype(str).to_numpy(),
                "product": st.key,
                "propensity": mine["score"].astype(float).to_numpy(),
                # the modelled effect of a contact, where an uplift champion scored it (NaN: none)
                "uplift": mine["uplift"].astype(float).to_numpy() if "uplift" in mine else np.nan,
            }
        )
        out = out.join(customers, on="customer_id")
        out["as_of"] = latest
        return out, None

    def _recent_contacts(self) -> set[tuple[str, str]]:
        """(customer, product) pairs contacted within the cool-down before the reference date."""
        days = self.cfg.serving.contact_cooldown_days
        c = self.contacts
        if days <= 0 or c.empty:
            return set()
        since = (pd.Timestamp(self.ref_date) - pd.to_datetime(c["contact_date"])).dt.days
        recent = c.loc[(since >= 0) & (since < days)]
        return set(zip(recent["customer_id"].astype(str), recent["product"].astype(str), strict=True))

    # ----------------------------------------------------------------------------- status
    def readiness(self) -> dict:
        """Which products serve hints and lists, and why the others do not; each product's drift
        flags of the last retrain (``training.drift``), with the report's date and model version."""
        report = self._drift_report()
        drift = report.get("products", {})
        out = {
            "ready": any(s.ready for s in self.products.values()),
            "reference_date": self.ref_date.isoformat(),
            "products": {
                k: {
                    "ready": s.ready,
                    "model_version": s.version,
                    "problem": s.problem,
                    "skipped": s.skipped,
                    "target_lists": s.ready and s.scores is not None,
                    "scores_problem": s.scores_problem,
                    "drift_flags": drift.get(k, {}).get("flags", []),
                    "drift_model_version": drift.get(k, {}).get("model_version"),
                }
                for k, s in self.products.items()
            },
        }
        if report:
            out["drift_report_date"] = report.get("written_at")
        return out

    def _drift_report(self) -> dict:
        """The last retrain's drift report (``training.drift.read_report``; read on every call, so a
        retrain's flags show without a restart); empty without one."""
        from training.drift import read_report

        return read_report(self.ws) or {}

    def public_readiness(self) -> dict:
        """:meth:`readiness` for anyone who asks (``/readyz`` without an admin token).

        Per product: whether hints and lists are served and, if not, a short code (and the
        training's skip reason, written for staff) and the names and values of the last retrain's
        drift flags; never a path, a version or an error's text (those are for the admin, and the log).
        """

        def code(s: ProductState) -> str:
            if s.model is None:
                return "skipped" if s.skipped else "no_model"
            if s.problem is not None:
                return "features_unavailable"
            return "ready" if s.scores is not None else "no_current_scores"

        drift = self._drift_report().get("products", {})

        def entry(k: str, s: ProductState) -> dict:
            out = {"ready": s.ready, "target_lists": s.ready and s.scores is not None, "status": code(s)}
            if s.model is None and s.skipped:  # training's reason, written for staff
                out["skipped"] = s.skipped
            flags = drift.get(k, {}).get("flags")
            if flags:  # the last retrain's drift flags: names and values only
                out["drift_flags"] = [{"name": f["name"], "value": f["value"]} for f in flags]
            return out

        return {
            "ready": any(s.ready for s in self.products.values()),
            "products": {k: entry(k, s) for k, s in self.products.items()},
        }

    def manager_branch(self, manager_id: str) -> str | None:
        """The branch of a manager: the managers table's, else the one branch of the manager's
        customers; None when unknown or ambiguous."""
        return self._manager_branch.get(manager_id)

    def branch_of(self, customer_id: str) -> str | None:
        """The customer's branch.

        Raises:
            NotFound: unknown customer.
        """
        try:
            return self._branch[customer_id]
        except (KeyError, TypeError):
            raise NotFound(f"customer '{shown(customer_id)}' is not in the customers table of this workspace") from None

    # ----------------------------------------------------------------------------- hints
    def _features(self, ids: Sequence[str], service: str) -> pd.DataFrame:
        try:
            return online(self.cfg, self.ws, list(ids), service)
        except FeatureStoreError as e:
            raise Unavailable(str(e)) from e

    def hints(self, customer_id: str, lang: Lang = "zh") -> HintResponse:
        """The customer's products, best expected value first; not-offered ones last, each with why.

        Raises:
            NotFound: unknown customer.
            Unprocessable: unknown language.
            Unavailable: no product can be served, the online store fails, or it holds
                nothing for the customer.
        """
        if lang not in LANGS:
            raise Unprocessable(f"unknown lang '{shown(lang)}'; use zh or en")
        branch = self.branch_of(customer_id)
        if not any(st.ready for st in self.products.values()):
            raise Unavailable(
                "no product can be served: " + "; ".join(f"{k}: {st.problem}" for k, st in self.products.items())
            )
        rows_by_cols: dict[tuple[str, ...], np.ndarray] = {}  # services with the same columns: one read
        rows = [self._hint_row(key, st, customer_id, branch, lang, rows_by_cols) for key, st in self.products.items()]
        rows.sort(
            key=lambda r: (
                r.reason_not_offered is not None,
                r.propensity is None,
                -(r.expected_value or 0.0),
                r.product,
            )
        )
        return HintResponse(
            customer_id=customer_id,
            bank_code=self.bank,
            lang=lang,
            products=rows,
            tier=self.tier_label(customer_id, lang),
        )

    def _hint_row(
        self,
        key: str,
        st: ProductState,
        customer_id: str,
        branch: str | None,
        lang: Lang,
        rows_by_cols: dict[tuple[str, ...], np.ndarray],
    ) -> HintRow:
        """One product's row of a hint: scored with reasons, or not offered and why.

        ``rows_by_cols`` holds the customer's online rows already read in this request, by columns.
        """
        pc = self.cfg.products[key]
        p = pct = None
        reasons: list[str] = []
        if not st.ready or st.fast is None:
            why = not_offered_reason("model_unavailable", lang)
            if st.model is None and st.skipped:  # training skipped it: staff see why
                why += ("：" if lang == "zh" else ": ") + st.skipped[lang]
            elif lang == "en" and st.problem:
                why += f" ({st.problem[:160]})"
        else:
            plan = st.fast
            cols = plan.reader.columns
            if cols not in rows_by_cols:
                rows_by_cols[cols] = self._row(plan.reader, customer_id, st.service)
            x = rows_by_cols[cols]
            contrib = plan.contributions(st.model, x)  # type: ignore[arg-type]
            # TreeSHAP contributions sum to the raw score: one booster pass gives both
            p = float(st.model.calibrator.predict(np.array([contrib.sum()]))[0])  # type: ignore[union-attr]
            pct = percentile_of(st.branch_scores.get(branch or "", _EMPTY), p) if st.scores is not None else None
            why = self._not_offered(key, customer_id, x, lang)
            if why is None:  # a product not offered shows why, never reasons to offer it
                reasons = self.catalog.top_reasons_at(
                    plan.reason_names, contrib[plan.reason_contrib], x[plan.reason_values], lang
                )
        return HintRow(
            customer_id=customer_id,
            branch_id=branch,
            product=key,
            product_name=pc.name_zh if lang == "zh" else pc.name_en,
            propensity=p,
            expected_value=None if p is None else p * pc.value,
            percentile_in_branch=pct,
            eligible=why is None,
            reason_not_offered=why,
            reasons=reasons,
        )

    def _row(self, reader: OnlineReader, customer_id: str, service: str) -> np.ndarray:
        """The customer's online feature row (float64, ``reader.columns``).

        Raises:
            Unavailable: the store cannot be read, or holds nothing for the customer.
        """
        try:
            x = reader.read([customer_id])[0]
        except FeatureStoreError as e:
            raise Unavailable(str(e)) from e
        if np.isnan(x).all():
            raise Unavailable(
                f"customer '{customer_id}' has no features in the online store (service "
                f"{service}); run `nbp features` after the next ingest"
            )
        return x

    def _not_offered(self, key: str, customer_id: str, row: np.ndarray, lang: Lang) -> str | None:
        """Why the product is not offered to the customer (``row``: the customer's online features)."""
        if customer_id in self.products[key].holders:
            return not_offered_reason("held", lang)
        if customer_id in self.do_not_contact:
            return not_offered_reason("do_not_contact", lang)
        plan = self.products[key].fast
        assert plan is not None
        failed = failed_rules_at(row, plan.rules)
        if failed:
            texts = [r.zh if lang == "zh" else r.en for r in failed]
            return f"{not_offered_reason('not_eligible', lang)}{'：' if lang == 'zh' else ': '}" + (
                "；" if lang == "zh" else "; "
            ).join(texts)
        if (customer_id, key) in self._recent:
            days = self.cfg.serving.contact_cooldown_days
            return not_offered_reason("contacted_recently", lang) + (
                f"（{days}天内）" if lang == "zh" else f" (within {days} days)"
            )
        return None

    # ----------------------------------------------------------------------------- target lists
    def target_list(
        self,
        product: str,
        branch_id: str | None = None,
        manager_id: str | None = None,
        top: int = 100,
        campaign_id: str | None = None,
        lang: Lang = "zh",
        rank_by: str = "propensity",
    ) -> pd.DataFrame:
        """A target list: the latest batch scores through the contact policy, with reasons.

        Every list is remembered in the bank's campaign store (:mod:`nbp.campaigns`): asking
        again for a list of the same campaign with the same parameters returns the stored
        list (same customers, ranks and arms), whatever the scores are now.

        Args:
            product: product key.
            branch_id: only this branch's customers (None: all).
            manager_id: only this manager's customers (None: all).
            top: treatment rows wanted, 1..``serving.max_top``.
            campaign_id: fixes the control group (default ``<product>-<YYYYMM>``).
            lang: language of the reasons.
            rank_by: ``propensity``, ``uplift`` (without an uplift champion: propensity, and
                ``attrs["rank_by_note"]`` says why) or ``value`` (expected value).

        Returns:
            Columns ``customer_id, branch_id, manager_id, product, propensity, uplift,
            expected_value, control, no_manager, rank``, ``reasons`` (list of sentences) and
            ``tier`` (the customer's value tier in ``lang``, None when not built), led by
            ``bank_code`` (:attr:`bank`); treatment rows by rank, then control rows.
            ``attrs`` carries ``campaign_id``, ``list_date``, ``bank_code``, ``rank_by`` (the
            ranking used), ``rank_by_note`` (why it differs from the one asked, else None),
            ``issued_at`` and ``reissued`` (True: the stored list of an earlier request).

        Raises:
            Unprocessable: unknown product, language or ranking, ``top`` out of range, or a
                campaign id issued for another product.
            Unavailable: no champion, features missing online, or batch scores from
                another model version.
        """
        validate_product(product, self.cfg.products)
        validate_top(top, self.cfg.serving.max_top)
        if lang not in LANGS:
            raise Unprocessable(f"unknown lang '{shown(lang)}'; use zh or en")
        if rank_by not in RANK_COLUMNS:
            raise Unprocessable(f"unknown ranking '{shown(rank_by)}'; use {', '.join(RANK_COLUMNS)}")
        self.check_scope(branch_id, manager_id)
        st = self.products[product]
        if not st.ready:
            if st.model is None and st.skipped:
                raise Unavailable(
                    f"product '{product}' has no model: the last training skipped it: "
                    f"{st.skipped['en']} / 模型暂不可用：{st.skipped['zh']}"
                )
            raise Unavailable(f"product '{product}' is not served: {st.problem}")
        if st.scores is None:
            raise Unavailable(f"product '{product}': {st.scores_problem}")
        note = st.ranking_problem(rank_by)
        used = "propensity" if note else rank_by
        campaign = campaign_id or default_campaign_id(product, self.ref_date)
        try:
            check_campaign_id(campaign)
        except DataContractError as e:
            raise Unprocessable(str(e)) from e
        params = ListParams(product, branch_id, manager_id, top, used)
        store = self.campaign_store
        stored = store.lookup(campaign, params)
        new = stored is None
        if stored is None:
            policy = self.target_policy(product, used)
            drawn = policy.draw(campaign, top, policy.rows(branch_id, manager_id))
            try:
                stored, new = store.issue(
                    campaign,
                    params,
                    drawn.assign(score=drawn["propensity"], arm=np.where(drawn["control"], "control", "treatment")),
                    list_date=self.ref_date,
                    model_version=st.version,
                )
            except CampaignConflict as e:
                raise Unprocessable(str(e)) from e
        out = list_from_issued(stored)
        out["reasons"] = self.reasons_for(product, out["customer_id"].tolist(), lang)
        out["tier"] = [self.tier_label(c, lang) for c in out["customer_id"].astype(str)]
        out.insert(0, "bank_code", self.bank)
        out.attrs.update(
            campaign_id=campaign,
            list_date=stored["list_date"].iloc[0].date().isoformat() if len(stored) else self.ref_date.isoformat(),
            bank_code=self.bank,
            rank_by=str(stored["rank_by"].iloc[0]) if len(stored) else used,
            rank_by_note=note,
            issued_at=stored["issued_at"].iloc[0].isoformat() if len(stored) else None,
            reissued=not new,
        )
        return out

    @property
    def campaign_store(self) -> CampaignStore:
        """The bank's issued campaigns (``Workspace.campaigns_dir``)."""
        return CampaignStore(self.ws.campaigns_dir, self.bank)

    def check_scope(self, branch_id: str | None, manager_id: str | None) -> None:
        """Refuse a list request about a branch or manager this workspace does not know.

        Raises:
            NotFound: the branch is in neither the customers nor the managers table, the
                manager likewise, or the manager has no customer in the branch.
        """
        if branch_id is not None and branch_id not in self._branches:
            raise NotFound(f"branch '{shown(branch_id)}' is in neither the customers nor the managers table")
        if manager_id is not None and manager_id not in self._managers:
            raise NotFound(f"manager '{shown(manager_id)}' is in neither the customers nor the managers table")
        if branch_id is not None and manager_id is not None and (branch_id, manager_id) not in self._manager_branches:
            raise NotFound(f"manager '{shown(manager_id)}' has no customer in branch '{shown(branch_id)}'")

    def knows_branch(self, branch_id: str) -> bool:
        """Whether the branch is in this bank's customers or managers table."""
        return branch_id in self._branches

    def knows_manager(self, manager_id: str) -> bool:
        """Whether the manager is in this bank's customers or managers table."""
        return manager_id in self._managers

    def target_policy(self, product: str, rank_by: str = "propensity") -> TargetPolicy:
        """The product's contact policy over its batch scores, holders left out (prepared once per ranking)."""
        with self._policy_lock:
            policy = self._policies.get((product, rank_by))
            if policy is None:
                st = self.products[product]
                if st.scores is None:
                    raise Unavailable(f"product '{product}': {st.scores_problem}")
                cands = st.scores[~st.scores["customer_id"].isin(st.holders)]
                policy = TargetPolicy(
                    cands,
                    self.contacts,
                    self.do_not_contact,
                    self.managers,
                    self.cfg,
                    list_date=self.ref_date,
                    rank_by=rank_by,
                )
                self._policies[(product, rank_by)] = policy
            return policy

    def reasons_for(self, product: str, customer_ids: Sequence[str], lang: Lang = "zh") -> list[list[str]]:
        """Top reasons of many customers for one product (cached per model version and language)."""
        st = self.products[product]
        if st.model is None or st.version is None:
            return [[] for _ in customer_ids]
        todo = [c for c in dict.fromkeys(customer_ids) if (product, st.version, lang, c) not in self._reason_cache]
        for i in range(0, len(todo), REASON_CHUNK):
            chunk = todo[i : i + REASON_CHUNK]
            x = self._features(chunk, st.service).set_index("customer_id", drop=False)
            contrib = st.model.contributions(x, num_threads=SERVING_THREADS)
            for cid, reasons in self.catalog.reasons_for_frame(contrib, x, lang).items():
                self._reason_cache[(product, st.version, lang, str(cid))] = reasons
        return [self._reason_cache.get((product, st.version, lang, c), []) for c in customer_ids]

    def warm_reasons(self, lang: Lang = "zh") -> int:
        """Compute the reasons of every batch-scored customer ahead of requests.

        Returns:
            How many (product, customer) reasons were computed.
        """
        n = 0
        for key, st in self.products.items():
            if st.ready and st.scores is not None:
                try:
                    n += len(self.reasons_for(key, st.scores["customer_id"].tolist(), lang))
                except NbpError as e:
                    log.warning("%s: reasons not warmed: %s", key, e)
        return n
