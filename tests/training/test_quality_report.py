"""The data-quality report: workbook sheets and Chinese headers, the to-complete list's order."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from bankexport import quality
from bankexport.ingest import ingest
from nbp.config import IngestConfig, load_config
from nbp.workspace import Workspace
from training import quality_report as qr

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bankexport.conftest import base_tables, write_export


def _completeness(rows: list[tuple[str, str | None, list[bool | None]]], fields: list[str]) -> pd.DataFrame:
    """A customer_completeness frame: (customer_id, manager_id, known per field) in branch B1."""
    df = pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "branch_id": "B1",
            "manager_id": [r[1] for r in rows],
            "customer_type": "individual",
        }
    ).astype("string")
    for i, f in enumerate(fields):
        df[quality.KNOWN + f] = pd.array([r[2][i] for r in rows], dtype="boolean")
    return df


FIELDS = ["monthly_income", "education", "manager_id"]  # two model fields, then one that is not


def test_the_list_ranks_by_expected_value_times_missing_model_fields() -> None:
    comp = _completeness(
        [
            ("a", "M1", [False, False, True]),  # 2 model fields missing
            ("b", "M1", [False, True, True]),  # 1 missing
            ("c", "M1", [True, True, False]),  # only a non-model field missing: priority 0
            ("d", "M1", [True, True, True]),  # complete: not listed
            ("e", "M1", [False, None, True]),  # NA does not apply: 1 missing
            ("f", "M2", [False, False, False]),
        ],
        FIELDS,
    )
    values = pd.Series({"a": 0.3, "b": 0.9, "c": 5.0, "d": 9.0, "e": 0.1})  # f has no score: 0
    todo, by_value = qr.to_complete_list(comp, values, top=3)
    assert by_value
    m1 = todo[todo["manager_id"] == "M1"]
    # priorities: b 0.9 x 1, a 0.3 x 2 = 0.6, e 0.1, c 0 (cut by top=3)
    assert list(m1["customer_id"]) == ["b", "a", "e"] and list(m1["rank"]) == [1, 2, 3]
    assert np.allclose(m1["priority"], [0.9, 0.6, 0.1])
    assert list(todo[todo["manager_id"] == "M2"]["customer_id"]) == ["f"]
    assert todo.set_index("customer_id").at["e", "missing"] == ["monthly_income"]
    assert todo.set_index("customer_id").at["f", "n_model_missing"] == 2


def test_without_scores_the_list_ranks_by_missing_fields() -> None:
    comp = _completeness(
        [("a", None, [False, True, True]), ("b", None, [False, False, False]), ("c", None, [True, False, False])],
        FIELDS,
    )
    todo, by_value = qr.to_complete_list(comp, None, top=10)
    assert not by_value
    assert list(todo["customer_id"]) == ["b", "c", "a"]
    assert todo["expected_value"].isna().all() and todo["manager_id"].isna().all()


@pytest.fixture
def ingested(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "home")
    tables = base_tables()
    manifest = {"format": "bank-export/1", "export_date": "2024-05-31"}
    ingest(write_export(tmp_path / "e1", tables, manifest=manifest), ws, IngestConfig())
    tables["customers"][2]["birth_date"] = "1990-02-03"
    tables["transactions"][0]["amount"] = "0"
    ingest(
        write_export(tmp_path / "e2", tables, manifest={**manifest, "export_date": "2024-06-30"}), ws, IngestConfig()
    )
    return ws


def _sheet(path: Path, title: str) -> list[tuple]:
    return list(openpyxl.load_workbook(path)[title].iter_rows(values_only=True))


def test_workbook_sheets_and_chinese_headers(ingested: Workspace, tmp_path: Path) -> None:
    cfg = load_config()
    report = qr.build_report(cfg, ingested)
    written = qr.write_report(report, tmp_path / "out" / "q.xlsx")
    assert written["trend"].name == qr.TREND_PNG and written["trend"].stat().st_size > 10_000
    assert openpyxl.load_workbook(written["xlsx"]).sheetnames == list(qr.SHEETS)

    overview = _sheet(written["xlsx"], "总览")
    assert overview[1][:6] == ("字段", "字段名称", "适用客户", "模型使用", "2024-05-31", "2024-06-30")
    birth = next(r for r in overview if r[0] == "birth_date")
    # two individuals: C1's birth date known from the start, C3's recorded for the second export
    assert birth[1] == "出生日期" and birth[4:6] == (0.5, 1.0) and birth[-1] == pytest.approx(0.5)

    branches = _sheet(written["xlsx"], "按支行")
    assert branches[0][:4] == ("支行号", "支行名称", "总体完整率", "较上期变化")
    assert [r[:2] for r in branches[1:]] == [("B1", "城关支行"), ("B2", "王庄支行")]

    managers = _sheet(written["xlsx"], "按客户经理")
    assert ("B1", "城关支行", "M1", "张三") in [r[:4] for r in managers[1:]]
    assert "（无客户经理）" in [r[2] for r in managers[1:]]

    aside = _sheet(written["xlsx"], "剔除记录")
    assert aside[0] == ("数据日期", "表", "规则", "剔除行数", "读入行数", "剔除占比")
    assert ("2024-06-30", "transactions", "non_positive", 1, 3) in [r[:5] for r in aside[1:]]

    todo = _sheet(written["xlsx"], "待完善清单")
    assert "排序规则" in todo[0][0] and todo[1][:6] == (
        "支行号",
        "支行名称",
        "客户经理号",
        "客户经理姓名",
        "名次",
        "客户号",
    )
    listed = {r[5]: r for r in todo[2:]}
    # C1 lacks only fields that ECIF leaves empty for it (no scores: ranked by count)
    assert set(listed) == {"C1", "C2", "C3"}
    assert "婚姻状况" in listed["C1"][7] and "纳税信用等级" in listed["C3"][7]


def test_page_data_scoped_to_a_branch(ingested: Workspace) -> None:
    cfg = load_config()
    whole = qr.page_data(cfg, ingested)
    assert whole["dates"] == ["2024-05-31", "2024-06-30"]
    assert [b["branch_id"] for b in whole["branches"]] == ["B1", "B2"]
    assert whole["trend"][0]["zh"] == "全部字段" and len(whole["trend"][0]["completeness"]) == 2
    assert any(a["rule"] == "non_positive" for a in whole["set_aside"])
    b2 = qr.page_data(cfg, ingested, "B2")
    assert [b["branch_id"] for b in b2["branches"]] == ["B2"] and b2["set_aside"] == []
    birth = next(t for t in b2["trend"] if t["field"] == "birth_date")
    assert birth["completeness"] == [0.0, 1.0]
    assert b2["branches"][0]["change"] > 0


@pytest.mark.integration
def test_the_cli_writes_the_report_under_the_workspace(
    ingested: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from nbp.cli import main

    monkeypatch.setenv("NBP_HOME", str(ingested.home))
    res = CliRunner().invoke(main, ["quality", "report"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "on 2024-06-30" in res.output and "since 2024-05-31" in res.output
    assert (ingested.quality_reports_dir / qr.REPORT_XLSX).exists()
    assert (ingested.quality_reports_dir / qr.TREND_PNG).exists()
    out = tmp_path / "elsewhere" / "q.xlsx"
    res = CliRunner().invoke(main, ["quality", "report", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0 and out.exists() and (out.parent / qr.TREND_PNG).exists()


@pytest.mark.integration
def test_the_cli_says_to_ingest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from nbp.cli import main

    monkeypatch.setenv("NBP_HOME", str(tmp_path / "empty"))
    res = CliRunner().invoke(main, ["quality", "report"])
    assert res.exit_code == 1 and "nbp ingest" in res.output
