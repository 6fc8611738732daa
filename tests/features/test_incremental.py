"""Incremental feature builds: a re-delivered export rebuilds only the as-of dates it can reach,
and the tables are then exactly those of a full rebuild (``features/fingerprint.py``)."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bankexport.ingest import ingest
from bankexport.simulate import simulate
from features import fingerprint
from features.build import BuildSummary, build, built_as_of
from features.catalog import modules
from features.schema import EVENT_TS, JOIN_KEY
from features.tiers import FAMILY as TIERS
from nbp.config import IngestConfig, load_config
from nbp.workspace import Workspace

pytestmark = pytest.mark.slow

MONTH_FAMILIES = ("income", "spend", "business")  # the families that read transactions only
CUT = date(2026, 9, 1)  # the earlier export's date; the later one's is 2026-10-01
RESTATED = date(2026, 3, 1)  # the old month a re-delivery restates


def _ingest(src: Path, ws: Workspace) -> None:
    ingest(src, ws, IngestConfig(memory_limit="1GB", threads=2), accept_shrink=True)


def _cut(src: Path, dst: Path, cut: date) -> Path:
    """The export the bank would have delivered on ``cut``: rows known before it, with the
    columns known only later (a close, a grant, an end and the status it set) still empty."""
    dst.mkdir(parents=True)
    ts = pd.Timestamp(cut)
    first_known = {
        "customers": "open_date",
        "accounts": "open_date",
        "transactions": "txn_time",
        "loans": "application_date",
        "balances": "month",
        "tax_records": "published_date",
        "services": "start_date",
        "contacts": "contact_date",
        "profile_updates": "collected_date",
    }
    for path in sorted(src.glob("*.parquet")):
        df = pd.read_parquet(path)
        col = first_known.get(path.stem)
        if col is not None:
            df = df[pd.to_datetime(df[col]) < ts].copy()
        later = {"accounts": ["close_date"], "services": ["end_date"], "loans": ["end_date"]}.get(path.stem, [])
        for c in later:
            df.loc[pd.to_datetime(df[c]) >= ts, c] = pd.NaT
        if path.stem == "loans":
            ungranted = pd.to_datetime(df["grant_date"]) >= ts
            df.loc[ungranted, ["grant_date", "amount", "term_months"]] = None
            df.loc[ungranted, "status"] = "rejected"
            open_now = df["grant_date"].notna() & df["end_date"].isna()
            df.loc[open_now, "status"] = "active"
            df.loc[open_now, "max_overdue_days"] = None
        df.to_parquet(dst / path.name, index=False)
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    manifest["export_date"] = (cut - timedelta(days=1)).isoformat()
    (dst / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return dst


def _restate(src: Path, dst: Path, month: date) -> Path:
    """``src`` re-delivered with one old month of transactions restated: some amounts corrected,
    some rows withdrawn."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    tx = pd.read_parquet(src / "transactions.parquet")
    t = pd.to_datetime(tx["txn_time"])
    in_month = np.flatnonzero((t >= pd.Timestamp(month)) & (t < pd.Timestamp(month) + pd.offsets.MonthBegin(1)))
    assert len(in_month) > 100
    tx.loc[tx.index[in_month[::7]], "amount"] = (tx["amount"].iloc[in_month[::7]] * 1.5).round(2).to_numpy()
    tx = tx.drop(index=tx.index[in_month[3::11]])
    tx.to_parquet(dst / "transactions.parquet", index=False)
    return dst


def _tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    keys = [JOIN_KEY, EVENT_TS]
    out = {}
    for fam in [*modules(False), TIERS]:
        df = pd.read_parquet(ws.feature_table(fam))
        out[fam] = df.sort_values(keys).reset_index(drop=True)
    return out


