"""SHAP contributions to reasons a customer manager reads (serving/reasons.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from serving.reasons import ReasonCatalog, format_value, not_offered_reason, top_reasons, value_kind

CATALOG = pd.DataFrame(
    [
        {
            "name": "income_payroll_amount_avg_6m",
            "zh": "近6个月月均代发工资",
            "en": "average monthly payroll, last 6 months",
        },
        {
            "name": "income_payroll_months_6m",
            "zh": "近6个月代发工资月数",
            "en": "months with payroll in the last 6 months",
            "reason_zh": "近6个月代发工资稳定（{value}）",
            "reason_en": "stable payroll over the last 6 months ({value})",
        },
        {"name": "spend_cash_share_3m", "zh": "近3个月取现占支出比例", "en": "cash share of money out, last 3 months"},
        {
            "name": "marketing_days_since_last_contact",
            "zh": "距最近一次营销的天数",
            "en": "days since the last contact",
        },
        {
            "name": "marketing_last_outcome",
            "zh": "最近一次营销结果",
            "en": "outcome of the last contact",
            "categories": "accepted,declined,no_response,unreachable",
        },
        {"name": "business_settlement_growth_3m_prior3m", "zh": "近3个月结算与前3个月之比", "en": "settlement growth"},
    ]
)
VALUES = pd.Series(
    {
        "income_payroll_amount_avg_6m": 12_345.0,
        "income_payroll_months_6m": 6,
        "spend_cash_share_3m": 0.351,
        "marketing_days_since_last_contact": 45,
        "marketing_last_outcome": 1,
        "business_settlement_growth_3m_prior3m": 1.35,
    }
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("income_payroll_amount_avg_6m", "money"),
        ("liquidity_avg_daily_balance_3m", "money"),
        ("income_payroll_ratio_3m_prior3m", "percent"),
        ("spend_cash_share_3m", "percent"),
        ("income_payroll_months_6m", "months"),
        ("holdings_months_since_last_grant", "months"),
        ("marketing_days_since_last_contact", "days"),
        ("spend_purchase_count_3m", "count"),
        ("business_settlement_cv_6m", "plain"),
        ("liquidity_balance_to_turnover_3m", "plain"),
    ],
)
def test_value_kind_from_name(name: str, kind: str) -> None:
    assert value_kind(name) == kind


@pytest.mark.parametrize(
    ("value", "kind", "lang", "shown"),
    [
        (12_345.0, "money", "zh", "1.2万元"),
        (10_000.0, "money", "zh", "1万元"),
        (3_500.0, "money", "zh", "3,500元"),
        (12_345.0, "money", "en", "¥12,345"),
        (0.351, "percent", "zh", "35%"),
        (6, "months", "zh", "6个月"),
        (1, "months", "en", "1 month"),
        (45, "days", "en", "45 days"),
        (1234, "count", "zh", "1,234"),
        (1.35, "plain", "en", "1.35"),
        (7.0, "plain", "zh", "7"),
        (math.nan, "money", "zh", "无记录"),
        (None, "money", "en", "none on record"),
    ],
)
def test_format_value(value: object, kind: str, lang: str, shown: str) -> None:
    assert format_value(value, kind, lang) == shown


def test_top_three_positive_reasons_in_chinese_by_default() -> None:
    contrib = pd.Series(
        {
            "income_payroll_amount_avg_6m": 0.40,
            "income_payroll_months_6m": 0.55,
            "spend_cash_share_3m": -0.9,  # lowers the score: never a reason
            "marketing_days_since_last_contact": 0.10,
            "business_settlement_growth_3m_prior3m": 0.05,
            "__bias__": 2.0,  # not in the catalogue
        }
    )
    assert top_reasons(contrib, VALUES, CATALOG) == [
        "近6个月代发工资稳定（6个月）",
        "近6个月月均代发工资：1.2万元",
        "距最近一次营销的天数：45天",
    ]
    assert top_reasons(contrib, VALUES, CATALOG.to_dict("records"), lang="en", k=2) == [
        "stable payroll over the last 6 months (6 months)",
        "average monthly payroll, last 6 months: ¥12,345",
    ]


def test_no_positive_contribution_gives_no_reason() -> None:
    contrib = pd.Series({"income_payroll_amount_avg_6m": -0.1, "spend_cash_share_3m": 0.0})
    assert top_reasons(contrib, VALUES, CATALOG) == []


def test_categorical_and_fallback_phrasing() -> None:
    cat = ReasonCatalog(CATALOG)
    assert cat.phrase("marketing_last_outcome", 1) == "最近一次营销结果：declined"
    assert cat.phrase("business_settlement_growth_3m_prior3m", 1.35, "en") == "settlement growth: 1.35"
    assert cat.phrase("spend_cash_share_3m", 0.351) == "近3个月取现占支出比例：35%"


def test_reasons_for_frame_matches_single_rows() -> None:
    cat = ReasonCatalog(CATALOG)
    names = list(VALUES.index)
    contribs = pd.DataFrame(
        [[0.1, 0.2, 0.3, -0.1, 0.0, 0.05], [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0], [0.3, 0.3, 0.1, 0.1, 0.0, 0.2]],
        columns=names,
        index=["C1", "C2", "C3"],
    )
    values = pd.DataFrame([VALUES] * 3, index=["C1", "C2", "C3"])
    batch = cat.reasons_for_frame(contribs, values, lang="zh")
    assert batch.index.tolist() == ["C1", "C2", "C3"]
    for cid in batch.index:
        assert batch[cid] == cat.top_reasons(contribs.loc[cid], values.loc[cid], "zh")
    assert batch["C2"] == []


def test_catalogue_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="missing zh"):
        ReasonCatalog([{"name": "x_amount", "en": "x"}])
    with pytest.raises(ValueError, match="unknown kind 'yen'"):
        ReasonCatalog([{"name": "x", "zh": "x", "en": "x", "kind": "yen"}])


def test_not_offered_reasons() -> None:
    assert not_offered_reason("held") == "已持有该产品"
    assert not_offered_reason("not_eligible") == "不符合准入条件"
    assert not_offered_reason("contacted_recently") == "近期已就该产品联系过"
    assert not_offered_reason("model_unavailable", "en") == "model temporarily unavailable"
    with pytest.raises(ValueError, match="unknown not-offered reason"):
        not_offered_reason("busy")


def test_flags_and_technical_notes() -> None:
    cat = ReasonCatalog(
        [
            {"name": "holdings_account_wealth_held", "zh": "持有理财账户(1/0)", "en": "holds a wealth account (1/0)"},
            {"name": "demo_gender", "zh": "性别(编码)", "en": "gender (code: position in M, F)", "categories": "M,F"},
            {"name": "demo_branch_rural", "zh": "所属支行位于农村(1/0)", "en": "branch is rural (1/0)"},
        ]
    )
    assert cat.phrase("holdings_account_wealth_held", 1) == "持有理财账户：是"
    assert cat.phrase("demo_branch_rural", 0, "en") == "branch is rural: no"
    assert cat.phrase("demo_gender", 1, "en") == "gender: F"
    assert value_kind("tax_paid_ratio_latest_prior") == "percent"
    assert value_kind("business_settlement_avg_3m") == "money"


def test_categorical_values_read_in_chinese_for_staff_and_english_on_request() -> None:
    from features.catalog import catalog_frame
    from serving.reasons import ReasonCatalog

    cat = ReasonCatalog(catalog_frame())
    code = list(__import__("bankexport.spec", fromlist=["EMPLOYER_TYPES"]).EMPLOYER_TYPES).index("public_institution")
    assert cat.phrase("demo_employer_type", float(code), "zh").endswith("事业单位")
    assert cat.phrase("demo_employer_type", float(code), "en").endswith("public_institution")


def test_code_legend_of_a_description_is_not_shown_to_staff() -> None:
    from features.catalog import catalog_frame
    from serving.reasons import ReasonCatalog

    cat = ReasonCatalog(catalog_frame())
    assert cat.phrase("tax_credit_grade_latest", 0.0, "zh") == "最新纳税信用等级：A"


ADVERSE_CATALOG = pd.DataFrame(
    [
        {
            "name": "marketing_last_outcome",
            "zh": "最近一次营销结果",
            "en": "outcome of the last contact",
            "categories": "accepted,declined,no_response,unreachable",
            "categories_zh": "接受,拒绝,未回应,未联系上",
        },
        {"name": "marketing_declined_12m", "zh": "近12个月拒绝营销次数", "en": "contacts declined, last 12 months"},
        {"name": "income_payroll_amount_avg_6m", "zh": "近6个月月均代发工资", "en": "average monthly payroll"},
        {"name": "spend_cash_share_3m", "zh": "近3个月取现占支出比例", "en": "cash share"},
    ]
)
ADVERSE_NAMES = [
    "income_payroll_amount_avg_6m",
    "marketing_declined_12m",
    "marketing_last_outcome",
    "spend_cash_share_3m",
]  # sorted, as the per-request path holds them


@pytest.mark.parametrize(
    ("outcome", "declines", "expected"),
    [
        (1, 2, ["近6个月月均代发工资：1.2万元", "近3个月取现占支出比例：35%"]),  # declined twice: no reason to offer
        (3, 0, ["近6个月月均代发工资：1.2万元", "近12个月拒绝营销次数：0", "近3个月取现占支出比例：35%"]),
        (0, 0, ["最近一次营销结果：接受", "近6个月月均代发工资：1.2万元", "近12个月拒绝营销次数：0"]),
    ],
)
def test_a_refusal_is_never_a_reason_to_offer_even_when_it_raises_the_score(
    outcome: int, declines: int, expected: list[str]
) -> None:
    """The model may learn that a declined contact goes with a high score (the bank called its
    best prospects); every path of the service still leaves it out and takes the next reason."""
    cat = ReasonCatalog(ADVERSE_CATALOG)
    contrib = pd.Series(
        {
            "marketing_last_outcome": 0.9,
            "income_payroll_amount_avg_6m": 0.5,
            "marketing_declined_12m": 0.3,
            "spend_cash_share_3m": 0.1,
        }
    )
    values = pd.Series(
        {
            "marketing_last_outcome": outcome,
            "income_payroll_amount_avg_6m": 12_345.0,
            "marketing_declined_12m": declines,
            "spend_cash_share_3m": 0.351,
        }
    )
    assert cat.top_reasons(contrib, values) == expected
    at = cat.top_reasons_at(ADVERSE_NAMES, contrib[ADVERSE_NAMES].to_numpy(), values[ADVERSE_NAMES].to_numpy())
    assert at == expected
    frame = cat.reasons_for_frame(contrib.to_frame("C1").T, values.to_frame("C1").T)
    assert frame["C1"] == expected


def test_adverse_facts_of_the_real_catalogue() -> None:
    from features.catalog import catalog_frame

    cat = ReasonCatalog(catalog_frame())
    assert not cat.supports("marketing_last_outcome", 1) and cat.supports("marketing_last_outcome", 0)
    assert not cat.supports("marketing_last_outcome_consumer", 3)
    assert not cat.supports("marketing_declined_12m", 1) and cat.supports("marketing_declined_12m", 0)
    assert not cat.supports("holdings_written_off_count_ended", 2)
    assert not cat.supports("holdings_worst_overdue_days_ended", 30)
    assert not cat.supports("holdings_loan_applications_not_granted_12m", 1)
    assert not cat.supports("tax_credit_grade_latest", 3) and cat.supports("tax_credit_grade_latest", 2)  # C / M
    assert cat.supports("income_payroll_amount_avg_6m", 12_345.0) and cat.supports("marketing_last_outcome", None)


def test_enum_labels_are_read_per_enum() -> None:
    """ENUM_ZH's M and F are genders: an industry letter or a tax grade keeps its code, and
    the occupation 'other' is 其他, not the loan product 其他贷款."""
    from features.catalog import catalog_frame

    cat = ReasonCatalog(catalog_frame())
    assert cat.phrase("demo_industry", 12) == "行业门类：M"
    assert cat.phrase("tax_credit_grade_latest", 2).endswith("：M")
    assert cat.phrase("demo_gender", 0) == "性别：男"
    assert cat.phrase("demo_occupation", 9) == "职业：其他"


def test_catalogue_adverse_column_overrides() -> None:
    rows = ADVERSE_CATALOG.assign(adverse=["none", "", None, ">0"])
    cat = ReasonCatalog(rows)
    assert cat.supports("marketing_last_outcome", 1)  # "none": nothing adverse
    assert not cat.supports("marketing_declined_12m", 1)  # empty: the default rule
    assert not cat.supports("spend_cash_share_3m", 0.2) and cat.supports("spend_cash_share_3m", 0.0)
    with pytest.raises(ValueError, match="adverse label.*refused.*not among its categories"):
        ReasonCatalog(ADVERSE_CATALOG.assign(adverse=["refused", None, None, None]))


def test_do_not_contact_has_a_not_offered_reason() -> None:
    assert not_offered_reason("do_not_contact") == "客户在勿扰名单中"
    assert not_offered_reason("do_not_contact", "en") == "on the do-not-contact list"
