"""The segment filter language: tokens, precedence, every operator, values resolved to codes, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bankexport.spec import ENUM_ZH, TABLES
from nbp.config import load_config
from nbp.errors import SegmentError
from serving.segment_filter import And, Condition, Field, Not, Or, compile_filter, parse, tokenize
from serving.segments import segment_fields

FIELDS = segment_fields(load_config())
# a small frame with one missing value per column, for the operators
FRAME = pd.DataFrame(
    {
        "demo_age_years": pd.array([25, 40, None, 61, 40], dtype="Int64"),
        "score_consumer": [0.1, 0.5, 0.9, np.nan, 0.2],
        "demo_occupation": pd.array([3, 4, 0, None, 3], dtype="Int64"),
        "branch_id": ["B001", "B002", None, "B001", "B003"],
        "manager_id": ["M1", None, "M2", "M3", "M1"],
        "tier_level": pd.array([0, 1, 2, None, 1], dtype="Int64"),
    }
)


def rows(text: str) -> list[int]:
    """The positions of FRAME's rows the filter selects."""
    return list(np.flatnonzero(compile_filter(text, FIELDS).select(FIELDS, FRAME)))


def occupation(name: str) -> int:
    return list(TABLES["customers"].column("occupation").enum).index(name)


# ----------------------------------------------------------------------------- parsing


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    tree = parse("a == 1 or b == 2 and not c == 3")
    assert isinstance(tree, Or) and isinstance(tree.parts[0], Condition)
    right = tree.parts[1]
    assert isinstance(right, And) and isinstance(right.parts[1], Not)
    grouped = parse("(a == 1 or b == 2) and c == 3")
    assert isinstance(grouped, And) and isinstance(grouped.parts[0], Or)


def test_precedence_decides_the_rows() -> None:
    # or of (age 25) with (age 40 and branch B003): rows 0 and 4; grouped the other way only row 4
    assert rows('demo_age_years == 25 or demo_age_years == 40 and branch_id == "B003"') == [0, 4]
    assert rows('(demo_age_years == 25 or demo_age_years == 40) and branch_id == "B003"') == [4]
    assert rows('not demo_age_years == 40 and branch_id == "B001"') == [0, 3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("demo_age_years == 40", [1, 4]),
        ("demo_age_years != 40", [0, 3]),  # the missing age is neither
        ("demo_age_years < 40", [0]),
        ("demo_age_years <= 40", [0, 1, 4]),
        ("demo_age_years > 40", [3]),
        ("demo_age_years >= 40", [1, 3, 4]),
        ("demo_age_years in (25, 61)", [0, 3]),
        ("demo_age_years not in (25, 61)", [1, 4]),
        ("demo_age_years is null", [2]),
        ("demo_age_years is not null", [0, 1, 3, 4]),
        ("score_consumer >= 0.2", [1, 2, 4]),
        ("score_consumer < -0.5", []),
        ('branch_id == "B001"', [0, 3]),
        ('branch_id != "B001"', [1, 4]),
        ('branch_id in ["B002", "B003"]', [1, 4]),
        ('branch_id not in ("B002",)', [0, 3, 4]),
        ("branch_id is null", [2]),
        ("not demo_age_years == 40", [0, 3]),  # unknown stays unknown under not
        ("demo_age_years is null or score_consumer is null", [2, 3]),
    ],
)
def test_every_operator_and_missing_values_as_in_sql(text: str, expected: list[int]) -> None:
    assert rows(text) == expected


def test_keywords_in_any_case_and_full_width_punctuation() -> None:
    assert rows("demo_age_years == 40 AND NOT branch_id IS NULL") == [1, 4]
    with pytest.raises(SegmentError, match="did you mean demo_age_years"):  # field names are exact
        compile_filter("DEMO_AGE_YEARS == 40", FIELDS)
    assert rows("demo_occupation in （“公务员”，‘farmer’）") == [0, 2, 4]


# ----------------------------------------------------------------------------- values


def test_enum_names_chinese_labels_and_codes_are_the_same_code() -> None:
    code = occupation("civil_servant")
    assert ENUM_ZH["civil_servant"] == "公务员"
    for text in ('demo_occupation == "civil_servant"', 'demo_occupation == "公务员"', f"demo_occupation == {code}"):
        cond = compile_filter(text, FIELDS).tree
        assert isinstance(cond, Condition) and cond.values[0].code == code, text
    assert rows('demo_occupation in ("civil_servant", "事业单位")') == [0, 1, 4]
    assert occupation("public_institution") == 4 and occupation("civil_servant") == 3  # FRAME's codes