def _assert_same_as_full(ws: Workspace, tmp: Path, export: Path) -> None:
    """``ws``'s feature tables equal those of a full build of ``export`` in a fresh workspace."""
    fresh = Workspace(tmp / "fresh")
    _ingest(export, fresh)
    build(fresh, cfg=load_config())
    got, want = _tables(ws), _tables(fresh)
    assert built_as_of(ws) == built_as_of(fresh)
    for fam in want:
        pd.testing.assert_frame_equal(got[fam], want[fam], check_exact=True, obj=fam)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A simulated bank's export of 2026-10-01, the same bank's export a month earlier, and the
    later one re-delivered with March 2026 restated."""
    root = tmp_path_factory.mktemp("incremental")
    later = simulate(root / "bank", customers=800, months=12, end="2026-09", seed=5).export_dir
    return {
        "earlier": _cut(later, root / "earlier", CUT),
        "later": later,
        "restated": _restate(later, root / "restated", RESTATED),
    }


def _built(summary: BuildSummary) -> dict[str, list[date]]:
    return {fam: sorted(ds) for fam, ds in summary.built.items()}


def test_a_new_month_builds_only_the_new_as_of_and_equals_a_full_build(
    exports: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace(tmp_path / "ws")
    _ingest(exports["earlier"], ws)
    first = build(ws, cfg=load_config())
    assert first.as_of[-1] == CUT and all(ds == first.as_of for ds in first.built.values())
    files = {fam: {p: p.stat().st_mtime_ns for p in ws.feature_files(fam)} for fam in first.built}
    _ingest(exports["later"], ws)
    with caplog.at_level("INFO", logger="features.build"):
        again = build(ws, cfg=load_config())
    for fam, old in files.items():  # the older months' files are not rewritten; the new month is one file
        assert {p: p.stat().st_mtime_ns for p in old} == old, fam
        assert sorted(set(ws.feature_files(fam)) - set(old)) == [ws.feature_table(fam) / "2026-10-01.parquet"], fam
    assert again.as_of[-1] == date(2026, 10, 1) and again.as_of[:-1] == first.as_of
    # the monthly sources aggregate the new month only (September), the others come from the cache
    assert re.search(r"txn: 1 of \d+ months aggregated", caplog.text), caplog.text
    assert re.search(r"bal: 1 of \d+ months aggregated", caplog.text), caplog.text  # new accounts: later months
    # every family, the tiers too: nothing before the new month changed for a point-in-time feature
    assert _built(again) == {fam: [date(2026, 10, 1)] for fam in first.built}, _built(again)
    _assert_same_as_full(ws, tmp_path, exports["later"])


def test_a_restated_old_month_rebuilds_the_as_ofs_after_it_and_equals_a_full_build(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / "ws")
    _ingest(exports["later"], ws)
    build(ws, cfg=load_config())
    _ingest(exports["restated"], ws)
    again = _built(build(ws, cfg=load_config()))
    after = [d for d in built_as_of(ws) if d > RESTATED]
    for fam in MONTH_FAMILIES:
        assert again[fam] == after, fam
    for fam in ("demo", "holdings", "tax", "marketing"):  # they read no transaction
        assert again[fam] == [], fam
    assert again[TIERS] == after  # its activity part counts transactions
    _assert_same_as_full(ws, tmp_path, exports["restated"])


def _with_history(src: Path, dst: Path) -> tuple[Path, str]:
    """``src`` with a customer opened in its last month given two tax records published years
    before (a firm bringing its tax history), each copied from another customer's record."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    customers = pd.read_parquet(src / "customers.parquet")
    new = customers[pd.to_datetime(customers["open_date"]) >= pd.Timestamp(CUT)]
    assert len(new), "the simulated bank opened no customer in its last month"
    who = str(new["customer_id"].iloc[0])
    tax = pd.read_parquet(src / "tax_records.parquet")
    assert not (tax["customer_id"] == who).any()
    old = tax[pd.to_datetime(tax["published_date"]) < pd.Timestamp(CUT) - pd.DateOffset(months=6)].head(2).copy()
    assert len(old) == 2
    old["customer_id"] = who
    old["tax_year"] = [2023, 2024]
    pd.concat([tax, old], ignore_index=True).to_parquet(dst / "tax_records.parquet", index=False)
    return dst, who


