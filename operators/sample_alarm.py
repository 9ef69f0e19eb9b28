"""An alarm on raw-sample anomaly scores: raised within seconds, not windows.

The window-level anomaly rule needs several anomalous 5-minute windows before it raises, which
is far too slow for a short recording or a fault that lasts minutes. :class:`SampleAlarm`
follows one twin's ``anomaly_sample`` scores (see :mod:`twinflow.operators.sample_anomaly`)
row by row, in event time: it raises the alarm ``anomaly_sample`` once the score has stayed
above 1 (its calibrated limit) for ``raise_s`` seconds and ``raise_n`` samples, and clears it
once the score has stayed at or below ``clear_below`` (0.8 of the limit) for ``clear_s``
seconds and ``clear_n`` samples. The sample counts matter for slowly sampled machines only
(at 1 Hz the times ask for more samples than that): at one sample every 5 minutes, 10 s
alone would be met by two samples in a row, and one quiet sample would clear. The gap is
hysteresis, so an open alarm stays open while a fault's score hovers around its limit instead
of clearing and raising again (each raise would cost ``raise_s`` of a fault's points, and each
clear ``clear_s`` of a healthy stretch). An open alarm whose score, still above the limit, has
stayed at or below ``recover`` (a tenth) of its peak for ``recover_s`` (30 s) and
``recover_n`` samples clears at once: the fault is over and the machine settled at a new
level, which the sample model re-learns by the same rule. (An episode that holds its level
for a week without rising is taken as the new normal by the sample model's long-episode
rule; its scores then fall and the alarm clears the usual way.) A NaN score (warm-up, a new
operating point) neither raises nor clears, and the first ``settle_s`` seconds and
``settle_n`` samples of scores after warm-up are only watched: the smoothed score and the
freshly fitted model settle there (the commonest false alarm on healthy recordings was
right at the end of warm-up). Every span is asked in time and in samples, so the alarm
behaves alike at 1 Hz (where the times ask for more samples than the counts) and at one
sample every 5 minutes or an hour (where the counts ask for more time). The raised alert's
evidence holds the highest score and the share of each signal that drives it, and its
message names the largest.

>>> import numpy as np
>>> from twinflow.core.records import TelemetryFrame
>>> alarm = SampleAlarm(raise_s=10.0, clear_s=60.0, settle_s=0.0, settle_n=0)
>>> scores = np.array([0.5] * 5 + [2.0] * 20 + [0.2] * 70)
>>> frame = TelemetryFrame("P1", "rig", np.arange(95.0), {"anomaly_sample": scores,
...     "anomaly_sample.s3": np.where(scores > 1, 0.8, 0.0)})
>>> [(a.state.value, a.time.timestamp(), a.evidence["anomaly.share.s3"])
...  for a in alarm.update(frame)]
[('raised', 15.0, 0.8), ('cleared', 85.0, 0.8)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from twinflow.core.records import Alert, AlertState, Severity, TelemetryFrame
from twinflow.core.times import utc
from twinflow.operators.sample_anomaly import SAMPLE_PREFIX, SAMPLE_SIGNAL

#: The rule name of the raw-sample anomaly alarm.
RULE = "anomaly_sample"


def span(seconds: float) -> str:
    """A duration as an alert message says it: seconds, minutes or hours.

    >>> span(10.0), span(900.0), span(10800.0), span(float("nan"))
    ('10 s', '15 min', '3 h', '0 s')
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "0 s"
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