def test_tiers_by_key_chinese_name_or_level() -> None:
    levels = load_config().tiers.levels
    assert rows(f'tier == "{levels[1].key}"') == rows(f'tier == "{levels[1].zh}"') == rows("tier_level == 1") == [1, 4]
    assert rows("tier_level <= 1") == [0, 1, 4]


def test_unknown_field_names_the_nearest_fields() -> None:
    with pytest.raises(
        SegmentError, match=r"unknown field 'score_consumr' at character 1; did you mean score_consumer"
    ):
        compile_filter("score_consumr >= 0.2", FIELDS)
    with pytest.raises(SegmentError, match=r"'demo_ocupation' at character 21; did you mean demo_occupation"):
        compile_filter("tier_level == 0 and demo_ocupation == 1", FIELDS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('demo_occupation == "civil servant"', r"unknown value \"civil servant\"; did you mean 'civil_servant'"),
        ("demo_occupation == 99", r"unknown value 99;.*farmer/农户"),
        ('demo_age_years >= "30"', r"demo_age_years: takes a number, not text \"30\""),
        ("branch_id == 1001", r"branch_id: is text: put the value in quotes"),
        ('branch_id > "B001"', r"branch_id: is text: compare it with ==, !=, in or not in"),
        ('tier == "platinum"', r"unknown value \"platinum\""),
        ("demo_age_years in ()", r"a value \(a number or quoted text\) expected at character 20"),
        ("demo_age_years == B001", r'put text in quotes, e.g. "B001"'),
        ("demo_age_years = 30", r"'=' at character 16: write '=='"),
        ("demo_age_years <> 30", r"write '!='"),
        ('branch_id == "B001', r"string starting at character 14 has no closing"),
        ("demo_age_years >= 30 and", r"a field name expected at character 25, found the end"),
        ("(demo_age_years >= 30", r"'\)' expected"),
        ("", r"segment filter is empty"),
        ("   ", r"segment filter is empty"),
    ],
)
def test_bad_values_and_syntax_are_refused_with_the_position(text: str, message: str) -> None:
    with pytest.raises(SegmentError, match=message):
        compile_filter(text, FIELDS)


def test_text_values_are_checked_against_the_known_ones() -> None:
    from dataclasses import replace

    known = dict(FIELDS, branch_id=replace(FIELDS["branch_id"], values=frozenset({"B001", "B002"})))
    assert compile_filter('branch_id == "B001"', known).fields == ("branch_id",)
    with pytest.raises(SegmentError, match=r"no customer at this date has branch_id \"B0001\"; did you mean 'B001'"):
        compile_filter('branch_id == "B0001"', known)


@pytest.mark.parametrize(
    "text",
    [
        "1; DROP TABLE customers",
        'branch_id == "B001"; DROP TABLE customers',
        "branch_id == 'x' or 1 == 1",
        "__import__('os').system('echo hi')",
        "demo_age_years > 1 and exec('x')",
        "demo_age_years.__class__ == 1",
        "demo_age_years == 1 -- comment",
        "demo_age_years == 1 /* x */",
        "demo_age_years == `id`",
        "demo_age_years == 1 | 1",
        "demo_age_years == {}",
        "lambda: 1",
        "demo_age_years == 1\\",
    ],
)
def test_injection_attempts_are_refused(text: str) -> None:
    with pytest.raises(SegmentError):
        compile_filter(text, FIELDS)


def test_the_parser_never_hands_text_to_python_or_sql() -> None:
    source = Path(__file__).resolve().parents[2].joinpath("serving", "segment_filter.py").read_text(encoding="utf-8")
    for banned in (
        r"\beval\(",
        r"\bexec\(",
        r"\bimport ast\b",
        r"(?<!re\.)\bcompile\(",
        "duckdb",
        "sqltext",
        r"query\(",
    ):
        assert re.search(banned, source) is None, banned


def test_limits_on_length_nesting_and_lists() -> None:
    with pytest.raises(SegmentError, match="at most 2,000"):
        tokenize("demo_age_years == 1 or " * 100)
    with pytest.raises(SegmentError, match="nested more than 32"):
        parse("(" * 40 + "a == 1" + ")" * 40)
    with pytest.raises(SegmentError, match="nested more than 32"):
        parse("not " * 40 + "a == 1")
    assert len(parse("a in (" + ", ".join(["1"] * 300) + ")").values) == 300  # type: ignore[union-attr]


def test_a_category_field_lists_names_and_labels() -> None:
    f = Field("x", "category", "x", "性别", "gender", labels=("M", "F"), labels_zh=("男", "女"))
    assert f.code_of("F") == f.code_of("女") == f.code_of(1.0) == 1
    assert f.code_of("f") == 1 and f.code_of(2.0) is None and f.code_of(0.5) is None
    assert f.choices() == "M/男, F/女"
