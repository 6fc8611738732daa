"""The uplift learner on planted effects, its time split and skips, the monthly job's reuse of a champion's
choice, and the chain on a small simulated bank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import spearmanr

from nbp.campaigns import CampaignStore, ListParams
from nbp.config import load_config
from training import setting_search as ss
from training import uplift as up

FEATS = ["x1", "x2", "x3"]


def _planted(n: int, campaigns: int, seed: int, first: str = "2025-01-01") -> tuple[pd.DataFrame, np.ndarray]:
    """Randomised rows whose effect depends on x2 and x3 only, while the baseline follows x1."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=n), rng.normal(size=n), rng.random(n)
    base = 1 / (1 + np.exp(3 - 0.8 * x1))
    tau = 0.08 * ((x2 > 0) & (x3 > 0.3)) - 0.02 * (x2 < -1)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < np.clip(base + t * tau, 0, 1)).astype(int)
    c = rng.integers(0, campaigns, n)
    rows = pd.DataFrame(
        {
            "campaign_id": [f"c{seed}-{i}" for i in c],
            "customer_id": [f"K{i}" for i in range(n)],
            "list_date": pd.Timestamp(first) + pd.to_timedelta(c * 91, "D"),
            up.TREATED: t,
            "label": y,
            "x1": x1,
            "x2": x2,
            "x3": x3,
        }
    )
    return rows, tau


@pytest.mark.slow  # fits LightGBM boosters: about a second
def test_learner_recovers_a_planted_heterogeneous_effect() -> None:
    rows, _ = _planted(12_000, 3, 1)
    model = up.fit_uplift(rows, FEATS)
    new, tau = _planted(10_000, 1, 2)
    est = model.uplift(new)
    assert spearmanr(est, tau).correlation > 0.6
    # the baseline driver x1 is not mistaken for the effect
    assert abs(spearmanr(est, new["x1"]).correlation) < 0.3
    assert up.held_out_metrics(model, new)["qini"] > 0


@pytest.mark.slow  # fits LightGBM boosters: about a second
def test_time_split_never_fits_on_held_out_campaigns() -> None:
    rows, _ = _planted(6_000, 3, 3)
    order = up.campaign_order(rows)
    fit_ids, test_ids = up.split_campaigns(rows, 1, 90)
    assert test_ids == [order[-1]] and fit_ids == order[:-1]
    fit, test = rows[rows["campaign_id"].isin(fit_ids)], rows[rows["campaign_id"].isin(test_ids)]
    # validation (settings, rounds, learner) is the latest fitting campaign, not the held-out one
    assert set(fit.loc[up.validation_split(fit, 90)[1], "campaign_id"]) == {fit_ids[-1]}
    flipped = test.assign(label=1 - test["label"])
    a, ma, _ = up.judge(fit, test, rows, floor=np.inf)
    b, mb, _ = up.judge(fit, flipped, rows, floor=np.inf)
    assert a.info["campaigns"] == fit_ids
    np.testing.assert_array_equal(a.uplift(test), b.uplift(test))  # held-out outcomes never reach the fit
    assert ma["qini"] != mb["qini"]


@pytest.mark.slow  # fits LightGBM boosters: about a second
def test_passing_the_floor_refits_on_every_closed_campaign() -> None:
    rows, _ = _planted(6_000, 3, 4)
    fit_ids, test_ids = up.split_campaigns(rows, 1)
    fit, test = rows[rows["campaign_id"].isin(fit_ids)], rows[rows["campaign_id"].isin(test_ids)]
    model, m, passed = up.judge(fit, test, rows, floor=-np.inf)
    assert passed and model.info["campaigns"] == up.campaign_order(rows)
    _, _, refused = up.judge(fit, test, rows, floor=m["qini"])  # not above the floor: not champion
    assert not refused


