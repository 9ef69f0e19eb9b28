"""Feature arithmetic in plain numpy: mergeable moments and vibration spectra.

:class:`Moments` summarises one signal in ten numbers and merges whole batches exactly
(Chan et al.'s pairwise update), so windows fold frames in without keeping samples.
:func:`batch_stats` computes those numbers for all signals of a frame at once (one numpy
call per statistic, never a Python loop over samples). :func:`spectrum_features` turns one
burst of a vibration waveform into a fixed, small set of numbers.

Times are epoch seconds, whose float64 resolution is ~0.2 µs today; pass times relative to
a nearby origin (as the window aggregator does) when sub-microsecond trends matter.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

_INF = math.inf

#: The fields of a :class:`Moments`, in the order of a :func:`batch_stats` row.
FIELDS = ("count", "missing", "mean", "m2", "min", "max", "sumsq", "t_mean", "stt", "stx")


class Moments:
    """Running count, mean, M2, min, max, sum of squares and time trend of one signal.

    NaN (and ±inf) values are skipped and counted in ``missing``. The trend keeps the centred sums
    ``stt = Σ(t - t̄)²`` and ``stx = Σ(t - t̄)(x - x̄)``, which merge exactly, so
    :attr:`slope_per_hour` equals a least-squares fit over all merged data.

    >>> m = Moments().add(np.array([0.0, 3600.0, 7200.0]), np.array([1.0, np.nan, 3.0]))
    >>> m.count, m.missing, m.mean, m.slope_per_hour
    (2, 1, 2.0, 1.0)
    >>> m.merge(Moments().add(np.array([10800.0]), np.array([4.0]))).max
    4.0
    """

    __slots__ = ("count", "m2", "max", "mean", "min", "missing", "stt", "stx", "sumsq", "t_mean")

    def __init__(self) -> None:
        self.count = 0
        self.missing = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = _INF
        self.max = -_INF
        self.sumsq = 0.0
        self.t_mean = 0.0
        self.stt = 0.0
        self.stx = 0.0

    def __deepcopy__(self, _memo: object) -> Moments:
        """A copy field by field (every field is a number): a window's snapshot copies many."""
        new = Moments.__new__(Moments)
        new.count, new.missing, new.mean, new.m2 = self.count, self.missing, self.mean, self.m2
        new.min, new.max, new.sumsq = self.min, self.max, self.sumsq
        new.t_mean, new.stt, new.stx = self.t_mean, self.stt, self.stx
        return new

    def add(self, times: np.ndarray, values: np.ndarray) -> Moments:
        """Fold a batch of readings (1-D ``values`` at ``times``) in; returns ``self``."""
        (row,) = batch_stats(times, np.asarray(values, dtype=np.float64)[None, :])
        return self.merge_row(row)

    def merge(self, other: Moments) -> Moments:
        """Fold another accumulator in (exact for count, mean, M2 and the trend sums)."""
        return self.merge_row(
            (other.count, other.missing, other.mean, other.m2, other.min, other.max,
             other.sumsq, other.t_mean, other.stt, other.stx)
        )  # fmt: skip

    def merge_row(self, row: Sequence[float]) -> Moments:
        """Fold in one row of :func:`batch_stats` (the same fields as :data:`FIELDS`)."""
        nb, missing, mean, m2, mn, mx, sumsq, t_mean, stt, stx = row
        self.missing += int(missing)
        nb = int(nb)
        if nb == 0:
            return self
        na = self.count
        if na == 0:
            self.count, self.mean, self.m2, self.min, self.max = nb, mean, m2, mn, mx
            self.sumsq, self.t_mean, self.stt, self.stx = sumsq, t_mean, stt, stx
            return self
        n = na + nb
        d = mean - self.mean
        dt = t_mean - self.t_mean
        f = na * nb / n
        self.count = n
        self.mean += d * nb / n
        self.m2 += m2 + d * d * f
        self.t_mean += dt * nb / n
        self.stt += stt + dt * dt * f
        self.stx += stx + dt * d * f
        self.sumsq += sumsq
        if mn < self.min:
            self.min = mn
        if mx > self.max:
            self.max = mx
        return self

    @property
    def variance(self) -> float:
        """Population variance (ddof=0); NaN without data."""
        return self.m2 / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.count else math.nan

    @property
    def rms(self) -> float:
        return math.sqrt(self.sumsq / self.count) if self.count else math.nan

    @property
    def peak(self) -> float:
        """Largest absolute value."""
        return max(abs(self.min), abs(self.max)) if self.count else math.nan

    @property
    def slope_per_hour(self) -> float:
        """Least-squares slope of value against time, in units per hour (NaN if undefined)."""
        return self.stx / self.stt * 3600.0 if self.stt > 0.0 else math.nan

    @property
    def missing_fraction(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 1.0

    def stats(self) -> dict[str, float]:
        """The defined statistics by name; undefined ones are left out rather than NaN."""
        out: dict[str, float] = {"missing": self.missing_fraction}
        if self.count:
            out.update(
                mean=self.mean,
                std=self.std,
                min=self.min,
                max=self.max,
                rms=self.rms,
                peak=self.peak,
            )
            if self.stt > 0.0:
                out["slope"] = self.slope_per_hour
        return out

    def __repr__(self) -> str:
        return f"Moments(count={self.count}, missing={self.missing}, mean={self.mean:g})"


def moments_rows(times: np.ndarray, values: np.ndarray) -> list[Moments]:
    """Moments of each row of ``values`` (signals × readings) sampled at ``times``.

    >>> rows = moments_rows(np.array([0.0, 1.0]), np.array([[1.0, 3.0], [np.nan, 5.0]]))
    >>> [(m.count, m.mean, m.variance) for m in rows]
    [(2, 2.0, 1.0), (1, 5.0, 0.0)]
    """
    return [Moments().merge_row(row) for row in batch_stats(times, values)]


def batch_stats(times: np.ndarray, values: np.ndarray) -> list[list[float]]:
    """One row of :data:`FIELDS` per row of ``values`` (signals × readings), in one pass of
    vectorised numpy calls; the cheap form to fold into existing :class:`Moments`."""
    t = np.asarray(times, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    k, n = x.shape
    if n == 1:  # single-reading frames: plain floats beat a dozen tiny numpy calls
        t0 = float(t[0])
        return [
            [1, 0, v, 0.0, v, v, v * v, t0, 0.0, 0.0]
            if math.isfinite(v)
            else [0, 1, 0.0, 0.0, _INF, -_INF, 0.0, 0.0, 0.0, 0.0]
            for v in x[:, 0].tolist()
        ]
    if n:
        sums = _ADD(x, axis=1)
        # a finite row sum has only finite terms: most frames skip the element-wise check
        if _ALL(_ISFINITE(sums)) or _ALL(_ISFINITE(x), axis=None):
            return _finite_rows(t, x, sums, n)
    out = np.empty((len(FIELDS), k))
    valid = np.isfinite(x)
    cnt = np.count_nonzero(valid, axis=1)
    safe = np.maximum(cnt, 1)
    xz = np.where(valid, x, 0.0)
    mean = np.add.reduce(xz, axis=1) / safe
    d = np.where(valid, x - mean[:, None], 0.0)
    tm = (valid @ t) / safe
    dt = np.where(valid, t[None, :] - tm[:, None], 0.0)
    out[0], out[1], out[2] = cnt, n - cnt, mean
    out[3] = np.einsum("ij,ij->i", d, d)
    out[4] = np.minimum.reduce(np.where(valid, x, _INF), axis=1, initial=_INF)
    out[5] = np.maximum.reduce(np.where(valid, x, -_INF), axis=1, initial=-_INF)
    out[6] = np.einsum("ij,ij->i", xz, xz)
    out[7] = tm
    out[8] = np.einsum("ij,ij->i", dt, dt)
    out[9] = np.einsum("ij,ij->i", dt, d)
    return out.T.tolist()


_ADD, _ALL, _ISFINITE = np.add.reduce, np.logical_and.reduce, np.isfinite
#: ``np.einsum`` without its Python wrapper (the same kernel, so the same bits; features run
#: on every frame, where the wrapper cost as much as the sum).
_einsum: Callable[..., np.ndarray] = getattr(
    importlib.import_module("numpy._core.multiarray"), "c_einsum", np.einsum
)


def _finite_rows(t: np.ndarray, x: np.ndarray, sums: np.ndarray, n: int) -> list[list[float]]:
    """:func:`batch_stats` of readings that are all finite (``sums``: each row's sum): the
    same numpy reductions in the same order, so the same bits, with the frame's scalars (count,
    time mean, time spread) set from Python instead of written into an array."""
    mean = sums / n
    d = x - mean[:, None]
    t_mean = float(_ADD(t)) / n
    dt = t - t_mean
    stt = float(dt @ dt)
    cols = zip(
        mean.tolist(),
        _einsum("ij,ij->i", d, d).tolist(),
        np.minimum.reduce(x, axis=1).tolist(),
        np.maximum.reduce(x, axis=1).tolist(),
        _einsum("ij,ij->i", x, x).tolist(),
        (d @ dt).tolist(),
        strict=True,
    )
    count = float(n)
    return [[count, 0.0, a, m2, lo, hi, sq, t_mean, stt, tx] for a, m2, lo, hi, sq, tx in cols]


def edge_name(hz: float) -> str:
    """A frequency as a key fragment: ``50.0 -> "50"``, ``12.5 -> "12p5"`` (no dots in keys)."""
    return f"{hz:g}".replace(".", "p").replace("-", "m")


def band_name(lo: float, hi: float) -> str:
    """Feature name of a frequency band.

    >>> band_name(0.0, 50.0)
    'band_0_50'
    """
    return f"band_{edge_name(lo)}_{edge_name(hi)}"


@lru_cache(maxsize=16)
def _spectrum_basis(n: int, sample_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hann window, one-sided power scale and bin frequencies for ``n`` samples (cached)."""
    window = np.hanning(n) if n > 1 else np.ones(1)
    scale = np.full(n // 2 + 1, 2.0 / (n * float(window @ window)))
    scale[0] /= 2.0
    if n % 2 == 0:
        scale[-1] /= 2.0
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    for a in (window, scale, freqs):
        a.flags.writeable = False
    return window, scale, freqs


class _Layout(NamedTuple):
    """Where each band and fault frequency lies in the bins of one burst length and rate."""

    #: (feature name, first bin, end bin) of each band, then of each fault frequency.
    slices: tuple[tuple[str, int, int], ...]
    #: Bins within the tolerance of any fault frequency.
    near: np.ndarray


@lru_cache(maxsize=64)
def _spectrum_layout(
    n: int,
    sample_rate: float,
    bands: tuple[tuple[float, float], ...],
    faults: tuple[tuple[str, float], ...],
    tolerance_hz: float,
) -> _Layout:
    """The band and fault bins of a burst (cached: a type's bursts share them)."""
    freqs = _spectrum_basis(n, sample_rate)[2]
    slices: list[tuple[str, int, int]] = []
    for lo, hi in bands:
        i, j = np.searchsorted(freqs, (lo, hi), side="left")
        slices.append((band_name(lo, hi), int(i), int(j)))
    near = np.zeros(freqs.size, dtype=bool)
    for name, hz in faults:
        i = int(np.searchsorted(freqs, hz - tolerance_hz, side="left"))
        j = int(np.searchsorted(freqs, hz + tolerance_hz, side="right"))
        slices.append((f"fault_{name}", i, j))
        near[i:j] = True
    near.flags.writeable = False
    return _Layout(tuple(slices), near)


def spectrum_features(
    samples: np.ndarray,
    sample_rate: float,
    bands: Iterable[tuple[float, float]],
    fault_frequencies: Mapping[str, float],
    tolerance_hz: float = 2.0,
) -> dict[str, float]:
    """Spectral features of one waveform burst.

    The mean is removed (a sensor offset is not vibration), NaNs are filled with it, and the
    Hann-windowed rFFT is scaled so that bin powers sum to the burst's mean square. Returns
    ``dominant_hz`` (strongest bin above DC), ``band_<lo>_<hi>`` (power in ``[lo, hi)``),
    ``fault_<name>`` (power within ``±tolerance_hz`` of each fault frequency) and
    ``fault_ratio`` (power near any fault frequency over total power, 0 for a flat burst).
    An empty or all-NaN burst gives ``{}``.

    >>> t = np.arange(4096) / 8192.0
    >>> f = spectrum_features(np.sin(2 * np.pi * 100.0 * t), 8192.0, [(0, 50), (50, 200)],
    ...                       {"x": 100.0})
    >>> f["dominant_hz"], round(f["band_50_200"], 3), round(f["fault_x"], 3)
    (100.0, 0.5, 0.5)
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    nan = ~np.isfinite(x)
    if nan.any():
        if nan.all():
            return {}
        x = np.where(nan, np.mean(x[~nan]), x)
    if n == 0:
        return {}
    window, scale, freqs = _spectrum_basis(n, float(sample_rate))
    layout = _spectrum_layout(
        n,
        float(sample_rate),
        tuple((lo, hi) for lo, hi in bands),
        tuple(fault_frequencies.items()),
        tolerance_hz,
    )
    spec = np.fft.rfft((x - x.mean()) * window)
    power = (spec.real * spec.real + spec.imag * spec.imag) * scale
    out: dict[str, float] = {}
    out["dominant_hz"] = float(freqs[1 + int(np.argmax(power[1:]))]) if n > 2 else 0.0
    for key, i, j in layout.slices:
        out[key] = float(power[i:j].sum())
    total = float(power.sum())
    out["fault_ratio"] = float(power[layout.near].sum()) / total if total > 0.0 else 0.0
    return out


__all__ = [
    "FIELDS",
    "Moments",
    "band_name",
    "batch_stats",
    "edge_name",
    "moments_rows",
    "spectrum_features",
]
