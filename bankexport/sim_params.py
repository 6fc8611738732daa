"""Every rate and size of the bank simulator, in one place.

Calibrated to the reference county rural bank in central Hunan (388,494 customers,
1,360 of them businesses; about 2.7% of customers hold a loan: about 10,700 with a
loan, about 2,500 with a consumer loan, 38 business borrowers; mobile banking held by
about 6% at the start). ``docs/simulator.md`` explains each block. Nothing here is
tuned to what a model scores: uptake intercepts are solved at the start of a run so
that the monthly grant rate among eligible customers matches ``GRANT_RATE``.
"""

from __future__ import annotations

from datetime import date

PRODUCTS = ("consumer", "business_flow", "tax_linked")  # the modelled products (the oracle's)

# ---------------------------------------------------------------- population
FULL_CUSTOMERS = 388_494
FULL_BUSINESSES = 1_360
MIN_BUSINESSES = 6  # a handful even in a tiny bank
FULL_BRANCHES = 52  # outlets of the reference bank (城区 + 乡镇)
MIN_BRANCHES = 4
URBAN_BRANCH_SHARE = 0.3
CUSTOMERS_PER_MANAGER = 1_300  # customers one customer manager looks after
MANAGER_CAPACITY = (80, 200)  # contacts per month, uniform range
COUNTY_CODE = "431322"  # a central-Hunan county code (township codes are 9 digits)

# Occupation mix of individuals in a central-Hunan county (sums to 1).
OCCUPATION_MIX = {
    "farmer": 0.30,
    "migrant_worker": 0.19,
    "merchant": 0.08,  # 个体工商户
    "micro_business_owner": 0.03,
    "civil_servant": 0.03,
    "public_institution": 0.05,  # teachers, doctors
    "enterprise_employee": 0.10,
    "retired": 0.13,
    "student": 0.06,
    "other": 0.03,
}
URBAN_SHARE = {  # P(residence = urban) by occupation; businesses 0.7
    "farmer": 0.03,
    "migrant_worker": 0.15,
    "merchant": 0.55,
    "micro_business_owner": 0.6,
    "civil_servant": 0.8,
    "public_institution": 0.6,
    "enterprise_employee": 0.6,
    "retired": 0.4,
    "student": 0.35,
    "other": 0.35,
}
SOE_SHARE_OF_EMPLOYEES = 0.25
NEW_CUSTOMER_SHARE = 0.05  # customers whose relationship starts during the simulation
DORMANT_SHARE = 0.28  # individuals who barely use their account
MANAGER_ASSIGNED = 0.35  # individuals (not merchants) with a responsible manager
BUSINESS_URBAN_SHARE = 0.7  # P(residence = urban) of businesses
MIGRANT_PRIVATE_EMPLOYER = 0.7  # migrant workers with a private employer (else none)
AGE_RANGE = {  # age in years at the start, uniform range by occupation (others: default)
    "default": (24, 60),
    "student": (16, 24),
    "retired": (58, 88),
    "farmer": (30, 75),
    "migrant_worker": (18, 55),
}
RELATIONSHIP_YEARS = (0.6, 25)  # years since the relationship started, uniform range (existing customers)
MIN_OPEN_AGE = {"default": 18, "student": 10}  # no relationship before this age
FIRM_AGE_GAMMA = (2.0, 3.5, 0.3)  # years since establishment: gamma shape, scale, plus an offset
INDUSTRY_DRAW = "AACEFFFFFFGHHIKLMOR"  # industry codes of the business-flow pool, each letter equally likely

# Questionnaire fields of the customers table (orders as in bankexport/spec.py).
MALE_SHARE = 0.51
MARITAL_MIX = (0.25, 0.65, 0.05, 0.05)  # single, married, divorced, widowed
WIDOWED_AGE, WIDOWED_SHARE = 70, 0.3  # older individuals widowed
EDUCATION_MIX = {  # primary, secondary, college, bachelor, postgraduate
    "default": (0.25, 0.45, 0.15, 0.13, 0.02),
    "civil_servant": (0, 0.05, 0.25, 0.6, 0.1),
    "public_institution": (0, 0.05, 0.3, 0.55, 0.1),
    "student": (0.1, 0.5, 0.25, 0.15, 0),
}
RISK_MIX = (0.3, 0.35, 0.25, 0.08, 0.02)  # risk tolerance C1..C5
QUESTIONNAIRE_MISSING = 0.04  # marital status, education and risk tolerance never filled

