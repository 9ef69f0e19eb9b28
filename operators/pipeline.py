"""The per-step functions the telemetry flow wires into Bytewax.

Each is plain Python: a stateless function, or a ``(state, item) -> (state, output)`` mapper
for a keyed stateful step, where ``state`` is ``None`` for a twin's first item. They glue
the operators and models together and are tested without Bytewax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from twinflow.core.errors import DecodeError
from twinflow.core.records import (
    Alert,
    Command,
    DeadLetter,
    DesiredChange,
    Frame,
    RawMessage,
    TelemetryFrame,
    WaveformFrame,
    WindowFeatures,
    utc,
)
from twinflow.models.anomaly import WindowAnomalyDetector
from twinflow.operators.catalog import TwinType, twin_type
from twinflow.operators.decode import decode
from twinflow.operators.health import HealthTracker
from twinflow.operators.policy import CommandPolicy
from twinflow.operators.rules import AlarmTracker
from twinflow.operators.twin_state import TwinStateTracker
from twinflow.operators.validate import Validator, dead_letter_for
from twinflow.operators.windows import WindowAggregator


def check_item(item: object, validator: Validator, now: float) -> list[Frame | DeadLetter]:
    """Decode (raw payloads) and validate one input; never raises on bad data.

    Returns the accepted frame (possibly with out-of-range readings blanked) and any dead
    letters; an input of an unknown kind becomes a dead letter too, and a dead letter a
    connector emitted passes through.
    """
    if isinstance(item, DeadLetter):  # a connector already refused it (e.g. a bad payload)
        return [item]
    if isinstance(item, RawMessage):
        try:
            frame: Frame = decode(item)
        except DecodeError as exc:
            return [dead_letter_for(item, exc, stage="decode")]
    elif isinstance(item, TelemetryFrame | WaveformFrame):
        frame = item
    else:
        return [
            DeadLetter(
                stage="decode",
                reason=f"unsupported input of type {type(item).__name__}; expected a "
                "TelemetryFrame, WaveformFrame or RawMessage",
                source="unknown",
                time=utc(now),
                payload=repr(item)[:200],
            )
        ]
    accepted, dead = validator.validate(frame, now)
    out: list[Frame | DeadLetter] = list(dead)
    if accepted is not None:
        out.append(accepted)
    return out


def deployed_type(frame: Frame, types: Mapping[str, TwinType] | None = None) -> TwinType:
    """The twin's type as deployed: ``types[twin_id]`` (e.g. limited to the signals its
    protocol binding carries), else the catalogue's type."""
    if types is not None and frame.twin_id in types:
        return types[frame.twin_id]
    return twin_type(frame.twin_type)


def new_state_tracker(
    item: Frame | DesiredChange, config: Any, types: Mapping[str, TwinType] | None = None
) -> TwinStateTracker:
    """The state tracker of the twin of ``item``: its first frame, or a desired change that
    arrived before any telemetry (the twin's type comes from the change alike)."""
    if types is not None and item.twin_id in types:
        twin = types[item.twin_id]
    else:
        twin = twin_type(item.twin_type)
    return TwinStateTracker(
        item.twin_id,
        twin,
        stale_factor=config.stale_factor,
        snapshot_interval_s=config.state_snapshot_s,
    )


def new_window_aggregator(
    frame: Frame, config: Any, types: Mapping[str, TwinType] | None = None
) -> WindowAggregator:
    return WindowAggregator(
        frame.twin_id,
        deployed_type(frame, types),
        length_s=config.window_s,
        lateness_s=config.lateness_s,
    )


@dataclass(frozen=True)
class AnomalyStep:
    """Score each window with the twin's detector, then learn from it."""

    warmup: int
    quantile: float
    margin: float
    seed: int

    @classmethod
    def mapper(
        cls, config: Any
    ) -> Callable[[WindowAnomalyDetector | None, WindowFeatures], tuple[Any, WindowFeatures]]:
        step = cls(
            config.anomaly_warmup, config.anomaly_quantile, config.anomaly_margin, config.seed
        )
        return step

    def __call__(
        self, detector: WindowAnomalyDetector | None, w: WindowFeatures
    ) -> tuple[WindowAnomalyDetector, WindowFeatures]:
        if detector is None:
            detector = WindowAnomalyDetector(
                warmup=self.warmup, quantile=self.quantile, margin=self.margin, seed=self.seed
            )
        x = dict(w.features)
        score = detector.score_one(x)
        threshold = detector.threshold
        detector.learn_one(x)
        return detector, replace(w, anomaly_score=score, anomaly_threshold=threshold)


class RulStep:
    """Attach the twin's remaining-useful-life estimate to each window."""

    @staticmethod
    def mapper() -> Callable[[HealthTracker | None, WindowFeatures], tuple[Any, WindowFeatures]]:
        return RulStep.step

    @staticmethod
    def step(
        tracker: HealthTracker | None, w: WindowFeatures
    ) -> tuple[HealthTracker, WindowFeatures]:
        if tracker is None:
            tracker = HealthTracker(w.twin_id, w.twin_type)
        est = tracker.update(w)
        return tracker, (replace(w, rul=est) if est is not None else w)


def new_alarm_tracker(
    tracker: AlarmTracker | None, w: WindowFeatures
) -> tuple[AlarmTracker, list[Alert]]:
    """Evaluate the twin's alarm rules on one window.

    Sensor-fault alerts come first, so the command policy knows a sensor is suspect before
    it weighs an alert of the same window that rests on that sensor.
    """
    if tracker is None:
        tracker = AlarmTracker(w.twin_id, w.twin_type)
    alerts = tracker.evaluate(w)
    alerts.sort(key=lambda a: a.diagnosis != "sensor_fault")
    return tracker, alerts


@dataclass(frozen=True)
class PolicyStep:
    """Turn alerts into rate-limited commands with the twin's policy."""

    min_interval_s: float
    derate_fraction: float
    ttl_s: float

    @classmethod
    def mapper(cls, config: Any) -> PolicyStep:
        return cls(config.command_interval_s, config.derate_fraction, config.command_ttl_s)

    def __call__(
        self, policy: CommandPolicy | None, alert: Alert
    ) -> tuple[CommandPolicy, list[Command]]:
        if policy is None:
            policy = CommandPolicy(
                min_interval_s=self.min_interval_s,
                derate_fraction=self.derate_fraction,
                ttl_s=self.ttl_s,
            )
        return policy, policy.decide(alert)
