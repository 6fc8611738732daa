"""A simulated provincial federation (省联社): K member banks behind ``nbp simulate --federation K``.

:func:`plan_federation` draws each member bank's knobs from the federation's seed (size,
population shares, tax data, product launches, its own seed); :func:`simulate_federation`
simulates every bank with :func:`bankexport.simulate.simulate` into
``out/<bank_code>/export/``, ``out/<bank_code>/oracle/`` and ``out/<bank_code>/campaigns/``
and lists the banks and their knobs in ``out/federation.json``. Every key (``customer_id``
...) is unique within its bank only, so ids collide between banks, as the spec allows.
``docs/simulator.md`` ("Federation") describes the knobs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bankexport import sim_params as P
from bankexport.sim_calendar import rng
from bankexport.sim_profile import BankProfile
from bankexport.simulate import SimSummary, last_month, simulate
from nbp.errors import ConfigError

__all__ = ["FORMAT", "FederationSummary", "MemberBank", "plan_federation", "simulate_federation"]

log = logging.getLogger(__name__)

FORMAT = "nbp-federation/1"
PUBLIC = ("civil_servant", "public_institution")  # the public staff of FED_PUBLIC_SHARE
MERCHANTS = ("merchant", "micro_business_owner")  # the merchants of FED_MERCHANT_SHARE


@dataclass(frozen=True)
class MemberBank:
    """One member bank: its size at scale 1, its customers at the run's scale, seed and profile."""

    size: int
    customers: int
    seed: int
    public_share: float
    merchant_share: float
    profile: BankProfile

    @property
    def code(self) -> str:
        assert self.profile.bank_code is not None
        return self.profile.bank_code

    def as_json(self, export_date: np.datetime64) -> dict:
        """The bank's entry of ``federation.json``."""
        pr = self.profile
        launch = {p: pr.launch.get(p) for p in P.PRODUCTS if pr.offered(p)}
        live = {
            p: int((export_date.astype("datetime64[M]") - np.datetime64(m, "M")).astype(int))
            for p, m in launch.items()
            if m is not None
        }
        return {
            "bank_code": self.code,
            "bank": pr.bank,
            "size": self.size,
            "customers": self.customers,
            "seed": self.seed,
            "export": f"{self.code}/export",
            "oracle": f"{self.code}/oracle/oracle.parquet",
            "uplift": f"{self.code}/oracle/uplift.parquet",
            "campaigns": f"{self.code}/campaigns",
            "public_share": round(self.public_share, 4),
            "merchant_share": round(self.merchant_share, 4),
            "business_share": pr.business_share,
            "occupation_mix": {k: round(v, 6) for k, v in pr.occupation_mix.items()},
            "county_code": pr.county_code,
            "tax_data": pr.tax_data,
            "launch": launch,
            "live_months": live,
        }


@dataclass
class FederationSummary:
    """What one federation run wrote."""

    out: Path
    banks: list[MemberBank]
    runs: list[SimSummary]
    seconds: float

    def describe(self) -> str:
        """One line per bank, for people."""
        lines = [
            f"simulated federation: {len(self.banks)} banks, "
            f"{sum(b.customers for b in self.banks):,} customers, {self.seconds:.0f} s",
            f"listed in {self.out / 'federation.json'}",
            f"  {'bank_code':<16} {'customers':>10}  tax  launches (grants: consumer / business_flow / tax_linked)",
        ]
        for b, r in zip(self.banks, self.runs, strict=True):
            launched = ", ".join(f"{p} {m}" for p, m in b.profile.launch.items()) or "-"
            grants = " / ".join(f"{r.grants[p]:,}" for p in P.PRODUCTS)
            tax = "yes" if b.profile.tax_data else "no"
            lines.append(f"  {b.code:<16} {b.customers:>10,}  {tax:<4} {launched} ({grants})")
        return "\n".join(lines)


def bank_seed(seed: int, k: int) -> int:
    """Member bank ``k``'s seed, derived from the federation's seed (distinct banks, distinct streams)."""
    return int(np.random.SeedSequence([seed, P.FED_STREAM, k]).generate_state(1)[0])


def _names(k: int) -> tuple[str, str, str]:
    """Code, display name and county code of bank ``k`` (0-based)."""
    if k < len(P.FED_BANKS):
        return P.FED_BANKS[k]
    return f"RCB{k + 1:03d}", f"第{k + 1}农商行", str(431300 + k + 1)


def occupation_mix(public_share: float, merchant_share: float) -> dict[str, float]:
    """The reference occupation mix with public staff and merchants set to the given shares.

    Each group keeps its internal split; the other occupations share the rest in their
    reference proportions.
    """
    ref = P.OCCUPATION_MIX
    groups = {PUBLIC: public_share, MERCHANTS: merchant_share}
    rest = [o for o in ref if not any(o in g for g in groups)]
    left = 1 - public_share - merchant_share
    mix = {}
    for o, share in ref.items():
        group = next((g for g in groups if o in g), None)
        if group is None:
            mix[o] = left * share / sum(ref[r] for r in rest)
        else:
            mix[o] = groups[group] * share / sum(ref[g] for g in group)
    return mix


