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

from bankexport.spec import ACCOUNT_TYPES, ACCOUNT_TYPES_ZH, LOAN_PRODUCTS, PRODUCT_NAMES_ZH, SERVICES, SERVICES_ZH
from features.families._sql import add_months, known, months_between, per_as_of
from features.schema import Feature, declarer
from nbp.sqltext import lit

FAMILY = "holdings"
SPINE_ROWS = True
REQUIRES = ("loans", "accounts")

_f = declarer(FAMILY)

# Loans known at T, one row per loan and as-of; ``ended``: ended before T by the bank's loan mode.
_LOANS = known(
    "loans",
    "application_date",
    ended=f"""CASE WHEN (SELECT mode FROM loan_mode) = 'end_date'
             THEN coalesce(r.end_date < a.as_of, FALSE)
             ELSE coalesce({add_months("r.grant_date", "CAST(r.term_months AS INTEGER)")} < a.as_of, FALSE)
        END""",
)
_ACTIVE = "grant_date < as_of AND NOT ended"
_IN_12M = "application_date >= as_of - INTERVAL 12 MONTH"
LOAN_FEATURES: list[Feature] = [
    _f("holdings_loans_active_count", "int", "当前在贷笔数", "active loans", f"count(*) FILTER (WHERE {_ACTIVE})"),
    *[
        _f(
            f"holdings_loans_active_{p}_count",
            "int",
            f"当前{PRODUCT_NAMES_ZH[p]}在贷笔数",
            f"active {p} loans",
            f"count(*) FILTER (WHERE {_ACTIVE} AND product = {lit(p)})",
        )
        for p in LOAN_PRODUCTS
    ],
    _f(
        "holdings_loans_active_amount",
        "float",
        "当前在贷合同金额",
        "granted amount of active loans",
        f"coalesce(sum(amount) FILTER (WHERE {_ACTIVE}), 0)",
    ),
    _f(
        "holdings_loans_ended_count",
        "int",
        "已结清/核销的历史贷款笔数",
        "past loans (ended before the as-of)",
        "count(*) FILTER (WHERE grant_date < as_of AND ended)",
    ),
    _f(
        "holdings_loan_products_ever_count",
        "int",
        "曾获批的贷款产品种类数",
        "distinct loan products ever granted",
        "count(DISTINCT product) FILTER (WHERE grant_date < as_of)",
    ),
    _f(
        "holdings_loan_applications_12m",
        "int",
        "近12个月贷款申请笔数",
        "loan applications, last 12 months",
        f"count(*) FILTER (WHERE {_IN_12M})",
    ),
    _f(
        "holdings_loan_applications_not_granted_12m",
        "int",
        "近12个月未获放款的申请笔数",
        "loan applications not (yet) granted, last 12 months",
        f"count(*) FILTER (WHERE {_IN_12M} AND (grant_date IS NULL OR grant_date >= as_of))",
    ),
    _f(
        "holdings_months_since_last_grant",
        "int",
        "距最近一次放款的月数",
        "months since the last loan was granted",
        months_between("max(grant_date) FILTER (WHERE grant_date < as_of)", "as_of"),
        nullable=True,
    ),
    _f(
        "holdings_months_since_last_application",
        "int",
        "距最近一次贷款申请的月数",
        "months since the last loan application",
        months_between("max(application_date)", "as_of"),
        nullable=True,
    ),
    _f(
        "holdings_months_since_last_loan_end",
        "int",
        "距最近一笔贷款结清的月数",
        "months since the last loan ended",
        months_between("max(end_date) FILTER (WHERE end_date < as_of)", "as_of"),
        nullable=True,
    ),
    _f(
        "holdings_worst_overdue_days_ended",
        "int",
        "已结束贷款的最长逾期天数",
        "worst days overdue among loans that ended before the as-of",
        "max(max_overdue_days) FILTER (WHERE end_date < as_of)",
        nullable=True,
    ),
    _f(
        "holdings_written_off_count_ended",
        "int",
        "已核销贷款笔数",
        "loans written off before the as-of",
        "count(*) FILTER (WHERE end_date < as_of AND status = 'written_off')",
    ),
]

_OPEN = "(close_date IS NULL OR close_date >= as_of)"
ACCOUNT_FEATURES: list[Feature] = [
    _f("holdings_accounts_open_count", "int", "当前持有账户数", "accounts open", f"count(*) FILTER (WHERE {_OPEN})"),
    *[
        _f(
            f"holdings_account_{t}_held",
            "int",
            f"持有{ACCOUNT_TYPES_ZH[t]}(1/0)",
            f"holds an open {t} account (1/0)",
            f"CAST(bool_or({_OPEN} AND account_type = {lit(t)}) AS INTEGER)",
        )
        for t in ACCOUNT_TYPES
    ],
    _f(
        "holdings_accounts_opened_12m",
        "int",
        "近12个月新开账户数",
        "accounts opened in the last 12 months",
        "count(*) FILTER (WHERE open_date >= as_of - INTERVAL 12 MONTH)",
    ),
]


def _held(service: str) -> str:
    """1 when the customer holds ``service`` at T, else 0 (``service`` is a required enum)."""
    held = "(end_date IS NULL OR end_date >= as_of)"
    return f"CAST(coalesce(bool_or({held} AND service = {lit(service)}), FALSE) AS INTEGER)"


# 0/1 for every known customer when the bank exports services (the build's 0 for a
# customer without service rows), null without the table.
SERVICE_FEATURES: list[Feature] = [
    _f(
        "holdings_services_count",
        "int",
        "当前签约服务数",
        "services held",
        " + ".join(_held(s) for s in SERVICES),
        needs=("services",),
    ),
    *[
        _f(
            f"holdings_service_{s}_held",
            "int",
            f"已签约{SERVICES_ZH[s]}(1/0)",
            f"holds {s} (1/0)",
            _held(s),
            needs=("services",),
        )
        for s in SERVICES
    ],
]
FEATURES: list[Feature] = LOAN_FEATURES + ACCOUNT_FEATURES + SERVICE_FEATURES


def sql(tables: frozenset[str]) -> str:
    """Holdings features per (customer_id, as_of), from loans, accounts and services (each grouped apart)."""
    parts = {
        "l": per_as_of(LOAN_FEATURES, _LOANS, tables),
        "c": per_as_of(ACCOUNT_FEATURES, known("accounts", "open_date"), tables),
    }
    if "services" in tables:
        parts["v"] = per_as_of(SERVICE_FEATURES, known("services", "start_date"), tables)
    cols = ", ".join(f"{a}.* EXCLUDE (customer_id, as_of)" for a in parts)
    joins = "\n".join(
        f"LEFT JOIN ({rows}) {a} ON {a}.customer_id = s.customer_id AND {a}.as_of = s.as_of"
        for a, rows in parts.items()
    )
    return f"SELECT s.customer_id, s.as_of, {cols}\nFROM spine s\n{joins}"