def test_campaigns_listed_within_the_horizon_before_the_held_out_one_are_not_fitted() -> None:
    """Two-monthly campaigns and 90-day labels: the campaign just before the held-out one shares
    its uptakes (same customers, overlapping windows), so it neither fits nor validates against
    the campaign after it; the split of the fitting rows keeps the same gap."""
    dates = ["2025-01-01", "2025-03-01", "2025-05-01", "2025-07-01"]
    rows = pd.DataFrame(
        {
            "campaign_id": [f"c{i}" for i in range(4) for _ in range(8)],
            "list_date": pd.to_datetime([d for d in dates for _ in range(8)]),
        }
    )
    assert up.split_campaigns(rows, 1, 90) == (["c0", "c1"], ["c3"])
    assert up.split_campaigns(rows, 1) == (["c0", "c1", "c2"], ["c3"])
    fit, val = up.validation_split(rows[rows["campaign_id"] != "c3"], 90)
    assert set(rows.loc[np.flatnonzero(fit), "campaign_id"]) == {"c0"}
    assert set(rows.loc[np.flatnonzero(val), "campaign_id"]) == {"c2"}
    near = rows[rows["campaign_id"].isin(["c1", "c2"])].reset_index(drop=True)
    fit, val = up.validation_split(near, 90)  # nothing closed before the latest: a random quarter
    assert (fit ^ val).all() and 0 < val.sum() < len(near)
    cfg = load_config()
    s = up.gap_skip(cfg, "consumer", ["c1", "c2"], [])
    assert s is not None and "90-day horizon" in s.en and "90 天的观察期" in s.zh
    assert up.gap_skip(cfg, "consumer", ["c0", "c1"], ["c0"]) is None


def test_too_little_history_is_skipped_with_reasons() -> None:
    cfg = load_config()
    c = cfg.campaigns
    need = max(c.min_uplift_campaigns, c.uplift_test_campaigns + 1)
    s = up.history_skip(cfg, "consumer", need - 1)
    assert s is not None and "min_uplift_campaigns" in s.en and "随机对照" in s.zh
    assert up.history_skip(cfg, "consumer", need) is None
    few = pd.DataFrame({up.TREATED: [1] * 50 + [0] * 50, "label": [1] * 40 + [0] * 10 + [1] * 3 + [0] * 47})
    s = up.uptake_skip(cfg, "consumer", few)
    assert s is not None and "control arm" in s.en and "对照组" in s.zh and "3" in s.en
    assert up.uptake_skip(cfg, "consumer", few.assign(label=1)) is None


def test_campaign_rows_keep_randomised_closed_campaigns_first_issue(tmp_path: Path) -> None:
    from nbp.workspace import Workspace

    cfg = load_config()
    ws = Workspace(tmp_path)
    store = CampaignStore(ws.campaigns_dir)
    both = pd.DataFrame({"customer_id": ["a", "b", "c"], "arm": ["treatment", "control", "treatment"]})

    def issue(cid: str, rows: pd.DataFrame, day: str) -> None:
        params = ListParams("consumer", source="import")
        store.issue(cid, params, rows, list_date=pd.Timestamp(day).date(), model_version=None)

    issue("old", both, "2025-01-01")
    issue("open", both, "2025-12-01")
    issue("one-arm", both.assign(arm="treatment"), "2025-01-01")
    rows, randomised = up.campaign_rows(cfg, ws, "consumer", pd.Timestamp("2026-01-01"))
    assert randomised == 2  # the one-arm campaign is not randomised
    assert set(rows["campaign_id"]) == {"old"}  # "open": its 90-day horizon has not closed
    assert rows.set_index("customer_id")[up.TREATED].to_dict() == {"a": 1, "b": 0, "c": 1}
    assert up.campaign_rows(cfg, ws, "tax_linked", pd.Timestamp("2026-01-01"))[1] == 0


# ----------------------------------------------------------------------------- the chain
def _cli(args: list[str], code: int = 0) -> str:
    from nbp.cli import main

    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def _assignment_file(home: Path, path: Path) -> Path:
    """Three campaigns per product, in the import format, drawn from the ingested bank: at 9, 6 and
    4 months before the export (horizons closed), each customer who took the product in the
    horizon and 300 others, arms alternating in a shuffled order so both arms hold uptakes
    whatever the simulator's rates."""
    from nbp.sheets import write_csv
    from nbp.workspace import Workspace

    ws = Workspace(home)
    loans = pd.read_parquet(ws.table("loans"), columns=["customer_id", "product", "grant_date"])
    ids = pd.read_parquet(ws.table("customers"), columns=["customer_id"])["customer_id"].astype(str).to_numpy()
    exported = pd.Timestamp(ws.export_date())
    rng = np.random.default_rng(0)
    parts = []
    for product in ("consumer", "business_flow", "tax_linked"):
        for back in (9, 6, 4):
            day = (exported - pd.DateOffset(months=back)).replace(day=1)
            grant = pd.to_datetime(loans["grant_date"])
            window = (loans["product"] == product) & (grant > day) & (grant <= day + pd.Timedelta(days=90))
            took = loans.loc[window, "customer_id"].astype(str).unique()
            chosen = rng.permutation(np.unique(np.r_[took, rng.choice(ids, 300, replace=False)]))
            arm = np.where(np.arange(len(chosen)) % 2 == 0, "treatment", "control")
            parts.append(
                pd.DataFrame(
                    {
                        "campaign_id": f"T-{product}-{day:%Y%m}",
                        "product": product,
                        "list_date": f"{day:%Y-%m-%d}",
                        "customer_id": chosen,
                        "arm": arm,
                    }
                )
            )
    return write_csv(pd.concat(parts, ignore_index=True), path)


