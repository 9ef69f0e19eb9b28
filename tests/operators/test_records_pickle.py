"""Every record survives pickling: Bytewax pickles items that cross workers (or processes)
and the state it snapshots for recovery, and records hold read-only mappings."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import numpy as np

from twinflow.core.records import (
    Command,
    CommandOutcome,
    CommandStatus,
    DesiredChange,
    PropertyState,
    Quality,
    SignalState,
    SyncStatus,
    TelemetryFrame,
    TwinState,
    WaveformFrame,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_records_with_read_only_mappings_round_trip_through_pickle() -> None:
    frame = TelemetryFrame(
        "P1",
        "pump",
        np.array([1.0, 2.0]),
        {"flow_m3h": np.array([3.0, np.nan])},
        quality=MappingProxyType({"flow_m3h": Quality.UNCERTAIN}),
    )
    back = pickle.loads(pickle.dumps(frame))
    assert back.twin_id == "P1" and back.quality == {"flow_m3h": Quality.UNCERTAIN}
    np.testing.assert_array_equal(back.signals["flow_m3h"], [3.0, np.nan])
    assert isinstance(back.quality, MappingProxyType)  # still read-only

    wave = WaveformFrame("M1", "motor", "vibration", 1.0, 8192.0, np.zeros(16))
    assert pickle.loads(pickle.dumps(wave)).samples.shape == (16,)

    cmd = Command("c1", "P1", "pump", "set_flow", MappingProxyType({"m3h": 250.0}), T0, T0, "r")
    assert pickle.loads(pickle.dumps(cmd)) == cmd

    prop = PropertyState(desired=250.0, desired_version=1, desired_at=T0)
    state = TwinState(
        "P1",
        "pump",
        T0,
        SyncStatus.SYNCHRONIZED,
        MappingProxyType({"flow_m3h": SignalState(3.0, 1.0, Quality.GOOD)}),
        properties={"flow_setpoint": prop},
    )
    again = pickle.loads(pickle.dumps(state))
    assert again == state and isinstance(again.properties, MappingProxyType)

    outcome = CommandOutcome("c1", "P1", CommandStatus.SENT, T0, "on the wire", 2)
    change = DesiredChange("P1", "pump", "flow_setpoint", 250.0, T0, "r1", T0 + timedelta(1))
    assert pickle.loads(pickle.dumps([outcome, change])) == [outcome, change]


def test_frames_pickle_their_arrays_as_one_buffer_and_come_back_whole_and_writable() -> None:
    times = np.array([1.0, 2.0, 3.0])
    packed = TelemetryFrame(
        "P1",
        "pump",
        times,
        MappingProxyType({"flow_m3h": np.array([3.0, np.nan, 5.0]), "rpm": np.ones(3)}),
        units=MappingProxyType({"flow_m3h": "m3/h"}),
        out_of_range=MappingProxyType({"rpm": np.array([False, True, False])}),
        source="",
    )
    other = TelemetryFrame("P1", "pump", times, {"count": np.arange(3)})  # not float64
    empty = TelemetryFrame("P1", "pump", np.zeros(0), {})
    for frame in (packed, other, empty):
        back = pickle.loads(pickle.dumps(frame))
        assert (back.twin_id, back.source, list(back.signals)) == (
            frame.twin_id,
            frame.source,
            list(frame.signals),
        )
        np.testing.assert_array_equal(back.times, frame.times)
        for name, values in frame.signals.items():
            np.testing.assert_array_equal(back.signals[name], values)
            assert back.signals[name].dtype == values.dtype and back.signals[name].flags.writeable
        assert dict(back.units) == dict(frame.units) and dict(back.quality) == dict(frame.quality)
        assert back.out_of_range.keys() == frame.out_of_range.keys()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(packed)).out_of_range["rpm"], [0, 1, 0])
    # Packed as one buffer (the other frame, whose signal is not float64, field by field).
    assert b"_unpack_frame" in pickle.dumps(packed)
    assert b"_unpack_frame" not in pickle.dumps(other)
