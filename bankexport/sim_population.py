"""The simulated bank's static world: branches, managers, customers and their traits.

Everything here is drawn once, before the months run. Arrays are indexed by the
customer's position ``0..n-1``; ``customer_id`` is ``C`` + 9 digits of that position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bankexport import sim_params as P
from bankexport.spec import EMPLOYER_TYPES, INDUSTRIES, OCCUPATIONS

OCC = {name: i for i, name in enumerate(OCCUPATIONS)}
EMP = {name: i for i, name in enumerate(EMPLOYER_TYPES)}
NO_DAY = np.datetime64("NaT", "D")


def ids(prefix: str, n: int, width: int) -> pa.Array:
    """``prefix`` + zero-padded 0..n-1 as an Arrow string array."""
    import pyarrow.compute as pc

    s = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def add_months(day: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Add ``k`` calendar months to dates, clipping the day to the month's length."""
    day = np.asarray(day, dtype="datetime64[D]")
    m0 = day.astype("datetime64[M]")
    dom = (day - m0.astype("datetime64[D]")).astype(np.int64)
    m1 = m0 + np.asarray(k, dtype=np.int64)
    nd = ((m1 + 1).astype("datetime64[D]") - m1.astype("datetime64[D]")).astype(np.int64)
    return m1.astype("datetime64[D]") + np.minimum(dom, nd - 1)


@dataclass
class Population:
    """Static traits of every customer (arrays of length ``n``) and the bank's network."""

    n: int
    is_biz: np.ndarray  # bool
    occ: np.ndarray  # int8 index into OCCUPATIONS, -1 for businesses
    emp: np.ndarray  # int8 index into EMPLOYER_TYPES, -1 for businesses
    birth: np.ndarray  # datetime64[D], NaT for businesses
    urban: np.ndarray  # bool
    branch: np.ndarray  # int32
    manager: np.ndarray  # int32, -1: none
    open_day: np.ndarray  # datetime64[D]
    established: np.ndarray  # datetime64[D], NaT unless merchant / micro business / business
    industry: np.ndarray  # int8 index into INDUSTRIES, -1 none
    payroll: np.ndarray  # bool: salary paid through this bank
    salary: np.ndarray  # float64 monthly
    payroll_day: np.ndarray  # int8
    employer_cp: np.ndarray  # int32 counterparty index of the employer
    pension: np.ndarray  # float64 monthly pension paid here (0: none)
    activity: np.ndarray  # float64 multiplier of everyday transactions
    wealth: np.ndarray  # float64 typical balance of the main account
    seasonal: np.ndarray  # bool: away Apr–Dec
    family_remit: np.ndarray  # bool: receives money from migrant relatives
    subsidy: np.ndarray  # bool
    bf_pool: np.ndarray  # bool: merchant / micro business / business (business-flow pool)
    taxpayer: np.ndarray  # bool
    turnover_base: np.ndarray  # float64 monthly turnover at the start (bf pool)
    turnover_trend: np.ndarray  # float64 annual log growth
    terminal: np.ndarray  # int8: 0 none (cash deposits), 1 QR, 2 POS (+QR)
    mobile_prop: np.ndarray  # float64 mobile-banking propensity
    n_branches: int
    branch_urban: np.ndarray  # bool
    branch_town: list[str]
    manager_branch: np.ndarray  # int32
    manager_capacity: np.ndarray  # int32