@dataclass(slots=True)
class SampleAlarm:
    """One twin's raw-sample anomaly alarm (its state pickles with the flow's recovery)."""

    raise_s: float = 10.0
    clear_s: float = 120.0
    settle_s: float = 60.0
    #: An open alarm counts a score as quiet only at or below this (below the limit of 1).
    clear_below: float = 0.8
    #: An open alarm whose score, still above the limit, has stayed at or below this share
    #: of its peak for ``recover_s`` clears at once: the fault is over (the sample model
    #: re-learns the level the machine settled at, by the same rule; 0: off).
    recover: float = 0.1
    recover_s: float = 30.0
    #: Least number of samples in a row above the limit to raise, and at or below
    #: ``clear_below`` to clear (besides ``raise_s`` and ``clear_s``).
    raise_n: int = 3
    clear_n: int = 6
    #: Event time the current run at or below ``recover`` of the peak began (NaN: none).
    low_since: float = math.nan
    #: Event time of the first finite score (NaN: none yet).
    first_scored: float = math.nan
    #: Event time the current run of scores above the limit began (NaN: not in one).
    hot_since: float = math.nan
    #: Event time the current run of scores at or below the limit began (NaN: not in one).
    cold_since: float = math.nan
    #: Samples in the current run above the limit, and in the current quiet run.
    hot_n: int = 0
    cold_n: int = 0
    #: The open alert (raised), if any.
    open: Alert | None = None
    peak: float = 0.0
    shares: dict[str, float] = field(default_factory=dict)
    # Fields added later come last, so a snapshot of an older alarm (its fields pickled in
    # order) restores them and these take their defaults (``__setstate__``).
    #: Least samples of the recovery run and of the watched start (besides their times).
    recover_n: int = 20
    settle_n: int = 30
    #: Samples of the current run at or below ``recover`` of the peak; finite scores seen.
    low_n: int = 0
    scored_n: int = 0

    def __getstate__(self) -> list[object]:
        """The fields' values in order (as a slotted dataclass pickles)."""
        return [getattr(self, f.name) for f in fields(self)]

    def __setstate__(self, state: list[object]) -> None:
        """Restore, also a snapshot of an older alarm with fewer (leading) fields: the
        later ones take their defaults."""
        for f, value in zip(fields(self), state, strict=False):
            object.__setattr__(self, f.name, value)
        for f in fields(self)[len(state) :]:
            factory = f.default_factory
            default = factory() if callable(factory) else f.default
            object.__setattr__(self, f.name, default)

    def update(self, frame: TelemetryFrame) -> list[Alert]:
        """The raise and clear transitions this frame's scores cause, in time order."""
        scores = frame.signals.get(SAMPLE_SIGNAL)
        if scores is None or not len(frame.times):
            return []
        scores = np.asarray(scores, dtype=np.float64)
        times = np.asarray(frame.times, dtype=np.float64)
        shares = {
            name[len(SAMPLE_PREFIX) :]: np.asarray(v, dtype=np.float64)
            for name, v in frame.signals.items()
            if name.startswith(SAMPLE_PREFIX)
        }
        out: list[Alert] = []
        for i in np.flatnonzero(np.isfinite(scores)):
            t, score = float(times[i]), float(scores[i])
            if math.isnan(self.first_scored):
                self.first_scored = t
            self.scored_n += 1
            if t - self.first_scored < self.settle_s or self.scored_n <= self.settle_n:
                continue
            if self.open is not None and self._recovered(t, score):
                out.append(self._clear(t, recovered=True))
                self.hot_since = self.cold_since = math.nan
                continue
            if score > 1.0:
                self.cold_since, self.cold_n = math.nan, 0
                if math.isnan(self.hot_since):
                    self.hot_since, self.hot_n = t, 0
                self.hot_n += 1
                self._remember(score, {k: float(v[i]) for k, v in shares.items()})
                if (
                    self.open is None
                    and t - self.hot_since >= self.raise_s
                    and self.hot_n >= self.raise_n
                ):
                    out.append(self._raise(frame, t))
            elif self.open is not None and score > self.clear_below:
                self.hot_since = math.nan  # elevated: an open alarm stays open
                self.cold_since = math.nan
            else:
                self.hot_since = math.nan
                if math.isnan(self.cold_since):
                    self.cold_since, self.cold_n = t, 0
                self.cold_n += 1
                if (
                    self.open is not None
                    and t - self.cold_since >= self.clear_s
                    and self.cold_n >= self.clear_n
                ):
                    out.append(self._clear(t))
        return out

    def _recovered(self, t: float, score: float) -> bool:
        """The recovery rule: still above the limit, but at or below ``recover`` of the
        run's peak for ``recover_s`` (a score back under the limit clears the usual way)."""
        if self.recover <= 0.0 or score <= 1.0 or score > self.recover * self.peak:
            self.low_since, self.low_n = math.nan, 0
            return False
        if math.isnan(self.low_since):
            self.low_since, self.low_n = t, 0
        self.low_n += 1
        return t - self.low_since >= self.recover_s and self.low_n >= self.recover_n

    def _remember(self, score: float, shares: dict[str, float]) -> None:
        """The run's highest score and, per signal, its largest share (bounded by the type's
        signals)."""
        self.peak = max(self.peak, score)
        for k, v in shares.items():
            if math.isfinite(v) and v > self.shares.get(k, 0.0):
                self.shares[k] = v

    def _raise(self, frame: TelemetryFrame, t: float) -> Alert:
        at = utc(t)
        evidence = {"anomaly.score": round(self.peak, 4)}
        evidence |= {f"anomaly.share.{k}": round(v, 4) for k, v in self.shares.items() if v > 0}
        top = sorted(self.shares, key=self.shares.__getitem__, reverse=True)[:3]
        driven = f", driven by {', '.join(top)}" if top else ""
        self.open = Alert(
            alert_id=Alert.make_id(frame.twin_id, RULE, at),
            twin_id=frame.twin_id,
            twin_type=frame.twin_type,
            rule=RULE,
            state=AlertState.RAISED,
            severity=Severity.WARNING,
            time=at,
            raised_at=at,
            message=f"raw samples outside the twin's learned normal for {span(t - self.hot_since)} "
            f"(T²/SPE score {self.peak:.2f} x its limit){driven}",
            evidence=evidence,
        )
        return self.open

    def _clear(self, t: float, recovered: bool = False) -> Alert:
        assert self.open is not None
        message = f"raw samples back within the learned normal for {span(t - self.cold_since)}"
        if recovered:
            message = (
                f"the score fell to {self.recover:g} of its peak for {self.recover_s:g} s: the "
                "fault is over, and the model re-learns the level the machine settled at"
            )
        cleared = Alert(
            alert_id=self.open.alert_id,
            twin_id=self.open.twin_id,
            twin_type=self.open.twin_type,
            rule=RULE,
            state=AlertState.CLEARED,
            severity=self.open.severity,
            time=utc(t),
            raised_at=self.open.raised_at,
            message=message,
            evidence=self.open.evidence,
        )
        self.open, self.peak, self.shares = None, 0.0, {}
        self.low_since, self.low_n = math.nan, 0
        return cleared


__all__ = ["RULE", "SampleAlarm"]
