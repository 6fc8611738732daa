"""Target list files with Chinese headers (serving/export.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbp.errors import DataContractError
from serving.errors import Unprocessable
from serving.export import HEADERS_ZH, read_target_list, write_target_list

NAMES = {"consumer": "消费贷", "tax_linked": "税易贷"}


def _target_list() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["000123", "C2", "C3"],
            "branch_id": ["B01", "B01", "B02"],
            "manager_id": ["M1", None, "M3"],
            "product": ["consumer", "consumer", "tax_linked"],
            "propensity": [0.8123456789, 0.5, 0.25],
            "rank": pd.array([1, 2, None], dtype="Int64"),
            "control": [False, False, True],
            "reasons": [["近6个月月均代发工资：1.2万元", "持有理财账户：是"], [], ["上月末余额：3,500元"]],
            "expected_value": [0.8, 0.5, 1.0],  # not exported
        }
    )


def _expected() -> pd.DataFrame:
    df = _target_list().drop(columns="expected_value")
    for c in ("customer_id", "branch_id", "manager_id", "product"):
        df[c] = df[c].astype("string")
    return df


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_round_trip_keeps_rows(tmp_path: Path, suffix: str) -> None:
    path = write_target_list(_target_list(), tmp_path / "out" / f"list{suffix}", product_names=NAMES)
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    back = read_target_list(path, product_names=NAMES)
    pd.testing.assert_frame_equal(back, _expected())


def test_csv_has_bom_chinese_headers_and_names(tmp_path: Path) -> None:
    path = write_target_list(_target_list(), tmp_path / "list.csv", product_names=NAMES)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    header, first = raw.decode("utf-8-sig").splitlines()[:2]
    assert header.split(",") == ["客户号", "支行", "客户经理", "产品", "倾向分", "排名", "对照组", "推荐理由"]
    assert first.startswith("000123,B01,M1,消费贷,") and first.endswith(",否,近6个月月均代发工资：1.2万元；持有理财账户：是")


def test_xlsx_headers(tmp_path: Path) -> None:
    path = write_target_list(_target_list(), tmp_path / "list.xlsx")
    raw = pd.read_excel(path, dtype=str)
    assert list(raw.columns) == list(HEADERS_ZH.values())
    assert raw["客户号"].tolist() == ["000123", "C2", "C3"]
    assert raw["对照组"].tolist() == ["否", "否", "是"]


def test_other_suffix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Unprocessable, match=r"'\.json'.*use \.csv or \.xlsx"):
        write_target_list(_target_list(), tmp_path / "list.json")
    assert not (tmp_path / "list.json").exists()


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="missing column.*rank"):
        write_target_list(_target_list().drop(columns="rank"), tmp_path / "list.csv")
