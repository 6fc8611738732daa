"""The plain reference script of benchmarks/bench_chain.py: point in time on a hand-built export,
and a real model on a small simulated bank (it is the yardstick nbp's chain is measured against,
so it must be right, not just fast)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks import plain_chain
from nbp.cli import main as nbp_main

CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["C1", "C2"],
        "customer_type": ["individual", "business"],
        "birth_date": ["1990-06-15", ""],
        "open_date": ["2025-06-01", "2026-02-15"],
        "branch_id": ["B1", "B1"],
    }
)
ACCOUNTS = pd.DataFrame(
    {
        "account_id": ["A1", "A2", "A3"],
        "customer_id": ["C1", "C2", "C1"],
        "account_type": ["savings", "current", "debit_card"],
        "open_date": ["2025-06-01", "2026-02-15", "2025-07-01"],
        "close_date": ["", "", "2026-03-10"],
    }
)
TRANSACTIONS = pd.DataFrame(
    {
        "txn_id": ["T1", "T2", "T3", "T4", "T5"],
        "customer_id": ["C1"] * 5,
        "txn_time": [
            "2025-12-01 08:00:00",
            "2026-01-10 09:00:00",
            "2026-02-20 10:00:00",
            "2026-02-28 23:59:59",
            "2026-03-01 00:00:00",  # at T = 2026-03-01 itself: not known at T
        ],
        "amount": [500.0, 1000.0, 2000.0, 50.0, 4000.0],
        "direction": ["C", "C", "C", "D", "C"],
        "channel": ["counter", "batch", "batch", "pos", "batch"],
        "txn_type": ["cash", "payroll", "payroll", "purchase", "payroll"],
    }
)
LOANS = pd.DataFrame(
    {
        "loan_id": ["L1"],
        "customer_id": ["C1"],
        "product": ["consumer"],
        "application_date": ["2026-03-10"],
        "grant_date": ["2026-03-15"],
        "term_months": [12],
        "end_date": [""],
    }
)


@pytest.fixture
def hand_built(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """The export above as CSV files (the optional tables absent), features built in memory."""
    for name, frame in [("customers", CUSTOMERS), ("accounts", ACCOUNTS), ("transactions", TRANSACTIONS)]:
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    LOANS.to_csv(tmp_path / "loans.csv", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"export_date": "2026-05-31"}), encoding="utf-8")
    con = duckdb.connect()
    export_date = plain_chain.open_export(con, tmp_path)
    as_ofs = plain_chain.as_of_months(con, export_date)
    assert export_date == date(2026, 5, 31)
    # first full month of transactions is January (they start on 1 December at 08:00); then one month more
    assert as_ofs == [date(2026, m, 1) for m in (2, 3, 4, 5, 6)]
    plain_chain.build_features(con, as_ofs)
    return con


def _row(con: duckdb.DuckDBPyConnection, customer: str, t: str) -> dict:
    got = con.execute("SELECT * FROM feats WHERE customer_id = ? AND t = ?", [customer, date.fromisoformat(t)])
    cols = [d[0] for d in got.description]
    rows = got.fetchall()
    assert len(rows) == 1, (customer, t, rows)
    return dict(zip(cols, rows[0], strict=True))


def test_features_see_only_records_before_the_as_of(hand_built: duckdb.DuckDBPyConnection) -> None:
    march = _row(hand_built, "C1", "2026-03-01")
    assert march["in_amt_1m"] == 2000.0  # February; the payroll at 2026-03-01 00:00 is not before T
    assert march["in_amt_3m"] == 3500.0  # December to February
    assert march["in_payroll_3m"] == 3000.0
    assert march["out_purchase_1m"] == 50.0 and march["n_pos_3m"] == 1
    assert march["active_months_12m"] == 3
    assert march["age_years"] == 35 and march["customer_type"] == 0
    assert march["acc_debit_card"] == 1 and march["accounts_open"] == 2  # closed on 2026-03-10, after T
    april = _row(hand_built, "C1", "2026-04-01")
    assert april["in_amt_1m"] == 4000.0 and april["in_amt_3m"] == 7000.0
    assert april["acc_debit_card"] == 0 and april["accounts_open"] == 1


def test_labels_and_holdings_follow_the_spec(hand_built: duckdb.DuckDBPyConnection) -> None:
    # granted 2026-03-15: in (T, T + 90 days] for February and March, held from April on
    for t, label, holds in [("2026-02-01", 1, False), ("2026-03-01", 1, False), ("2026-04-01", 0, True)]:
        r = _row(hand_built, "C1", t)
        assert (r["y_consumer"], r["holds_consumer"], r["loans_active"]) == (label, holds, int(holds)), t
    assert _row(hand_built, "C1", "2026-04-01")["months_since_grant"] == 1


def test_a_customer_is_a_row_from_the_month_after_the_relationship_began(
    hand_built: duckdb.DuckDBPyConnection,
) -> None:
    assert hand_built.execute(
        "SELECT count(*) FROM feats WHERE customer_id = 'C2' AND t = '2026-02-01'"
    ).fetchone() == (0,)
    c2 = _row(hand_built, "C2", "2026-03-01")
    assert c2["in_amt_12m"] == 0 and c2["acc_current"] == 1 and c2["customer_type"] == 1


@pytest.mark.slow
def test_the_plain_chain_learns_on_a_simulated_bank(tmp_path: Path) -> None:
    sim = CliRunner().invoke(
        nbp_main, ["simulate", "--out", str(tmp_path / "bank"), "--customers", "10000", "--months", "12", "--seed", "5"]
    )
    assert sim.exit_code == 0, sim.output
    assert (
        plain_chain.main(
            [str(tmp_path / "bank" / "export"), "--work", str(tmp_path / "w"), "--json", str(tmp_path / "s.json")]
        )
        == 0
    )
    summary = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert summary["as_of"][1] == "2026-11-01"
    scores = pd.read_parquet(tmp_path / "w" / "scores.parquet")
    assert len(scores) == summary["scored"] > 9000 and scores["customer_id"].is_unique
    for product in plain_chain.PRODUCTS:
        assert scores[product].between(0, 1).all() and scores[product].nunique() > 10, product
    # a real model: the held-out month's uptakes are ranked above its other candidates
    consumer = summary["products"]["consumer"]
    assert consumer["held_out_uptakes"] >= 8, consumer
    assert consumer["auc"] > 0.6, consumer
