"""Value tiers (``features/tiers.py``): the score is the weighted mean of percentile ranks known
at T, a one-off spike does not move a tier, branch quotas hold, and the tier view is read by
Feast's profile service but by no product model."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from featurekit import TINY_AS_OF, tiny_bank, typed, write_tables

from features import tiers
from features.build import build
from features.schema import EVENT_TS, JOIN_KEY
from nbp.config import Config, TierLevel, TiersConfig, load_config
from nbp.workspace import Workspace

ts = pd.Timestamp


def _built(root: Path, tables: dict[str, pd.DataFrame], cfg: Config | None = None) -> Workspace:
    ws = Workspace(root)
    write_tables(ws, tables, date(2025, 8, 31))
    build(ws, TINY_AS_OF, cfg=cfg)
    return ws


def _steady_balances(tables: dict[str, pd.DataFrame], spike_month: str | None = None) -> dict[str, pd.DataFrame]:
    """c1's account holds 3,000 every month; with ``spike_month``, 300,000 in that one month."""
    bal = tables["balances"]
    c1 = bal["account_id"] == "a1"
    bal.loc[c1, ["avg_daily_balance", "end_balance"]] = 3000.0
    if spike_month is not None:
        bal.loc[c1 & (bal["month"] == ts(spike_month)), ["avg_daily_balance", "end_balance"]] = 300_000.0
    return tables


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return _built(tmp_path_factory.mktemp("steady") / "ws", _steady_balances(tiny_bank()))


def test_score_is_the_weighted_mean_of_percentile_ranks(steady: Workspace) -> None:
    cfg = load_config()
    t = tiers.read(steady)
    w = cfg.tiers.weights
    parts = {
        "tier_deposit_median_12m": w.deposit,
        "tier_loan_interest_12m": w.loan_interest,
        "tier_products_held_count": w.products,
        "tier_transactions_12m": w.activity,
    }
    demo = pd.read_parquet(steady.feature_table("demo"))[[JOIN_KEY, EVENT_TS, "demo_tenure_months"]]
    demo["as_of"] = demo[EVENT_TS].dt.date
    t = t.merge(demo.drop(columns=EVENT_TS), on=[JOIN_KEY, "as_of"])
    parts["demo_tenure_months"] = w.tenure
    total = sum(parts.values())
    expected = pd.Series(0.0, index=t.index)
    for col, weight in parts.items():
        x = t[col].astype("float64").fillna(0.0)
        rank_min = x.groupby(t["as_of"]).rank(method="min")
        n = t.groupby("as_of")[col].transform("size")
        expected += weight / total * (rank_min - 1) / (n - 1).clip(lower=1)
    np.testing.assert_allclose(t["tier_score"], 100 * expected, atol=1e-9)
    cuts = [lv.min_score for lv in cfg.tiers.levels]
    want = [next(i for i, c in enumerate(cuts) if s >= c) for s in t["tier_score"]]
    assert t["tier_level"].tolist() == want


def test_a_one_month_spike_moves_no_tier(steady: Workspace, tmp_path: Path) -> None:
    spiked = _built(tmp_path / "ws", _steady_balances(tiny_bank(), spike_month="2025-05-01"))
    a, b = tiers.read(steady), tiers.read(spiked)
    pd.testing.assert_frame_equal(
        a.drop(columns="tier_deposit_balance_1m"), b.drop(columns="tier_deposit_balance_1m"), check_exact=True
    )
    # the mean-based liquidity feature does move: the spike is visible to the data, not to the tier
    mean_a = pd.read_parquet(steady.feature_table("liquidity"))["liquidity_avg_daily_balance_12m"]
    mean_b = pd.read_parquet(spiked.feature_table("liquidity"))["liquidity_avg_daily_balance_12m"]
    assert not mean_a.equals(mean_b)


def test_a_loan_granted_on_t_counts_only_after_t(tmp_path: Path) -> None:
    tables = tiny_bank()
    extra = typed(
        "loans",
        [
            dict(
                loan_id="L-late",
                customer_id="c3",
                product="agricultural",
                application_date=ts("2025-05-20"),
                grant_date=ts("2025-06-01"),
                amount=500_000.0,
                term_months=12,
                status="active",
            )
        ],
    )
    tables["loans"] = pd.concat([tables["loans"], extra], ignore_index=True)
    ws = _built(tmp_path / "ws", tables)
    t = tiers.read(ws, customer_ids=["c3"]).set_index("as_of")
    assert t.loc[date(2025, 6, 1), "tier_loan_interest_12m"] == 0.0
    # 14 days of 500,000 at 6 %
    assert t.loc[date(2025, 6, 15), "tier_loan_interest_12m"] == pytest.approx(500_000 * 0.06 * 14 / 365)