def test_a_new_customers_old_records_reach_only_the_as_ofs_after_its_opening(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    """Month N sets the new customer's tax records aside (no such customer yet); month N+1 accepts
    them, dated years back, yet only the new as-of is rebuilt, as for every other family."""
    later, who = _with_history(exports["later"], tmp_path / "later")
    earlier = _cut(later, tmp_path / "earlier", CUT)
    ws = Workspace(tmp_path / "ws")
    _ingest(earlier, ws)
    assert not (pd.read_parquet(ws.table("tax_records"))["customer_id"] == who).any()  # set aside
    first = build(ws, cfg=load_config())
    _ingest(later, ws)
    assert (pd.read_parquet(ws.table("tax_records"))["customer_id"] == who).sum() == 2
    again = build(ws, cfg=load_config())
    assert _built(again) == {fam: [date(2026, 10, 1)] for fam in first.built}, _built(again)
    tax = pd.read_parquet(ws.feature_table("tax"))
    mine = tax[(tax[JOIN_KEY] == who) & (pd.to_datetime(tax[EVENT_TS]) == pd.Timestamp(2026, 10, 1))]
    assert mine["tax_years_on_record"].tolist() == [2]  # the records do reach the new as-of
    _assert_same_as_full(ws, tmp_path, later)


def test_fingerprints_count_a_customers_row_from_its_opening_where_it_feeds_only_that_customer() -> None:
    import duckdb

    con = duckdb.connect()
    con.register(
        "customers",
        pd.DataFrame({"customer_id": ["a", "b"], "open_date": pd.to_datetime(["2020-05-10", "2026-09-03"]).date}),
    )
    records = pd.DataFrame(
        {
            "customer_id": ["a", "b", "b", "ghost"],
            "tax_year": [2021, 2021, 2022, 2021],
            "published_date": pd.to_datetime(["2022-04-20", "2022-04-20", "2023-04-20", "2022-04-20"]).date,
        }
    )
    con.register("tax_records", records)
    con.register("transactions", pd.DataFrame({"customer_id": ["b"], "txn_time": pd.to_datetime(["2022-04-01"])}))
    fps = fingerprint.compute(con, ["customers", "tax_records", "transactions"])
    # a's record by its own date, b's two by b's opening, an unknown customer's by its own date
    assert {b: int(v.split(":")[0]) for b, v in fps["tax_records"].items()} == {"2022-04": 2, "2026-09": 2}
    assert list(fps["transactions"]) == ["2022-04"]  # not in FROM_OPENING: its own date
    con.close()


def test_nothing_changed_builds_nothing_and_full_rebuilds_everything(exports: dict[str, Path], tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    _ingest(exports["later"], ws)
    build(ws, cfg=load_config())
    before = {fam: ws.feature_table(fam).stat().st_mtime_ns for fam in modules(False)}
    same = build(ws, cfg=load_config())
    assert not any(same.built.values()) and "nothing rebuilt" in same.describe()
    assert {fam: ws.feature_table(fam).stat().st_mtime_ns for fam in modules(False)} == before
    full = build(ws, cfg=load_config(), full=True)
    assert all(ds == full.as_of for ds in full.built.values())


def test_a_tiers_setting_change_rebuilds_the_tiers_only(exports: dict[str, Path], tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    _ingest(exports["later"], ws)
    cfg = load_config()
    build(ws, cfg=cfg)
    weights = cfg.tiers.weights.model_copy(update={"deposit": cfg.tiers.weights.deposit + 1.0})
    changed = cfg.model_copy(update={"tiers": cfg.tiers.model_copy(update={"weights": weights})})
    again = _built(build(ws, cfg=changed))
    assert again[TIERS] == built_as_of(ws)
    assert all(ds == [] for fam, ds in again.items() if fam != TIERS)


def test_explicit_dates_keep_the_record_of_the_others(exports: dict[str, Path], tmp_path: Path) -> None:
    """Rebuilding chosen dates by hand leaves the other dates recorded as built, so the next
    incremental build does not redo them."""
    ws = Workspace(tmp_path / "ws")
    _ingest(exports["later"], ws)
    build(ws, cfg=load_config())
    build(ws, [date(2026, 10, 1)], cfg=load_config())
    assert not any(build(ws, cfg=load_config()).built.values())


def test_fingerprints_see_one_cell_and_ignore_row_order(exports: dict[str, Path], tmp_path: Path) -> None:
    import duckdb

    tx = pd.read_parquet(exports["later"] / "transactions.parquet")
    con = duckdb.connect()

    def fps(df: pd.DataFrame) -> fingerprint.Fingerprints:
        con.register("transactions", df)
        return fingerprint.compute(con, ["transactions"])

    base = fps(tx)
    assert fps(tx.sample(frac=1.0, random_state=1)) == base
    one = tx.copy()
    i = one.index[len(one) // 2]
    one.loc[i, "counterparty_id"] = "someone-else"
    changed = fps(one)
    month = f"{pd.Timestamp(one.loc[i, 'txn_time']):%Y-%m}"
    assert [b for b in base["transactions"] if base["transactions"][b] != changed["transactions"][b]] == [month]


def test_stale_dates_follow_the_first_changed_month() -> None:
    dates = [date(2026, m, 1) for m in range(1, 7)]
    old = {"t": {"2026-02": "1:a", "2026-04": "2:b"}, "c.x": {"*": "1:c"}}
    assert fingerprint.stale_dates(old, old, ["t", "c.x"], dates) == set()
    new = {"t": {"2026-02": "1:a", "2026-04": "3:b"}, "c.x": {"*": "1:c"}}
    assert fingerprint.stale_dates(old, new, ["t"], dates) == {date(2026, 5, 1), date(2026, 6, 1)}
    assert fingerprint.stale_dates(old, new, ["c.x"], dates) == set()  # not a part this family reads
    gone = {"t": {"2026-04": "2:b"}, "c.x": {"*": "1:c"}}  # February withdrawn
    assert fingerprint.stale_dates(old, gone, ["t"], dates) == set(dates[2:])
    timeless = {"t": old["t"], "c.x": {"*": "1:d"}}
    assert fingerprint.stale_dates(old, timeless, ["c.x"], dates) == set(dates)


def test_a_family_reads_the_customer_columns_its_sql_names() -> None:
    fps = {"customers": {}, "customers.occupation": {}, "customers.gender": {}, "transactions": {}, "loans.end": {}}
    deps = fingerprint.dependencies(["SELECT c.occupation FROM customers c JOIN loans l USING (customer_id)"], fps)
    assert deps == ["customers", "customers.occupation", "loans.end"]