# Visits that update a customer's profile (profile_updates): the share of customers with a
# manager visited once in the simulated months, and the spread of what the manager writes down
# around the true monthly income (salary and pension) or last month's turnover.
VISIT_SHARE = 0.08
VISIT_FIGURE_SIGMA = 0.15

# Payroll through the bank (代发工资): share of each occupation paid by this bank.
PAYROLL_SHARE = {"civil_servant": 0.95, "public_institution": 0.9, "enterprise_employee": 0.35}
PAYROLL_SOE_SHARE = 0.85  # SOE employees
SALARY_MEDIAN = {"civil_servant": 5_500, "public_institution": 5_000, "enterprise_employee": 3_800}
SALARY_SIGMA = 0.3  # lognormal sigma around the median
SOE_SALARY_FACTOR = 1.2  # SOE employees earn more
PAYROLL_DAYS = (5, 10, 15, 20, 25)  # pay day of the month, equally likely
N_EMPLOYERS = 400  # employers in the counterparty pool
PENSION_MEDIAN, PENSION_SIGMA = 2_200, 0.45  # monthly pension (CNY), lognormal
PENSION_THROUGH_BANK = 0.7  # retirees whose pension is paid here
SUBSIDY_FARMERS = 0.85  # farmers receiving 耕地地力保护补贴 here
REMITTANCE_FAMILY = 0.35  # farmers / retirees receiving money from migrant relatives
SEASONAL_WORKER = 0.3  # farmers and migrant workers away Apr–Dec
NO_INCOME_SHARE = 0.75  # individuals without payroll or pension here (DORMANT_SHARE is of all individuals)
DORMANT_ACTIVITY = 0.05  # activity level of dormant individuals
ACTIVITY_SIGMA = 0.5  # lognormal sigma of everyone else's activity level (median 1)
WEALTH_MEDIAN = {  # typical main-account balance (CNY) by occupation; businesses and others: default
    "default": 10_000.0,
    "farmer": 6_000,
    "migrant_worker": 9_000,
    "civil_servant": 30_000,
    "public_institution": 25_000,
    "enterprise_employee": 12_000,
    "retired": 22_000,
    "student": 800,
    "merchant": 25_000,
    "micro_business_owner": 40_000,
}
WEALTH_SIGMA = 0.9  # lognormal sigma around the median
DORMANT_WEALTH = 0.05  # factor on dormant individuals' balance
MOBILE_PROPENSITY = {  # factors of the mobile-banking propensity (normalised to mean 1)
    "under_35": 2.5,
    "50_to_59": 0.6,
    "60_and_over": 0.15,
    "urban": 1.6,
    "payroll": 2.0,
    "business_flow": 1.5,
}

# ---------------------------------------------------------------- services
MOBILE_START = 0.06  # share holding mobile banking at the start
MOBILE_ADOPT_MONTHLY = 0.006  # base monthly adoption among non-holders (x propensity)
WECHAT_START = 0.08
SOCIAL_SECURITY_CARD = 0.6
QR_MERCHANT = 0.7  # merchants with a QR acquiring service
POS_TERMINAL = 0.3
INSURANCE_SHARE = 0.02
SERVICE_END_MONTHLY = 0.004  # wechat / insurance / wealth services ending per month
SERVICE_MAX_AGE_DAYS = 3_000  # services started since opening start at most this many days after it
MOBILE_START_CAP = 0.9  # cap of a customer's probability of holding mobile banking at the start
MOBILE_START_BACK_DAYS = 1_500  # holders at the start adopted within this many days before it