def build_population(n: int, start: np.datetime64, span_days: int, rng: np.random.Generator) -> Population:
    """Draw the customers of an ``n``-customer bank whose simulation starts at ``start``.

    Args:
        n: number of customers.
        start: first simulated day (a month start).
        span_days: number of simulated days (new customers open within them).
        rng: the population's random stream.

    Returns:
        The :class:`Population`.
    """
    n_biz = min(n, max(P.MIN_BUSINESSES, round(n * P.FULL_BUSINESSES / P.FULL_CUSTOMERS)))
    is_biz = np.zeros(n, bool)
    is_biz[rng.choice(n, n_biz, replace=False)] = True
    occ_names = list(P.OCCUPATION_MIX)
    occ_p = np.array(list(P.OCCUPATION_MIX.values()))
    occ = np.array([OCC[o] for o in occ_names], np.int8)[rng.choice(len(occ_names), n, p=occ_p / occ_p.sum())]
    occ[is_biz] = -1
    o = {name: occ == OCC[name] for name in OCCUPATIONS}

    # Employer type follows the occupation.
    emp = np.full(n, EMP["none"], np.int8)
    emp[o["civil_servant"]] = EMP["government"]
    emp[o["public_institution"]] = EMP["public_institution"]
    ee = o["enterprise_employee"]
    emp[ee] = np.where(rng.random(n) < P.SOE_SHARE_OF_EMPLOYEES, EMP["soe"], EMP["private"])[ee]
    emp[o["merchant"] | o["micro_business_owner"]] = EMP["self_employed"]
    emp[o["farmer"]] = EMP["agriculture"]
    mw = o["migrant_worker"]
    emp[mw] = np.where(rng.random(n) < 0.7, EMP["private"], EMP["none"])[mw]
    emp[is_biz] = -1

    # Age by occupation.
    age = rng.uniform(24, 60, n)
    age[o["student"]] = rng.uniform(16, 24, n)[o["student"]]
    age[o["retired"]] = rng.uniform(58, 88, n)[o["retired"]]
    age[o["farmer"]] = rng.uniform(30, 75, n)[o["farmer"]]
    age[mw] = rng.uniform(18, 55, n)[mw]
    birth = (start - (age * 365.25).astype(np.int64)).astype("datetime64[D]")
    birth[is_biz] = NO_DAY

    urban_p = np.full(n, 0.7)
    for name, p in P.URBAN_SHARE.items():
        urban_p[o[name]] = p
    urban = rng.random(n) < urban_p

    # Branches: urban ones first; customers go to a branch of their area.
    n_br = max(P.MIN_BRANCHES, round(P.FULL_BRANCHES * n / P.FULL_CUSTOMERS))
    n_urb = max(1, round(n_br * P.URBAN_BRANCH_SHARE))
    branch_urban = np.arange(n_br) < n_urb
    branch_town = [f"{P.COUNTY_CODE}{(1 + i if i < n_urb else 100 + i):03d}" for i in range(n_br)]
    branch = np.where(urban, rng.integers(0, n_urb, n), rng.integers(n_urb, n_br, n)).astype(np.int32)

    # Managers, proportional to each branch's customers.
    per_branch = np.bincount(branch, minlength=n_br)
    n_mgr = np.maximum(1, np.round(per_branch / P.CUSTOMERS_PER_MANAGER)).astype(np.int64)
    manager_branch = np.repeat(np.arange(n_br, dtype=np.int32), n_mgr)
    manager_capacity = rng.integers(P.MANAGER_CAPACITY[0], P.MANAGER_CAPACITY[1] + 1, len(manager_branch))
    first_mgr = np.concatenate([[0], np.cumsum(n_mgr)[:-1]])
    mgr = (first_mgr[branch] + (rng.random(n) * n_mgr[branch]).astype(np.int64)).astype(np.int32)

    bf_pool = is_biz | o["merchant"] | o["micro_business_owner"]
    has_mgr = bf_pool | (rng.random(n) < P.MANAGER_ASSIGNED)
    manager = np.where(has_mgr, mgr, -1).astype(np.int32)

    # Relationship start: mostly years ago, some during the simulation.
    years_back = rng.uniform(0.6, 25, n)
    open_day = (start - (years_back * 365.25).astype(np.int64)).astype("datetime64[D]")
    new = rng.random(n) < P.NEW_CUSTOMER_SHARE
    open_day[new] = (start + rng.integers(0, span_days, n)).astype("datetime64[D]")[new]
    min_age = np.where(o["student"], 10, 18)
    adult = birth + (min_age * 365.25).astype(np.int64)
    open_day = np.where(~is_biz & (open_day < adult), adult, open_day)
    open_day = np.minimum(open_day, start + span_days - 1)

    established = np.full(n, NO_DAY)
    est_years = rng.gamma(2.0, 3.5, n) + 0.3
    established[bf_pool] = (start - (est_years * 365.25).astype(np.int64)).astype("datetime64[D]")[bf_pool]
    industry = np.full(n, -1, np.int8)
    ind_choices = np.array([INDUSTRIES.index(c) for c in "AACEFFFFFFGHHIKLMOR"], np.int8)
    industry[bf_pool] = ind_choices[rng.integers(0, len(ind_choices), n)][bf_pool]

    # Income: payroll through the bank, pensions.
    pay_p = np.zeros(n)
    for name, p in P.PAYROLL_SHARE.items():
        pay_p[o[name]] = p
    pay_p[emp == EMP["soe"]] = P.PAYROLL_SOE_SHARE
    payroll = rng.random(n) < pay_p
    salary = np.zeros(n)
    for name, med in P.SALARY_MEDIAN.items():
        salary[o[name]] = (med * rng.lognormal(0, 0.3, n))[o[name]]
    salary[emp == EMP["soe"]] *= 1.2
    salary = np.round(salary, 2)
    payroll_day = rng.choice(np.array([5, 10, 15, 20, 25], np.int8), n)
    employer_cp = rng.integers(0, 400, n).astype(np.int32)
    pension = np.where(
        o["retired"] & (rng.random(n) < P.PENSION_THROUGH_BANK), np.round(rng.lognormal(np.log(2_200), 0.45, n), 2), 0.0
    )

    dormant = ~is_biz & ~payroll & (pension == 0) & (rng.random(n) < P.DORMANT_SHARE / 0.75)
    activity = np.where(dormant, 0.05, rng.lognormal(0, 0.5, n))
    wealth_med = np.full(n, 10_000.0)
    for name, med in (
        ("farmer", 6_000),
        ("migrant_worker", 9_000),
        ("civil_servant", 30_000),
        ("public_institution", 25_000),
        ("enterprise_employee", 12_000),
        ("retired", 22_000),
        ("student", 800),
        ("merchant", 25_000),
        ("micro_business_owner", 40_000),
    ):
        wealth_med[o[name]] = med
    wealth = wealth_med * rng.lognormal(0, 0.9, n)
    wealth[dormant] *= 0.05

    seasonal = (o["farmer"] | mw) & (rng.random(n) < P.SEASONAL_WORKER)
    family_remit = (o["farmer"] | o["retired"]) & (rng.random(n) < P.REMITTANCE_FAMILY)
    subsidy = o["farmer"] & (rng.random(n) < P.SUBSIDY_FARMERS)

    tax_p = np.zeros(n)
    tax_p[o["merchant"]] = P.TAX_PAYER_SHARE["merchant"]
    tax_p[o["micro_business_owner"]] = P.TAX_PAYER_SHARE["micro_business_owner"]
    tax_p[is_biz] = P.TAX_PAYER_SHARE["business"]
    taxpayer = rng.random(n) < tax_p

    t_med = np.zeros(n)
    t_med[o["merchant"]] = P.TURNOVER_MEDIAN["merchant"]
    t_med[o["micro_business_owner"]] = P.TURNOVER_MEDIAN["micro_business_owner"]
    t_med[is_biz] = P.TURNOVER_MEDIAN["business"]
    turnover_base = t_med * rng.lognormal(0, P.TURNOVER_SIGMA, n) * np.where(taxpayer, 1.4, 1.0)
    turnover_trend = rng.normal(*P.TURNOVER_TREND, n)
    u_term = rng.random(n)
    terminal = np.where(u_term < P.POS_TERMINAL, 2, np.where(u_term < P.QR_MERCHANT, 1, 0)).astype(np.int8)
    terminal[~bf_pool] = 0

    mobile_prop = np.ones(n)
    mobile_prop[age < 35] *= 2.5
    mobile_prop[(age >= 50) & (age < 60)] *= 0.6
    mobile_prop[age >= 60] *= 0.15
    mobile_prop[urban] *= 1.6
    mobile_prop[payroll] *= 2.0
    mobile_prop[bf_pool] *= 1.5
    mobile_prop /= mobile_prop.mean()

    return Population(
        n=n,
        is_biz=is_biz,
        occ=occ,
        emp=emp,
        birth=birth,
        urban=urban,
        branch=branch,
        manager=manager,
        open_day=open_day,
        established=established,
        industry=industry,
        payroll=payroll,
        salary=salary,
        payroll_day=payroll_day,
        employer_cp=employer_cp,
        pension=pension,
        activity=activity,
        wealth=wealth,
        seasonal=seasonal,
        family_remit=family_remit,
        subsidy=subsidy,
        bf_pool=bf_pool,
        taxpayer=taxpayer,
        turnover_base=turnover_base,
        turnover_trend=turnover_trend,
        terminal=terminal,
        mobile_prop=mobile_prop,
        n_branches=n_br,
        branch_urban=branch_urban,
        branch_town=branch_town,
        manager_branch=manager_branch,
        manager_capacity=manager_capacity.astype(np.int32),
    )


