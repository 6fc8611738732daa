"""Holdings: accounts and services held, loans active by product, past loans,
applications, worst delinquency of ended loans, months since the last loan.

Point in time (spec): a loan is known from ``application_date < T``, granted at T
when ``grant_date < T``, ended before T by ``end_date < T`` where the bank fills
``end_date`` (``loan_mode = 'end_date'``), otherwise by ``grant_date + term_months``.
``loans.status`` and ``loans.max_overdue_days`` describe the export date: they are
read only for loans that ended before T (``end_date < T``), whose final state was
already known at T. ``accounts.close_date`` counts only through its date.
"""

from __future__ import annotations

from bankexport.spec import ACCOUNT_TYPES, LOAN_PRODUCTS, PRODUCT_NAMES_ZH, SERVICES
from features.families._sql import q, select
from features.schema import Feature, declarer

FAMILY = "holdings"
# sql() returns exactly one row per spine row (customer known at T, per as-of): the build
# writes it without joining it to the spine again (and checks the row count).
SPINE_ROWS = True
REQUIRES = ("loans", "accounts")


_NULLABLE = {
    "holdings_months_since_last_grant",
    "holdings_months_since_last_application",
    "holdings_months_since_last_loan_end",
    "holdings_worst_overdue_days_ended",
    # services: 0/1 for every customer when the bank exports services, else null
    "holdings_services_count",
    *[f"holdings_service_{s}_held" for s in SERVICES],
}
_f = declarer(FAMILY, _NULLABLE)


_SERVICE_ZH = {
    "mobile_banking": "手机银行",
    "wechat_banking": "微信银行",
    "payroll_agency": "代发工资服务",
    "social_security_card": "社保卡",
    "qr_merchant": "收款码商户",
    "pos_terminal": "POS机",
    "wealth_management": "理财",
    "insurance_agency": "代理保险",
}
_ACCOUNT_ZH = {
    "current": "活期账户",
    "savings": "储蓄账户",
    "time_deposit": "定期存款",
    "wealth": "理财账户",
    "loan": "贷款账户",
    "debit_card": "借记卡",
    "credit_card": "信用卡",
}

LOAN_FEATURES: list[Feature] = [
    _f("holdings_loans_active_count", "int", "当前在贷笔数", "active loans"),
    *[
        _f(f"holdings_loans_active_{p}_count", "int", f"当前{PRODUCT_NAMES_ZH[p]}在贷笔数", f"active {p} loans")
        for p in LOAN_PRODUCTS
    ],
    _f("holdings_loans_active_amount", "float", "当前在贷合同金额", "granted amount of active loans"),
    _f("holdings_loans_ended_count", "int", "已结清/核销的历史贷款笔数", "past loans (ended before the as-of)"),
    _f("holdings_loan_products_ever_count", "int", "曾获批的贷款产品种类数", "distinct loan products ever granted"),
    _f("holdings_loan_applications_12m", "int", "近12个月贷款申请笔数", "loan applications, last 12 months"),
    _f(
        "holdings_loan_applications_not_granted_12m",
        "int",
        "近12个月未获放款的申请笔数",
        "loan applications not (yet) granted, last 12 months",
    ),
    _f("holdings_months_since_last_grant", "int", "距最近一次放款的月数", "months since the last loan was granted"),
    _f(
        "holdings_months_since_last_application",
        "int",
        "距最近一次贷款申请的月数",
        "months since the last loan application",
    ),
    _f("holdings_months_since_last_loan_end", "int", "距最近一笔贷款结清的月数", "months since the last loan ended"),
    _f(
        "holdings_worst_overdue_days_ended",
        "int",
        "已结束贷款的最长逾期天数",
        "worst days overdue among loans that ended before the as-of",
    ),
    _f("holdings_written_off_count_ended", "int", "已核销贷款笔数", "loans written off before the as-of"),
]
ACCOUNT_FEATURES: list[Feature] = [
    _f("holdings_accounts_open_count", "int", "当前持有账户数", "accounts open"),
    *[
        _f(f"holdings_account_{t}_held", "int", f"持有{_ACCOUNT_ZH[t]}(1/0)", f"holds an open {t} account (1/0)")
        for t in ACCOUNT_TYPES
    ],
    _f("holdings_accounts_opened_12m", "int", "近12个月新开账户数", "accounts opened in the last 12 months"),
]
SERVICE_FEATURES: list[Feature] = [
    _f("holdings_services_count", "int", "当前签约服务数", "services held"),
    *[_f(f"holdings_service_{s}_held", "int", f"已签约{_SERVICE_ZH[s]}(1/0)", f"holds {s} (1/0)") for s in SERVICES],
]
FEATURES: list[Feature] = LOAN_FEATURES + ACCOUNT_FEATURES + SERVICE_FEATURES