# ---------------------------------------------------------------- accounts
DEBIT_CARD_SHARE = 0.75  # individuals' main account: debit card, else a savings book
TIME_DEPOSIT_WEALTH, TIME_DEPOSIT_SHARE = 15_000, 0.45  # share with a time deposit among wealth above
WEALTH_ACCOUNT_WEALTH, WEALTH_ACCOUNT_SHARE = 40_000, 0.25  # share with a wealth account among wealth above
CREDIT_CARD_SHARE = 0.15  # urban individuals with payroll or a business
EXTRA_ACCOUNT_OPEN_SPAN = 0.6  # extra accounts open within this share of the time since the customer opened
EXTRA_ACCOUNT_BALANCE = (0.8, 3)  # an extra account's balance / the customer's wealth, uniform range
ACCOUNT_CLOSE_MONTHLY = 0.002  # time deposits / wealth accounts closing

# ---------------------------------------------------------------- transactions
# Monthly Poisson rates per active individual (multiplied by the activity level).
RATE_PURCHASE = 1.6
RATE_CASH = 0.7
RATE_TRANSFER_OUT = 0.4
RATE_TRANSFER_IN = 0.3
RATE_UTILITY = 0.25
RATE_FEE = 0.15
BUSINESS_TRANSFERS_IN = 14  # per business per month
BUSINESS_TRANSFERS_OUT = 9
SETTLEMENT_DAYS = (10, 24)  # merchant settlement batches per month (uniform range)
LIFE_EVENT_MONTHLY = 0.012  # wedding, decoration, car... a spending surge
LIFE_EVENT_SURGE = (2, 5)  # extra big purchases in the event month and the next
AWAY_MONTHS, AWAY_ACTIVITY = (4, 12), 0.3  # seasonal workers away in these months (inclusive): activity x this
FESTIVAL_MONTH_STOCKING = 0.3  # a month with more of its days in the stocking weeks is the festival month

# Amounts of everyday transactions: lognormal (median CNY, sigma) or uniform ranges.
PURCHASE_AMOUNT = (120, 1.0)
LIFE_EVENT_AMOUNT = (12_000, 0.7)
CASH_AMOUNT = (600, 0.8)  # rounded to 100
TRANSFER_OUT_AMOUNT = (800, 0.9)
TRANSFER_IN_AMOUNT = (700, 0.9)
UTILITY_AMOUNT = (90, 0.5)
UTILITY_AREA = (1.5, 0.7)  # utility payments rate factor: urban, rural
FEE_AMOUNT = (1, 10)  # uniform, whole yuan
PURCHASE_QR_MOBILE = 0.7  # purchases by QR among mobile-banking holders
PURCHASE_POS = 0.6  # otherwise: by POS, else QR
CREDIT_CARD_USE = 0.5  # purchases paid by credit card among card holders
CASH_AT_COUNTER = 0.2  # cash at the counter; else ATM (urban) or agent (rural)
CASH_WITHDRAWAL = 0.8  # cash transactions that are withdrawals

# Income credits.
FESTIVAL_BONUS = 2.0  # government and public-institution pay in the festival month
SALARY_NOISE = 0.03  # sd of a month's pay relative to the salary
PENSION_DAY = 19  # day of the month pensions arrive
SUBSIDY_MONTHS, SUBSIDY_MONTHLY = (5, 6), 0.5  # farm subsidies paid in these months, each with this probability
SUBSIDY_AMOUNT = (300, 2_500)
REMIT_RATE = {"migrant": (2.5, 0.8), "family": (1.5, 0.4)}  # monthly Poisson rate: festival month, otherwise
REMIT_AMOUNT = {"migrant": (2_500, 0.6), "family": (1_500, 0.6)}  # lognormal (median, sigma)

# Business flows (turnover is split into these transactions).
CASH_DEPOSIT_DAYS = (3, 7)  # merchants without a terminal deposit cash this many times a month
POS_SETTLEMENT_SHARE = 0.5  # POS holders' settlements by POS (else QR)
BUSINESS_MOBILE_SHARE = 0.6  # business transfers by mobile (else counter)
MERCHANT_TRANSFERS_OUT = 3  # per merchant per month (businesses: BUSINESS_TRANSFERS_OUT)
OUTGOINGS_SHARE = (0.6, 0.9)  # outgoing transfers / turnover, uniform range
BUSINESS_PAYROLL = (0.08, 0.2)  # businesses' payroll / turnover, uniform range
BUSINESS_PAYROLL_DAY = 10
TAX_PAYMENT_DAYS = 15  # tax paid within the first days of the month
TAX_PAYMENT_SPREAD = (0.7, 1.3)  # a payment / (yearly tax / months filed), uniform range
TAX_PAYMENT_MIN = 50

