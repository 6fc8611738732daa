"""The campaign store: every issued list remembered, never silently rewritten."""

from __future__ import annotations

import multiprocessing
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from nbp.campaigns import (
    ISSUED_COLUMNS,
    CampaignConflict,
    CampaignStore,
    ListParams,
    first_issue,
    folder_name,
)
from nbp.errors import DataContractError


def _rows(ids: list[str], control: set[str] = frozenset(), score: float = 0.5) -> pd.DataFrame:
    treat = [c for c in ids if c not in control]
    return pd.DataFrame(
        {
            "customer_id": ids,
            "branch_id": ["B1"] * len(ids),
            "manager_id": [None if i % 2 else "M1" for i in range(len(ids))],
            "score": [score - i / 100 for i in range(len(ids))],
            "rank": [treat.index(c) + 1 if c in treat else None for c in ids],
            "arm": ["control" if c in control else "treatment" for c in ids],
        }
    )


def test_a_list_is_stored_with_its_columns_and_read_back(tmp_path: Path) -> None:
    store = CampaignStore(tmp_path, "QS")
    p = ListParams("consumer", "B1", None, 3)
    rows, new = store.issue(
        "spring", p, _rows(["C1", "C2", "C3", "C4"], {"C2"}), list_date=date(2026, 11, 1), model_version=4
    )
    assert new
    back = store.issued()
    assert list(back.columns) == ISSUED_COLUMNS
    assert back["customer_id"].tolist() == ["C1", "C2", "C3", "C4"]
    assert back["arm"].tolist() == ["treatment", "control", "treatment", "treatment"]
    assert back["rank"].tolist()[:1] == [1] and pd.isna(back["rank"].iloc[1])
    assert set(back["model_version"]) == {4} and set(back["bank_code"]) == {"QS"}
    assert (back["list_date"] == pd.Timestamp("2026-11-01")).all()
    assert store.campaigns()[0]["lists"][0]["treatment"] == 3


def test_the_same_parameters_return_the_stored_list_not_a_new_one(tmp_path: Path) -> None:
    store = CampaignStore(tmp_path)
    p = ListParams("consumer", None, None, 2)
    first, _ = store.issue("c1", p, _rows(["A", "B"]), list_date=date(2026, 11, 1), model_version=1)
    again, new = store.issue("c1", p, _rows(["X", "Y"], score=0.9), list_date=date(2026, 12, 1), model_version=2)
    assert not new
    pd.testing.assert_frame_equal(again, first)
    assert store.lookup("c1", p)["customer_id"].tolist() == ["A", "B"]
    assert store.lookup("c1", ListParams("consumer", None, None, 3)) is None


def test_other_parameters_add_a_list_and_first_issue_keeps_each_customer_once(tmp_path: Path) -> None:
    store = CampaignStore(tmp_path)
    store.issue("c1", ListParams("consumer", "B1"), _rows(["A", "B"]), list_date=date(2026, 11, 1), model_version=1)
    store.issue("c1", ListParams("consumer", "B2"), _rows(["B", "C"]), list_date=date(2026, 11, 1), model_version=1)
    rows = store.issued(["c1"])
    assert len(rows) == 4 and len(store.campaigns()[0]["lists"]) == 2
    assert sorted(first_issue(rows)["customer_id"]) == ["A", "B", "C"]


def test_a_campaign_belongs_to_one_product(tmp_path: Path) -> None:
    store = CampaignStore(tmp_path)
    store.issue("c1", ListParams("consumer"), _rows(["A"]), list_date=date(2026, 11, 1), model_version=1)
    with pytest.raises(CampaignConflict, match="issued for product 'consumer'"):
        store.issue("c1", ListParams("tax_linked"), _rows(["A"]), list_date=date(2026, 11, 1), model_version=1)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 65, "a\nb"])
def test_bad_campaign_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DataContractError, match="campaign id"):
        CampaignStore(tmp_path).issue(
            bad, ListParams("consumer"), _rows(["A"]), list_date=date(2026, 1, 1), model_version=1
        )


def test_ids_that_would_leave_the_folder_stay_inside(tmp_path: Path) -> None:
    for cid in ("../../etc", "a/b", "消费贷-春季"):
        assert "/" not in folder_name(cid) and ".." not in folder_name(cid)
    store = CampaignStore(tmp_path / "c")
    store.issue("../../x", ListParams("consumer"), _rows(["A"]), list_date=date(2026, 1, 1), model_version=1)
    assert [p.parent.parent for p in (tmp_path / "c").glob("*/campaign.json")] == [tmp_path / "c"]
    assert store.campaigns()[0]["campaign_id"] == "../../x"