@pytest.mark.integration
@pytest.mark.slow
def test_uplift_scores_and_rank_by_uplift_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's assignment files and a bank's own randomised campaigns imported, an uplift
    champion per product (the floors set open: on 2,000 customers a test window or a held-out
    campaign holds a handful of uptakes), the ``uplift`` column in the scores and a list ranked by it."""
    from nbp.workspace import Workspace

    home = tmp_path / "home"
    monkeypatch.setenv("NBP_HOME", str(home))
    cfg = tmp_path / "open.yaml"
    # gates opened: this tests the plumbing; the gates' own rules are tested above and in test_registry
    opened = "training:\n  auc_floor: 0.0\ncampaigns:\n  min_uplift_uptakes: 1\n  qini_floor: -1.0e9\n"
    cfg.write_text(opened, encoding="utf-8")
    _cli(["simulate", "--out", str(tmp_path / "bank"), "--customers", "2000", "--months", "14", "--seed", "7"])
    _cli(["ingest", str(tmp_path / "bank" / "export")])
    files = sorted((tmp_path / "bank" / "campaigns").glob("*.csv"))
    assert files, "the simulator wrote no assignment file"
    _cli(["campaign", "import", *map(str, files)])
    _cli(["campaign", "import", str(_assignment_file(home, tmp_path / "own.csv"))])
    out = _cli(["retrain", "--config", str(cfg)])
    assert "-uplift: v" in out and "becomes champion" in out, out
    scores = pd.read_parquet(Workspace(home).latest_scores)
    lifted = scores[scores["uplift"].notna()]
    assert not lifted.empty and lifted["uplift_version"].notna().all()
    assert scores.loc[scores["uplift"].isna(), "uplift_version"].isna().all()
    key = lifted["product"].iloc[0]
    target = tmp_path / "t.csv"
    said = _cli(["targets", "--product", key, "--top", "20", "--rank-by", "uplift", "--out", str(target)])
    assert "ranked by uplift" in said, said
    got = pd.read_csv(target, dtype=str, encoding="utf-8-sig")
    from nbp.sheets import restore

    # a negative percentage is text starting with "-": the formula guard quotes it
    lift = pd.to_numeric(got["营销增益"].map(restore).str.rstrip("%"), errors="coerce")
    assert lift.notna().all() and (lift.diff().dropna() <= 1e-9).all()  # rank 1 first: largest uplift


def test_ranking_fallback_says_why_the_training_skipped_the_uplift_model() -> None:
    from serving.engine import ProductState

    skip = up.history_skip(load_config(), "consumer", 0)
    st = ProductState(key="consumer", service="consumer_v1", scores=pd.DataFrame({"uplift": [np.nan, np.nan]}))
    st.uplift_skipped = {"zh": skip.zh, "en": skip.en}
    msg = st.ranking_problem("uplift")
    assert skip.en in msg and skip.zh in msg and "ranked by propensity" in msg
    assert st.ranking_problem("propensity") is None
    st.uplift_skipped = None
    assert "qini_floor" in st.ranking_problem("uplift")
    st.scores = pd.DataFrame({"uplift": [0.01, np.nan]})
    assert st.ranking_problem("uplift") is None


# ----------------------------------------------------------------------------- the monthly job's reuse
def _text(choice: up.Choice) -> str:
    return ss.setting_text(up.choice_setting(choice))


@pytest.mark.slow  # fits LightGBM boosters: a few seconds
def test_a_reused_choice_is_the_full_searchs_choice_and_model() -> None:
    """Through the recorded tag text and back, the champion's choice fits the very boosters the
    full search gives on the same rows: same learner, settings, rounds and estimates."""
    rows, _ = _planted(8_000, 3, 11)
    cats = up.category_mapping(rows, FEATS)
    full = up.choose(rows, FEATS, cats)
    member = up.choice_member(_text(full))
    assert member is not None
    again = up.choose(rows, FEATS, cats, up.reused_choice(member))
    assert (again.learner, again.outcome, again.pooled, again.effect) == (
        full.learner,
        full.outcome,
        full.pooled,
        full.effect,
    )
    assert set(again.validation) == {full.learner}  # only the kept learner was fitted
    assert again.validation[full.learner] == full.validation[full.learner]
    a, b = up.fit_with(rows, FEATS, full), up.fit_with(rows, FEATS, again)
    np.testing.assert_array_equal(a.uplift(rows), b.uplift(rows))


@pytest.mark.slow
@pytest.mark.parametrize("learner", up.LEARNERS)
def test_each_learner_is_fitted_again_with_its_recorded_settings(learner: str) -> None:
    """Whatever the learner, only its boosters are fitted, each with its recorded member of GRID and
    the rounds early-stopped on the validation campaign."""
    rows, _ = _planted(6_000, 3, 12)
    g = [dict(s) for s in up.GRID]
    setting = {
        "learner": learner,
        "outcome": [g[0], g[2]] if learner != "s" else None,
        "pooled": g[1] if learner == "s" else None,
        "effect": [g[1], g[0]] if learner == "x" else None,
    }
    assert up.choice_member(ss.setting_text(setting)) == setting
    got = up.choose(rows, FEATS, up.category_mapping(rows, FEATS), up.reused_choice(setting))
    assert got.learner == learner and set(got.validation) == {learner}
    assert up.choice_setting(got) == setting
    boosters = [s for s in (*(got.outcome or ()), got.pooled, *(got.effect or ())) if s is not None]
    assert boosters and all(1 <= s["rounds"] <= up.MAX_ROUNDS for s in boosters)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        json.dumps({"learner": "q", "outcome": [{}, {}]}),  # no such learner
        json.dumps({"learner": "t", "outcome": [{"num_leaves": 63}, dict(up.GRID[0])]}),  # not in GRID
        json.dumps({"learner": "x", "outcome": [dict(up.GRID[0])] * 2, "effect": None}),  # X without effects
        json.dumps({"learner": "s", "pooled": None}),
        json.dumps({"learner": "t", "outcome": [dict(up.GRID[0])]}),  # one arm only
    ],
)
def test_a_recorded_choice_this_code_cannot_fit_sends_the_product_to_the_full_search(text: str | None) -> None:
    assert up.choice_member(text) is None
    record = ss.ChampionRecord(2, {ss.TAG_FINGERPRINT: "fp", ss.TAG_MONTH: "2026-04", ss.TAG_SETTING: text or ""}, 2)
    at = pd.Timestamp("2026-05-01")
    got = ss.plan(load_config(), "consumer-uplift", "fp", at, record, None, member=up.choice_member)
    assert (got.mode, got.reason) == ("full", "config_changed")


def test_the_uplift_fingerprint_follows_what_shapes_its_choice() -> None:
    cfg = load_config()
    base = up.search_fingerprint(cfg, "consumer", FEATS)
    assert base == up.search_fingerprint(cfg, "consumer", list(reversed(FEATS)))  # order of columns
    assert base != up.search_fingerprint(cfg, "consumer", [*FEATS, "x4"])
    held = cfg.model_copy(update={"campaigns": cfg.campaigns.model_copy(update={"uplift_test_campaigns": 2})})
    assert base != up.search_fingerprint(held, "consumer", FEATS)
    floor = cfg.model_copy(update={"campaigns": cfg.campaigns.model_copy(update={"qini_floor": 0.5})})
    assert base == up.search_fingerprint(floor, "consumer", FEATS)  # the gate, not the choice


@pytest.mark.integration
@pytest.mark.slow
def test_the_next_month_keeps_or_fits_the_uplift_champions_choice_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Month 1 searches in full (no champion) and records the choice and its rows. Month 2 on the
    same rows keeps the champion: nothing fitted or registered. A restated outcome in the held-out
    campaign changes the rows: the champion's choice is fitted again (tagged reused, with the month
    of the search) and gives exactly the model the full search gives on those rows (the choice reads
    the fitting campaigns only, which did not change); nbp train forces the full search."""
    from mlflow import MlflowClient

    from nbp.workspace import Workspace
    from training import registry

    monkeypatch.chdir(tmp_path)  # MLflow must not write ./mlruns into the working directory
    cfg, ws = load_config(), Workspace(tmp_path / "home")
    cfg = cfg.model_copy(update={"campaigns": cfg.campaigns.model_copy(update={"qini_floor": -1e9})})
    rows, _ = _planted(8_000, 4, 13)
    fit_ids, test_ids = up.split_campaigns(rows, 1)

    def split(every: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
        fit = every[every["campaign_id"].isin(fit_ids)].reset_index(drop=True)
        return {"consumer": (fit, every[every["campaign_id"].isin(test_ids)].reset_index(drop=True), every)}

    uri = registry.tracking_uri(ws)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def month(cutoff: str, every: pd.DataFrame, reuse: bool = True) -> tuple[object, up.UpliftModel, dict]:
        r = up.fit_products(cfg, ws, split(every), pd.Timestamp(cutoff), reuse)["consumer"]
        model, _ = registry.load_version(ws, "consumer-uplift", r.version)
        run = client.get_model_version("nbp-consumer-uplift", str(r.version)).run_id
        return r, model, client.get_run(run).data.tags

    def versions() -> int:
        return len(client.search_model_versions("name = 'nbp-consumer-uplift'"))

    first, m1, t1 = month("2026-04-01", rows)
    assert first.alias == "champion" and (first.search.mode, first.search.reason) == ("full", "no_champion")
    assert set(m1.choice.validation) == set(up.LEARNERS)
    assert t1[ss.TAG_SEARCH] == "full" and t1[ss.TAG_MONTH] == "2026-04"
    assert up.choice_member(t1[ss.TAG_SETTING]) == up.choice_setting(m1.choice)
    assert t1[up.TAG_ROWS] == up.rows_fingerprint(cfg, split(rows)["consumer"], first.search.fingerprint)

    same, _, _ = month("2026-05-01", rows.copy())
    assert (same.version, same.alias, same.search.mode, versions()) == (1, "champion", "reused", 1)
    assert "stays champion" in same.reason and same.metrics["qini"] == pytest.approx(first.metrics["qini"])

    restated = rows.copy()
    i = int(np.flatnonzero(restated["campaign_id"].isin(test_ids).to_numpy())[0])
    restated.loc[i, "label"] = 1 - restated.loc[i, "label"]
    second, m2, t2 = month("2026-05-01", restated)
    assert (second.version, second.search.mode, t2[ss.TAG_REASON], t2[ss.TAG_MONTH], t2[ss.TAG_FROM]) == (
        2,
        "reused",
        "reused",
        "2026-04",
        "1",
    )
    assert set(m2.choice.validation) == {m1.choice.learner} and t2[up.TAG_ROWS] != t1[up.TAG_ROWS]
    forced, m3, t3 = month("2026-05-01", restated, reuse=False)
    assert (forced.version, t3[ss.TAG_REASON]) == (3, "forced")
    np.testing.assert_array_equal(m2.uplift(rows), m3.uplift(rows))  # what the full search gave


def test_the_rows_fingerprint_follows_the_rows_their_order_and_the_split() -> None:
    cfg = load_config()
    rows, _ = _planted(2_000, 3, 5)
    fit_ids, test_ids = up.split_campaigns(rows, 1)

    def fp(every: pd.DataFrame, c=cfg, search: str = "s") -> str:
        fit, test = every[every["campaign_id"].isin(fit_ids)], every[every["campaign_id"].isin(test_ids)]
        return up.rows_fingerprint(c, (fit, test, every), search)

    base = fp(rows)
    assert base == fp(rows.copy()) == fp(rows[list(reversed(rows.columns))])  # same rows, columns in any order
    moved = rows.copy()
    moved.loc[5, "x2"] += 1e-12
    assert base != fp(moved)  # a restated feature value
    assert base != fp(rows.iloc[::-1])  # the order the boosters sample rows by
    assert base != fp(rows.iloc[1:])  # a row less
    assert base != fp(rows, search="t")  # another search configuration
    floor = cfg.model_copy(update={"campaigns": cfg.campaigns.model_copy(update={"qini_floor": 0.5})})
    assert base != fp(rows, floor)  # the gate's floor decides champion or not
