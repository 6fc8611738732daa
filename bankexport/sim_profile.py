"""How one simulated bank differs from the reference bank: its population shares, tax data,
product launches and name.

The default :class:`BankProfile` is the reference bank of :mod:`bankexport.sim_params`; a
run with it draws exactly what ``nbp simulate`` always drew. The simulated federation
(:mod:`bankexport.sim_federation`) gives each member bank its own profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bankexport import sim_params as P
from nbp.errors import ConfigError
from nbp.workspace import BANK_CODE_RULE, is_bank_code


@dataclass(frozen=True)
class BankProfile:
    """One bank's knobs; every default is the reference bank's.

    Attributes:
        occupation_mix: share of each occupation among individuals (keys and order of
            ``sim_params.OCCUPATION_MIX``; normalised to sum 1).
        business_share: businesses (对公) among customers; None: the reference bank's
            ``FULL_BUSINESSES / FULL_CUSTOMERS`` (at least ``MIN_BUSINESSES`` either way).
        county_code: the 6-digit county code that prefixes the branches' township codes.
        tax_data: whether the bank receives tax records (银税互动). Without them the export
            has no ``tax_records`` table and the bank does not offer tax_linked (税易贷).
        launch: first month (``YYYY-MM``) each modelled product is offered; a product not
            named here is offered since before the simulation. No application of a product
            falls before its launch, and the oracle has no row of it before then.
        bank: display name for ``manifest.json``; None: the simulator's description.
        bank_code: ``manifest.json``'s ``bank_code``; None: not written (a single bank).
    """

    occupation_mix: dict[str, float] = field(default_factory=lambda: dict(P.OCCUPATION_MIX))
    business_share: float | None = None
    county_code: str = P.COUNTY_CODE
    tax_data: bool = True
    launch: dict[str, str] = field(default_factory=dict)
    bank: str | None = None
    bank_code: str | None = None

    def offered(self, product: str) -> bool:
        """Whether the bank offers ``product`` at all (tax_linked needs tax data)."""
        return self.tax_data or product != "tax_linked"

    def launch_day(self, product: str) -> np.datetime64 | None:
        """The first day ``product`` is offered; None: offered since before the simulation.

        A product the bank never offers launches after every simulated day (``9999-12-01``).
        """
        if not self.offered(product):
            return np.datetime64("9999-12-01", "D")
        month = self.launch.get(product)
        return None if month is None else np.datetime64(month, "M").astype("datetime64[D]")

    def check(self, first_month: np.datetime64, export_date: np.datetime64) -> None:
        """A ``ConfigError`` naming the knob and its rule when the profile is not usable."""
        if list(self.occupation_mix) != list(P.OCCUPATION_MIX):
            raise ConfigError(f"simulate: occupation_mix must name {', '.join(P.OCCUPATION_MIX)} in this order")
        shares = np.array(list(self.occupation_mix.values()), dtype=float)
        if not (np.isfinite(shares).all() and (shares >= 0).all() and shares.sum() > 0):
            raise ConfigError("simulate: occupation_mix shares must be non-negative and not all 0")
        if self.business_share is not None and not 0 <= self.business_share < 1:
            raise ConfigError(f"simulate: business_share {self.business_share} must be in [0, 1)")
        if not (len(self.county_code) == 6 and self.county_code.isdigit()):
            raise ConfigError(f"simulate: county_code {self.county_code!r} must be 6 digits")
        if self.bank_code is not None and not is_bank_code(self.bank_code):
            raise ConfigError(f"simulate: bank_code {self.bank_code!r}: {BANK_CODE_RULE} expected")
        for product, month in self.launch.items():
            self._check_launch(product, month, first_month, export_date)

    def _check_launch(self, product: str, month: str, first_month: np.datetime64, export_date: np.datetime64) -> None:
        if product not in P.PRODUCTS:
            raise ConfigError(f"simulate: launch of {product!r}: not a modelled product ({', '.join(P.PRODUCTS)})")
        if not self.offered(product):
            raise ConfigError(f"simulate: launch of {product} in {month}, but the bank has no tax data to offer it")
        try:
            day = np.datetime64(month, "M").astype("datetime64[D]")
        except ValueError:
            raise ConfigError(f"simulate: launch of {product}: {month!r} is not a month YYYY-MM") from None
        if not first_month <= day < export_date:
            raise ConfigError(
                f"simulate: launch of {product} in {month} must fall in the simulated months, from "
                f"{str(first_month)[:7]} to before the export date {export_date}; "
                "leave it out for a product offered all along"
            )
