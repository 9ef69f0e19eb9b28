"""The warm-up's end of :class:`~twinflow.models.spc.SpcDetector`: its spans sized from the
sampling period the warm-up measured, the model fitted and its limits calibrated on held-out
warm-up rows.

The warm-up keeps its rows (:class:`~twinflow.models.spc_warmup.Warmup`); once it has settled
the variables are standardised by its spread, a trial model is fitted on its first rows and
scores the rest (the ``calibrate`` share), and the limits are the ``quantile`` of those scores
(of the row statistics, of their exponential average, and of the averaged residual vector,
MEWMA), each at least what independent rows would give. Spans given in event time (``hold_s``,
``half_life_s``, ``smooth_s``, ``recover_s``, ``refit_s``, ``long_s``) become rows here.
"""

from __future__ import annotations

import math

import numpy as np

from twinflow.models.spc_adapt import Adaptation
from twinflow.models.spc_long import LongEpisode
from twinflow.models.spc_stats import (
    CONSTANT,
    Model,
    ewma,
    limit,
    quantile_of,
    smoothed_floor,
    t2_limit,
)
from twinflow.models.spc_warmup import Warmup, rows_in


class Calibration(Adaptation):
    """Mixin of :class:`~twinflow.models.spc.SpcDetector`: its warm-up, the sizing of its
    spans and the calibration of its limits (the state they use is set up by the detector)."""

    warmup: int
    quantile: float
    margin: float
    calibrate: float
    smooth: int
    mewma: bool
    long_s: float
    hold_s: float
    half_life_s: float
    smooth_s: float
    recover_s: float
    refit_s: float
    floors: tuple[float, ...]
    limits: tuple[float, float, float]
    vector_limits: tuple[float, float]
    _wu: Warmup
    _y_mean: np.ndarray
    _y_sd: np.ndarray

    @property
    def warm(self) -> bool:
        """True once the limits are calibrated."""
        return self.model is not None

    @property
    def n_seen(self) -> int:
        """Complete rows the warm-up has seen."""
        return self._wu.seen

    @property
    def restarts(self) -> int:
        """How often the warm-up restarted after a level shift inside it."""
        return self._wu.restarts

    @property
    def unsettled(self) -> bool:
        """True when the warm-up ended at its cap with its level still moving."""
        return self._wu.unsettled

    @property
    def period(self) -> float:
        """The sampling period the warm-up observed (seconds; NaN: not known)."""
        return self._wu.period

    @property
    def slow(self) -> bool:
        """True when the warm-up's rows came ``SLOW_PERIOD_S`` (a minute) apart or more."""
        return self.period >= self._wu.slow_period

    @property
    def long_rows(self) -> int:
        """Rows an episode lasts before the long-episode rule may move normal (0: off)."""
        return 0 if self._long is None else self._long.rows

    def _size_long(self) -> None:
        """The long-episode rule's length: ``long_s`` over the observed sampling period,
        and at least ``warmup`` rows (off without ``long_s`` or a known period)."""
        period = self.period
        if self.long_s > 0 and math.isfinite(period) and period > 0:
            rows = max(self.warmup, math.ceil(self.long_s / period))
            self._long = LongEpisode(rows, len(self.variables))

    def _size_spans(self) -> None:
        """The spans in rows: each span given in event time (``hold_s``, ``smooth_s``,
        ``recover_s``, ``refit_s``, ``half_life_s``) over the warm-up's sampling period (1 s
        when not known), at least the rows given for it, and the half-life at least the
        warm-up's rows (a model forgets no faster than it was fitted). At one row a second
        the rows equal the seconds; without the times nothing changes."""
        period = self.period if math.isfinite(self.period) and self.period > 0 else 1.0
        if self.hold_s > 0:
            self.hold = max(self.hold, rows_in(self.hold_s, period))
            self._since_anomalous = max(self._since_anomalous, self.hold)  # none seen yet
        if self.smooth_s > 0:
            self.smooth = max(self.smooth, rows_in(self.smooth_s, period))
        self.mewma = self.mewma and self.smooth > 1
        if self.recover_s > 0:
            self.recover_rows = max(self.recover_rows, rows_in(self.recover_s, period))
        if self.refit_s > 0:
            self.refit_every = max(self.refit_every, rows_in(self.refit_s, period))
        if self.half_life_s > 0:
            least = max(self.half_life, float(self._wu.seen))
            self.half_life = max(least, self.half_life_s / period)

    def _finish_warmup(self) -> None:
        self._size_long()
        self._size_spans()
        self._wu.gaps = self._wu.gaps and (self._wu.period,)  # its period is all that is kept
        data = np.vstack(self._wu.rows)
        self._wu.rows = []
        floors = np.asarray(self.floors, dtype=float)
        raw = data[:, self.n_settings :]
        self._y_mean = raw.mean(axis=0)
        sd = np.maximum(raw.std(axis=0), floors[self.n_settings :])
        self._y_sd = np.where(sd > CONSTANT * (np.abs(self._y_mean) + 1.0), sd, 1.0)
        self._floor = floors[self.n_settings :] / self._y_sd
        s, y = self._split(data)
        if self.n_settings:
            self._s_mean = s.mean(axis=0)
            sd = np.maximum(s.std(axis=0), floors[: self.n_settings])
            # a setting constant through warm-up: any move of a thousandth is a new point
            fallback = 1e-3 * np.abs(self._s_mean) + 1e-12
            self._s_sd = np.where(sd > CONSTANT * (np.abs(self._s_mean) + 1.0), sd, fallback)
        n_cal = max(4, int(len(data) * self.calibrate))
        fit, cal = slice(0, len(data) - n_cal), slice(len(data) - n_cal, len(data))
        phi = self._phi(s)
        n_fit = len(data) - n_cal
        trial = Model(self._cross(phi[fit], y[fit]), self.n_settings, self.variance, self._floor)
        self.components = trial.eig.size  # every later fit keeps as many
        t2s, spes = trial.stats(phi[cal], y[cal])
        lim_t = max(limit(t2s, self.quantile), t2_limit(self.components, n_fit, self.quantile))
        lim_q = limit(spes, self.quantile)
        if not lim_q > 1e-9 * (float(np.mean(np.abs(spes))) + 1.0):
            lim_q = math.inf  # no residual subspace: SPE is not used
        combined = np.maximum(t2s / lim_t, spes / lim_q)
        # unsmoothed, each statistic is at its own limit at 1; an average has a thinner tail,
        # so the smoothed score gets its own limit from the same held-out rows
        level = 1.0
        if self.smooth > 1:
            smoothed = self._smoothed(combined, first=float(combined[0]))[0]
            level = max(
                quantile_of(smoothed, self.quantile),
                smoothed_floor(combined, self.smooth, self.quantile),
                1e-12,
            )
        self.limits = (lim_t, lim_q, level * self.margin)
        if self.mewma:
            self._calibrate_vector(trial, phi[cal], y[cal], n_fit)
        self._m = self._cross(phi, y)
        zs = (s - self._s_mean) / self._s_sd
        self._range = np.vstack([zs.min(axis=0), zs.max(axis=0)])
        self._pending = self._range.copy()
        self.model = Model(self._m, self.n_settings, self.variance, self._floor, self.components)

    def _calibrate_vector(self, trial: Model, phi: np.ndarray, y: np.ndarray, n_fit: int) -> None:
        """Limits of the MEWMA statistics from the held-out warm-up rows: their quantile
        (extrapolated as for the row statistics), and at least what independent rows would
        give (the row limits times ``a / (2 - a)``, the variance ratio of an average)."""
        a = 2.0 / (self.smooth + 1.0)
        z = ewma(trial.residuals(phi, y), a, np.zeros(len(self.variables)))
        t2z, qz = trial.stats_of(z[:, trial.keep])
        shrink = a / (2.0 - a)
        k = trial.eig.size
        lim_t = max(limit(t2z, self.quantile), shrink * t2_limit(k, n_fit, self.quantile))
        lim_q = math.inf
        if math.isfinite(self.limits[1]):
            lim_q = max(limit(qz, self.quantile), shrink * self.limits[1])
        self.vector_limits = (max(lim_t, 1e-12), max(lim_q, 1e-12))
        self._z = z[-1].copy()

    def _split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Settings (raw) and monitored variables (centred and scaled by the warm-up)."""
        y = (rows[:, self.n_settings :] - self._y_mean) / self._y_sd - self._shift
        return rows[:, : self.n_settings], y

    def _smoothed(self, x: np.ndarray, first: float | None = None) -> tuple[np.ndarray, float]:
        """Exponential average of ``x`` over ``smooth`` rows, carrying on from the last."""
        if self.smooth <= 1:
            return x, float(x[-1]) if x.size else self._ewma
        a = 2.0 / (self.smooth + 1.0)
        level = first if first is not None else self._ewma
        if not math.isfinite(level):
            level = float(x[0])
        out = ewma(x, a, level)
        return out, float(out[-1]) if out.size else level

    def _warm_up(self, times: np.ndarray, rows: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Give the warm-up the complete rows ``ok`` it still takes, restarting it after a
        level shift and fitting the model once it has settled; returns the rows left."""
        floors = np.asarray(self.floors, dtype=float)[self.n_settings :]
        while ok.size and not self.warm:
            cut, due = self._wu.needed(times[ok])
            self._wu.keep(rows[ok[:cut]])
            ok = ok[cut:]
            if due and self._wu.settled(self.n_settings, floors):
                self._finish_warmup()
        return ok


__all__ = ["Calibration"]
