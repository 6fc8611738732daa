"""The state of one simulation run: what the months read and write, and the writers export.

:class:`SimState` is built once from the population (drawing the hidden effects, the tax
history, the business-flow balance ratios, accounts and mobile banking at the start, each
from its own random stream); the month steps of :mod:`bankexport.sim_uptake`,
:mod:`bankexport.sim_loans` and :mod:`bankexport.sim_activity` then update it in place.
Per-product arrays are ``(month, position in the product's pool)``; the oracle reads them.
"""

from __future__ import annotations

import numpy as np

from bankexport import sim_params as P
from bankexport.sim_activity import counterparties
from bankexport.sim_calendar import rng
from bankexport.sim_loans import LoanBook
from bankexport.sim_oracle import gh_grid
from bankexport.sim_population import Population, ids
from bankexport.sim_profile import BankProfile
from bankexport.sim_world import draw_accounts, draw_tax_history, initial_mobile

# Per product: observable log-hazard without intercept (-inf: not eligible) and grant probability.
Drivers = dict[str, tuple[np.ndarray, np.ndarray]]


class SimState:
    """Everything one run carries from month to month."""

    def __init__(
        self,
        pop: Population,
        month_starts: np.ndarray,
        n_days: list[int],
        cal: list[tuple[float, float]],
        export_date: np.datetime64,
        seed: int,
        profile: BankProfile | None = None,
    ) -> None:
        # cal holds one more month than ms: the export month, for the drivers of the latest as-of
        self.pop, self.ms, self.nd, self.cal = pop, month_starts, n_days, cal
        self.export_date, self.seed = export_date, seed
        self.profile = profile or BankProfile()
        # first day each modelled product is offered (None: all along)
        self.launch = {p: self.profile.launch_day(p) for p in P.PRODUCTS}
        self.M = M = len(month_starts)
        n = pop.n
        self.nodes, self.log_w = gh_grid(P.GH_NODES)
        self.cust_ids = ids("C", n, 9)
        self.cp_ids = counterparties()
        self.pools = {
            "consumer": np.flatnonzero(~pop.is_biz),
            "business_flow": np.flatnonzero(pop.bf_pool),
            "tax_linked": np.flatnonzero(pop.taxpayer),
        }
        r = rng(seed, 2)
        self.u = {p: r.standard_normal(len(ix)) for p, ix in self.pools.items()}  # the hidden effects
        self.intercept: dict[str, float] = {}
        # per product, the first month's tau and the chance that an ordinary call reaches
        self.policy: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        # the uptake history the oracle reads: hazard, grant probability, at risk, applied, grant day
        self.eta = {p: np.full((M, len(ix)), -np.inf, np.float32) for p, ix in self.pools.items()}
        self.gp = {p: np.zeros((M, len(ix)), np.float32) for p, ix in self.pools.items()}
        self.at_risk = {p: np.zeros((M, len(ix)), bool) for p, ix in self.pools.items()}
        self.applied = {p: np.zeros((M, len(ix)), bool) for p, ix in self.pools.items()}
        self.grant_day = {p: np.zeros((M, len(ix)), np.int8) for p, ix in self.pools.items()}
        self.loans = LoanBook(n, export_date)
        self.grant_counts = {p: 0 for p in P.PRODUCTS}
        self.contacts: list[tuple[np.ndarray, ...]] = []
        # the contact effect: each month's kind (index into CONTACT_KINDS) and tau of every pool
        # member, whether a contact reached them (tau applied) and the chance that the month's
        # touches (ordinary calls, campaigns) reach them; the hidden part of tau
        rt = rng(seed, 11)
        self.tau_hidden = {
            p: rt.uniform(-P.CONTACT_TAU_HIDDEN, P.CONTACT_TAU_HIDDEN, len(ix)) for p, ix in self.pools.items()
        }
        self.kind = {p: np.zeros((M, len(ix)), np.int8) for p, ix in self.pools.items()}
        self.tau = {p: np.zeros((M, len(ix)), np.float32) for p, ix in self.pools.items()}
        self.reached = {p: np.zeros((M, len(ix)), bool) for p, ix in self.pools.items()}
        self.reach_prob = {p: np.zeros((M, len(ix)), np.float32) for p, ix in self.pools.items()}  # of the policy
        # randomised campaigns: (product, month, pool positions, in the treatment arm)
        self.campaigns: list[tuple[str, int, np.ndarray, np.ndarray]] = []
        self.last_event = np.full(n, -99, np.int64)  # month of each customer's latest life event
        self.tax = draw_tax_history(pop, month_starts[0], export_date, rng(seed, 3))
        # business-flow pool: monthly turnover, end balance, and the log balance/turnover ratio (AR(1))
        nb = len(self.pools["business_flow"])
        self.turn = np.zeros((M, nb))
        self.endbal = np.zeros((M, nb))
        rb = rng(seed, 4)
        mu, sd_mu, self.rho, self.shock = P.BALANCE_RATIO
        self.logr_mu = np.log(mu) + rb.normal(0, sd_mu, nb)
        self.logr = self.logr_mu + rb.normal(0, self.shock / np.sqrt(1 - self.rho**2), nb)
        self.bal_z = np.zeros(n)  # AR(1) shock of individuals' main-account balances
        self.accounts = draw_accounts(pop, export_date, rng(seed, 5))
        self.mobile_day = initial_mobile(pop, month_starts[0], rng(seed, 6))
        self.n_txn = 0
        self.n_bal = 0

    def month_start(self, m: int) -> np.datetime64:
        """First day of month ``m``; ``m == M`` is the export month (the latest as-of)."""
        return self.ms[m] if m < self.M else self.export_date

    def effective_eta(self, product: str, m: int) -> np.ndarray:
        """The log-hazard that applied in month ``m``: the observable part plus tau where a contact reached."""
        return self.eta[product][m] + np.where(self.reached[product][m], self.tau[product][m], np.float32(0))

    def live(self, product: str, T: np.datetime64) -> bool:
        """Whether the bank offers ``product`` on day ``T`` (launched on or before it)."""
        day = self.launch[product]
        return day is None or day <= T
