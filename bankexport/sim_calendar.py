"""The simulated months: their random streams, lengths and Spring Festival calendar.

Every month and purpose draws from its own generator (:func:`rng`), so a step's draws
never depend on how many numbers another step took. The calendar gives each month's
turnover multiplier and the share of its days in the pre-festival stocking weeks.
"""

from __future__ import annotations

import numpy as np

from bankexport import sim_params as P


def rng(seed: int, *stream: int) -> np.random.Generator:
    """A PCG64 generator for one (seed, stream...) pair: each month and purpose has its own."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *stream])))


def month_days(ms: np.datetime64) -> int:
    """Number of days of the month starting ``ms``."""
    return int(((ms.astype("datetime64[M]") + 1).astype("datetime64[D]") - ms).astype(np.int64))


def month_of_year(ms: np.datetime64) -> int:
    """Calendar month 1..12 of the month starting ``ms``."""
    return int(ms.astype("datetime64[M]").astype(int) % 12) + 1


def festival(year: int) -> np.datetime64:
    """The Spring Festival (春节) of ``year``."""
    return np.datetime64(P.SPRING_FESTIVAL[year], "D")


def share_in(ms: np.datetime64, nd: int, lo: np.datetime64, hi: np.datetime64) -> float:
    """Share of the month's days d with lo <= d < hi."""
    days = ms + np.arange(nd)
    return float(((days >= lo) & (days < hi)).mean())


def calendar(ms: np.datetime64, nd: int) -> tuple[float, float]:
    """(turnover multiplier, pre-festival stocking share) of the month starting ``ms``."""
    y = int(ms.astype("datetime64[Y]").astype(int)) + 1970
    mult, stock = 1.0, 0.0
    for fy in (y, y + 1):
        f = festival(fy)
        mult += P.FESTIVAL_PEAK_LIFT * share_in(ms, nd, f + P.FESTIVAL_PEAK[0], f + P.FESTIVAL_PEAK[1])
        mult -= P.FESTIVAL_SLUMP_DROP * share_in(ms, nd, f + P.FESTIVAL_SLUMP[0], f + P.FESTIVAL_SLUMP[1])
        stock += share_in(ms, nd, f - P.STOCKING_DAYS, f)
    return mult, stock
