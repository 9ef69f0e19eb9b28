"""Vectorised first-order dynamics at 1 Hz: the building blocks of the machine models.

A chunk of a first-order recursion ``y[k] = a * y[k-1] + d[k]`` is computed without a Python
loop through its closed form ``y[k] = a**k * (y0 + sum_j d[j] / a**j)``; long chunks are cut
into blocks so ``a**-k`` never overflows. That keeps a chunk of 60 samples at a few µs.

>>> import numpy as np
>>> [round(float(v), 3) for v in ar1(1.0, 0.5, np.zeros(3))]
[0.5, 0.25, 0.125]
"""

from __future__ import annotations

import math

import numpy as np

#: Largest exponent used inside one block (exp(600) is still a finite float64).
_MAX_EXPONENT = 600.0


def ar1(y0: float, a: float, drive: np.ndarray) -> np.ndarray:
    """``y[k] = a * y[k-1] + drive[k]`` for every k, starting from ``y[-1] = y0``."""
    n = len(drive)
    if a <= 0.0:
        return np.array(drive, dtype=np.float64)
    log_a = math.log(a)
    if log_a == 0.0:
        return y0 + np.cumsum(drive)
    block = n if -log_a * n <= _MAX_EXPONENT else max(1, int(_MAX_EXPONENT / -log_a))
    out = np.empty(n, dtype=np.float64)
    y = float(y0)
    for s in range(0, n, block):
        d = drive[s : s + block]
        inv = np.exp(-log_a * np.arange(1, len(d) + 1))  # a**-k
        out[s : s + len(d)] = (y + np.cumsum(d * inv)) / inv
        y = float(out[s + len(d) - 1])
    return out


def lag(y0: float, tau_s: float, target: np.ndarray) -> np.ndarray:
    """First-order lag with time constant ``tau_s`` (s) from ``y0`` toward ``target``."""
    a = math.exp(-1.0 / tau_s)
    return ar1(y0, a, (1.0 - a) * np.asarray(target, dtype=np.float64))


def ou(x0: float, tau_s: float, sigma: float, eps: np.ndarray) -> np.ndarray:
    """Ornstein-Uhlenbeck noise around 0: correlation time ``tau_s``, stationary std ``sigma``.

    ``eps`` are standard normal draws, one per sample.
    """
    a = math.exp(-1.0 / tau_s)
    return ar1(x0, a, sigma * math.sqrt(1.0 - a * a) * eps)


def severity(times: np.ndarray, onset: float, failure: float) -> np.ndarray:
    """Fault severity: 0 before ``onset``, growing exponentially to 1 at ``failure``, then 1.

    >>> [round(float(s), 3) for s in severity(np.array([0.0, 5.0, 10.0, 20.0]), 0.0, 10.0)]
    [0.0, 0.182, 1.0, 1.0]
    """
    x = np.clip((times - onset) / (failure - onset), 0.0, 1.0)
    return np.expm1(3.0 * x) / math.expm1(3.0)


def progress(times: np.ndarray, onset: float, failure: float) -> np.ndarray:
    """Linear progress of a fault: 0 at ``onset``, 1 at ``failure``, growing on after it."""
    return np.maximum((times - onset) / (failure - onset), 0.0)


def daily(times: np.ndarray) -> np.ndarray:
    """Daily cycle in [-1, 1], peaking at 15:00 UTC (for ambient temperature).

    >>> round(float(daily(np.array([15 * 3600.0]))[0]), 6)
    1.0
    """
    cycle: np.ndarray = np.sin(2.0 * np.pi * (np.mod(times, 86400.0) - 9.0 * 3600.0) / 86400.0)
    return cycle
