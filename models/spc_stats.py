"""The statistics under :class:`~twinflow.models.spc.SpcDetector`: control limits from a
sample of scores, the exponential average, and the fitted model (a regression on the
operating settings, standardisation and principal components) that gives each row its
Hotelling T² and SPE.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

#: Ridge on the regression's squared setting terms (standardised units): a term the data
#: barely moves (``z²`` of a setting seen at two levels is nearly constant) is shrunk to zero
#: instead of fitting noise that would blow up between the levels. The linear terms get a
#: token ridge only: shrinking them would leave a residual that follows the setting.
RIDGE = 1e-2
RIDGE_LINEAR = 1e-6
#: A variable whose warm-up spread is below this (relative to its magnitude plus one) is
#: constant: it carries no information the model can standardise, so it is left out.
CONSTANT = 1e-9


def quantile_of(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile of the finite ``values`` (NaN: none)."""
    finite = values[np.isfinite(values)]
    return float(np.quantile(finite, q, method="higher")) if finite.size else math.nan


def limit(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile of non-negative scores: the larger of the empirical one and that of
    a scaled chi-squared with the same mean and variance (Box's approximation), which
    extrapolates the tail when there are too few scores to show it."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return math.nan
    empirical = quantile_of(finite, q)
    mean, var = float(finite.mean()), float(finite.var())
    if mean <= 0 or var <= 0:
        return empirical
    g, h = var / (2.0 * mean), 2.0 * mean * mean / var
    return max(empirical, g * float(stats.chi2.ppf(q, h)))


def t2_limit(k: int, n: int, q: float) -> float:
    """Hotelling's limit for a new row's T² with ``k`` components estimated from ``n`` rows
    (the F distribution): it widens a limit calibrated on a short warm-up."""
    if k < 1 or n <= k + 1:
        return 1e-12
    return float(k * (n - 1) * (n + 1) / (n * (n - k)) * stats.f.ppf(q, k, n - k))


def smoothed_floor(values: np.ndarray, smooth: int, q: float) -> float:
    """The least ``q`` quantile of an exponential average over ``smooth`` rows of scores
    like ``values``, were the rows independent: their mean plus the normal quantile times
    their spread shrunk by ``a / (2 - a)``. The quantile of the few, strongly autocorrelated
    averages a short warm-up holds out can fall below it (a quiet stretch), and a limit
    under what independent rows give makes a healthy machine alarm."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return 0.0
    a = 2.0 / (max(smooth, 1) + 1.0)
    spread = float(finite.std()) * math.sqrt(a / (2.0 - a))
    return float(finite.mean()) + float(stats.norm.ppf(q)) * spread


def ewma(x: np.ndarray, a: float, level: np.ndarray | float) -> np.ndarray:
    """``y[i] = (1 - a) y[i-1] + a x[i]`` along the first axis, from ``level`` before the
    first row, in closed form over blocks short enough that the powers of ``1 - a`` stay well
    inside a float's range."""
    out = np.empty_like(x)
    block = max(1, min(len(x), int(200.0 / max(-math.log(1.0 - a), 1e-9))))
    powers = (1.0 - a) ** np.arange(1, block + 1)
    if x.ndim > 1:
        powers = powers[:, None]
    for i in range(0, len(x), block):
        chunk = x[i : i + block]
        p = powers[: len(chunk)]
        out[i : i + block] = p * (level + a * np.cumsum(chunk / p, axis=0))
        level = out[i + len(chunk) - 1]
    return out


class Model:
    """A fitted model: regression on the settings, standardisation, principal components."""

    def __init__(
        self,
        m: np.ndarray,
        n_settings: int,
        variance: float,
        floor: np.ndarray,
        components: int | None = None,
    ) -> None:
        """Fit from ``m``, the weighted cross-product matrix of rows ``[phi, y]`` where
        ``phi = [1, z, z²]`` of the ``n_settings`` standardised settings; ``floor`` is the
        least residual spread of each variable (standardised units, 0: none);
        ``components`` fixes how many principal components are kept (else ``variance``)."""
        q = 1 + 2 * n_settings
        w = max(float(m[0, 0]), 1e-12)
        mff, mfy, myy = m[:q, :q], m[:q, q:], m[q:, q:]
        ridge = w * np.diag([1e-9] + [RIDGE_LINEAR] * n_settings + [RIDGE] * n_settings)
        self.beta = np.linalg.solve(mff + ridge, mfy)
        cov = (myy - self.beta.T @ mfy) / w
        var = np.maximum(np.clip(np.diag(cov), 0.0, None), floor * floor)
        mean = mfy[0] / w
        self.keep = var > (CONSTANT * (np.abs(mean) + 1.0)) ** 2
        sd = np.sqrt(np.where(self.keep, var, 1.0))
        cov[np.diag_indices_from(cov)] = np.where(self.keep, var, 1.0)
        self.sd = sd
        corr = cov / np.outer(sd, sd)
        corr = corr[np.ix_(self.keep, self.keep)]
        eigval, eigvec = np.linalg.eigh(corr) if corr.size else (np.zeros(0), np.zeros((0, 0)))
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
        total = float(eigval.sum())
        k = 0
        if total > 0:
            share = np.cumsum(eigval) / total
            k = int(np.searchsorted(share, variance) + 1) if components is None else components
            k = min(k, int((eigval > 1e-9 * total).sum()))
        self.pcs = eigvec[:, :k]
        self.eig = eigval[:k]

    def parts(self, phi: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardised residuals ``u``, per-row T² and SPE contributions per variable."""
        u = ((y - phi @ self.beta) / self.sd)[:, self.keep]
        t = u @ self.pcs
        t2 = u * ((t / self.eig) @ self.pcs.T) if self.eig.size else np.zeros_like(u)
        e = u - t @ self.pcs.T
        return u, t2, e * e

    def stats(self, phi: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row T² and SPE (what :meth:`parts` sums, computed with fewer operations)."""
        return self.stats_of(((y - phi @ self.beta) / self.sd)[:, self.keep])

    def residuals(self, phi: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Standardised residuals of every variable (0 for one left out as constant)."""
        return np.where(self.keep, (y - phi @ self.beta) / self.sd, 0.0)

    def stats_of(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T² and SPE of standardised residual rows of the kept variables."""
        t = u @ self.pcs
        t2 = ((t * t) / self.eig).sum(axis=1) if self.eig.size else np.zeros(len(u))
        e = u - t @ self.pcs.T
        return t2, (e * e).sum(axis=1)


__all__ = [
    "CONSTANT",
    "RIDGE",
    "RIDGE_LINEAR",
    "Model",
    "ewma",
    "limit",
    "quantile_of",
    "smoothed_floor",
    "t2_limit",
]