# Social insurance, housing fund, interest.
SOCIAL_INSURANCE_FROM = 9  # rural individuals pay the premium from this month of the year
SOCIAL_INSURANCE_MONTHLY = 0.12
SOCIAL_INSURANCE_AMOUNT = (380, 1_000)
HOUSING_FUND_MONTHLY = 0.02  # payroll customers withdrawing from the housing fund
HOUSING_FUND_AMOUNT = (5_000, 30_000)
INTEREST_MONTHS, INTEREST_DAY = (3, 6, 9, 12), 21  # quarterly interest (结息日)
DEMAND_DEPOSIT_RATE = 0.0035  # yearly
INSTALMENT_LOADING = 1.05  # a loan instalment: amount / term x this (interest)
PAYOFF_MIN_SHARE = 0.02  # an early payoff repays the amount not yet due by the term, at least this share

# Times of day (hours) by channel: staffed (counter, agent), batch, the rest.
BUSINESS_HOURS = (8.5, 17.5)
BATCH_HOURS = (2, 6)
ALL_DAY_HOURS = (7, 22.5)

# Balances: individuals' main account = wealth x exp(z), z an AR(1) (rho, shock sd).
BALANCE_AR = (0.7, 0.3)
AVG_BALANCE_SPREAD = (0.85, 1.15)  # average daily balance / end balance, uniform range
EXTRA_BALANCE_GROWTH = 0.02  # monthly log growth of deposit and wealth accounts

# Spring Festival (春节) dates, the calendar's real ones.
SPRING_FESTIVAL = {
    y: date.fromisoformat(d)
    for y, d in {
        2015: "2015-02-19",
        2016: "2016-02-08",
        2017: "2017-01-28",
        2018: "2018-02-16",
        2019: "2019-02-05",
        2020: "2020-01-25",
        2021: "2021-02-12",
        2022: "2022-02-01",
        2023: "2023-01-22",
        2024: "2024-02-10",
        2025: "2025-01-29",
        2026: "2026-02-17",
        2027: "2027-02-06",
        2028: "2028-01-26",
        2029: "2029-02-13",
        2030: "2030-02-03",
        2031: "2031-01-23",
        2032: "2032-02-11",
        2033: "2033-01-31",
        2034: "2034-02-19",
        2035: "2035-02-08",
    }.items()
}
FESTIVAL_PEAK = (-20, 5)  # days around 春节 with the turnover peak
FESTIVAL_PEAK_LIFT = 0.9  # +90% turnover on peak days
FESTIVAL_SLUMP = (6, 30)  # days after with a slump
FESTIVAL_SLUMP_DROP = 0.25
STOCKING_DAYS = 30  # pre-festival stocking window before 春节

# Turnover (monthly, CNY) of business-flow customers: lognormal median and sigma.
TURNOVER_MEDIAN = {"merchant": 30_000, "micro_business_owner": 70_000, "business": 400_000}
TURNOVER_SIGMA = 0.8
TAXPAYER_TURNOVER_LIFT = 1.4  # taxpayers' turnover is higher
TURNOVER_TREND = (0.04, 0.25)  # annual growth: mean, sd across customers
TURNOVER_NOISE = 0.15
BALANCE_RATIO = (0.6, 0.6, 0.92, 0.22)  # business balance / turnover: median, sd of mean, AR rho, shock sd

