"""Raw telemetry downsampled for forwarding (``Downsample``) and stored back (``frame_of``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinflow.connectors.replication.forward import FORWARDS, writes_of
from twinflow.core.records import TelemetryFrame, WaveformFrame
from twinflow.operators.replication.downsample import Downsample, Open, TelemetryBucket, frame_of


def frame(times: list[float], **signals: list[float]) -> TelemetryFrame:
    return TelemetryFrame(
        "pump-1", "pump", np.array(times), {k: np.array(v) for k, v in signals.items()}
    )


def feed(step: Downsample, *frames: TelemetryFrame) -> tuple[Open | None, list[TelemetryBucket]]:
    state: Open | None = None
    out: list[TelemetryBucket] = []
    for f in frames:
        state, got = step(state, f)
        out += got
    return state, out


def test_each_bucket_is_the_mean_of_its_readings_once_a_later_one_arrives() -> None:
    step = Downsample(10.0)
    _, out = feed(
        step,
        frame([0.0, 4.0, 9.9], flow=[1.0, 2.0, 3.0], current=[5.0, math.nan, 7.0]),
        frame([12.0, 25.0], flow=[10.0, 20.0], current=[1.0, 1.0]),
    )
    assert [(b.start, dict(b.means), dict(b.counts)) for b in out] == [
        (0.0, {"current": 6.0, "flow": 2.0}, {"current": 2, "flow": 3}),
        (10.0, {"current": 1.0, "flow": 10.0}, {"current": 1, "flow": 1}),
    ]  # the bucket at 20 s is still open


def test_late_readings_of_a_forwarded_bucket_are_dropped_and_counted() -> None:
    step = Downsample(10.0)
    state, out = feed(step, frame([1.0, 15.0], flow=[1.0, 2.0]), frame([3.0], flow=[100.0]))
    assert [b.means["flow"] for b in out] == [1.0]
    assert state is not None and state.late == 1
    _, out = step(state, frame([21.0], flow=[3.0]))
    assert [b.means["flow"] for b in out] == [2.0]  # the late reading changed nothing


def test_a_bucket_without_a_reading_is_not_forwarded_and_bursts_are_ignored() -> None:
    step = Downsample(10.0)
    _, out = feed(step, frame([1.0], flow=[math.nan]), frame([11.0], flow=[2.0]))
    assert out == []
    burst = WaveformFrame("pump-1", "pump", "vibration", 0.0, 1000.0, np.zeros(8))
    assert step(None, burst) == (None, [])
    with pytest.raises(ValueError, match="telemetry_every_s"):
        Downsample(0.0)


def test_a_bucket_travels_as_a_write_only_when_telemetry_is_forwarded() -> None:
    bucket = TelemetryBucket("pump-1", "pump", 60.0, 60.0, {"flow": 2.5}, {"flow": 4})
    assert writes_of(bucket, FORWARDS) == []  # not by default
    ((kind, name, doc),) = writes_of(bucket, (*FORWARDS, "telemetry"))
    assert (kind, name) == ("metadata", "telemetry")
    back = frame_of("pump-1", doc, "replication:north")
    assert back is not None and back.source == "replication:north"
    assert back.times.tolist() == [60.0] and back.signals["flow"].tolist() == [2.5]
    assert back.twin_type == "pump"
    assert frame_of("pump-1", {"mean": 1}, "x") is None
