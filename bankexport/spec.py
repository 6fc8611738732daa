"""The bank export format, version 1, as code (`../shared/spec/bank-export.md`).

This module is the single place where table names, column names, types, enums,
keys and references of the export are written down. The simulator writes to it,
the ingester validates against it, and feature code reads the typed tables that
ingest stores (column names and dtypes as below).

Types:
    ``string``    free text / identifier, stored as pandas ``string``
    ``date``      ``YYYY-MM-DD``, stored as ``datetime64[us]`` (midnight)
    ``timestamp`` ISO 8601 local bank time, no offset, stored as ``datetime64[us]``
    ``money``     CNY decimal, at most 2 places, stored as ``float64``
    ``int``       integer, stored as nullable ``Int64``
    ``month``     ``YYYY-MM``, stored as ``datetime64[us]`` (first day of month)
    ``enum``      one of ``Column.enum``, stored as pandas ``string``
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMAT = "bank-export/1"

REQUIRED_TABLES = ("customers", "accounts", "transactions", "loans")
OPTIONAL_TABLES = ("balances", "tax_records", "services", "contacts", "branches", "managers", "profile_updates")
ALL_TABLES = REQUIRED_TABLES + OPTIONAL_TABLES


@dataclass(frozen=True)
class Column:
    """One column of an export table."""

    name: str
    type: str  # string | date | timestamp | money | int | month | enum
    required: bool = False
    enum: tuple[str, ...] = ()
    ref: str | None = None  # "table.column" this column must point at
    positive: bool = False  # money/int that must be > 0
    min: int | None = None
    max: int | None = None
    # A cell whose type depends on its row: ``by`` names the enum column of the same table
    # whose value picks, among ``variants`` (by name), the column the cell must satisfy as text.
    by: str | None = None
    variants: tuple[Column, ...] = ()

    def variant(self, name: str) -> Column:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


@dataclass(frozen=True)
class Table:
    """One export table: its columns and primary key (None: no key)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] | None = None
    description: str = ""
    # Columns that describe the export date, not history (spec "Point in time").
    status_columns: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


CUSTOMER_TYPES = ("individual", "business")
OCCUPATIONS = (
    "farmer",
    "merchant",
    "micro_business_owner",
    "civil_servant",
    "public_institution",
    "enterprise_employee",
    "migrant_worker",
    "retired",
    "student",
    "other",
)
EMPLOYER_TYPES = ("government", "public_institution", "soe", "private", "self_employed", "agriculture", "none")
MARITAL = ("single", "married", "divorced", "widowed")
EDUCATION = ("primary", "secondary", "college", "bachelor", "postgraduate")
RESIDENCE = ("urban", "rural")
INDUSTRIES = tuple("ABCDEFGHIJKLMNOPQRST")
RISK = ("C1", "C2", "C3", "C4", "C5")
ACCOUNT_TYPES = ("current", "savings", "time_deposit", "wealth", "loan", "debit_card", "credit_card")
DIRECTIONS = ("C", "D")
CHANNELS = ("counter", "atm", "mobile", "pos", "qr", "agent", "batch", "other")
TXN_TYPES = (
    "payroll",
    "pension",
    "subsidy",
    "transfer",
    "cash",
    "merchant_settlement",
    "purchase",
    "tax",
    "social_insurance",
    "housing_fund",
    "utility",
    "loan_disbursement",
    "loan_repayment",
    "interest",
    "fee",
    "other",
)
LOAN_PRODUCTS = ("consumer", "business_flow", "tax_linked", "agricultural", "mortgage", "other")
LOAN_STATUS = ("rejected", "active", "settled", "overdue", "written_off")
TAX_GRADES = ("A", "B", "M", "C", "D")
SERVICES = (
    "mobile_banking",
    "wechat_banking",
    "payroll_agency",
    "social_security_card",
    "qr_merchant",
    "pos_terminal",
    "wealth_management",
    "insurance_agency",
)
CONTACT_CHANNELS = ("sms", "wechat", "phone", "visit", "branch")
CONTACT_OUTCOMES = ("accepted", "declined", "no_response", "unreachable")
AREAS = ("urban", "rural")