# ---------------------------------------------------------------- tax
TAX_PAYER_SHARE = {"merchant": 0.45, "micro_business_owner": 0.65, "business": 0.9}
TAX_GRADE_MIX = {"A": 0.22, "B": 0.40, "M": 0.13, "C": 0.18, "D": 0.07}
TAX_GRADE_STAY = 0.8  # yearly persistence of the grade
TAX_RATE = (0.01, 0.035)  # tax paid / turnover, uniform range
TAX_PUBLISH = ((3, 15), (5, 31))  # tax year Y published between these (month, day) of Y+1
TAX_YEARS_BEFORE = 3  # tax years drawn before the first simulated year
TAX_NEW_FIRM_YEARS = 2  # firms younger than this (in tax years) get grade M
TAX_FILED_C = (7, 12)  # months filed by grade-C taxpayers, uniform range (A, B, M: all 12)
TAX_FILED_D = (0, 8)  # grade D
TAX_PAID_NOISE = 0.15  # lognormal sigma of tax paid around turnover x rate

# ---------------------------------------------------------------- uptake
# Monthly grant rate among eligible customers, solved at the start of a run
# (consumer: about 2,500-3,000 holders at full scale with a 24-month average term and
# early repayment; businesses get few of them, as at the reference bank).
GRANT_RATE = {"consumer": 0.0005, "business_flow": 0.0025, "tax_linked": 0.006}
HIDDEN_SD = {"consumer": 0.8, "business_flow": 0.8, "tax_linked": 0.8}  # sd of the hidden effect
MIN_TENURE_MONTHS = 6  # relationship months before any of the three products
CONSUMER_AGE = (22, 58)
CONSUMER_AGE_PEAK = (35, 10)  # consumer hazard falls with ((age - 35) / 10) ** 2
SALARY_REF = (500, 4_000)  # log salary term: salary floored at 500, relative to 4,000
TURNOVER_REF = (100, 50_000)  # log turnover term: floor, reference (CNY a month)
TAX_PAID_REF = (100, 10_000)  # log tax term: floor, reference (CNY a year)
CONSUMER_COEF = {  # log-hazard effects
    "payroll": 0.9,
    "public": 0.6,
    "soe": 0.4,
    "age_curv": 0.5,
    "event": 1.6,
    "mobile": 0.6,
    "log_salary": 0.4,
    "farm_or_retired": -0.8,
    "migrant": -0.3,
}
BUSINESS_COEF = {
    "log_turnover": 0.8,
    "growth": 0.7,
    "squeeze": 1.2,
    "stocking": 1.4,
    "business": -2.8,
}  # few 对公 borrowers (38 at the reference bank)
SQUEEZE_RATIO = 0.2  # last end_balance / mean turnover of the last 3 months below this
TAX_COEF = {
    "grade": {"A": 1.0, "B": 0.5, "M": 0.0, "C": -1.0},
    "log_tax": 0.4,
    "full_filing": 0.6,
    "log_firm_age": 0.4,
    "business": -2.4,
}
TAX_APPROVAL = {"A": 0.9, "B": 0.8, "M": 0.65, "C": 0.35}
# Consumer approval: base, + payroll, + public employer, - older than CONSUMER_OLDER_AGE; clipped.
CONSUMER_APPROVAL = {"base": 0.55, "payroll": 0.3, "public": 0.1, "older": 0.2}
CONSUMER_OLDER_AGE = 50
CONSUMER_APPROVAL_RANGE = (0.2, 0.95)
BUSINESS_APPROVAL = (0.75, 0.15)  # business-flow approval: base, minus this when the balance is squeezed
LIFE_EVENT_AGE = (22, 60)  # individuals who may have a life event
EVENT_LAG = (1, 3)  # a life event in month e raises consumer hazard in months e+1..e+3