def _loans_sql() -> str:
    active = "grant_date < as_of AND NOT ended"
    exprs = {
        "holdings_loans_active_count": f"count(*) FILTER (WHERE {active})",
        **{
            f"holdings_loans_active_{p}_count": f"count(*) FILTER (WHERE {active} AND product = {q(p)})"
            for p in LOAN_PRODUCTS
        },
        "holdings_loans_active_amount": f"coalesce(sum(amount) FILTER (WHERE {active}), 0)",
        "holdings_loans_ended_count": "count(*) FILTER (WHERE grant_date < as_of AND ended)",
        "holdings_loan_products_ever_count": "count(DISTINCT product) FILTER (WHERE grant_date < as_of)",
        "holdings_loan_applications_12m": "count(*) FILTER (WHERE application_date >= as_of - INTERVAL 12 MONTH)",
        "holdings_loan_applications_not_granted_12m": (
            "count(*) FILTER (WHERE application_date >= as_of - INTERVAL 12 MONTH "
            "AND (grant_date IS NULL OR grant_date >= as_of))"
        ),
        "holdings_months_since_last_grant": (
            "date_diff('month', max(grant_date) FILTER (WHERE grant_date < as_of), as_of)"
        ),
        "holdings_months_since_last_application": "date_diff('month', max(application_date), as_of)",
        "holdings_months_since_last_loan_end": (
            "date_diff('month', max(end_date) FILTER (WHERE end_date < as_of), as_of)"
        ),
        "holdings_worst_overdue_days_ended": "max(max_overdue_days) FILTER (WHERE end_date < as_of)",
        "holdings_written_off_count_ended": "count(*) FILTER (WHERE end_date < as_of AND status = 'written_off')",
    }
    return f"""
SELECT customer_id, as_of,
    {select(exprs)}
FROM (
    SELECT l.*, a.as_of,
        CASE WHEN (SELECT mode FROM loan_mode) = 'end_date'
             THEN coalesce(l.end_date < a.as_of, FALSE)
             ELSE coalesce(l.grant_date + to_months(CAST(l.term_months AS INTEGER)) < a.as_of, FALSE)
        END AS ended
    FROM loans l JOIN asofs a ON l.application_date < a.as_of
) GROUP BY customer_id, as_of"""


def _accounts_sql() -> str:
    open_ = "(close_date IS NULL OR close_date >= as_of)"
    exprs = {
        "holdings_accounts_open_count": f"count(*) FILTER (WHERE {open_})",
        **{
            f"holdings_account_{t}_held": f"CAST(bool_or({open_} AND account_type = {q(t)}) AS INTEGER)"
            for t in ACCOUNT_TYPES
        },
        "holdings_accounts_opened_12m": "count(*) FILTER (WHERE open_date >= as_of - INTERVAL 12 MONTH)",
    }
    return f"""
SELECT customer_id, as_of,
    {select(exprs)}
FROM (SELECT c.*, a.as_of FROM accounts c JOIN asofs a ON c.open_date < a.as_of)
GROUP BY customer_id, as_of"""


def _services_sql() -> str:
    held = "(end_date IS NULL OR end_date >= as_of)"
    # the flags only: the count of services held is their sum (`service` is a required
    # enum, so every row is one of SERVICES), which saves a DISTINCT aggregate
    exprs = {
        f"holdings_service_{s}_held": f"CAST(coalesce(bool_or({held} AND service = {q(s)}), FALSE) AS INTEGER)"
        for s in SERVICES
    }
    return f"""
SELECT customer_id, as_of,
    {select(exprs)}
FROM (SELECT v.*, a.as_of FROM services v JOIN asofs a ON v.start_date < a.as_of)
GROUP BY customer_id, as_of"""


def sql(tables: frozenset[str]) -> str:
    """Holdings features per (customer_id, as_of), from loans, accounts and services."""
    loan_names = [f.name for f in LOAN_FEATURES]
    acct_names = [f.name for f in ACCOUNT_FEATURES]
    svc_names = [f.name for f in SERVICE_FEATURES]
    cols = [f"l.{n}" for n in loan_names] + [f"c.{n}" for n in acct_names]
    if "services" in tables:
        # every known customer gets 0/1 flags when the bank exports services
        flags = [f"coalesce(v.holdings_service_{s}_held, 0)" for s in SERVICES]
        cols += [f"({' + '.join(flags)}) AS holdings_services_count"]
        cols += [f"{e} AS holdings_service_{s}_held" for s, e in zip(SERVICES, flags, strict=True)]
        services = f"LEFT JOIN ({_services_sql()}) v ON v.customer_id = s.customer_id AND v.as_of = s.as_of"
    else:
        cols += [f"NULL AS {n}" for n in svc_names]
        services = ""
    return f"""
SELECT s.customer_id, s.as_of, {", ".join(cols)}
FROM spine s
LEFT JOIN ({_loans_sql()}) l ON l.customer_id = s.customer_id AND l.as_of = s.as_of
LEFT JOIN ({_accounts_sql()}) c ON c.customer_id = s.customer_id AND c.as_of = s.as_of
{services}"""