# The three products nbp models (keys of configs/products.yaml use these names).
PRODUCT_NAMES_ZH = {
    "consumer": "消费贷",
    "business_flow": "流水贷",
    "tax_linked": "税易贷",
    "agricultural": "农户贷",
    "mortgage": "房贷",
    "other": "其他贷款",
}

# profile_updates.field: the customers columns managers may update, and two figures ECIF does not hold.
PROFILE_CUSTOMER_FIELDS = (
    "occupation",
    "employer_type",
    "marital_status",
    "education",
    "residence",
    "industry",
    "established_date",
    "risk_tolerance",
)
PROFILE_MONEY_FIELDS = ("monthly_income", "business_turnover_monthly")
PROFILE_FIELDS = PROFILE_CUSTOMER_FIELDS + PROFILE_MONEY_FIELDS

C = Column
# Federation (spec): the column every stored table and feature row of a member bank carries,
# holding the bank_code of its manifest.
BANK_COLUMN = "bank_code"

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "customers",
            (
                C("customer_id", "string", required=True),
                C("customer_type", "enum", required=True, enum=CUSTOMER_TYPES),
                C("gender", "enum", enum=("M", "F")),
                C("birth_date", "date"),
                C("occupation", "enum", enum=OCCUPATIONS),
                C("employer_type", "enum", enum=EMPLOYER_TYPES),
                C("marital_status", "enum", enum=MARITAL),
                C("education", "enum", enum=EDUCATION),
                C("residence", "enum", enum=RESIDENCE),
                C("township_code", "string"),
                C("industry", "enum", enum=INDUSTRIES),
                C("established_date", "date"),
                C("branch_id", "string", required=True),
                C("manager_id", "string"),
                C("open_date", "date", required=True),
                C("risk_tolerance", "enum", enum=RISK),
            ),
            key=("customer_id",),
            description="one row per customer (ECIF)",
        ),
        Table(
            "accounts",
            (
                C("account_id", "string", required=True),
                C("customer_id", "string", required=True, ref="customers.customer_id"),
                C("account_type", "enum", required=True, enum=ACCOUNT_TYPES),
                C("open_date", "date", required=True),
                C("close_date", "date"),
            ),
            key=("account_id",),
            status_columns=("close_date",),
        ),
        Table(
            "transactions",
            (
                C("txn_id", "string", required=True),
                C("account_id", "string", required=True, ref="accounts.account_id"),
                C("customer_id", "string", required=True, ref="customers.customer_id"),
                C("txn_time", "timestamp", required=True),
                C("amount", "money", required=True, positive=True),
                C("direction", "enum", required=True, enum=DIRECTIONS),
                C("channel", "enum", required=True, enum=CHANNELS),
                C("txn_type", "enum", required=True, enum=TXN_TYPES),
                C("counterparty_id", "string"),
            ),
            key=("txn_id",),
        ),
        Table(
            "loans",
            (
                C("loan_id", "string", required=True),
                C("customer_id", "string", required=True, ref="customers.customer_id"),
                C("product", "enum", required=True, enum=LOAN_PRODUCTS),
                C("application_date", "date", required=True),
                C("grant_date", "date"),
                C("amount", "money"),
                C("term_months", "int", min=1),
                C("status", "enum", required=True, enum=LOAN_STATUS),
                C("max_overdue_days", "int", min=0),
                C("end_date", "date"),
            ),
            key=("loan_id",),
            status_columns=("status", "max_overdue_days"),
        ),
        Table(
            "balances",
            (
                C("account_id", "string", required=True, ref="accounts.account_id"),
                C("month", "month", required=True),
                C("avg_daily_balance", "money"),
                C("end_balance", "money"),
            ),
            key=("account_id", "month"),
        ),
        Table(
            "tax_records",
            (
                C("customer_id", "string", required=True, ref="customers.customer_id"),
                C("tax_year", "int", required=True),
                C("months_filed", "int", min=0, max=12),
                C("tax_paid", "money"),
                C("credit_grade", "enum", enum=TAX_GRADES),
                C("published_date", "date", required=True),
            ),
            key=("customer_id", "tax_year"),
        ),
        Table(
            "services",
            (
                C("customer_id", "string", required=True, ref="customers.customer_id"),
                C("service", "enum", required=True, enum=SERVICES),
                C("start_date", "date", required=True),
                C("end_date", "date"),
            ),
            key=None,
        ),
        Table(
            "contacts",
            (
                C("customer_id", "string", required=True, ref="customers.customer_id"),
                C("product", "enum", required=True, enum=LOAN_PRODUCTS),
                C("contact_date", "date", required=True),
                C("channel", "enum", enum=CONTACT_CHANNELS),
                C("outcome", "enum", enum=CONTACT_OUTCOMES),
                C("campaign_id", "string"),
            ),
            key=None,
        ),
        Table(
            "branches",
            (
                C("branch_id", "string", required=True),
                C("name", "string"),
                C("township_code", "string"),
                C("area", "enum", enum=AREAS),
            ),
            key=("branch_id",),
        ),
        Table(
            "managers",
            (
                C("manager_id", "string", required=True),
                C("branch_id", "string", required=True),
                C("name", "string"),
                C("capacity_per_month", "int", min=0),
            ),
            key=("manager_id",),
        ),
    )
}
TABLES["profile_updates"] = Table(
    "profile_updates",
    (
        C("customer_id", "string", required=True, ref="customers.customer_id"),
        C("field", "enum", required=True, enum=PROFILE_FIELDS),
        # the value as text, checked against the type and enum of the column its field names
        C(
            "value",
            "string",
            required=True,
            by="field",
            variants=tuple(TABLES["customers"].column(f) for f in PROFILE_CUSTOMER_FIELDS)
            + tuple(C(f, "money", min=0) for f in PROFILE_MONEY_FIELDS),
        ),
        C("collected_date", "date", required=True),
        C("manager_id", "string"),
    ),
    key=None,
    description="dated field updates collected by managers on visits",
)
del C