def customers_table(pop: Population, rng: np.random.Generator) -> pa.Table:
    """The ``customers`` export table (spec column order and spellings)."""
    from bankexport.spec import EDUCATION, MARITAL, RISK, TABLES

    n = pop.n
    ind = ~pop.is_biz
    occ_s = np.array(OCCUPATIONS, dtype=object)
    emp_s = np.array(EMPLOYER_TYPES, dtype=object)
    gender = np.where(rng.random(n) < 0.51, "M", "F").astype(object)
    age_years = (pop.open_day - pop.birth).astype(np.float64) / 365.25  # only to shape marital status
    marital = np.array(MARITAL, dtype=object)[rng.choice(4, n, p=[0.25, 0.65, 0.05, 0.05])]
    marital[ind & (pop.occ == OCC["student"])] = "single"
    marital[ind & (age_years > 70) & (rng.random(n) < 0.3)] = "widowed"
    edu_p = np.tile([0.25, 0.45, 0.15, 0.13, 0.02], (n, 1))
    for name, p in (
        ("civil_servant", [0, 0.05, 0.25, 0.6, 0.1]),
        ("public_institution", [0, 0.05, 0.3, 0.55, 0.1]),
        ("student", [0.1, 0.5, 0.25, 0.15, 0]),
    ):
        edu_p[pop.occ == OCC[name]] = p
    edu = np.array(EDUCATION, dtype=object)[(rng.random(n)[:, None] > np.cumsum(edu_p, axis=1)).sum(axis=1).clip(0, 4)]
    risk = np.array(RISK, dtype=object)[rng.choice(5, n, p=[0.3, 0.35, 0.25, 0.08, 0.02])]
    missing = rng.random(n) < 0.04  # questionnaires never filled

    def nullable(values: np.ndarray, mask: np.ndarray) -> pa.Array:
        return pa.array(np.where(mask, None, values), pa.string())

    town_s = np.array(pop.branch_town, dtype=object)[pop.branch]
    industry = np.array(INDUSTRIES, dtype=object)[np.maximum(pop.industry, 0)]
    cols = {
        "customer_id": ids("C", n, 9),
        "customer_type": pa.array(np.where(pop.is_biz, "business", "individual"), pa.string()),
        "gender": nullable(gender, pop.is_biz),
        "birth_date": pa.array(pop.birth, pa.date32(), from_pandas=True),
        "occupation": nullable(occ_s[np.maximum(pop.occ, 0)], pop.is_biz),
        "employer_type": nullable(emp_s[np.maximum(pop.emp, 0)], pop.is_biz),
        "marital_status": nullable(marital, pop.is_biz | missing),
        "education": nullable(edu, pop.is_biz | missing),
        "residence": pa.array(np.where(pop.urban, "urban", "rural"), pa.string()),
        "township_code": pa.array(town_s, pa.string()),
        "industry": nullable(industry, pop.industry < 0),
        "established_date": pa.array(pop.established, pa.date32(), from_pandas=True),
        "branch_id": pa.array(
            np.array([f"B{b:03d}" for b in range(pop.n_branches)], dtype=object)[pop.branch], pa.string()
        ),
        "manager_id": nullable(
            np.array([f"M{i:04d}" for i in range(len(pop.manager_branch))], dtype=object)[np.maximum(pop.manager, 0)],
            pop.manager < 0,
        ),
        "open_date": pa.array(pop.open_day, pa.date32()),
        "risk_tolerance": nullable(risk, missing),
    }
    assert list(cols) == TABLES["customers"].column_names
    return pa.table(cols)


def network_tables(pop: Population) -> tuple[pa.Table, pa.Table]:
    """The ``branches`` and ``managers`` export tables."""
    n_urb = int(pop.branch_urban.sum())
    names = [f"城区第{i + 1}支行" if u else f"乡镇第{i + 1 - n_urb}支行" for i, u in enumerate(pop.branch_urban)]
    branches = pa.table(
        {
            "branch_id": [f"B{b:03d}" for b in range(pop.n_branches)],
            "name": names,
            "township_code": pop.branch_town,
            "area": ["urban" if u else "rural" for u in pop.branch_urban],
        }
    )
    m = len(pop.manager_branch)
    managers = pa.table(
        {
            "manager_id": [f"M{i:04d}" for i in range(m)],
            "branch_id": [f"B{b:03d}" for b in pop.manager_branch],
            "name": [f"客户经理{i:04d}" for i in range(m)],
            "capacity_per_month": pa.array(pop.manager_capacity.astype(np.int64)),
        }
    )
    return branches, managers
