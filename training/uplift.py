"""Uplift models: per product, what a contact changes in the probability of uptake.

Learned only from randomised campaigns (issued lists with a control arm, and a bank's own
campaigns imported with ``nbp campaign import``), where the arm was drawn at random, so the
difference between arms is the effect of being put in the treatment arm (intent to treat:
the arm, not whether the customer was reached).

Training rows (:func:`campaign_rows`, :func:`campaign_sets`): each customer's first row per
campaign whose horizon closed (latest list date + ``training.horizon_days`` on or before the
cutoff); features through the product's Feast feature service at the latest feature as-of on
or before the list date; label = a loan of the product granted in (list date, list date +
horizon] (:func:`training.labels.label`); customers holding the product at the list date or
failing its eligibility rules are left out, as scoring leaves them out.

Model (:func:`fit_uplift`): a T-learner (one LightGBM per arm, uplift = p1 - p0), an
S-learner (one LightGBM over both arms with the arm as an input, uplift = f(x, 1) - f(x, 0):
the baseline is learned from every row, which matters when an arm holds a few dozen uptakes)
or an X-learner (Künzel et al. 2019: each arm's observed outcomes against the other arm's
model, two regressions of those imputed effects, combined by the treated share). Settings, rounds and
the learner are chosen on the latest fitting campaign (out of time, fitted on the campaigns whose
label windows closed before its list date; with a single fitting campaign, on a random quarter of
it). Judged on the latest ``campaigns.uplift_test_campaigns`` closed campaigns, fitted on the
campaigns whose label windows closed before them (:func:`split_campaigns`), by the Qini
coefficient and AUUC (:mod:`training.uplift_metrics`); champion
only when that Qini exceeds ``campaigns.qini_floor``, then refitted on every closed campaign.
Registered as ``nbp-<product>-uplift`` (``nbp-<bank>-<product>-uplift`` in a federation).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from bankexport.spec import BANK_COLUMN
from features.catalog import BANK_FEATURES
from nbp.campaigns import CampaignStore, first_issue
from nbp.config import Config
from nbp.errors import ModelUnavailable
from nbp.workspace import Workspace
from training import registry
from training.candidates import eligible
from training.dataset import KEYS, closed_as_ofs, feature_service, loan_product, read_base, with_features_many
from training.labels import holds_active, label
from training.model import category_mapping, encode
from training.pipeline import ProductResult, Skip
from training.setting_search import SearchPlan
from training.setting_search import plan as plan_search
from training.uplift_metrics import auuc, qini_coefficient

log = logging.getLogger(__name__)

TREATED = "treated"
TAG_ROWS = "nbp.uplift_rows"  # rows_fingerprint() of the rows the model was fitted and judged on
ROW_COLUMNS = ["campaign_id", "customer_id", "list_date", TREATED]
# Modest settings for a few thousand rows per arm and rare uptakes; the grid is walked on the
# validation campaign (out of time), never on the held-out test campaigns.
BASE = {
    "learning_rate": 0.05,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "max_bin": 255,
    "verbosity": -1,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
}
GRID = (
    {"num_leaves": 4, "min_child_samples": 400, "feature_fraction": 0.5},
    {"num_leaves": 7, "min_child_samples": 200},
    {"num_leaves": 15, "min_child_samples": 100},
)
MAX_ROUNDS = 500
EARLY_STOP = 50
LEARNERS = ("t", "s", "x")  # in order of preference when the validation Qinis tie


def uplift_key(product: str) -> str:
    """The registry key of a product's uplift model: ``registry.model_name`` makes it
    ``nbp-<product>-uplift`` (``nbp-<bank>-<product>-uplift`` for a member bank)."""
    return f"{product}-uplift"


# ---------------------------------------------------------------- training rows
def campaign_rows(cfg: Config, ws: Workspace, product: str, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """The randomised campaigns of ``product`` whose horizon closed by ``cutoff``.

    A campaign counts as randomised when both arms hold customers. Each customer's first
    issued row per campaign (:func:`nbp.campaigns.first_issue`).

    Returns:
        ``(rows, randomised)``: rows ``campaign_id, customer_id, list_date, treated`` of the
        closed campaigns, and the number of randomised campaigns of the product (closed or not).
    """
    store = CampaignStore(ws.campaigns_dir, ws.bank)
    ids = [r["campaign_id"] for r in store.campaigns() if r["product"] == product]
    if not ids:
        return pd.DataFrame(columns=ROW_COLUMNS), 0
    rows = first_issue(store.issued(ids))
    arms = rows.groupby("campaign_id")["arm"].nunique()
    rows = rows[rows["campaign_id"].isin(arms.index[arms == 2])]
    last = pd.to_datetime(rows.groupby("campaign_id")["list_date"].transform("max"))
    closed = last + pd.Timedelta(days=cfg.training.horizon_days) <= cutoff
    out = rows.loc[closed.to_numpy(), ["campaign_id", "customer_id", "list_date"]].reset_index(drop=True)
    out[TREATED] = (rows.loc[closed.to_numpy(), "arm"] == "treatment").to_numpy(int)
    out["customer_id"] = out["customer_id"].astype(str)
    out["list_date"] = pd.to_datetime(out["list_date"]).astype("datetime64[us]")
    return out, int((arms == 2).sum())


def campaign_order(rows: pd.DataFrame) -> list[str]:
    """Campaign ids, oldest list date first (ties by id)."""
    first = rows.groupby("campaign_id")["list_date"].min().reset_index()
    return first.sort_values(["list_date", "campaign_id"])["campaign_id"].tolist()


def closed_before(rows: pd.DataFrame, ids: list[str], start: pd.Timestamp, horizon_days: int | None) -> list[str]:
    """The campaigns of ``ids`` whose every list's label window closed before ``start`` (all of them
    without a horizon): their uptakes cannot be uptakes of rows listed from ``start`` on."""
    if horizon_days is None:
        return list(ids)
    last = pd.to_datetime(rows.groupby("campaign_id")["list_date"].max())
    closed = set(closed_as_ofs(list(last[list(ids)]), start, horizon_days))
    return [c for c in ids if last[c] in closed]


def split_campaigns(rows: pd.DataFrame, n_test: int, horizon_days: int | None = None) -> tuple[list[str], list[str]]:
    """Fitting and held-out campaigns of ``rows``: the latest ``n_test`` (:func:`campaign_order`) are
    held out, and fit only the earlier ones whose label windows closed before the first held-out
    list (``horizon_days``; None: every earlier one). A campaign listed within the horizon before it
    shares uptakes with it, for the same customers (``docs/decisions/030-the-gate-window-embargo.md``).
    """
    order = campaign_order(rows)
    if n_test < 1 or len(order) <= n_test:
        return [], order
    test = order[-n_test:]
    start = pd.to_datetime(rows.loc[rows["campaign_id"].isin(test), "list_date"]).min()
    return closed_before(rows, order[:-n_test], start, horizon_days), test


def campaign_sets(
    cfg: Config, ws: Workspace, parts: dict[str, pd.DataFrame], feature_as_ofs: list[pd.Timestamp]
) -> dict[str, pd.DataFrame]:
    """Point-in-time training rows of several products' campaign rows, one Feast retrieval.

    Args:
        parts: per product, :func:`campaign_rows`' rows.
        feature_as_ofs: the as-of dates the feature build covers, ascending.

    Returns:
        Per product: ``campaign_id, customer_id, list_date, treated, as_of`` (the feature
        as-of), ``label`` and the product's features; candidates only (not holding the
        product at the list date, eligible on the retrieved features).
    """
    customers, loans = read_base(ws)
    grid = np.array(sorted(pd.Timestamp(t) for t in feature_as_ofs), dtype="datetime64[us]")
    ents = {}
    for key, rows in parts.items():
        lp, h = loan_product(key, cfg.products[key]), cfg.training.horizon_days
        at = rows[["customer_id", "list_date"]].rename(columns={"list_date": "as_of"})
        held = holds_active(at, loans, lp).to_numpy()
        ent = rows.assign(label=label(at, loans, lp, h).to_numpy())
        pos = np.searchsorted(grid, ent["list_date"].to_numpy("datetime64[us]"), side="right") - 1
        keep = ~held & (pos >= 0)
        if (pos < 0).any():
            log.warning("%s: %d campaign rows precede the first feature as-of: left out", key, int((pos < 0).sum()))
        ent = ent[keep].reset_index(drop=True)
        ent["as_of"] = grid[pos[keep]]
        ents[key] = ent
    dfs = with_features_many(cfg, ws, [(e, feature_service(k, cfg.products[k])) for k, e in ents.items()])
    out = {}
    for (key, ent), df in zip(ents.items(), dfs, strict=True):
        ok = eligible(df, cfg.products[key].eligibility).to_numpy()
        out[key] = df[ok].reset_index(drop=True)
        log.info(
            "%s: uplift rows %d of %d campaign rows (%d held the product, %d ineligible)",
            key,
            int(ok.sum()),
            len(parts[key]),
            len(parts[key]) - len(ent),
            int((~ok).sum()),
        )
    return out


def feature_names(df: pd.DataFrame) -> list[str]:
    """The model inputs of a campaign set: everything but its keys, label and arm, and no bank feature."""
    skip = {*ROW_COLUMNS, *KEYS, "label", BANK_COLUMN, *BANK_FEATURES}
    return [c for c in df.columns if c not in skip]


# ---------------------------------------------------------------- the learner
@dataclass(frozen=True)
class Choice:
    """What the validation campaign chose: the learner, each booster's setting and rounds."""

    learner: str  # "t", "s" or "x"
    outcome: tuple[dict, dict] | None  # T and X: (control, treated) setting with "rounds"
    pooled: dict | None = None  # S: the setting with "rounds" of the one booster over both arms
    effect: tuple[dict, dict] | None = None  # X-learner: (from control, from treated) setting with "rounds"
    validation: dict[str, float] = field(default_factory=dict)  # Qini of each learner on the validation rows


