"""Raw-sample anomaly scores: each twin's scalar samples judged by its own T²/SPE model.

:class:`SampleScorer` holds one twin's :class:`~twinflow.models.spc.SpcDetector` over the
type's scalar signals, conditioned on its operating settings
(:func:`~twinflow.operators.anomaly_profile.operating_signals`). It scores a whole
:class:`TelemetryFrame` at once (vectorised) and returns the frame with one more signal,
``anomaly_sample``: each row's score as a ratio to the limit (above 1.0: anomalous; NaN
at a new operating point or before every signal was seen; a frame with no row scored, e.g.
during warm-up, gets no such signal). A frame holding anomalous rows also carries
``anomaly_sample.<signal>`` for the signal with the largest share of those rows' scores
(0 in the other rows), so the window that follows can name the signals that drive it while
a frame costs at most two signals more. Like the physics
residuals, these signals are derived: written with the telemetry, summarised by the
windows, never judged by the sensor rules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from twinflow.core.records import TelemetryFrame
from twinflow.models.spc import SpcDetector
from twinflow.operators.anomaly_profile import anomaly_of, operating_signals
from twinflow.operators.twin_type import TwinType

log = logging.getLogger(__name__)

#: The derived signal that carries each sample's score.
SAMPLE_SIGNAL = "anomaly_sample"
#: Prefix of the derived signals (and their window features) of the sample model.
SAMPLE_PREFIX = SAMPLE_SIGNAL + "."
#: A signal's spread is never taken as less than this share of its declared range, so a
#: signal that barely moved during warm-up (a quantised or idle sensor) does not turn a
#: change of one count into an enormous score.
RESOLUTION = 1e-3
#: Signals whose shares an anomalous frame carries (the largest ones).
TOP_SHARES = 1


@dataclass(frozen=True, slots=True)
class SampleSettings:
    """The sample model's settings (from the flow; a type's ``anomaly:`` overrides them)."""

    enabled: bool = False
    warmup: int = 300
    warmup_s: float = 0.0
    #: Least warm-up time of a slowly sampled twin (a minute or more between samples).
    warmup_slow_s: float = 7 * 86400.0
    warmup_shift: float = 4.0
    warmup_max: int = 600
    track: float = 0.0
    quantile: float = 0.99
    margin: float = 1.5
    smooth: int = 30
    hold: int = 60
    half_life: float = 86400.0
    adapt: bool = True
    #: Event time an anomalous episode lasts, its score not rising, before its level is
    #: taken as the new normal (the long-episode rule; 0: never).
    long_s: float = 7 * 86400.0
    #: Spans in event time (0: the samples above only), sized in samples at the end of each
    #: twin's warm-up; the counts above (and the detector's recovery and refit counts) are
    #: then their least samples.
    hold_s: float = 0.0
    half_life_s: float = 0.0
    smooth_s: float = 0.0
    recover_s: float = 0.0
    refit_s: float = 0.0
    seed: int = 0

    def detector(
        self,
        names: Sequence[str],
        operating: Sequence[str] = (),
        floors: Sequence[float] | None = None,
    ) -> SpcDetector:
        """A fresh sample model over ``names`` (``operating`` among them condition it) with
        these settings; ``floors``: each column's least spread, settings first."""
        return SpcDetector(
            names,
            operating=operating,
            warmup=self.warmup,
            warmup_s=self.warmup_s,
            warmup_slow_s=self.warmup_slow_s,
            warmup_shift=self.warmup_shift,
            warmup_cap=self.warmup_max,
            track=self.track,
            long_s=self.long_s,
            quantile=self.quantile,
            margin=self.margin,
            smooth=self.smooth,
            adapt=self.adapt,
            half_life=self.half_life,
            hold=self.hold,
            hold_s=self.hold_s,
            half_life_s=self.half_life_s,
            smooth_s=self.smooth_s,
            recover_s=self.recover_s,
            refit_s=self.refit_s,
            floors=floors,
            seed=self.seed,
        )

    def for_type(self, kind: TwinType) -> SampleSettings:
        """These settings with the type's ``anomaly:`` overrides applied."""
        a = anomaly_of(kind)
        return replace(
            self,
            enabled=self.enabled if a.samples is None else a.samples,
            adapt=self.adapt if a.adapt is None else a.adapt,
            warmup=a.sample_warmup or self.warmup,
            warmup_s=a.sample_warmup_s or self.warmup_s,
            quantile=a.sample_quantile or self.quantile,
            margin=a.sample_margin or self.margin,
        )


