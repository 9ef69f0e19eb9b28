"""The adaptation rules of :class:`~twinflow.models.spc.SpcDetector`: what it learns after
warm-up and how its normal moves.

Learning (``adapt``): a row is learned when it scores below ``learn_below`` and no row of the
last ``hold`` was anomalous, faded by ``half_life``, the model refitting every
``refit_every`` learned rows (and after ``relearn`` rows at a new operating point). The
recovery rule moves normal to the level a fault left the machine at; the long-episode rule
(:mod:`~twinflow.models.spc_long`) to the level an episode that lasted long without
developing holds; the drift rule (``track``) moves it with the rows learned in control,
every ``TRACK_EVERY`` rows judged.
"""

from __future__ import annotations

import math

import numpy as np

from twinflow.models.spc_long import LongEpisode
from twinflow.models.spc_stats import Model


class Adaptation:
    """Mixin of :class:`~twinflow.models.spc.SpcDetector`: its learning and adaptation rules
    (the state they use is set up by the detector)."""

    variables: tuple[str, ...]
    operating: tuple[str, ...]
    model: Model | None
    components: int | None
    variance: float
    adapt: bool
    learn_below: float
    hold: int
    half_life: float
    refit_every: int
    relearn: int
    recover: float
    recover_rows: int
    track: float
    recoveries: int
    relearned: int
    _long: LongEpisode | None
    _m: np.ndarray | None
    _s_mean: np.ndarray
    _s_sd: np.ndarray
    _floor: np.ndarray
    _range: np.ndarray
    _pending: np.ndarray
    _shift: np.ndarray
    _ewma: float
    _z: np.ndarray
    _peak: float
    _low: int
    _low_sum: np.ndarray
    _drift: np.ndarray
    _drift_n: int
    _since_anomalous: int
    _since_refit: int
    _novel_learned: int

    @property
    def n_settings(self) -> int:
        return len(self.operating)

    def _phi(self, s: np.ndarray) -> np.ndarray:
        z = (s - self._s_mean) / self._s_sd
        return np.hstack([np.ones((len(s), 1)), z, z * z])

    def _cross(self, phi: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        z = np.hstack([phi, y])
        out: np.ndarray = (z * (w[:, None] if w is not None else 1.0)).T @ z
        return out

    def _recovered(self, ratio: np.ndarray, resid: np.ndarray) -> int:
        """The recovery rule: once an anomalous episode's score has stayed at or below
        ``recover`` of its peak for ``recover_rows`` rows while still above 1, the fault is
        over and what remains is a new level (a machine settled warmer, a sensor re-mounted):
        normal moves to the mean of those rows, the averages restart there, and learning
        resumes ``hold`` rows later. Returns the row it happened at (-1: none)."""
        if self._peak <= 0.0 and not bool(np.any(ratio > 1.0)):
            return -1
        calm = self._since_anomalous
        for i, r in enumerate(ratio.tolist()):
            if math.isnan(r):
                continue
            calm = 0 if r > 1.0 else calm + 1
            if r > 1.0:
                self._peak = max(self._peak, r)
            elif calm > self.hold:  # the episode ended on its own
                self._peak, self._low = 0.0, 0
            if self._peak > 0.0 and r <= self.recover * self._peak:
                self._low += 1
                self._low_sum = self._low_sum + resid[i] if self._low > 1 else resid[i].copy()
            else:
                self._low = 0
            if self._low >= self.recover_rows and r > 1.0:
                self._move_normal(self._low_sum / self._low)
                self.recoveries += 1
                return i
            level = None if self._long is None else self._long.step(r, resid[i], self._peak > 0)
            if level is not None:  # the long-episode rule: a level that held, not a fault
                self._move_normal(level)
                self.relearned += 1
                return i
        return -1

    def _move_normal(self, level: np.ndarray) -> None:
        """Normal moves by ``level`` (standardised residuals): the episode is over, the
        averages restart there and learning resumes ``hold`` rows later."""
        self._shift = self._shift + level
        self._peak, self._low = 0.0, 0
        self._ewma = math.nan
        self._z = np.zeros(len(self.variables))
        self._drift, self._drift_n = np.zeros(len(self.variables)), 0
        if self._long is not None:
            self._long.reset()

    def _learn(
        self, s: np.ndarray, y: np.ndarray, ratio: np.ndarray, novel: np.ndarray, resid: np.ndarray
    ) -> None:
        """Learn the normal rows (and new operating points), freezing around anomalies."""
        assert self._m is not None
        n_rows = len(ratio)
        anomalous = ratio > 1.0
        idx = np.arange(1, n_rows + 1)
        last = np.maximum.accumulate(np.where(anomalous, idx, 0))
        # rows since the last anomalous one (before this batch: carried over)
        since = np.where(last > 0, idx - last, self._since_anomalous + idx)
        self._since_anomalous = int(min(since[-1], 1 << 30)) if n_rows else self._since_anomalous
        calm = ~anomalous & (since > self.hold)
        learn = calm & (novel | (self.adapt & (ratio < self.learn_below)))
        if not learn.any():
            return
        if self.track > 0:  # the drift rule's rows, moved at the next TRACK_EVERY
            self._drift = self._drift + resid[learn & ~novel].sum(axis=0)
            self._drift_n += int((learn & ~novel).sum())
        n = int(learn.sum())
        w = np.ones(n)
        if self.half_life > 0:
            g = 0.5 ** (1.0 / self.half_life)
            w = g ** np.arange(n - 1, -1, -1, dtype=float)
            self._m *= g**n
        phi = self._phi(s[learn])
        self._m += self._cross(phi, y[learn], w)
        if self.n_settings:
            z = (s[learn] - self._s_mean) / self._s_sd
            self._pending[0] = np.minimum(self._pending[0], z.min(axis=0))
            self._pending[1] = np.maximum(self._pending[1], z.max(axis=0))
        self._since_refit += n
        self._novel_learned += int((learn & novel).sum())
        if self.track <= 0:  # with the drift rule: at the next TRACK_EVERY
            self._refit_due()

    def _refit_due(self) -> None:
        if self._since_refit >= self.refit_every or self._novel_learned >= self.relearn:
            self.refit()

    def _follow(self) -> None:
        """The drift rule: where normal sits follows the rows learned in control, each moving
        it ``1 - 0.5 ** (1 / track)`` of the way to itself (the rows of ``TRACK_EVERY``
        move it together by their mean), so a slow wander or a warming machine is followed
        within about ``track`` rows while a fault, frozen out of learning, is not."""
        if self._drift_n:
            step = 1.0 - 0.5 ** (self._drift_n / self.track)
            self._shift = self._shift + step * self._drift / self._drift_n
        self._drift, self._drift_n = np.zeros(len(self.variables)), 0

    def refit(self) -> None:
        """Refit the model from what was learned; new operating points become known."""
        if self._m is None:
            return
        self.model = Model(self._m, self.n_settings, self.variance, self._floor, self.components)
        self._range = self._pending.copy()
        self._since_refit = 0
        self._novel_learned = 0


__all__ = ["Adaptation"]