@dataclass
class UpliftModel:
    """A fitted uplift model; picklable (boosters pickle as their model strings).

    ``uplift`` is the estimate p(uptake | contact) - p(uptake | no contact) per row;
    ``predict_proba`` is p(uptake | contact) (what the MLflow pyfunc returns).
    """

    features: list[str]
    categories: dict[str, list[str]]
    choice: Choice
    control: lgb.Booster | None
    treated: lgb.Booster | None
    pooled: lgb.Booster | None = None
    effect_control: lgb.Booster | None = None
    effect_treated: lgb.Booster | None = None
    treated_share: float = 0.5
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        c = self.choice
        return {
            "learner": c.learner,
            "outcome": list(c.outcome or ()),
            "pooled": c.pooled,
            "effect": list(c.effect or ()),
        }

    def outcomes(self, df: pd.DataFrame, num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(p0, p1): probability of uptake without and with contact, per row."""
        x = encode(df, self.features, self.categories)
        if self.pooled is not None:
            return tuple(self.pooled.predict(_with_arm(x, a), num_threads=num_threads) for a in (0, 1))
        return (self.control.predict(x, num_threads=num_threads), self.treated.predict(x, num_threads=num_threads))

    def predict_proba(self, df: pd.DataFrame, num_threads: int = 1) -> np.ndarray:
        """p(uptake | contact), per row."""
        return self.outcomes(df, num_threads)[1]

    def uplift(self, df: pd.DataFrame, num_threads: int = 1) -> np.ndarray:
        """The estimated effect of a contact on the probability of uptake, per row."""
        if self.choice.learner in ("t", "s"):
            p0, p1 = self.outcomes(df, num_threads)
            return p1 - p0
        x = encode(df, self.features, self.categories)
        t0 = self.effect_control.predict(x, num_threads=num_threads)
        t1 = self.effect_treated.predict(x, num_threads=num_threads)
        return self.treated_share * t0 + (1 - self.treated_share) * t1


def _with_arm(x: np.ndarray, arm: int | np.ndarray) -> np.ndarray:
    """The feature matrix with the arm (0 control, 1 treatment) as its last column: the S-learner's input."""
    return np.c_[x, np.broadcast_to(np.asarray(arm, dtype=float), (len(x),))]


def _train(
    x: np.ndarray,
    y: np.ndarray,
    setting: dict,
    objective: str,
    valid: tuple[np.ndarray, np.ndarray] | None,
    cat: list[int],
    rounds: int | None = None,
) -> lgb.Booster:
    params = BASE | {k: v for k, v in setting.items() if k != "rounds"} | {"objective": objective, "num_threads": 1}
    ds = lgb.Dataset(x, y, categorical_feature=cat, free_raw_data=False)
    if valid is None:
        return lgb.train(params, ds, num_boost_round=rounds or setting["rounds"])
    vs = lgb.Dataset(valid[0], valid[1], reference=ds, categorical_feature=cat)
    return lgb.train(
        params,
        ds,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[vs],
        callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)],
    )


