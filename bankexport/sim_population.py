"""The simulated bank's static world: branches, managers, customers and their traits.

Everything here is drawn once, before the months run. Arrays are indexed by the
customer's position ``0..n-1``; ``customer_id`` is ``C`` + 9 digits of that position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bankexport import sim_params as P
from bankexport.sim_profile import BankProfile
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


def build_population(
    n: int, start: np.datetime64, span_days: int, rng: np.random.Generator, profile: BankProfile | None = None
) -> Population:
    """Draw the customers of an ``n``-customer bank whose simulation starts at ``start``.

    The steps draw from ``rng`` in a fixed order (the same seed and profile give the same bank).

    Args:
        n: number of customers.
        start: first simulated day (a month start).
        span_days: number of simulated days (new customers open within them).
        rng: the population's random stream.
        profile: occupation mix, share of businesses and county code (None: the reference bank).

    Returns:
        The :class:`Population`.
    """
    profile = profile or BankProfile()
    if profile.business_share is None:
        n_biz = min(n, max(P.MIN_BUSINESSES, round(n * P.FULL_BUSINESSES / P.FULL_CUSTOMERS)))
    else:
        n_biz = min(n, max(P.MIN_BUSINESSES, round(n * profile.business_share)))
    is_biz = np.zeros(n, bool)
    is_biz[rng.choice(n, n_biz, replace=False)] = True
    occ_names = list(profile.occupation_mix)
    occ_p = np.array(list(profile.occupation_mix.values()))
    occ = np.array([OCC[o] for o in occ_names], np.int8)[rng.choice(len(occ_names), n, p=occ_p / occ_p.sum())]
    occ[is_biz] = -1
    o = {name: occ == OCC[name] for name in OCCUPATIONS}
    bf_pool = is_biz | o["merchant"] | o["micro_business_owner"]
    f: dict = {"n": n, "is_biz": is_biz, "occ": occ, "bf_pool": bf_pool}
    f["emp"] = _employer_types(o, is_biz, rng)
    age = _ages(o, rng)
    birth = (start - (age * 365.25).astype(np.int64)).astype("datetime64[D]")
    birth[is_biz] = NO_DAY
    f["birth"] = birth
    urban_p = np.full(n, P.BUSINESS_URBAN_SHARE)
    for name, p in P.URBAN_SHARE.items():
        urban_p[o[name]] = p
    f["urban"] = urban = rng.random(n) < urban_p
    f.update(_network(urban, bf_pool, rng, profile.county_code))
    f.update(_relationship(o, f, start, span_days, rng))
    f.update(_income(o, f["emp"], rng))
    f.update(_behaviour(o, f, rng))
    f.update(_business(o, is_biz, bf_pool, rng))
    f["mobile_prop"] = _mobile_propensity(age, urban, f["payroll"], bf_pool)
    return Population(**f)


def _employer_types(o: dict[str, np.ndarray], is_biz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Employer type, which follows the occupation (-1 for businesses)."""
    n = len(is_biz)
    emp = np.full(n, EMP["none"], np.int8)
    emp[o["civil_servant"]] = EMP["government"]
    emp[o["public_institution"]] = EMP["public_institution"]
    ee = o["enterprise_employee"]
    emp[ee] = np.where(rng.random(n) < P.SOE_SHARE_OF_EMPLOYEES, EMP["soe"], EMP["private"])[ee]
    emp[o["merchant"] | o["micro_business_owner"]] = EMP["self_employed"]
    emp[o["farmer"]] = EMP["agriculture"]
    mw = o["migrant_worker"]
    emp[mw] = np.where(rng.random(n) < P.MIGRANT_PRIVATE_EMPLOYER, EMP["private"], EMP["none"])[mw]
    emp[is_biz] = -1
    return emp


