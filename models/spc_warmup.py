"""A warm-up that learns a stable normal: the rows an SPC model is first fitted on.

A model calibrated on a warm-up that spans two states (a machine still settling, a regime
change, a temperature that falls in the last minute) takes the difference between them for
normal spread: its limits are wide and a later fault stays inside them. :class:`Warmup`
keeps the warm-up's rows and, each time the warm-up would end, asks :func:`level_shift`
whether the rows' level changed inside it. If it did, the warm-up starts again from the change
and goes on until the new segment is long enough (the model is then fitted on that segment
alone). A machine that never settles still gets a model once ``cap`` rows were seen: its
changes are its normal (an operating cycle the profile does not declare), so it is fitted on
every row of the warm-up, and :attr:`Warmup.unsettled` says so. (Fitted on the last segment
alone, a pump whose load cycles through the warm-up learned one state of its cycle and raised
about 20 false alarms a day on the others.)

The test is a two-segment one: for every split of the rows (both parts at least
``min_segment`` long), the difference of the two means of each column over the pooled
standard deviation *within* the segments. A step of ``d`` such deviations reads ``d``; a
steady ramp never reads more than ``√12 / 2 ≈ 3.5`` however steep (the spread inside each
half grows with it), so a slow drift is left to the model's adaptation, not taken for a new
state; noise reads well under 1 with a few hundred rows.
"""

from __future__ import annotations

import math

import numpy as np

#: The share of ``target`` rows a warm-up must have seen since its last restart.
SETTLE_SHARE = 0.5
#: Gaps between the warm-up's first rows whose median is its observed sampling period.
PERIOD_GAPS = 64
#: A sampling period of at least this many seconds makes a machine slowly sampled.
SLOW_PERIOD_S = 60.0


def sampling_period(gaps: np.ndarray) -> float:
    """The median of the positive gaps (seconds), NaN without any, to the microsecond: event
    times near today's epoch carry a quarter of a microsecond of rounding, so a 10 Hz twin's
    gaps read 0.09999990 or 0.10000014, and 30 s over either would not be 300 rows.

    >>> sampling_period(np.array([300.0, 300.0, 0.0, 3600.0]))
    300.0
    >>> t = 1_767_225_600.0 + 0.1 * np.arange(5)
    >>> float(np.diff(t)[1]) == 0.1, sampling_period(np.diff(t))
    (False, 0.1)
    """
    pos = gaps[gaps > 0]
    if not pos.size:
        return math.nan
    median = float(np.median(pos))
    return round(median, 6) or median


def rows_in(seconds: float, period: float) -> int:
    """The rows that span ``seconds`` of event time at ``period`` seconds a row (at least
    one; a hair of rounding error does not add a row).

    >>> rows_in(60.0, 1.0), rows_in(60.0, 300.0), rows_in(3600.0, 300.0), rows_in(10.0, 3.0)
    (60, 1, 12, 4)
    """
    return max(1, math.ceil(seconds / period - 1e-9))


def level_shift(rows: np.ndarray, scale: np.ndarray, min_segment: int) -> tuple[int, float]:
    """The split ``k`` (rows before it are the old level) where the columns' means differ
    most, in pooled within-segment standard deviations (each at least its ``scale``), and
    that difference; ``(0, 0.0)`` with fewer than ``2 * min_segment`` rows.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 2))
    >>> x[150:, 1] += 6.0
    >>> k, d = level_shift(x, np.zeros(2), 20)
    >>> k, d > 5
    (150, True)
    >>> level_shift(x[:150], np.zeros(2), 20)[1] < 1
    True
    """
    n = len(rows)
    m = max(1, min_segment)
    if n < 2 * m:
        return 0, 0.0
    x = rows - rows.mean(axis=0)
    c1 = np.cumsum(x, axis=0)
    c2 = np.cumsum(x * x, axis=0)
    k = np.arange(m, n - m + 1)
    left, right = k[:, None].astype(float), (n - k)[:, None].astype(float)
    s1, q1 = c1[k - 1], c2[k - 1]
    s2, q2 = c1[-1] - s1, c2[-1] - q1
    within = (q1 - s1 * s1 / left) + (q2 - s2 * s2 / right)
    sd = np.sqrt(np.maximum(within, 0.0) / max(n - 2, 1))
    sd = np.maximum(sd, np.maximum(scale, 1e-12))
    d = np.abs(s1 / left - s2 / right) / sd
    best = d.max(axis=1)
    i = int(np.argmax(best))
    return int(k[i]), float(best[i])


def residuals(rows: np.ndarray, n_settings: int) -> np.ndarray:
    """The monitored columns less what a quadratic in the settings explains (so a load change
    the profile declares is not a shift), or less their mean without settings."""
    s, y = rows[:, :n_settings], rows[:, n_settings:]
    if not n_settings:
        centred: np.ndarray = y - y.mean(axis=0)
        return centred
    z = (s - s.mean(axis=0)) / np.maximum(s.std(axis=0), 1e-12)
    phi = np.hstack([np.ones((len(s), 1)), z, z * z])
    beta: np.ndarray = np.linalg.lstsq(phi, y, rcond=None)[0]
    out: np.ndarray = y - phi @ beta
    return out