def monitored(kind: TwinType, frame: TelemetryFrame) -> tuple[str, ...]:
    """The signals a twin's sample model follows: its type's scalar signals that every twin
    sends, and the optional ones its first frame carries."""
    return tuple(s.name for s in kind.scalar_signals if not s.optional or s.name in frame.signals)


class SampleScorer:
    """One twin's sample model; ``None`` detector when the type has too little to model."""

    def __init__(self, kind: TwinType, frame: TelemetryFrame, settings: SampleSettings) -> None:
        s = settings.for_type(kind)
        self.enabled = s.enabled
        names = monitored(kind, frame)
        operating = tuple(n for n in operating_signals(kind) if n in names)
        cols = (*operating, *(n for n in names if n not in operating))
        self.detector: SpcDetector | None = None
        if s.enabled and len(names) > len(operating):
            floors = [RESOLUTION * (kind.signal(n).high - kind.signal(n).low) for n in cols]
            self.detector = s.detector(names, operating, floors)

    def score(self, frame: TelemetryFrame) -> TelemetryFrame:
        """``frame`` with the ``anomaly_sample`` signal (and shares where anomalous)."""
        det = self.detector
        n = len(frame.times)
        if det is None or n == 0:
            return frame
        nan = np.full(n, np.nan)
        rows = np.column_stack(
            [np.asarray(frame.signals.get(c, nan), dtype=np.float64) for c in det.columns]
        )
        filled = det.fill(rows)
        warm, relearned = det.warm, det.relearned
        scores = det.update_filled(np.asarray(frame.times, dtype=np.float64), filled)
        if det.warm and not warm:
            self._warmed(frame.twin_id)
        if det.relearned != relearned:
            log.info(
                "sample model of %s: an anomalous episode of %d samples held its level "
                "without rising; that level is its new normal (the long-episode rule)",
                frame.twin_id,
                det.long_rows,
            )
        if not np.isfinite(scores).any():  # warming up, or a new operating point
            return frame
        added = {SAMPLE_SIGNAL: scores}
        hot = scores > 1.0
        if hot.any():  # the signals that drive this frame's anomalous rows
            part = det.shares(filled[hot])
            for j in np.argsort(-part.sum(axis=0))[:TOP_SHARES]:
                share = np.zeros(n)
                share[hot] = part[:, j]
                added[SAMPLE_PREFIX + det.variables[j]] = share
        return replace(frame, signals={**frame.signals, **added})

    def _warmed(self, twin_id: str) -> None:
        """Say how the warm-up ended: a warm-up that restarted after a level shift is worth a
        line, one that reached its cap unsettled a warning (its limits may be wide)."""
        det = self.detector
        assert det is not None
        if det.unsettled:
            log.warning(
                "sample model of %s: warm-up never settled (%d restarts, %d samples); fitted "
                "on every sample of it (its changes are taken as its normal)",
                twin_id,
                det.restarts,
                det.n_seen,
            )
        if det.slow and det.n_seen > det.warmup:
            log.info(
                "sample model of %s: sampled every %.0f s, so its warm-up covered %d samples "
                "(at least flow.sample_warmup_slow_s of event time)",
                twin_id,
                det.period,
                det.n_seen,
            )
        if det.restarts and not det.unsettled:
            log.info(
                "sample model of %s: warm-up restarted %d time(s) after a level shift; "
                "fitted after %d samples",
                twin_id,
                det.restarts,
                det.n_seen,
            )


__all__ = ["SAMPLE_PREFIX", "SAMPLE_SIGNAL", "SampleScorer", "SampleSettings", "monitored"]