def _issue_in_process(root: str, ids: list[str], out: multiprocessing.Queue) -> None:
    rows, new = CampaignStore(Path(root)).issue(
        "race", ListParams("consumer"), _rows(ids), list_date=date(2026, 11, 1), model_version=1
    )
    out.put((new, rows["customer_id"].tolist()))


def test_two_processes_issuing_at_once_agree_on_one_list(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_issue_in_process, args=(str(tmp_path), ids, q)) for ids in (["A", "B"], ["C", "D"])]
    for p in procs:
        p.start()
    got = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert sorted(new for new, _ in got) == [False, True]
    assert got[0][1] == got[1][1]
    assert len(CampaignStore(tmp_path).campaigns()[0]["lists"]) == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_an_assignment_file_is_imported_per_campaign(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "a.csv",
        "campaign_id,product,list_date,customer_id,arm\n"
        "R1,consumer,2026-03-01,A,treatment\nR1,consumer,2026-03-01,B,control\n"
        "R2,tax_linked,2026-05-01,A,control\n",
    )
    store = CampaignStore(tmp_path / "store")
    assert store.import_file(f, {"A", "B"}) == ["R1", "R2"]
    rows = store.issued()
    assert rows.loc[rows["campaign_id"] == "R1", "arm"].tolist() == ["treatment", "control"]
    assert store.meta("R2")["lists"][0]["params"]["source"] == "import"
    with pytest.raises(CampaignConflict, match="already recorded"):
        store.import_file(f, {"A", "B"})


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("campaign_id,product,list_date,customer_id\nR,consumer,2026-03-01,A\n", "missing column"),
        ("campaign_id,product,list_date,customer_id,arm\nR,consumer,2026-03-01,A,maybe\n", "line 2: arm must be"),
        ("campaign_id,product,list_date,customer_id,arm\nR,consumer,2026-3-1x,A,control\n", "line 2: list_date"),
        (
            "campaign_id,product,list_date,customer_id,arm\nR,consumer,2026-03-01,A,control\nR,consumer,2026-03-01,Z,control\n",
            "line 3: customer_id is not a customer",
        ),
        (
            "campaign_id,product,list_date,customer_id,arm\nR,consumer,2026-03-01,A,control\nR,consumer,2026-03-01,A,treatment\n",
            "line 3: customer listed twice",
        ),
        (
            "campaign_id,product,list_date,customer_id,arm\nR,consumer,2026-03-01,A,control\nR,tax_linked,2026-03-01,B,treatment\n",
            "one product",
        ),
    ],
)
def test_a_bad_assignment_names_file_line_and_rule(tmp_path: Path, body: str, rule: str) -> None:
    f = _write(tmp_path / "bad.csv", body)
    with pytest.raises(DataContractError, match=rule) as e:
        CampaignStore(tmp_path / "store").import_file(f, {"A", "B"})
    assert "bad.csv" in str(e.value)
    assert CampaignStore(tmp_path / "store").campaigns() == []


def test_the_cli_imports_and_lists_campaigns_and_refuses_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from nbp.cli import main
    from nbp.workspace import Workspace

    monkeypatch.setenv("NBP_HOME", str(tmp_path / "home"))
    ws = Workspace(tmp_path / "home")
    f = _write(
        tmp_path / "r.csv",
        "campaign_id,product,list_date,customer_id,arm\nR1,consumer,2026-03-01,A,treatment\nR1,consumer,2026-03-01,B,control\n",
    )
    before = CliRunner().invoke(main, ["campaign", "import", str(f)])
    assert before.exit_code == 1 and "nbp ingest" in before.output
    ws.ingested_dir.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["A", "B"]}).to_parquet(ws.table("customers"))
    res = CliRunner().invoke(main, ["campaign", "import", str(f)])
    assert res.exit_code == 0, res.output
    assert "recorded 1 campaign(s): R1" in res.output
    listed = CliRunner().invoke(main, ["campaign", "list"])
    assert "R1  consumer  list date 2026-03-01  1 list(s)  treatment 1  control 1" in listed.output
    again = CliRunner().invoke(main, ["campaign", "import", str(f)])
    assert again.exit_code == 1 and "already recorded" in again.output and "Traceback" not in again.output
    bad = _write(
        tmp_path / "p.csv", "campaign_id,product,list_date,customer_id,arm\nR2,mortgage,2026-03-01,A,control\n"
    )
    res = CliRunner().invoke(main, ["campaign", "import", str(bad)])
    assert res.exit_code == 2 and "p.csv, line 2: product must be one of" in res.output  # a broken data contract