class Warmup:
    """The rows a warm-up keeps (bounded: every other one once ``max_rows`` are kept), and
    when it ends: after ``target`` rows and ``seconds`` of event time, once the rows since
    the last restart are stable (no level shift of ``shift`` deviations or more; 0 turns the
    test off) and at least ``SETTLE_SHARE`` of ``target``, or at ``cap`` rows whatever they
    look like (0: no cap) but never before ``seconds``. ``rows[origin:]`` is the segment
    since the last restart; the rows before it are kept until the end in case the warm-up
    never settles. Rows sampled every ``slow_period`` seconds or more (the median of the
    first gaps) make it last ``slow_seconds`` too (0: never)."""

    #: The first kept row of the segment since the last restart (class default: a warm-up
    #: pickled before it existed had dropped the rows before its restarts).
    origin = 0
    #: The slow-sampling rule's state (class defaults: a warm-up pickled before it existed).
    slow_seconds = 0.0
    slow_period = SLOW_PERIOD_S
    last_time: float | None = None
    gaps: tuple[float, ...] = ()

    def __init__(
        self,
        target: int,
        seconds: float = 0.0,
        shift: float = 0.0,
        cap: int = 0,
        max_rows: int = 600,
        slow_seconds: float = 0.0,
        slow_period: float = SLOW_PERIOD_S,
    ) -> None:
        self.target = target
        self.seconds = seconds
        self.slow_seconds = slow_seconds
        self.slow_period = slow_period
        self.shift = shift
        self.cap = max(cap, target) if cap > 0 else 0
        self.max_rows = max_rows
        self.settle = max(1, math.ceil(SETTLE_SHARE * target)) if shift > 0 else 1
        self.min_segment = max(10, target // 10)
        self.rows: list[np.ndarray] = []
        self.stride = 1
        #: Rows seen in all, and since the last restart.
        self.seen = 0
        self.segment = 0
        self.start: float | None = None
        #: Restarts so far, and whether the warm-up ended at its cap still unsettled.
        self.restarts = 0
        self.unsettled = False

    @property
    def period(self) -> float:
        """The observed sampling period: the median of the first gaps (NaN: none yet)."""
        return sampling_period(np.asarray(self.gaps, dtype=float))

    def least_seconds(self, period: float) -> float:
        """The least event time the warm-up lasts: ``seconds``, and ``slow_seconds`` once
        the rows come every ``slow_period`` seconds or more."""
        slow = self.slow_seconds > 0 and period >= self.slow_period
        return max(self.seconds, self.slow_seconds) if slow else self.seconds

    def _gaps_of(self, times: np.ndarray) -> np.ndarray:
        """The gaps these rows add to the first ``PERIOD_GAPS`` (none once that many)."""
        room = PERIOD_GAPS - len(self.gaps)
        if room <= 0 or not len(times):
            return np.zeros(0)
        head = times[: room + 1]
        if self.last_time is not None:
            head = np.concatenate([[self.last_time], times[:room]])
        gaps: np.ndarray = np.diff(head)
        return gaps

    def needed(self, times: np.ndarray) -> tuple[int, bool]:
        """How many of these rows the warm-up takes before it must be checked (all of them
        when the check is not due within them), and whether it is due after them."""
        if self.start is None and len(times):
            self.start = float(times[0])
        i = np.arange(1, len(times) + 1)
        seen = np.concatenate([np.asarray(self.gaps, dtype=float), self._gaps_of(times)])
        least = self.least_seconds(sampling_period(seen))
        long_enough = times - (self.start or 0.0) >= least
        due = (self.seen + i >= self.target) & (self.segment + i >= self.settle) & long_enough
        if self.cap:
            # the cap bounds the restarts, never the least time: a warm-up sized in time
            # (slow sampling: 600 rows of 5-minute data are two days) lasts that time
            due |= (self.seen + i >= self.cap) & long_enough
        hit = np.flatnonzero(due)
        cut, is_due = (int(hit[0]) + 1, True) if hit.size else (len(times), False)
        if cut:  # the rows taken: their gaps (the period) and the last time
            self.gaps = (*self.gaps, *self._gaps_of(times[:cut]).tolist())
            self.last_time = float(times[cut - 1])
        return cut, is_due

    def keep(self, rows: np.ndarray) -> None:
        """Count the rows and keep every ``stride``-th."""
        for row in rows:
            self.seen += 1
            self.segment += 1
            if self.seen % self.stride == 0:
                self.rows.append(row)
            if len(self.rows) >= self.max_rows:
                self.rows = self.rows[1::2]
                self.origin //= 2
                self.stride *= 2

    def settled(self, n_settings: int, floors: np.ndarray) -> bool:
        """At a due check: True when the warm-up ends now, with :attr:`rows` the rows to fit
        (the stable segment since the last restart, or at the cap every row); otherwise the
        warm-up starts again from the level shift and goes on."""
        capped = self.cap > 0 and self.seen >= self.cap
        while self.shift > 0 and len(self.rows) - self.origin >= 2 * self.min_segment:
            data = np.vstack(self.rows[self.origin :])
            k, d = level_shift(residuals(data, n_settings), floors, self.min_segment)
            if d < self.shift:
                break
            if capped:
                self.unsettled = True
                break
            self.origin += k
            self.segment = (len(self.rows) - self.origin) * self.stride
            self.restarts += 1
            if self.segment < self.settle:
                return False
        if capped and self.restarts:
            self.unsettled = True
        if self.unsettled:
            self.origin = 0  # it never settled: every row of the warm-up is its normal
        self.rows = self.rows[self.origin :]
        self.origin = 0
        return True


__all__ = [
    "PERIOD_GAPS",
    "SETTLE_SHARE",
    "SLOW_PERIOD_S",
    "Warmup",
    "level_shift",
    "residuals",
    "sampling_period",
]