def _best(
    x: np.ndarray,
    y: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    objective: str,
    cat: list[int],
    grid: tuple[dict, ...] = GRID,
) -> tuple[dict, lgb.Booster]:
    """The setting of ``grid`` with the lowest validation loss (and its booster), rounds early-stopped."""
    best = None
    for setting in grid:
        b = _train(x, y, setting, objective, (vx, vy), cat)
        loss = next(iter(b.best_score["valid_0"].values()))
        if best is None or loss < best[0]:
            bare = {k: v for k, v in setting.items() if k != "rounds"}
            best = (loss, bare | {"rounds": max(int(b.best_iteration), 1)}, b)
    return best[1], best[2]


def validation_split(
    rows: pd.DataFrame, horizon_days: int | None = None, seed: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the rows that fit and the rows that validate: the latest campaign of ``rows``
    validates, the campaigns whose label windows closed before it fit (:func:`split_campaigns`);
    with one campaign, or none closed before the latest, a random quarter of every row validates."""
    fit_ids, val_ids = split_campaigns(rows, 1, horizon_days)
    if fit_ids:
        return rows["campaign_id"].isin(fit_ids).to_numpy(), rows["campaign_id"].isin(val_ids).to_numpy()
    val = np.random.default_rng(seed).random(len(rows)) < 0.25
    return ~val, val


def choose(
    rows: pd.DataFrame,
    features: list[str],
    categories: dict[str, list[str]],
    reuse: Choice | None = None,
    horizon_days: int | None = None,
) -> Choice:
    """Settings, rounds and learner, fitted and judged on the two parts of :func:`validation_split`
    (``horizon_days``: the label horizon between them).

    With ``reuse`` (a champion's choice, :func:`reused_choice`), only its learner's boosters are
    fitted, each with its setting and the rounds early-stopped again: the same choice the full
    search makes whenever it keeps that learner and those settings. Without, every setting of
    :data:`GRID` for every booster of every learner of :data:`LEARNERS`.
    """
    learners = LEARNERS if reuse is None else (reuse.learner,)
    fit, val = validation_split(rows, horizon_days)
    x = encode(rows, features, categories)
    y, t = rows["label"].to_numpy(float), rows[TREATED].to_numpy(int)
    cat = [i for i, f in enumerate(features) if f in categories]
    arm = [(fit & (t == a), val & (t == a)) for a in (0, 1)]

    def grid(settings: tuple[dict, dict] | dict | None, a: int | None = None) -> tuple[dict, ...]:
        if reuse is None:
            return GRID
        return ((settings[a] if a is not None else settings),)

    score, outcome, effect, pooled = {}, None, None, None
    if "t" in learners or "x" in learners:
        (s0, m0), (s1, m1) = (
            _best(x[f], y[f], x[v], y[v], "binary", cat, grid(reuse and reuse.outcome, a))
            for a, (f, v) in enumerate(arm)
        )
        outcome = (s0, s1)
        p0, p1 = m0.predict(x, num_threads=1), m1.predict(x, num_threads=1)
        score["t"] = p1 - p0
    if "x" in learners:
        # X-learner: each arm's outcome against the other arm's model, regressed on the features
        d = np.where(t == 1, y - p0, p1 - y)
        eff = [
            _best(x[f], d[f], x[v], d[v], "regression", cat, grid(reuse and reuse.effect, a))
            for a, (f, v) in enumerate(arm)
        ]
        effect = (eff[0][0], eff[1][0])
        share = float(t[fit].mean())
        score["x"] = share * eff[0][1].predict(x, num_threads=1) + (1 - share) * eff[1][1].predict(x, num_threads=1)
    if "s" in learners:
        xs = _with_arm(x, t)
        pooled, ms = _best(xs[fit], y[fit], xs[val], y[val], "binary", cat, grid(reuse and reuse.pooled))
        score["s"] = ms.predict(_with_arm(x, 1), num_threads=1) - ms.predict(_with_arm(x, 0), num_threads=1)
    q = {k: float(qini_coefficient(y[val], t[val], score[k][val])) for k in learners}
    learner = max(learners, key=lambda k: (q[k], -LEARNERS.index(k)))
    if learner == "s":
        return Choice("s", None, pooled, validation=q)
    return Choice(learner, outcome, None, effect if learner == "x" else None, q)


def choice_setting(choice: Choice) -> dict[str, Any]:
    """What the monthly job reuses of ``choice``: its learner and each booster's member of :data:`GRID`
    (rounds left out: they are early-stopped again), recorded as the run's setting tag."""

    def bare(s: dict | None) -> dict | None:
        return None if s is None else {k: v for k, v in s.items() if k != "rounds"}

    return {
        "learner": choice.learner,
        "outcome": None if choice.outcome is None else [bare(s) for s in choice.outcome],
        "pooled": bare(choice.pooled),
        "effect": None if choice.effect is None else [bare(s) for s in choice.effect],
    }


def choice_member(text: str | None) -> dict[str, Any] | None:
    """The recorded :func:`choice_setting` ``text`` when it is one this code can fit again (a learner of
    :data:`LEARNERS` with each of its boosters' settings in :data:`GRID`); None otherwise."""
    import json

    from training.setting_search import setting_text

    try:
        got = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(got, dict) or got.get("learner") not in LEARNERS:
        return None
    members = {setting_text(g) for g in GRID}

    def ok(s: Any) -> bool:
        return isinstance(s, dict) and setting_text(s) in members

    def pair(s: Any) -> bool:
        return isinstance(s, list) and len(s) == 2 and all(ok(v) for v in s)

    need = {"t": ("outcome",), "x": ("outcome", "effect"), "s": ("pooled",)}[got["learner"]]
    for part in need:
        if not (ok(got.get(part)) if part == "pooled" else pair(got.get(part))):
            return None
    return {k: got.get(k) for k in ("learner", "outcome", "pooled", "effect")}


def reused_choice(setting: dict[str, Any]) -> Choice:
    """:func:`choice_member`'s setting as the choice :func:`choose` fits again."""

    def pair(s: list[dict] | None) -> tuple[dict, dict] | None:
        return None if s is None else (dict(s[0]), dict(s[1]))

    return Choice(setting["learner"], pair(setting["outcome"]), setting["pooled"], pair(setting["effect"]))


def search_fingerprint(cfg: Config, product: str, features: list[str]) -> str:
    """A hash of what shapes the choice of ``product``'s uplift model: :data:`BASE`, :data:`GRID`,
    rounds, learners, the held-out campaigns, the horizon, the product's rules and feature
    service, the sorted features and LightGBM's version."""
    shaped = {
        "base": BASE,
        "grid": [dict(g) for g in GRID],
        "rounds": [MAX_ROUNDS, EARLY_STOP],
        "learners": list(LEARNERS),
        "test_campaigns": cfg.campaigns.uplift_test_campaigns,
        "horizon": cfg.training.horizon_days,
        "product": cfg.products[product].model_dump(include={"loan_product", "feature_service", "eligibility"}),
        "features": sorted(features),
        "lightgbm": lgb.__version__,
    }
    text = json.dumps(shaped, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fit_with(rows: pd.DataFrame, features: list[str], choice: Choice) -> UpliftModel:
    """Fit ``choice`` on every row of ``rows`` (its settings and rounds, no early stopping)."""
    categories = category_mapping(rows, features)
    x = encode(rows, features, categories)
    y, t = rows["label"].to_numpy(float), rows[TREATED].to_numpy(int)
    cat = [i for i, f in enumerate(features) if f in categories]
    share = float(t.mean())
    m0 = m1 = pooled = e0 = e1 = None
    if choice.learner == "s":
        pooled = _train(_with_arm(x, t), y, choice.pooled, "binary", None, cat)
    else:
        m0 = _train(x[t == 0], y[t == 0], choice.outcome[0], "binary", None, cat)
        m1 = _train(x[t == 1], y[t == 1], choice.outcome[1], "binary", None, cat)
    if choice.learner == "x":
        d = np.where(t == 1, y - m0.predict(x, num_threads=1), m1.predict(x, num_threads=1) - y)
        e0 = _train(x[t == 0], d[t == 0], choice.effect[0], "regression", None, cat)
        e1 = _train(x[t == 1], d[t == 1], choice.effect[1], "regression", None, cat)
    info = {
        "campaigns": campaign_order(rows),
        "rows": len(rows),
        "treated": int(t.sum()),
        "control": int((t == 0).sum()),
        "uptakes_treated": int(y[t == 1].sum()),
        "uptakes_control": int(y[t == 0].sum()),
    }
    return UpliftModel(features, categories, choice, m0, m1, pooled, e0, e1, share, info)


def fit_uplift(
    rows: pd.DataFrame, features: list[str], reuse: Choice | None = None, horizon_days: int | None = None
) -> UpliftModel:
    """Choose on the validation campaign (:func:`choose`), then fit on every row of ``rows``.

    Args:
        rows: campaign rows with ``campaign_id``, ``list_date``, ``treated`` (0/1), ``label``
            (0/1) and ``features``; both arms must hold both outcomes.
        reuse: a champion's choice to fit again instead of the full search (:func:`choose`).
        horizon_days: the label horizon: the choice fits on campaigns closed before the validation
            campaign (:func:`validation_split`).
    """
    for a in (0, 1):
        ys = rows.loc[rows[TREATED] == a, "label"]
        if ys.nunique() < 2:
            raise ValueError(f"the {'treatment' if a else 'control'} arm holds one outcome only ({len(ys)} rows)")
    return fit_with(rows, features, choose(rows, features, category_mapping(rows, features), reuse, horizon_days))


def held_out_metrics(model: UpliftModel, rows: pd.DataFrame) -> dict[str, float]:
    """Qini coefficient and AUUC of ``model`` on observed outcomes of ``rows``, and the arms' counts."""
    y, t = rows["label"].to_numpy(float), rows[TREATED].to_numpy(int)
    s = model.uplift(rows)
    nt, nc = int(t.sum()), int((t == 0).sum())
    rate_t = y[t == 1].mean() if nt else float("nan")
    rate_c = y[t == 0].mean() if nc else float("nan")
    return {
        "qini": float(qini_coefficient(y, t, s)),
        "auuc": float(auuc(y, t, s)),
        "n": float(len(y)),
        "treated": float(nt),
        "control": float(nc),
        "uptakes_treated": float(y[t == 1].sum()),
        "uptakes_control": float(y[t == 0].sum()),
        "observed_effect": float(rate_t - rate_c),
        "mean_uplift": float(np.mean(s)) if len(s) else float("nan"),
    }


# ---------------------------------------------------------------- the job
def history_skip(cfg: Config, product: str, closed: int) -> Skip | None:
    """Why ``closed`` randomised campaigns with a closed horizon are too few (None: enough)."""
    c = cfg.campaigns
    need = max(c.min_uplift_campaigns, c.uplift_test_campaigns + 1)
    if closed >= need:
        return None
    return Skip(
        zh=f"已结束观察期的随机对照营销活动只有 {closed} 个，至少需要 {need} 个",
        en=f"only {closed} randomised campaign(s) of {product} with a closed {cfg.training.horizon_days}-day "
        f"horizon; the uplift model needs {need} (campaigns.min_uplift_campaigns, "
        f"{c.uplift_test_campaigns} held out to test)",
    )


def gap_skip(cfg: Config, product: str, closed: list[str], fit_ids: list[str]) -> Skip | None:
    """Why no campaign is left to fit once those listed within the label horizon before the held-out
    ones are set aside (None: some are left)."""
    if fit_ids:
        return None
    n, h = cfg.campaigns.uplift_test_campaigns, cfg.training.horizon_days
    return Skip(
        zh=f"{len(closed)} 个随机对照营销活动中，没有一个在检验活动开始前结束了 {h} 天的观察期，无可训练的活动",
        en=f"none of {product}'s {len(closed)} randomised campaign(s) closed its {h}-day horizon before the "
        f"{n} held-out one(s) began: nothing to fit on",
    )


def uptake_skip(cfg: Config, product: str, fit: pd.DataFrame) -> Skip | None:
    """Why the fitting campaigns' rows (``treated``, ``label``) hold too few uptakes in an arm (None: enough)."""
    need = cfg.campaigns.min_uplift_uptakes
    for a, zh, en in ((1, "营销组", "treatment"), (0, "对照组", "control")):
        ups = int(fit.loc[fit[TREATED] == a, "label"].sum())
        if ups < need:
            return Skip(
                zh=f"随机对照营销活动的{zh}只有 {ups} 笔办理，至少需要 {need} 笔",
                en=f"only {ups} uptake(s) in the {en} arm of {product}'s fitting campaigns; "
                f"campaigns.min_uplift_uptakes is {need}",
            )
    return None


def train_uplift(
    cfg: Config,
    ws: Workspace,
    cutoff: pd.Timestamp,
    products: list[str],
    feature_as_ofs: list[pd.Timestamp],
    reuse: bool = False,
) -> list[ProductResult]:
    """Fit, judge, register and gate an uplift model per product that has randomised campaigns.

    A product with no randomised campaign at all is left alone (nothing recorded); one with
    too little closed history is skipped with a reason recorded on ``nbp-<product>-uplift``
    (:func:`training.registry.record_skip`), which the ranking fallback shows. Products are
    fitted ``training.workers`` at a time (each booster on one thread, so the models do not
    depend on it), then registered one after another.

    Args:
        reuse: the monthly job: fit each uplift champion's choice again (:func:`choose`) where
            :func:`training.setting_search.plan` allows it (no drift report: its figures are
            the propensity models'); otherwise the full search. A champion whose rows are the
            rows it was fitted and judged on (:func:`rows_fingerprint`: no campaign closed, nothing
            restated, same configuration) is kept as it is, neither fitted nor registered again.

    Returns:
        One result per product with a randomised campaign.
    """
    parts, closed, skips, results = {}, {}, {}, {}
    for key in products:
        rows, randomised = campaign_rows(cfg, ws, key, cutoff)
        if randomised == 0:
            log.info("%s: no randomised campaign recorded: no uplift model", key)
            continue
        closed[key] = campaign_order(rows) if len(rows) else []
        s = history_skip(cfg, key, len(closed[key]))
        if s is not None:
            skips[key] = s
        else:
            parts[key] = rows
    sets = campaign_sets(cfg, ws, parts, feature_as_ofs) if parts else {}
    todo = {}
    for key in [k for k in products if k in closed]:
        if key in skips:
            results[key] = _skipped(ws, key, skips[key])
            continue
        fit_ids, test_ids = split_campaigns(parts[key], cfg.campaigns.uplift_test_campaigns, cfg.training.horizon_days)
        df = sets.pop(key)
        fit, test = df[df["campaign_id"].isin(fit_ids)], df[df["campaign_id"].isin(test_ids)]
        s = gap_skip(cfg, key, closed[key], fit_ids) or uptake_skip(cfg, key, fit)
        if s is None and test.empty:
            s = Skip(
                zh="检验用的营销活动没有候选客户", en=f"no candidate in the held-out campaign(s) {', '.join(test_ids)}"
            )
        if s is not None:
            results[key] = _skipped(ws, key, s)
            continue
        todo[key] = (fit.reset_index(drop=True), test.reset_index(drop=True), df)
    results |= fit_products(cfg, ws, todo, cutoff, reuse)
    return [results[k] for k in products if k in results]


def fit_products(
    cfg: Config,
    ws: Workspace,
    todo: dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]],
    cutoff: pd.Timestamp,
    reuse: bool,
) -> dict[str, ProductResult]:
    """Each product's uplift model of its rows (fitting, held-out, every closed campaign's):
    kept when its champion was fitted on the same rows (with ``reuse``), else searched or its
    champion's choice fitted again, judged and registered (:func:`train_uplift`)."""
    plans, rows_fp, results, todo = {}, {}, {}, dict(todo)
    for key, rows in list(todo.items()):
        record = registry.search_record(ws, uplift_key(key)) if reuse else None
        plans[key] = _plan(cfg, uplift_key(key), cutoff, rows[0], record, reuse)
        rows_fp[key] = rows_fingerprint(cfg, rows, plans[key].fingerprint)
        if record is not None and plans[key].mode == "reused" and record.tags.get(TAG_ROWS) == rows_fp[key]:
            results[key] = _kept(ws, key, record.version, plans[key])
            del todo[key]
    judged = _judge_all(cfg, todo, plans)
    for key, got in judged.items():
        results[key] = _register(cfg, ws, key, todo[key], got, plans[key], cutoff, {TAG_ROWS: rows_fp[key]})
    return results


def _plan(
    cfg: Config, key: str, cutoff: pd.Timestamp, fit: pd.DataFrame, record: registry.ChampionRecord | None, reuse: bool
) -> SearchPlan:
    """The search of the uplift model ``key`` (:func:`uplift_key`): :func:`training.setting_search.plan`
    on its champion's ``record``."""
    product = key.removesuffix("-uplift")
    fp = search_fingerprint(cfg, product, feature_names(fit))
    got = plan_search(cfg, key, fp, cutoff, record, None, force=not reuse, member=choice_member)
    log.info("%s: uplift search %s (%s): %s", product, got.mode, got.reason, got.why)
    return got


def rows_fingerprint(cfg: Config, rows: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], search: str) -> str:
    """A hash of everything an uplift model is fitted and judged on: every closed campaign's rows
    (keys, arm, label, features; in order, since the boosters sample rows by position), which of
    them are held out, the campaign settings and the search's fingerprint (``search``)."""
    fit, test, every = rows
    h = hashlib.sha256(search.encode("utf-8"))
    h.update(json.dumps([campaign_order(fit), campaign_order(test), cfg.campaigns.model_dump()], default=str).encode())
    cols = sorted(every.columns)
    h.update(json.dumps(cols).encode("utf-8"))
    h.update(pd.util.hash_pandas_object(every[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _kept(ws: Workspace, key: str, version: int, plan: SearchPlan) -> ProductResult:
    """The result of an uplift champion kept as it is: its rows are the rows it was fitted on."""
    window, m, run = registry.version_evidence(ws, uplift_key(key), version)
    registry.clear_skip(ws, uplift_key(key))
    log.info(
        "kept %s version %d (run %s, window %s, qini %.3f, auuc %.3f): the same campaign rows",
        registry.model_name(uplift_key(key), ws.bank),
        version,
        run,
        window,
        m.get("qini", float("nan")),
        m.get("auuc", float("nan")),
    )
    reason = (
        f"v{version} stays champion: the same campaign rows as it was fitted on "
        "(no campaign closed and nothing restated since), so it is not fitted again."
    )
    return ProductResult(uplift_key(key), version, registry.CHAMPION, reason, dict(m), window or "", search=plan)


def _judge_all(
    cfg: Config, todo: dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]], plans: dict[str, SearchPlan]
) -> dict[str, tuple[UpliftModel, dict[str, float], bool] | Skip]:
    """:func:`judge` of every product, ``training.workers`` at a time (threads: LightGBM releases the
    interpreter lock while it trains); a product whose arms cannot be fitted gets its :class:`Skip`."""
    from concurrent.futures import ThreadPoolExecutor

    floor = cfg.campaigns.qini_floor

    def one(key: str) -> tuple[UpliftModel, dict[str, float], bool] | Skip:
        fit, test, every = todo[key]
        p = plans[key]
        try:
            reuse = reused_choice(p.setting) if p.setting is not None else None
            return judge(fit, test, every, floor, reuse, cfg.training.horizon_days)
        except ValueError as e:
            return Skip(zh=f"营销增益模型无法拟合：{e}", en=f"the uplift model cannot be fitted: {e}")

    with ThreadPoolExecutor(max_workers=max(1, min(cfg.training.workers, len(todo)))) as pool:
        jobs = {key: pool.submit(one, key) for key in todo}
        return {key: job.result() for key, job in jobs.items()}


def _skipped(ws: Workspace, key: str, s: Skip) -> ProductResult:
    registry.record_skip(ws, uplift_key(key), s.zh, s.en)
    return ProductResult(uplift_key(key), None, None, f"skipped: {s.en}", skip=s)


def judge(
    fit: pd.DataFrame,
    test: pd.DataFrame,
    every: pd.DataFrame,
    floor: float,
    reuse: Choice | None = None,
    horizon_days: int | None = None,
) -> tuple[UpliftModel, dict[str, float], bool]:
    """Fit on the fitting campaigns' rows, judge on the held-out ones; the held-out rows never
    reach the fit or its choices.

    Returns:
        ``(model, held-out metrics, passed)``: when the held-out Qini exceeds ``floor``, the
        model is the same choice refitted on ``every`` closed campaign's rows. ``reuse``,
        ``horizon_days``: as :func:`fit_uplift`.

    Raises:
        ValueError: an arm of the fitting rows holds one outcome only.
    """
    feats = feature_names(fit)
    model = fit_uplift(fit, feats, reuse, horizon_days)
    m = held_out_metrics(model, test)
    passed = bool(np.isfinite(m["qini"]) and m["qini"] > floor)
    if passed:
        model = fit_with(every.reset_index(drop=True), feats, model.choice)
    return model, m, passed


def _register(
    cfg: Config,
    ws: Workspace,
    key: str,
    rows: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    got: tuple[UpliftModel, dict[str, float], bool] | Skip,
    plan: SearchPlan,
    cutoff: pd.Timestamp,
    tags: dict[str, str] | None = None,
) -> ProductResult:
    """Register :func:`judge`'s model of ``rows`` (fitting, held-out, every closed campaign's) with
    its search's tags and ``tags``, and record the gate's decision."""
    if isinstance(got, Skip):
        return _skipped(ws, key, got)
    fit, test, every = rows
    model, m, passed = got
    floor = cfg.campaigns.qini_floor
    window = ",".join(campaign_order(test))
    fitted_on = every if passed else fit
    c = model.choice
    version = registry.log_and_register(
        ws,
        uplift_key(key),
        model,
        m,
        params={
            "learner": c.learner,
            "outcome_settings": c.outcome,
            "pooled_settings": c.pooled,
            "effect_settings": c.effect,
            "validation_qini": c.validation,
            "refit_on_every_closed_campaign": passed,
        },
        plots={},
        feature_info={"feature_service": feature_service(key, cfg.products[key]), "kind": "uplift"},
        as_of_range=(f"{fitted_on['list_date'].min():%Y-%m-%d}", f"{fitted_on['list_date'].max():%Y-%m-%d}"),
        backtest_window=window,
        input_example=test.head(5),
        tags={"nbp.kind": "uplift", **plan.tags(choice_setting(c), cutoff), **(tags or {})},
    )
    qtext = f"held-out Qini {m['qini']:.2f} incremental uptakes (AUUC {m['auuc']:.2f}) on {window}"
    if passed:
        reason = f"v{version} becomes champion: {qtext} > floor {floor:g}; refitted on every closed campaign."
    else:
        reason = f"v{version} stays challenger: {qtext} does not exceed the floor {floor:g}."
    d = registry.decide(ws, uplift_key(key), version, passed, reason)
    return ProductResult(uplift_key(key), version, d.alias, reason, m, window, search=plan)


def load_uplift(ws: Workspace, product: str) -> tuple[UpliftModel, int] | None:
    """The uplift champion of ``product`` and its version; None without one."""
    try:
        model, version = registry.load_version(ws, uplift_key(product), registry.CHAMPION)
    except ModelUnavailable:
        return None
    return (model, version) if isinstance(model, UpliftModel) else None