# Other loan products (no oracle): monthly grant rates among eligible.
AGRI_RATE = 0.0025  # farmers and rural merchants (x2 in Feb-Apr, x0.8 otherwise)
AGRI_PEAK_MONTHS, AGRI_PEAK_FACTOR, AGRI_OFF_FACTOR = (2, 3, 4), 2.0, 0.8
MORTGAGE_RATE = 0.0003  # urban employees
OTHER_RATE = 0.00005
OTHER_APPROVAL = {"agricultural": 0.85, "mortgage": 0.7, "other": 0.6}  # grant probability of an application
# Loans held at the start, drawn from observables only: a modelled product's holders with
# probability monthly grant rate x mean term (capped); the others as below.
PREEXISTING_CAP = 0.5
PREEXISTING_AGRI = 1.3  # farmers: AGRI_RATE x this x 12
PREEXISTING_MORTGAGE = 0.02  # of the mortgage pool
PREEXISTING_OTHER_MONTHS = 18  # individuals: OTHER_RATE x this
# Requested amounts (CNY), uniform ranges.
CONSUMER_SALARY_MULTIPLE = (5, 20)  # payroll customers ask this many monthly salaries
CONSUMER_AMOUNT = (10_000, 80_000)  # other consumer applicants
CONSUMER_MAX = 300_000
TURNOVER_MULTIPLE = {"business_flow": (1, 3), "tax_linked": (1, 4)}  # x monthly turnover at the start
TAX_LINKED_MIN = 50_000
BUSINESS_MAX = 3_000_000
LOAN_AMOUNT = {"agricultural": (10_000, 100_000), "mortgage": (200_000, 800_000), "other": (5_000, 50_000)}
TERMS = {
    "consumer": ((12, 24, 36), (0.3, 0.4, 0.3)),
    "business_flow": ((12,), (1.0,)),
    "tax_linked": ((12,), (1.0,)),
    "agricultural": ((12,), (1.0,)),
    "mortgage": ((120, 180, 240), (0.3, 0.4, 0.3)),
    "other": ((12, 24), (0.5, 0.5)),
}
EARLY_REPAY_MONTHLY = 0.012
OVERDUE_MIX = ((0, 0.9), (30, 0.07), (90, 0.02), (360, 0.01))  # max_overdue_days up to, share
WRITE_OFF_SHARE = 0.5  # of loans with max_overdue_days > WRITE_OFF_OVERDUE
WRITE_OFF_OVERDUE = 90
WRITE_OFF_MONTHS = (6, 12)  # written off this many months after the grant (at most the term), uniform
CURRENTLY_OVERDUE = 0.3  # of open loans that were ever overdue
GH_NODES = 24  # Gauss-Hermite nodes for the hidden effect

# ---------------------------------------------------------------- contacts and their effect
# Managers' ordinary calls: at-risk customers with a manager, decided at the month's start.
CONTACT_RATE = 0.012  # monthly contact probability for an at-risk customer with a manager
CONTACT_TOP_RATE = 0.05  # for the top fifth by the bank's (observable) score
CONTACT_TOP_QUANTILE = 0.8  # where the top fifth starts
CONTACT_UNREACHABLE = 0.2  # attempts that never reach the customer (outcome unreachable, no effect)
CONTACT_OUTCOME_MIX = (0.4, 0.6)  # reached without an application that month: declined, no_response
CONTACT_CHANNEL_MIX = (0.35, 0.2, 0.3, 0.1, 0.05)  # sms, wechat, phone, visit, branch
# A contact that reaches an at-risk customer adds tau to that month's log-hazard (only that
# month). tau = the effect of the customer's kind for the product + a hidden part, uniform in
# +-CONTACT_TAU_HIDDEN per customer and product. The kind follows from traits the export shows
# (first rule that holds, bankexport/sim_uptake.py: contact_kinds); a contact does not change
# the kind (so the oracle, which takes contacts as the policy draws them, knows nothing of a
# later contact through the kind):
#   consumer:      payroll here: sure thing; age >= CONSUMER_SLEEPING_AGE: sleeping dog;
#                  farmer or retired: lost cause; age in CONSUMER_PERSUADABLE_AGE: persuadable;
#                  otherwise lost cause
#   business_flow: business (对公): lost cause; squeezed or turnover (last 3 months) >=
#                  BUSINESS_SURE_TURNOVER: sure thing; owner age >= OWNER_SLEEPING_AGE: sleeping
#                  dog; turnover < BUSINESS_LOST_TURNOVER: lost cause; otherwise persuadable
#   tax_linked:    business: lost cause; owner age >= OWNER_SLEEPING_AGE: sleeping dog; latest
#                  grade A: sure thing; grade B or M: persuadable; otherwise lost cause
# Persuadables sit in the middle of the baseline (sure things above them, lost causes below),
# so ranking by propensity is not ranking by uplift. A persuadable's contacted month is about
# exp(tau) times as likely to bring an application (campaign response rates of 1-5%).
CONTACT_KINDS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
CONTACT_TAU = {
    "consumer": {"persuadable": 4.0, "sure_thing": 0.0, "lost_cause": 0.0, "sleeping_dog": -1.5},
    "business_flow": {"persuadable": 3.0, "sure_thing": 0.0, "lost_cause": 0.0, "sleeping_dog": -1.5},
    "tax_linked": {"persuadable": 2.5, "sure_thing": 0.0, "lost_cause": 0.0, "sleeping_dog": -1.5},
}
CONTACT_TAU_HIDDEN = 0.25
CONSUMER_PERSUADABLE_AGE = (25, 45)  # [from, to) in years
CONSUMER_SLEEPING_AGE = 55
OWNER_SLEEPING_AGE = 58  # merchants and micro-business owners
BUSINESS_SURE_TURNOVER = 100_000  # CNY a month, mean of the last 3 months
BUSINESS_LOST_TURNOVER = 10_000