# Chinese names of accounts and services, as feature descriptions show them.
SERVICES_ZH = {
    "mobile_banking": "手机银行",
    "wechat_banking": "微信银行",
    "payroll_agency": "代发工资服务",
    "social_security_card": "社保卡",
    "qr_merchant": "收款码商户",
    "pos_terminal": "POS机",
    "wealth_management": "理财",
    "insurance_agency": "代理保险",
}
ACCOUNT_TYPES_ZH = {
    "current": "活期账户",
    "savings": "储蓄账户",
    "time_deposit": "定期存款",
    "wealth": "理财账户",
    "loan": "贷款账户",
    "debit_card": "借记卡",
    "credit_card": "信用卡",
}


# Chinese labels of enum values, for what bank staff read (reasons, lists).
ENUM_ZH: dict[str, str] = {
    # loan products first: "other" is 其他 in the enums below
    **PRODUCT_NAMES_ZH,
    # customer_type, gender
    "individual": "个人",
    "business": "对公",
    "M": "男",
    "F": "女",
    # occupation
    "farmer": "农户",
    "merchant": "个体工商户",
    "micro_business_owner": "小微企业主",
    "civil_servant": "公务员",
    "public_institution": "事业单位",
    "enterprise_employee": "企业职工",
    "migrant_worker": "外出务工",
    "retired": "退休",
    "student": "学生",
    "other": "其他",
    # employer_type (public_institution, other shared above)
    "government": "政府机关",
    "soe": "国有企业",
    "private": "民营企业",
    "self_employed": "自雇",
    "agriculture": "务农",
    "none": "无",
    # marital_status, education, residence / area
    "single": "未婚",
    "married": "已婚",
    "divorced": "离异",
    "widowed": "丧偶",
    "primary": "小学",
    "secondary": "中学",
    "college": "大专",
    "bachelor": "本科",
    "postgraduate": "研究生",
    "urban": "城区",
    "rural": "农村",
    # contacts
    "sms": "短信",
    "wechat": "微信",
    "phone": "电话",
    "visit": "上门",
    "branch": "网点",
    "accepted": "接受",
    "declined": "拒绝",
    "no_response": "未回应",
    "unreachable": "未联系上",
}