def plan_federation(
    k: int, seed: int, scale: float = 1.0, sizes: list[int] | None = None, months: int = 24, end: str = "2026-10"
) -> list[MemberBank]:
    """Draw the knobs of ``k`` member banks from the federation's ``seed``.

    Args:
        k: number of banks.
        seed: the federation's seed; the same seed gives the same banks.
        scale: customers per bank = ``round(size x scale)`` (at least 1).
        sizes: each bank's customers at scale 1, in bank order; None: log-spread over
            ``FED_SIZE_RANGE``, largest first.
        months: simulated months, ending with ``end`` (``YYYY-MM``), as every bank's.
        end: the last simulated month; the export date is the day after it.

    Returns:
        The banks in order (codes from ``FED_BANKS``).
    """
    sizes = _sizes(k, scale, sizes)
    r = rng(seed, P.FED_STREAM)
    tax = np.zeros(k, bool)
    n_tax = min(k, max(1, round(k * P.FED_TAX_DATA_SHARE)))
    if k >= 2:
        n_tax = min(n_tax, k - 1)
    tax[r.choice(k, n_tax, replace=False)] = True
    last = last_month(end)
    first = last - months + 1
    # the smallest bank with tax data launched tax_linked FED_RECENT_LAUNCH months before the export
    recent = int(np.flatnonzero(tax)[np.argmin(np.asarray(sizes)[tax])])
    banks = []
    for i in range(k):
        code, name, county = _names(i)
        public = float(r.uniform(*P.FED_PUBLIC_SHARE))
        merchant = float(r.uniform(*P.FED_MERCHANT_SHARE))
        launch = {}
        for p in P.PRODUCTS:
            draw = r.random() < P.FED_LAUNCH_SHARE
            month = first + P.FED_LAUNCH_AFTER + r.integers(0, max(months - P.FED_LAUNCH_AFTER, 1))
            if draw and month <= last and (tax[i] or p != "tax_linked"):
                launch[p] = str(month)
        if i == recent:
            launch["tax_linked"] = str(max(first, last - P.FED_RECENT_LAUNCH + 1))
        profile = BankProfile(
            occupation_mix=occupation_mix(public, merchant),
            business_share=round(float(r.uniform(*P.FED_BUSINESS_SHARE)), 5),
            county_code=county,
            tax_data=bool(tax[i]),
            launch=launch,
            bank=name,
            bank_code=code,
        )
        customers = max(1, round(sizes[i] * scale))
        banks.append(MemberBank(sizes[i], customers, bank_seed(seed, i), public, merchant, profile))
    return banks


def _uptake(run: SimSummary) -> dict[str, dict[str, float]]:
    """Per product: grants during the simulation, positive labels and the oracle's sum of p over its rows."""
    return {
        p: {"grants": run.grants[p], "labels": run.labels[p], "expected": round(run.expected[p], 1)} for p in P.PRODUCTS
    }


def _sizes(k: int, scale: float, sizes: list[int] | None) -> list[int]:
    """Each bank's size at scale 1, checked."""
    if k < 1 or k > 999:
        raise ConfigError(f"simulate: --federation {k}: between 1 and 999 banks")
    if not (np.isfinite(scale) and scale > 0):
        raise ConfigError(f"simulate: --scale {scale} must be positive")
    if sizes is None:
        return [int(round(x)) for x in np.geomspace(*P.FED_SIZE_RANGE, k)]
    if len(sizes) != k or min(sizes) < 1:
        raise ConfigError(f"simulate: --sizes names {len(sizes)} sizes for {k} banks; each must be a positive integer")
    return list(sizes)


def simulate_federation(
    out: Path,
    k: int,
    seed: int = 7,
    scale: float = 1.0,
    sizes: list[int] | None = None,
    months: int = 24,
    end: str = "2026-10",
    horizon_days: int = 90,
) -> FederationSummary:
    """Simulate ``k`` member banks into ``out/<bank_code>/`` and write ``out/federation.json``.

    Each bank is one :func:`bankexport.simulate.simulate` run with its own seed and
    profile (:func:`plan_federation`); ``federation.json`` is written last (beside its
    target, then renamed), so it lists only banks that were written whole.

    Returns:
        A :class:`FederationSummary`.
    """
    t0 = time.perf_counter()
    banks = plan_federation(k, seed, scale, sizes, months, end)
    out = Path(out)
    runs = []
    for b in banks:
        log.info("federation: bank %s, %s customers", b.code, f"{b.customers:,}")
        runs.append(simulate(out / b.code, b.customers, months, end, b.seed, horizon_days, b.profile))
    export_date = np.datetime64(runs[0].export_date, "D")
    listing = {
        "format": FORMAT,
        "seed": seed,
        "scale": scale,
        "months": months,
        "end": end,
        "export_date": str(export_date),
        "horizon_days": horizon_days,
        "banks": [{**b.as_json(export_date), "uptake": _uptake(r)} for b, r in zip(banks, runs, strict=True)],
    }
    tmp = out / f".federation.json.{os.getpid()}"
    tmp.write_text(json.dumps(listing, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / "federation.json")
    return FederationSummary(out, banks, runs, time.perf_counter() - t0)
