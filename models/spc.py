"""Multivariate statistical process control: Hotelling T² and SPE on any set of signals.

:class:`SpcDetector` learns what "normal" looks like for one twin from a short warm-up and
then scores every row (a raw sample or a window's features) by two classical statistics of a
principal-component model of the standardised variables: Hotelling's T² (how unusual the
row is *inside* the learned correlation structure) and SPE/Q (how far it falls *outside*
it: a broken correlation). Nothing depends on a signal's units or magnitude: variables are
standardised by their own warm-up spread and both control limits are quantiles of scores
the model gave to warm-up rows it had not been fitted on.

Each row's two statistics are averaged over ``smooth`` rows (an exponential average), and so
is the residual vector itself (MEWMA): a small shift that lasts (a sensor offset, a slow
drift) moves the averaged vector far outside its own, much narrower, spread long before the
averaged row statistics notice, while a short spike is averaged away. A row is anomalous when
either score passes its limit.

Operating settings (speed, load, setpoints) are not monitored but *condition* the model: each
monitored variable is first predicted from them by a quadratic least-squares fit, and the PCA
model watches what that prediction does not explain, so a load change is not an anomaly. A
setting outside every value seen while learning is a new operating point: those rows are not
judged but learned, and the model refits (the adaptation rule for operating points). Slow drift
is followed by exponential forgetting (``half_life`` rows, or ``half_life_s`` of event time) of
rows learned while the twin is normal; learning stops while it is anomalous and ``hold`` rows
(or ``hold_s``) after. A fault that ends with the machine at a new level (its score still above
the limit but at a tenth of the episode's peak for ``recover_rows`` rows) moves normal to that
level: the recovery rule, without which such a twin would stay anomalous for good. An episode
that has lasted ``long_s`` of event time (and at least a warm-up's rows) with a score no longer
rising moves normal to the level it holds: the long-episode rule, for a normal that moved for
good while the score stayed high (:mod:`~twinflow.models.spc_long`).

The parts: the statistics and limits in :mod:`~twinflow.models.spc_stats`, the warm-up (its
level-shift restarts and cap) in :mod:`~twinflow.models.spc_warmup`, the fit and calibration
at its end in :mod:`~twinflow.models.spc_calibrate`, learning and the
adaptation rules (recovery, drift) in :mod:`~twinflow.models.spc_adapt`, and the per-variable
explanation of a score in :mod:`~twinflow.models.spc_explain`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from twinflow.models.spc_calibrate import Calibration
from twinflow.models.spc_explain import Explanation
from twinflow.models.spc_long import LongEpisode
from twinflow.models.spc_stats import Model, ewma
from twinflow.models.spc_warmup import Warmup

#: With the drift rule on (``track``), normal moves (the drift rule, a refit) only every
#: ``TRACK_EVERY`` rows judged, at fixed row counts rather than at a batch's end, so the
#: scores do not depend on how the rows were batched.
TRACK_EVERY = 60

#: Extra factor on the MEWMA limits (beyond ``margin``): they are calibrated on the warm-up's
#: held-out rows, whose exponential average is strongly autocorrelated, so the few effectively
#: independent values underestimate its tail, and a healthy machine's slow wander moves the
#: average too. Chosen on synthetic machines (bench_detector seeds 1000+: 2 gave 29 false
#: alarm episodes per healthy day, 4 the same 0.33 as without the average).
VECTOR_MARGIN = 4.0


class SpcDetector(Calibration, Explanation):
    """Hotelling T² and SPE of one twin's rows, calibrated on its own warm-up.

    Rows come as arrays (``update``: many rows, vectorised) or mappings (``score_one``,
    ``learn_one``). The score of a row is ``max(T²/T²_lim, SPE/SPE_lim)``, smoothed by an
    exponential average over ``smooth`` rows and divided by a limit, so a score above 1.0
    is anomalous; with ``mewma`` (and ``smooth`` > 1) it is at least the T² and SPE of the
    exponentially averaged residual vector over their own limits (calibrated the same way,
    at least the row limits times ``a / (2 - a)``, times ``margin * VECTOR_MARGIN``). The
    limits are the ``quantile`` of each statistic (then of the smoothed score; times
    ``margin``) over the last ``calibrate`` share of the warm-up, scored by a
    model fitted on the rows before it; T²'s is at least Hotelling's (F distribution) for
    the rows it was fitted on, and a tail too thin to show in few rows is extrapolated by a
    scaled chi-squared of the same mean and variance.

    Warm-up ends after ``warmup`` rows and ``warmup_s`` seconds (both; 0 disables either),
    and lasts ``warmup_slow_s`` too when its rows come a minute apart or more (see
    :class:`~twinflow.models.spc_warmup.Warmup`). ``long_s`` (0: off) sizes the long-episode
    rule: at least ``warmup`` rows and ``long_s`` over the warm-up's sampling period.
    ``operating`` names the variables that condition the model (settings, not monitored).
    ``variance`` is the share of the correlation's variance the principal components keep.
    After warm-up a row is learned only when ``adapt`` is on, its score is below
    ``learn_below`` and no row of the last ``hold`` was anomalous; learned rows fade with
    ``half_life`` (rows; 0: never). The model refits every ``refit_every`` learned rows, and
    after ``relearn`` rows learned at a new operating point. Spans given in event time too
    (``hold_s``, ``half_life_s``, ``smooth_s``, ``recover_s``, ``refit_s``; 0: rows only)
    are sized at the warm-up's end over its sampling period, so a twin sampled every 5
    minutes forgets in a day as a 1 Hz one does, and a 10 Hz one averages its score over
    as many seconds; the rows given are then their least rows.
    A row missing a value takes the variable's last value; a row before every variable
    was seen is not scored (NaN). No randomness: ``seed`` is kept for the shared surface.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> base = rng.standard_normal((300, 1))
    >>> rows = np.hstack([base, 2 * base, -base]) + 0.1 * rng.standard_normal((300, 3))
    >>> det = SpcDetector(("a", "b", "c"), warmup=200)
    >>> _ = det.update(np.arange(300.0), rows)
    >>> det.warm, det.score_one({"a": 1.0, "b": 2.0, "c": -1.0}) < 1.0
    (True, True)
    >>> det.score_one({"a": 1.0, "b": -2.0, "c": -1.0}) > 1.0  # the correlation breaks
    True
    """

    def __init__(
        self,
        variables: Sequence[str],
        operating: Sequence[str] = (),
        warmup: int = 120,
        warmup_s: float = 0.0,
        quantile: float = 0.99,
        margin: float = 1.0,
        variance: float = 0.9,
        smooth: int = 1,
        adapt: bool = True,
        half_life: float = 0.0,
        learn_below: float = 0.8,
        hold: int = 30,
        refit_every: int = 600,
        relearn: int = 60,
        calibrate: float = 0.35,
        regime_margin: float = 0.1,
        max_rows: int = 600,
        floors: Sequence[float] | None = None,
        mewma: bool = True,
        recover: float = 0.1,
        recover_rows: int = 30,
        warmup_shift: float = 0.0,
        warmup_cap: int = 0,
        track: float = 0.0,
        warmup_slow_s: float = 0.0,
        long_s: float = 0.0,
        hold_s: float = 0.0,
        half_life_s: float = 0.0,
        smooth_s: float = 0.0,
        recover_s: float = 0.0,
        refit_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        monitored = tuple(v for v in variables if v not in set(operating))
        if not monitored:
            raise ValueError("SpcDetector needs at least one monitored variable")
        if warmup < 8 or not 0.0 < quantile < 1.0 or margin <= 0.0 or not 0 < variance <= 1:
            raise ValueError(
                "SpcDetector needs warmup >= 8, 0 < quantile < 1, margin > 0 and "
                f"0 < variance <= 1; got warmup={warmup}, quantile={quantile}, "
                f"margin={margin}, variance={variance}"
            )
        self.variables = monitored
        self.operating = tuple(operating)
        self.warmup = warmup
        self.warmup_s = warmup_s
        self.quantile = quantile
        self.margin = margin
        self.variance = variance
        self.smooth = max(1, smooth)
        self.adapt = adapt
        self.half_life = half_life
        self.learn_below = learn_below
        self.hold = hold
        self.refit_every = refit_every
        self.relearn = relearn
        self.calibrate = calibrate
        self.regime_margin = regime_margin
        self.max_rows = max_rows
        #: With ``smooth_s`` the average may grow past one row when the warm-up ends; whether
        #: it does is settled there (:meth:`_size_spans`).
        self.mewma = mewma and (self.smooth > 1 or smooth_s > 0)
        self.recover = recover
        self.recover_rows = max(1, recover_rows)
        self.track = track
        self.long_s = long_s
        #: The spans in event time (0: in rows only), sized at the warm-up's end with its
        #: sampling period; the rows given (``hold``, ``half_life``, ``smooth``,
        #: ``recover_rows``, ``refit_every``) are then their least rows.
        self.hold_s = hold_s
        self.half_life_s = half_life_s
        self.smooth_s = smooth_s
        self.recover_s = recover_s
        self.refit_s = refit_s
        self.seed = seed
        #: Columns: the settings, then the monitored variables.
        self.columns = (*self.operating, *self.variables)
        self.floors = tuple(floors) if floors is not None else (0.0,) * len(self.columns)
        if len(self.floors) != len(self.columns) or not all(f >= 0 for f in self.floors):
            raise ValueError("SpcDetector floors: one value >= 0 per column (settings first)")
        self._wu = Warmup(
            warmup, warmup_s, warmup_shift, warmup_cap, max_rows, slow_seconds=warmup_slow_s
        )
        self._last = np.full(len(self.columns), np.nan)
        self.model: Model | None = None
        self.limits = (math.nan, math.nan, math.nan)  # T², SPE, smoothed score
        self.components: int | None = None
        self._s_mean = np.zeros(len(self.operating))
        self._s_sd = np.ones(len(self.operating))
        self._y_mean = np.zeros(len(self.variables))
        self._y_sd = np.ones(len(self.variables))
        self._floor = np.zeros(len(self.variables))
        self._range = np.zeros((2, len(self.operating)))
        self._pending = np.zeros((2, len(self.operating)))
        self._m: np.ndarray | None = None
        self._ewma = math.nan
        #: MEWMA: the exponential average of the standardised residual vectors, and the
        #: limits of its T² and SPE (NaN: not used).
        self._z = np.zeros(len(self.variables))
        self.vector_limits = (math.nan, math.nan)
        #: Where normal sits now, in standardised units (moved by a recovery), the current
        #: anomalous episode's peak score, and the run of rows at or below ``recover`` of it
        #: (their count and the sum of their residuals).
        self._shift = np.zeros(len(self.variables))
        self._peak = 0.0
        self._low = 0
        self._low_sum = np.zeros(len(self.variables))
        self.recoveries = 0
        #: The long-episode rule (sized at the warm-up's end) and how often it moved normal.
        self._long: LongEpisode | None = None
        self.relearned = 0
        #: The drift rule: rows judged, and the learned residuals since its last move.
        self._judged = 0
        self._drift = np.zeros(len(self.variables))
        self._drift_n = 0
        self._since_anomalous = hold
        self._since_refit = 0
        self._novel_learned = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also a detector pickled before the warm-up became a :class:`Warmup`
        and the drift rule existed (a snapshot taken by an older twinflow)."""
        if "_wu" not in state:
            wu = Warmup(state["warmup"], state["warmup_s"], max_rows=state["max_rows"])
            wu.seen = wu.segment = state.pop("n_seen", 0)
            wu.stride = state.pop("_stride", 1)
            wu.rows = list(state.pop("_buffer", []))
            wu.start = state.pop("start", None)
            state["_wu"] = wu
        n = len(state["variables"])
        defaults = {
            "track": 0.0,
            "_judged": 0,
            "_drift": np.zeros(n),
            "_drift_n": 0,
            "long_s": 0.0,
            "_long": None,
            "relearned": 0,
            "hold_s": 0.0,
            "half_life_s": 0.0,
            "smooth_s": 0.0,
            "recover_s": 0.0,
            "refit_s": 0.0,
        }
        self.__dict__.update({**defaults, **state})

    # -- state -----------------------------------------------------------------------------

    def fill(self, rows: np.ndarray) -> np.ndarray:
        """Rows (columns in :attr:`columns` order) where a missing value takes the
        variable's last value (sample and hold); remembers the last row."""
        out = np.array(rows, dtype=float)
        if out.size == 0:
            return out
        prev = self._last
        for j in range(out.shape[1]):
            col = out[:, j]
            bad = ~np.isfinite(col)
            if bad.any():
                idx = np.where(~bad, np.arange(len(col)), -1)
                np.maximum.accumulate(idx, out=idx)
                col[:] = np.where(idx >= 0, col[np.maximum(idx, 0)], prev[j])
        self._last = out[-1].copy()
        return out

    # -- scoring ---------------------------------------------------------------------------

    def _novel(self, s: np.ndarray) -> np.ndarray:
        """Rows whose settings lie outside every operating point learned (plus a margin)."""
        if not self.n_settings:
            return np.zeros(len(s), dtype=bool)
        z = (s - self._s_mean) / self._s_sd
        lo, hi = self._range
        pad = np.maximum(self.regime_margin * (hi - lo), 1.0)  # and a warm-up spread
        outside = (z < lo - pad) | (z > hi + pad)
        return np.asarray(outside.any(axis=1), dtype=bool)

    def _combined(self, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        assert self.model is not None
        t2, spe = self.model.stats(self._phi(s), y)
        lim_t, lim_q, _ = self.limits
        out: np.ndarray = np.maximum(t2 / lim_t, spe / lim_q)
        return out

    def update(self, times: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Score then learn rows (columns in :attr:`columns` order); one score per row:
        NaN during warm-up, at a new operating point or before every variable was seen."""
        return self.update_filled(times, self.fill(np.atleast_2d(np.asarray(rows, dtype=float))))

    def update_filled(self, times: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """:meth:`update` of rows already passed through :meth:`fill`."""
        scores = np.full(len(rows), np.nan)
        ok = np.flatnonzero(np.isfinite(rows).all(axis=1))
        if not self.warm and ok.size:
            ok = self._warm_up(np.asarray(times, dtype=float), rows, ok)
        if ok.size and self.warm:
            scores[ok] = self._judge(rows[ok])
        return scores

    def _judge(self, rows: np.ndarray) -> np.ndarray:
        """Score and learn rows, cut where normal moves (every ``TRACK_EVERY`` with ``track``)."""
        room = TRACK_EVERY - self._judged % TRACK_EVERY if self.track > 0 else len(rows)
        if len(rows) > room:
            cuts = range(room, len(rows), TRACK_EVERY)
            return np.concatenate([self._judge(part) for part in np.split(rows, list(cuts))])
        out = self._judge_rows(rows)
        self._judged += len(rows)
        if self.track > 0 and self._judged % TRACK_EVERY == 0:
            self._follow()
            self._refit_due()
        return out

    def _judge_rows(self, rows: np.ndarray) -> np.ndarray:
        assert self.model is not None
        s, y = self._split(rows)
        novel = self._novel(s)
        u = self.model.residuals(self._phi(s), y)
        t2, spe = self.model.stats_of(u[:, self.model.keep])
        lim_t, lim_q, level = self.limits
        combined = np.maximum(t2 / lim_t, spe / lim_q)
        if novel.any():
            combined = np.where(novel, 0.0, combined)
            u[novel] = 0.0
        smoothed, self._ewma = self._smoothed(combined)
        ratio = smoothed / level
        if self.mewma:  # a small lasting shift shows in the average vector first
            z = ewma(u, 2.0 / (self.smooth + 1.0), self._z)
            self._z = z[-1].copy()
            t2z, qz = self.model.stats_of(z[:, self.model.keep])
            vt, vq = self.vector_limits
            ratio = np.maximum(ratio, np.maximum(t2z / vt, qz / vq) / (self.margin * VECTOR_MARGIN))
        if novel.any():
            ratio = np.where(novel, np.nan, ratio)
        resid = u * self.model.sd
        cut = self._recovered(ratio, resid) if self.recover > 0 else -1
        if cut < 0:
            self._learn(s, y, ratio, novel, resid)
            return ratio
        # normal has moved: learn up to the recovery, judge the rest against the new level
        head = slice(0, cut + 1)
        self._learn(s[head], y[head], ratio[head], novel[head], resid[head])
        rest = self._judge_rows(rows[cut + 1 :]) if cut + 1 < len(rows) else ratio[:0]
        return np.concatenate([ratio[: cut + 1], rest])

    # -- single rows -----------------------------------------------------------------------

    def score_one(self, x: Mapping[str, float]) -> float:
        """The score of one row without learning it (the smoothing is not advanced)."""
        if not self.warm:
            return 0.0
        row = np.where(np.isfinite(r := self._row(x)), r, self._last)
        if not np.isfinite(row).all():
            return math.nan
        s, y = self._split(row)
        if self._novel(s)[0]:
            return math.nan
        combined = self._combined(s, y)
        return float(combined[0]) / self.limits[2]

    def learn_one(self, x: Mapping[str, float], t: float | None = None) -> float:
        """Score and learn one row (see :meth:`update`); returns its score."""
        now = float(self.n_seen) if t is None else t
        return float(self.update(np.array([now]), self._row(x))[0])

    def __repr__(self) -> str:
        k = 0 if self.model is None else self.model.eig.size
        return (
            f"SpcDetector(variables={len(self.variables)}, operating={len(self.operating)}, "
            f"seen={self.n_seen}, components={k}, warm={self.warm})"
        )


__all__ = ["SpcDetector"]
