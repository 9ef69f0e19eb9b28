"""A twin's failure time as a distribution, from its RUL estimate and interval.

The assumption: the time to failure is log-normal, its median the RUL estimate (``hours``)
and its 90 % central interval ``[low_hours, high_hours]``. A log-normal cannot take three
numbers exactly, so the spread is the interval's width on the log scale,
``sigma = ln(high / low) / (2 * 1.645)``; with one side missing (``low`` 0, ``high``
infinite) the other side sets it, with neither it is ``default_spread``. An infinite estimate
(no degradation trend) means no failure is expected; zero or less means failed already.

>>> f = FailureTime.from_rul(10.0, 5.0, 20.0)
>>> round(f.median_h, 1), round(f.sigma, 3), round(f.cdf(10.0), 2), round(f.cdf(20.0), 2)
(10.0, 0.421, 0.5, 0.95)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

#: Standard normal quantile of 95 %: the 90 % central interval is median x exp(+-Z90 sigma).
Z90 = 1.6448536269514722


@dataclass(frozen=True)
class FailureTime:
    """Log-normal time to failure (hours from the estimate's time); ``median_h`` may be
    ``inf`` (never) or ``0`` (failed)."""

    median_h: float
    sigma: float

    @classmethod
    def from_rul(
        cls, hours: float | None, low: float | None, high: float | None, default: float = 0.5
    ) -> FailureTime:
        """The distribution that an RUL estimate with its 90 % interval describes."""
        if hours is None or math.isnan(hours) or math.isinf(hours):
            return cls(math.inf, default)
        if hours <= 0.0:
            return cls(0.0, default)
        lo = low if low is not None and math.isfinite(low) and 0.0 < low < hours else None
        hi = high if high is not None and math.isfinite(high) and high > hours else None
        if lo is not None and hi is not None:
            sigma = math.log(hi / lo) / (2.0 * Z90)
        elif lo is not None:
            sigma = math.log(hours / lo) / Z90
        elif hi is not None:
            sigma = math.log(hi / hours) / Z90
        else:
            sigma = default
        return cls(hours, max(sigma, 1e-6))

    def cdf(self, hours: float) -> float:
        """Probability that the twin has failed within ``hours`` from the estimate."""
        if self.median_h == 0.0:
            return 1.0
        if math.isinf(self.median_h) or hours <= 0.0:
            return 0.0
        z = (math.log(hours) - math.log(self.median_h)) / self.sigma
        return 0.5 * math.erfc(-z / math.sqrt(2.0))

    def quantile(self, p: float) -> float:
        """Hours by which the twin has failed with probability ``p`` (``0 < p < 1``)."""
        if self.median_h == 0.0 or math.isinf(self.median_h):
            return self.median_h
        return self.median_h * math.exp(self.sigma * NormalDist().inv_cdf(p))


__all__ = ["Z90", "FailureTime"]