# Randomised campaigns: in month m >= CAMPAIGN_FIRST[p] with (m - first) % CAMPAIGN_EVERY == 0,
# a random CAMPAIGN_SAMPLE share of the product's at-risk eligible candidates is split at
# random into treatment (CAMPAIGN_TREATMENT_SHARE) and control. The branch attempts
# CAMPAIGN_ATTEMPTED of the treatment customers that month (the rest are never called); an
# attempt reaches the customer unless unreachable (CONTACT_UNREACHABLE). Control customers get
# no campaign contact, only the managers' ordinary calls (contamination).
CAMPAIGN_EVERY = 2
CAMPAIGN_FIRST = {"consumer": 2, "business_flow": 3, "tax_linked": 3}  # month index from the first month
CAMPAIGN_SAMPLE = {"consumer": 0.2, "business_flow": 0.5, "tax_linked": 0.6}
CAMPAIGN_TREATMENT_SHARE = 0.5
CAMPAIGN_ATTEMPTED = 0.9
CAMPAIGN_PREFIX = "RCT"  # campaign ids RCT-<product>-<YYYYMM>

# ---------------------------------------------------------------- federation
# ``nbp simulate --federation K``: K member banks of one provincial federation (省联社).
FED_SIZE_RANGE = (500_000, 5_000)  # customers of the largest and smallest bank at scale 1, log-spread between
FED_PUBLIC_SHARE = (0.04, 0.14)  # civil servants + public institutions among individuals (reference 0.08)
FED_MERCHANT_SHARE = (0.06, 0.18)  # merchants + micro-business owners among individuals (reference 0.11)
FED_BUSINESS_SHARE = (0.001, 0.008)  # businesses (对公) among customers (reference 1,360 / 388,494 = 0.0035)
FED_TAX_DATA_SHARE = 0.6  # banks receiving tax records (银税互动); with K >= 2 at least one bank has none
FED_LAUNCH_SHARE = 0.25  # (bank, offered product) pairs launched during the simulated months
FED_LAUNCH_AFTER = 6  # such a launch falls at least this many months after the first simulated month
FED_RECENT_LAUNCH = 3  # the smallest bank with tax data launched tax_linked this many months before the export
FED_STREAM = 900  # random stream of the federation's knobs and of each bank's seed
# Member banks' codes, display names and county codes (fictional counties); more banks: RCB<k>.
FED_BANKS = (
    ("QINGSHAN", "青山农商行", "431301"),
    ("BAISHA", "白沙农商行", "431302"),
    ("JINTANG", "金塘农商行", "431303"),
    ("MEIXI", "梅溪农商行", "431304"),
    ("LONGTAN", "龙潭农商行", "431305"),
    ("FENGLIN", "枫林农商行", "431306"),
    ("SONGBAI", "松柏农商行", "431307"),
    ("HETANG", "荷塘农商行", "431308"),
    ("LIUWAN", "柳湾农商行", "431309"),
    ("ZHUYUAN", "竹园农商行", "431310"),
    ("XINGHUA", "杏花农商行", "431311"),
    ("SHIQUAN", "石泉农商行", "431312"),
)
