"""Target list files a marketer can use without a mistake (serving/export.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from nbp.errors import DataContractError
from nbp.sheets import TRIGGERS
from nbp.workspace import Workspace
from serving.errors import Unprocessable
from serving.export import (
    CONTROL_SHEET,
    HEADERS_ZH,
    SHEET,
    control_path,
    display_names,
    read_target_list,
    write_target_list,
)

NAMES = {"consumer": "消费贷", "tax_linked": "税易贷"}
BRANCHES = {"B01": "城关支行", "B02": "王庄支行"}
MANAGERS = {"M1": "张三"}
# OWASP's CSV-injection payloads, and a few neighbours (leading spaces, full-width, a quote already there)
PAYLOADS = [
    '=HYPERLINK("http://evil","x")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(1+1)",
    "\t=1",
    "\r=1",
    "  =1+1;",
    "＝1+1",
    "'=1",
    "-",
    "@",
]


def _target_list() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["000123", "C2", "C3", "C4"],
            "branch_id": ["B01", "B01", "B02", "B09"],
            "manager_id": ["M1", None, "M3", "M1"],
            "product": ["consumer", "consumer", "tax_linked", "consumer"],
            "propensity": [0.8123456789, 0.5, 0.25, 0.9],
            "rank": pd.array([1, 2, None, 3], dtype="Int64"),
            "control": [False, False, True, False],
            "reasons": [["近6个月月均代发工资：1.2万元", "持有理财账户：是"], [], ["上月末余额：3,500元"], []],
            "expected_value": [0.8, 0.5, 1.0, 0.9],  # not exported
        }
    )


def _write(tmp_path: Path, suffix: str, df: pd.DataFrame | None = None) -> Path:
    return write_target_list(
        _target_list() if df is None else df,
        tmp_path / "out" / f"list{suffix}",
        product_names=NAMES,
        branch_names=BRANCHES,
        manager_names=MANAGERS,
    )


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_round_trip_keeps_rows_contact_rows_first(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path, suffix)
    written = sorted(p.name for p in path.parent.iterdir())
    assert written == (["list.control.csv", "list.csv"] if suffix == ".csv" else ["list.xlsx"])  # no temporary file
    back = read_target_list(path, product_names=NAMES)
    assert list(back.columns) == [*(c for c in HEADERS_ZH if c != "reasons"), "control", "reasons"]
    assert back["customer_id"].tolist() == ["000123", "C2", "C4", "C3"]  # leading zeros kept, control last
    assert back["control"].tolist() == [False, False, False, True]
    assert back["rank"].tolist() == [1, 2, 3, pd.NA]
    assert back["product"].tolist() == ["consumer", "consumer", "consumer", "tax_linked"]
    assert back["branch_name"].tolist() == ["城关支行", "城关支行", pd.NA, "王庄支行"]  # B09 unknown: blank
    assert back["manager_name"].tolist() == ["张三", pd.NA, "张三", pd.NA]
    assert back["reasons"].tolist() == [["近6个月月均代发工资：1.2万元", "持有理财账户：是"], [], [], []]
    tol = 0.0005 if suffix == ".csv" else 1e-12  # CSV holds the percentage to 0.1 point
    assert back["propensity"].tolist() == pytest.approx([0.8123456789, 0.5, 0.9, 0.25], abs=tol)


def test_csv_has_bom_chinese_headers_names_and_percentages(tmp_path: Path) -> None:
    path = _write(tmp_path, ".csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0] == ["客户号", "支行", "支行名称", "客户经理", "客户经理姓名", "产品", "倾向分", "排名", "推荐理由"]
    assert rows[1] == [
        "000123",
        "B01",
        "城关支行",
        "M1",
        "张三",
        "消费贷",
        "81.23%",
        "1",
        "近6个月月均代发工资：1.2万元；持有理财账户：是",
    ]
    assert "C3" not in {r[0] for r in rows}  # the control customer is not in the contact list
    ctrl = list(csv.reader(control_path(path).read_bytes().decode("utf-8-sig").splitlines()))
    assert ctrl[0] == ["说明", "客户号", "支行", "支行名称", "客户经理", "客户经理姓名", "产品", "倾向分"]
    assert ctrl[1:] == [["对照组——请勿营销", "C3", "B02", "王庄支行", "M3", "", "税易贷", "25.00%"]]


def test_xlsx_contact_and_control_sheets_with_widths_filters_and_percent(tmp_path: Path) -> None:
    path = _write(tmp_path, ".xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == [SHEET, CONTROL_SHEET]
    ws = wb[SHEET]
    header = [c.value for c in ws[1]]
    assert header == list(HEADERS_ZH.values())
    assert [ws.cell(r, 1).value for r in range(2, ws.max_row + 1)] == ["000123", "C2", "C4"]
    assert ws.auto_filter.ref == "A1:I4" and ws.freeze_panes == "A2"
    p = ws.cell(2, header.index("倾向分") + 1)
    assert p.value == pytest.approx(0.8123456789) and p.number_format == "0.00%"
    widths = {c: ws.column_dimensions[c].width for c in "ABCDEFGHI"}
    assert widths["I"] >= 40 and all(w >= 4 for w in widths.values())  # reasons column wide enough to read
    assert widths["C"] >= len("城关支行") * 2  # Chinese characters take two columns
    ctrl = wb[CONTROL_SHEET]
    assert ctrl.cell(1, 1).value == "对照组——请勿营销" and ctrl.cell(1, 1).font.b
    assert [c.value for c in ctrl[2]] == ["客户号", "支行", "支行名称", "客户经理", "客户经理姓名", "产品", "倾向分"]
    assert [ctrl.cell(r, 1).value for r in range(3, ctrl.max_row + 1)] == ["C3"]
    assert ctrl.auto_filter.ref == "A2:G3" and ctrl.freeze_panes == "A3"


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_without_names_tables_the_list_still_works(tmp_path: Path, suffix: str) -> None:
    path = write_target_list(_target_list(), tmp_path / f"list{suffix}")
    back = read_target_list(path)
    assert back["branch_name"].isna().all() and back["manager_name"].isna().all()
    assert back["customer_id"].tolist() == ["000123", "C2", "C4", "C3"]


def test_display_names_from_the_ingested_tables(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "home")
    assert display_names(ws) == ({}, {})  # neither optional table ingested
    ws.ingested_dir.mkdir(parents=True)
    pd.DataFrame({"branch_id": ["B01", "B02"], "name": ["城关支行", None]}).to_parquet(ws.table("branches"))
    pd.DataFrame({"manager_id": ["M1"], "branch_id": ["B01"]}).to_parquet(ws.table("managers"))  # no name column
    assert display_names(ws) == ({"B01": "城关支行"}, {})


def _hostile() -> pd.DataFrame:
    n = len(PAYLOADS)
    return pd.DataFrame(
        {
            "customer_id": PAYLOADS,
            "branch_id": PAYLOADS[::-1],
            "manager_id": PAYLOADS,
            "product": ["consumer"] * n,
            "propensity": [0.5] * n,
            "rank": pd.array(range(1, n + 1), dtype="Int64"),
            "control": [i % 3 == 0 for i in range(n)],
            "reasons": [[p] for p in PAYLOADS],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_owasp_payloads_never_reach_a_spreadsheet_as_formulas_and_ids_round_trip(tmp_path: Path, suffix: str) -> None:
    df = _hostile()
    names = {p: p for p in PAYLOADS}
    path = write_target_list(df, tmp_path / f"list{suffix}", branch_names=names, manager_names=names)
    if suffix == ".xlsx":
        cells = [c for ws in load_workbook(path) for row in ws.iter_rows() for c in row if c.value is not None]
        assert cells and not [c.coordinate for c in cells if c.data_type == "f"]
        assert not [c.value for c in cells if isinstance(c.value, str) and c.value.lstrip(" ")[:1] in TRIGGERS]
    else:
        for p in (path, control_path(path)):
            text = p.read_bytes().decode("utf-8-sig")
            fields = [f for row in csv.reader(io.StringIO(text, newline="")) for f in row]
            assert fields and not [f for f in fields if f.lstrip(" ")[:1] in (*TRIGGERS, "＝")]
            assert '"\'=HYPERLINK(""http://evil"",""x"")"' in text or p == control_path(path)  # quoted
    back = read_target_list(path)
    by_id = back.set_index("customer_id")
    assert sorted(back["customer_id"]) == sorted(PAYLOADS)
    for p in PAYLOADS:
        assert by_id.loc[p, "manager_id"] == p and by_id.loc[p, "manager_name"] == p
    treated = back[~back["control"]]
    assert treated["reasons"].tolist() == [[c] for c in treated["customer_id"]]


def test_other_suffix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Unprocessable, match=r"'\.json'.*use \.csv or \.xlsx"):
        write_target_list(_target_list(), tmp_path / "list.json")
    assert not (tmp_path / "list.json").exists()


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="missing column.*rank"):
        write_target_list(_target_list().drop(columns="rank"), tmp_path / "list.csv")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_banks_list_carries_the_bank_on_every_row_of_both_tables(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path, suffix, _target_list().assign(bank_code="QINGSHAN"))
    if suffix == ".csv":
        heads = [next(csv.reader(io.StringIO(p.read_text(encoding="utf-8-sig")))) for p in (path, control_path(path))]
        assert heads[0][0] == "银行" and heads[1][:2] == ["说明", "银行"]
    else:
        book = load_workbook(path)
        assert book[SHEET].cell(1, 1).value == "银行" and book[SHEET].cell(2, 1).value == "QINGSHAN"
    back = read_target_list(path, product_names=NAMES)
    assert list(back.columns)[0] == "bank_code" and back["bank_code"].tolist() == ["QINGSHAN"] * 4
    assert back["customer_id"].tolist() == ["000123", "C2", "C4", "C3"]
    plain = read_target_list(_write(tmp_path / "plain", suffix), product_names=NAMES)
    assert "bank_code" not in plain.columns  # a list without a bank code is written as before


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_a_campaign_list_says_its_campaign_and_ranking_on_every_row(tmp_path: Path, suffix: str) -> None:
    df = _target_list().assign(uplift=[0.031, 0.012, 0.02, -0.004])
    df.attrs.update(campaign_id="春季-01", rank_by="uplift")
    path = write_target_list(df, tmp_path / f"list{suffix}", NAMES)
    back = read_target_list(path, NAMES)
    assert back["campaign_id"].tolist() == ["春季-01"] * 4
    assert back["rank_by"].tolist() == ["营销增益"] * 4
    if suffix == ".xlsx":
        head = [c.value for c in next(load_workbook(path)[SHEET].iter_rows(max_row=1))]
        assert head[:2] == ["营销活动", "排序依据"] and head[-1] == "营销增益"
    plain = _target_list()
    plain.attrs.update(campaign_id="c", rank_by="propensity")
    back = read_target_list(write_target_list(plain, tmp_path / f"plain{suffix}", NAMES), NAMES)
    assert set(back["rank_by"]) == {"倾向分"}


def test_a_list_with_tiers_shows_them_in_the_last_column(tmp_path: Path) -> None:
    df = _target_list().assign(tier=["高端", None, "大众", "中端"])
    path = write_target_list(df, tmp_path / "list.xlsx", NAMES)
    rows = list(load_workbook(path)[SHEET].iter_rows(values_only=True))
    assert rows[0][-1] == "客户层级"
    contact = df[~df["control"]]
    assert [r[-1] for r in rows[1:]] == contact["tier"].tolist()