def _ages(o: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Age in years at the start, uniform over a range that depends on the occupation."""
    n = len(o["farmer"])
    age = rng.uniform(*P.AGE_RANGE["default"], n)
    for name, (lo, hi) in P.AGE_RANGE.items():
        if name != "default":
            age[o[name]] = rng.uniform(lo, hi, n)[o[name]]
    return age


def _network(urban: np.ndarray, bf_pool: np.ndarray, rng: np.random.Generator, county: str) -> dict:
    """Branches (urban ones first; customers go to a branch of their area) and managers.

    Managers are proportional to each branch's customers; businesses and merchants
    always have one, other individuals with probability ``MANAGER_ASSIGNED``.
    """
    n = len(urban)
    n_br = max(P.MIN_BRANCHES, round(P.FULL_BRANCHES * n / P.FULL_CUSTOMERS))
    n_urb = max(1, round(n_br * P.URBAN_BRANCH_SHARE))
    branch = np.where(urban, rng.integers(0, n_urb, n), rng.integers(n_urb, n_br, n)).astype(np.int32)
    per_branch = np.bincount(branch, minlength=n_br)
    n_mgr = np.maximum(1, np.round(per_branch / P.CUSTOMERS_PER_MANAGER)).astype(np.int64)
    manager_branch = np.repeat(np.arange(n_br, dtype=np.int32), n_mgr)
    manager_capacity = rng.integers(P.MANAGER_CAPACITY[0], P.MANAGER_CAPACITY[1] + 1, len(manager_branch))
    first_mgr = np.concatenate([[0], np.cumsum(n_mgr)[:-1]])
    mgr = (first_mgr[branch] + (rng.random(n) * n_mgr[branch]).astype(np.int64)).astype(np.int32)
    has_mgr = bf_pool | (rng.random(n) < P.MANAGER_ASSIGNED)
    return {
        "branch": branch,
        "manager": np.where(has_mgr, mgr, -1).astype(np.int32),
        "n_branches": n_br,
        "branch_urban": np.arange(n_br) < n_urb,
        "branch_town": [f"{county}{(1 + i if i < n_urb else 100 + i):03d}" for i in range(n_br)],
        "manager_branch": manager_branch,
        "manager_capacity": manager_capacity.astype(np.int32),
    }


def _relationship(
    o: dict[str, np.ndarray], f: dict, start: np.datetime64, span_days: int, rng: np.random.Generator
) -> dict:
    """Relationship start (mostly years ago, some during the simulation, never before adulthood),
    and the establishment date and industry of business-flow customers."""
    n, is_biz, bf_pool = f["n"], f["is_biz"], f["bf_pool"]
    years_back = rng.uniform(*P.RELATIONSHIP_YEARS, n)
    open_day = (start - (years_back * 365.25).astype(np.int64)).astype("datetime64[D]")
    new = rng.random(n) < P.NEW_CUSTOMER_SHARE
    open_day[new] = (start + rng.integers(0, span_days, n)).astype("datetime64[D]")[new]
    min_age = np.where(o["student"], P.MIN_OPEN_AGE["student"], P.MIN_OPEN_AGE["default"])
    adult = f["birth"] + (min_age * 365.25).astype(np.int64)
    open_day = np.where(~is_biz & (open_day < adult), adult, open_day)
    open_day = np.minimum(open_day, start + span_days - 1)
    established = np.full(n, NO_DAY)
    shape, scale, offset = P.FIRM_AGE_GAMMA
    est_years = rng.gamma(shape, scale, n) + offset
    established[bf_pool] = (start - (est_years * 365.25).astype(np.int64)).astype("datetime64[D]")[bf_pool]
    industry = np.full(n, -1, np.int8)
    ind_choices = np.array([INDUSTRIES.index(c) for c in P.INDUSTRY_DRAW], np.int8)
    industry[bf_pool] = ind_choices[rng.integers(0, len(ind_choices), n)][bf_pool]
    return {"open_day": open_day, "established": established, "industry": industry}


def _income(o: dict[str, np.ndarray], emp: np.ndarray, rng: np.random.Generator) -> dict:
    """Income through the bank: payroll (salary, pay day, employer) and pensions."""
    n = len(emp)
    pay_p = np.zeros(n)
    for name, p in P.PAYROLL_SHARE.items():
        pay_p[o[name]] = p
    pay_p[emp == EMP["soe"]] = P.PAYROLL_SOE_SHARE
    payroll = rng.random(n) < pay_p
    salary = np.zeros(n)
    for name, med in P.SALARY_MEDIAN.items():
        salary[o[name]] = (med * rng.lognormal(0, P.SALARY_SIGMA, n))[o[name]]
    salary[emp == EMP["soe"]] *= P.SOE_SALARY_FACTOR
    salary = np.round(salary, 2)
    payroll_day = rng.choice(np.array(P.PAYROLL_DAYS, np.int8), n)
    employer_cp = rng.integers(0, P.N_EMPLOYERS, n).astype(np.int32)
    pension = np.where(
        o["retired"] & (rng.random(n) < P.PENSION_THROUGH_BANK),
        np.round(rng.lognormal(np.log(P.PENSION_MEDIAN), P.PENSION_SIGMA, n), 2),
        0.0,
    )
    return {
        "payroll": payroll,
        "salary": salary,
        "payroll_day": payroll_day,
        "employer_cp": employer_cp,
        "pension": pension,
    }


def _behaviour(o: dict[str, np.ndarray], f: dict, rng: np.random.Generator) -> dict:
    """Everyday activity and wealth (dormant individuals: little of either), seasonal work,
    remittances from migrant relatives, farm subsidies."""
    n, is_biz = f["n"], f["is_biz"]
    dormant = ~is_biz & ~f["payroll"] & (f["pension"] == 0) & (rng.random(n) < P.DORMANT_SHARE / P.NO_INCOME_SHARE)
    activity = np.where(dormant, P.DORMANT_ACTIVITY, rng.lognormal(0, P.ACTIVITY_SIGMA, n))
    wealth_med = np.full(n, P.WEALTH_MEDIAN["default"])
    for name, med in P.WEALTH_MEDIAN.items():
        if name != "default":
            wealth_med[o[name]] = med
    wealth = wealth_med * rng.lognormal(0, P.WEALTH_SIGMA, n)
    wealth[dormant] *= P.DORMANT_WEALTH
    return {
        "activity": activity,
        "wealth": wealth,
        "seasonal": (o["farmer"] | o["migrant_worker"]) & (rng.random(n) < P.SEASONAL_WORKER),
        "family_remit": (o["farmer"] | o["retired"]) & (rng.random(n) < P.REMITTANCE_FAMILY),
        "subsidy": o["farmer"] & (rng.random(n) < P.SUBSIDY_FARMERS),
    }


def _business(o: dict[str, np.ndarray], is_biz: np.ndarray, bf_pool: np.ndarray, rng: np.random.Generator) -> dict:
    """Taxpayers, turnover (level and trend) and acquiring terminals of the business-flow pool."""
    n = len(is_biz)
    tax_p = np.zeros(n)
    tax_p[o["merchant"]] = P.TAX_PAYER_SHARE["merchant"]
    tax_p[o["micro_business_owner"]] = P.TAX_PAYER_SHARE["micro_business_owner"]
    tax_p[is_biz] = P.TAX_PAYER_SHARE["business"]
    taxpayer = rng.random(n) < tax_p
    t_med = np.zeros(n)
    t_med[o["merchant"]] = P.TURNOVER_MEDIAN["merchant"]
    t_med[o["micro_business_owner"]] = P.TURNOVER_MEDIAN["micro_business_owner"]
    t_med[is_biz] = P.TURNOVER_MEDIAN["business"]
    lift = np.where(taxpayer, P.TAXPAYER_TURNOVER_LIFT, 1.0)
    turnover_base = t_med * rng.lognormal(0, P.TURNOVER_SIGMA, n) * lift
    turnover_trend = rng.normal(*P.TURNOVER_TREND, n)
    u_term = rng.random(n)
    terminal = np.where(u_term < P.POS_TERMINAL, 2, np.where(u_term < P.QR_MERCHANT, 1, 0)).astype(np.int8)
    terminal[~bf_pool] = 0
    return {
        "taxpayer": taxpayer,
        "turnover_base": turnover_base,
        "turnover_trend": turnover_trend,
        "terminal": terminal,
    }


def _mobile_propensity(age: np.ndarray, urban: np.ndarray, payroll: np.ndarray, bf_pool: np.ndarray) -> np.ndarray:
    """Relative propensity to use mobile banking (mean 1): young, urban, payroll and merchants more."""
    m = P.MOBILE_PROPENSITY
    mobile_prop = np.ones(len(age))
    mobile_prop[age < 35] *= m["under_35"]
    mobile_prop[(age >= 50) & (age < 60)] *= m["50_to_59"]
    mobile_prop[age >= 60] *= m["60_and_over"]
    mobile_prop[urban] *= m["urban"]
    mobile_prop[payroll] *= m["payroll"]
    mobile_prop[bf_pool] *= m["business_flow"]
    return mobile_prop / mobile_prop.mean()


def customers_table(pop: Population, rng: np.random.Generator) -> pa.Table:
    """The ``customers`` export table (spec column order and spellings)."""
    from bankexport.spec import EDUCATION, MARITAL, RISK, TABLES

    n = pop.n
    ind = ~pop.is_biz
    occ_s = np.array(OCCUPATIONS, dtype=object)
    emp_s = np.array(EMPLOYER_TYPES, dtype=object)
    gender = np.where(rng.random(n) < P.MALE_SHARE, "M", "F").astype(object)
    age_years = (pop.open_day - pop.birth).astype(np.float64) / 365.25  # only to shape marital status
    marital = np.array(MARITAL, dtype=object)[rng.choice(4, n, p=P.MARITAL_MIX)]
    marital[ind & (pop.occ == OCC["student"])] = "single"
    marital[ind & (age_years > P.WIDOWED_AGE) & (rng.random(n) < P.WIDOWED_SHARE)] = "widowed"
    edu_p = np.tile(P.EDUCATION_MIX["default"], (n, 1))
    for name, p in P.EDUCATION_MIX.items():
        if name != "default":
            edu_p[pop.occ == OCC[name]] = p
    edu = np.array(EDUCATION, dtype=object)[(rng.random(n)[:, None] > np.cumsum(edu_p, axis=1)).sum(axis=1).clip(0, 4)]
    risk = np.array(RISK, dtype=object)[rng.choice(5, n, p=P.RISK_MIX)]
    missing = rng.random(n) < P.QUESTIONNAIRE_MISSING

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