def test_branch_quota_keeps_the_best_scores(tmp_path: Path) -> None:
    base = load_config()
    levels = [
        TierLevel(key="top", zh="顶层", en="top", min_score=0.0 + 1e-9, max_branch_share=0.5),
        TierLevel(key="rest", zh="其他", en="rest", min_score=0.0),
    ]
    cfg = base.model_copy(update={"tiers": TiersConfig(weights=base.tiers.weights, levels=levels)})
    ws = _built(tmp_path / "ws", tiny_bank(), cfg)
    t = tiers.read(ws).merge(pd.read_parquet(ws.table("customers"))[[JOIN_KEY, "branch_id"]], on=JOIN_KEY)
    for _, g in t.groupby(["as_of", "branch_id"]):
        top = g[g["tier_level"] == 0]
        assert len(top) <= int(np.floor(0.5 * len(g)))
        if len(top):
            assert top["tier_score"].min() >= g[g["tier_level"] == 1]["tier_score"].max()
    assert (t["tier_level"] == 0).any()


def test_without_balances_the_deposit_part_drops_out(tmp_path: Path) -> None:
    tables = tiny_bank()
    del tables["balances"]
    ws = _built(tmp_path / "ws", tables)
    t = tiers.read(ws)
    assert t["tier_deposit_median_12m"].isna().all()
    assert t["tier_score"].between(0, 100).all()
    assert t.groupby("as_of")["tier_score"].max().gt(0).all()  # the other parts still rank customers


def test_migration_counts_every_customer_of_the_month(steady: Workspace) -> None:
    cfg = load_config()
    m = tiers.migration(steady, cfg)
    t = tiers.read(steady)
    last, prev = sorted(t["as_of"].unique())[-2:][::-1]
    assert m["customers"].sum() == (t["as_of"] == last).sum()
    both = t[t["as_of"] == last].merge(t[t["as_of"] == prev], on=JOIN_KEY, suffixes=("", "_p"))
    downs = int((both["tier_level"] > both["tier_level_p"]).sum())
    assert m.loc[m["direction"] == "down", "customers"].sum() == downs
    assert set(m["to_tier"]) <= {lv.zh for lv in cfg.tiers.levels}


def test_no_product_model_reads_the_tier_view(tmp_path: Path) -> None:
    from features.repo.definitions import feature_services, feature_views
    from features.schema import PROFILE_SERVICE

    views = feature_views(Workspace(tmp_path))
    services = {s.name: s for s in feature_services(views, {"consumer": None})}
    names = lambda s: {p.name for p in s.feature_view_projections}  # noqa: E731
    assert tiers.FAMILY not in names(services["consumer_v1"])
    assert names(services[PROFILE_SERVICE]) == {v.name for v in views}
    assert tiers.FAMILY in names(services[PROFILE_SERVICE])


def test_migration_workbook_names_who_moved(steady: Workspace) -> None:
    from openpyxl import load_workbook

    from training.tier_report import write_migration

    cfg = load_config()
    path = write_migration(cfg, steady)
    assert path is not None and path.parent == steady.tiers_dir
    book = load_workbook(path)
    assert book.sheetnames == ["层级分布", "按支行汇总", "迁移明细", "变动客户"]
    assert path.with_suffix(".png").stat().st_size > 0
    dist = list(book["层级分布"].iter_rows(values_only=True))
    head = dist[1]  # under the banner
    assert head[0] == "支行" and head[-1] == "合计"
    latest = tiers.read(steady, as_of=max(tiers.months(steady)))
    assert sum(r[-1] for r in dist[2:]) == len(latest)
    for r in dist[2:]:
        assert sum(r[1:-1]) == r[-1]
    movers = tiers.movers(steady, cfg)
    rows = list(book["变动客户"].iter_rows(values_only=True))
    assert rows[0][:2] == ("客户号", "支行")
    assert [r[0] for r in rows[1:]] == movers["customer_id"].tolist()
    t = tiers.read(steady)
    last, prev = sorted(t["as_of"].unique())[-2:][::-1]
    both = t[t["as_of"] == last].merge(t[t["as_of"] == prev], on=JOIN_KEY, suffixes=("", "_p"))
    assert set(movers["customer_id"]) == set(both.loc[both["tier_level"] != both["tier_level_p"], JOIN_KEY])
