"""The MQTT connector against a real mosquitto broker started by the tests.

Decoding and routing are also tested without a broker (pure functions). Everything that
crosses the network runs against mosquitto on a free loopback port with persistence in a
temporary directory (tests/services/mosquitto.py); without mosquitto these tests FAIL and
say how to install it. Every wait is bounded.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main, run_main
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tests.services.mosquitto import Mosquitto, MosquittoMissing
from twinflow.connectors.bindings import FieldMap, MqttBinding, MqttSettings, TlsSettings
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.mqtt import MessageDecoder, MqttCommandSink, MqttPartition, MqttSource
from twinflow.connectors.mqtt.payloads import PayloadDecoder, PayloadError
from twinflow.connectors.mqtt.topics import TopicRouter
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.devices.mqtt import MqttDevices, encode_batch, encode_rows
from twinflow.core.backoff import Backoff
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandStatus, DeadLetter, TelemetryFrame
from twinflow.core.times import utc

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


# ----------------------------------------------------------------------------- helpers


def start_broker(**kwargs: Any) -> Mosquitto:
    try:
        return Mosquitto(**kwargs).start()
    except MosquittoMissing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    b = start_broker()
    yield b
    b.close()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def settings_for(broker: Mosquitto, client_id: str, **kw: Any) -> MqttSettings:
    kw.setdefault("reconnect_min_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.5)
    kw.setdefault("keepalive_s", 10)
    return MqttSettings(host=broker.host, port=broker.port, client_id=client_id, **kw)


def pump_binding(twin: str, base: str, **kw: Any) -> MqttBinding:
    return MqttBinding(
        twin, "pump", f"{base}/{twin}/telemetry", f"{base}/{twin}/cmd", f"{base}/{twin}/resp", **kw
    )


class Publisher:
    """A bare paho client (MQTT v3.1.1) that publishes test payloads at QoS 1."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid("pub"))
        self.client.max_inflight_messages_set(500)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def send(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=qos))

    def close(self) -> None:
        for info in self.infos:
            info.wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()


def open_partition(source: MqttSource, timeout_s: float = 10.0) -> MqttPartition:
    part = source.build_part("in", source.list_parts()[0], None)
    assert part.ready.wait(timeout_s), "the source did not subscribe in time"
    return part


def drain(
    part: MqttPartition,
    done: Callable[[list[Any]], bool],
    timeout_s: float = 15.0,
) -> list[Any]:
    """Call next_batch as Bytewax would (at next_awake) until ``done(items)`` or timeout."""
    items: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while not done(items):
        assert time.monotonic() < deadline, f"timed out; got {len(items)} items"
        batch = part.next_batch()
        items.extend(batch)
        if not batch:
            time.sleep(0.005)  # Bytewax polls an idle source the same way (next_awake)
    return items


def rows(items: Sequence[Any]) -> int:
    return sum(len(i.times) for i in items if isinstance(i, TelemetryFrame))


def times_of(items: Sequence[Any]) -> list[float]:
    return [t for i in items if isinstance(i, TelemetryFrame) for t in i.times.tolist()]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def seq_frame(twin: str, start: int, n: int) -> TelemetryFrame:
    """A pump frame whose times count readings: time T0 + i is reading i."""
    t = T0 + np.arange(start, start + n, dtype=np.float64)
    return TelemetryFrame(twin, "pump", t, {"flow_m3h": np.full(n, 100.0)})


# ----------------------------------------------------------------------------- pure decoding


WT = MqttBinding(
    "wt-1",
    "wind_turbine",
    "p/wt-1/t",
    "p/wt-1/c",
    "p/wt-1/r",
    fields={
        "wind": FieldMap("wind_speed"),
        "power_w": FieldMap("power_kw", scale=0.001),
        "temp_f": FieldMap("gearbox_temp", scale=5 / 9, offset=-32 * 5 / 9),
    },
    time_field="time",
)


def test_reading_sets_map_fields_and_become_one_sorted_frame_per_twin() -> None:
    dec = MessageDecoder([WT, pump_binding("p-1", "p")])
    msgs = [
        ("p/wt-1/t", b'{"time": "2026-01-01T00:00:02Z", "wind": 7.5, "power_w": 700000}'),
        ("p/p-1/telemetry", b'{"ts": 1767225600, "flow_m3h": 120.5}'),
        ("p/wt-1/t", b'{"time": "2026-01-01T01:00:01+01:00", "wind": 7.0, "temp_f": 212}'),
    ]
    wt, pump = dec.decode(msgs, now=T0)
    assert isinstance(wt, TelemetryFrame) and isinstance(pump, TelemetryFrame)
    assert (wt.twin_id, wt.twin_type, wt.source) == ("wt-1", "wind_turbine", "mqtt:p/wt-1/t")
    assert wt.times.tolist() == [T0 + 1, T0 + 2]  # sorted by time
    assert list(wt.signals) == ["wind_speed", "power_kw", "gearbox_temp"]  # catalog order
    assert wt.signals["wind_speed"].tolist() == [7.0, 7.5]
    assert np.isnan(wt.signals["power_kw"][0]) and wt.signals["power_kw"][1] == 700.0
    assert wt.signals["gearbox_temp"][0] == pytest.approx(100.0)
    assert np.isnan(wt.signals["gearbox_temp"][1])
    assert pump.times.tolist() == [T0] and pump.signals["flow_m3h"].tolist() == [120.5]


def test_batch_payloads_and_reading_sets_of_one_twin_merge() -> None:
    dec = MessageDecoder([WT])
    batch = {
        "time": [T0 + 10, "2026-01-01T00:00:11Z", T0 + 12],
        "wind": [5.0, None, 6.0],
        "power_w": [1000, 2000, 3000],
    }
    (frame,) = dec.decode(
        [
            ("p/wt-1/t", json.dumps(batch).encode()),
            ("p/wt-1/t", b'{"time": 1767225605, "wind": 1}'),
        ],
        now=T0,
    )
    assert frame.times.tolist() == [T0 + 5, T0 + 10, T0 + 11, T0 + 12]
    assert frame.signals["wind_speed"].tolist()[0] == 1.0
    assert np.isnan(frame.signals["wind_speed"][2])
    assert frame.signals["power_kw"].tolist()[1:] == [1.0, 2.0, 3.0]


BAD_PAYLOADS = [
    ("not_json", b"{not json", "not JSON"),
    ("not_utf8", b'{"ts": 1, "flow_m3h": "\xff"}', "not UTF-8"),
    ("not_object", b"[1, 2]", "JSON list, expected an object"),
    ("unknown_field", b'{"ts": 1, "flux_gw": 1.21}', "unknown field 'flux_gw'"),
    ("waveform_field", b'{"ts": 1, "vibration": 0.1}', "field 'vibration'"),
    ("string_value", b'{"ts": 1, "flow_m3h": "12"}', "field 'flow_m3h' must be a number"),
    ("bool_value", b'{"ts": 1, "flow_m3h": true}', "field 'flow_m3h' must be a number"),
    ("nan_token", b'{"ts": 1, "flow_m3h": NaN}', "NaN, which is not JSON"),
    ("missing_time", b'{"flow_m3h": 1}', "no time field 'ts'"),
    ("naive_time", b'{"ts": "2026-01-01T00:00:00", "flow_m3h": 1}', "has no time zone"),
    ("bad_time", b'{"ts": "yesterday", "flow_m3h": 1}', "is not ISO-8601"),
    ("time_type", b'{"ts": {"s": 1}, "flow_m3h": 1}', "must be epoch seconds"),
    ("no_signals", b'{"ts": 1}', "no signal field"),
    ("twice", b'{"ts": 1, "flow": 1, "flow_m3h": 2}', "given twice"),
    ("batch_length", b'{"ts": [1, 2], "flow_m3h": [1]}', "array of 2 values"),
    ("batch_scalar", b'{"ts": [1, 2], "flow_m3h": 1}', "array of 2 values"),
    ("batch_string", b'{"ts": [1, 2], "flow_m3h": [1, "x"]}', "numbers or null"),
    ("batch_empty", b'{"ts": [], "flow_m3h": []}', "empty 'ts' array"),
    ("deep_json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("infinite_time", b'{"ts": 1e400, "flow_m3h": 1}', "not a finite number"),
]


@pytest.mark.parametrize(
    ("kind", "payload", "reason"), BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS]
)
def test_every_bad_payload_kind_is_refused_with_a_reason(
    kind: str, payload: bytes, reason: str
) -> None:
    binding = pump_binding("p-1", "p", fields={"flow": FieldMap("flow_m3h")})
    with pytest.raises(PayloadError) as err:
        PayloadDecoder(binding).decode(payload)
    assert reason in str(err.value), (kind, str(err.value))
    (dead,) = MessageDecoder([binding]).decode([("p/p-1/telemetry", payload)], now=T0)
    assert isinstance(dead, DeadLetter)
    assert (dead.stage, dead.source, dead.twin_id) == ("decode", "mqtt:p/p-1/telemetry", "p-1")
    assert reason in dead.reason


def test_oversized_and_unmapped_messages_become_dead_letters() -> None:
    dec = MessageDecoder([pump_binding("p-1", "p")], max_payload_bytes=100)
    big = json.dumps({"ts": 1, "flow_m3h": 1, "pad": "x" * 200}).encode()
    oversized, unmapped = dec.decode([("p/p-1/telemetry", big), ("p/ghost/telemetry", b"{}")], T0)
    assert "exceeds the limit of 100 bytes" in oversized.reason
    assert oversized.twin_id == "p-1" and len(oversized.payload) <= 200
    assert unmapped.twin_id is None and unmapped.source == "mqtt:p/ghost/telemetry"
    assert "belongs to no twin" in unmapped.reason


def test_bindings_are_checked_when_the_source_is_built() -> None:
    s = MqttSettings()
    cases = [
        (MqttBinding("x", "boiler", "t", "c", "r"), "unknown twin type 'boiler'"),
        (pump_binding("p", "a", fields={"f": FieldMap("nope")}), "'nope', which is not a scalar"),
        (pump_binding("p", "a", fields={"f": FieldMap("flow_m3h", scale=0)}), "non-zero"),
        (pump_binding("p", "a", fields={"ts": FieldMap("flow_m3h")}), "is the time field"),
        (MqttBinding("p", "pump", "a/#/b", "c", "r"), "not a valid topic filter"),
        (MqttBinding("p", "pump", "a/x{twin_id}/b", "c", "r"), "one whole level"),
    ]
    for binding, message in cases:
        with pytest.raises(ConfigError) as err:
            MqttSource(s, [binding])
        assert message in str(err.value)
    twins = [MqttBinding(t, "pump", "same/topic", "c", "r") for t in ("a", "b")]
    with pytest.raises(ConfigError, match="same MQTT telemetry_topic"):
        MqttSource(s, twins)


def test_topic_router_shares_wildcard_patterns_and_refuses_ambiguity() -> None:
    shared = [MqttBinding(t, "pump", "plant/{site}/{twin_id}/telemetry", "c", "r") for t in "ab"]
    exact = MqttBinding("c", "pump", "plant/s1/c/telemetry", "c", "r")
    wild1 = MqttBinding("d", "pump", "other/+/d", "c", "r")
    wild2 = MqttBinding("e", "pump", "other/#", "c", "r")
    router = TopicRouter([*shared, exact, wild1, wild2])
    assert router.filters == (
        "plant/+/+/telemetry",
        "plant/s1/c/telemetry",
        "other/+/d",
        "other/#",
    )
    assert router.route("plant/s9/b/telemetry").twin_id == "b"  # type: ignore[union-attr]
    assert router.route("plant/s1/c/telemetry").twin_id == "c"  # type: ignore[union-attr]
    assert router.route("other/x/y").twin_id == "e"  # type: ignore[union-attr]
    assert router.route("other/x/d") is None
    assert "several twins (d, e)" in router.why_unmapped("other/x/d")
    assert "twin 'z' has no MQTT binding" in router.why_unmapped("plant/s1/z/telemetry")


@given(
    scale=st.sampled_from([1.0, 0.001, 2.5, -4.0]),
    offset=st.sampled_from([0.0, -273.15, 10.0]),
    values=st.lists(
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=30
    ),
    batch=st.booleans(),
)
def test_device_encoding_decodes_to_the_same_readings(
    scale: float, offset: float, values: list[float | None], batch: bool
) -> None:
    binding = pump_binding("p-1", "p", fields={"q": FieldMap("flow_m3h", scale, offset)})
    v = np.array([math.nan if x is None else x for x in values])
    times = T0 + np.arange(len(v), dtype=np.float64)
    frame = TelemetryFrame("p-1", "pump", times, {"flow_m3h": v, "suction_bar": np.ones(len(v))})
    payloads = [encode_batch(frame, binding)] if batch else encode_rows(frame, binding)
    (got,) = MessageDecoder([binding]).decode([("p/p-1/telemetry", p) for p in payloads], T0)
    assert got.times.tolist() == times.tolist()
    # A signal with no reading in any row is absent from the messages, hence from the frame.
    flow = got.signals.get("flow_m3h", np.full(len(v), np.nan))
    np.testing.assert_allclose(flow, v, rtol=1e-9, atol=1e-6)
    assert got.signals["suction_bar"].tolist() == [1.0] * len(v)


# ----------------------------------------------------------------------------- real broker


@pytest.mark.services
@pytest.mark.timeout(30)
def test_source_decodes_what_the_broker_delivers_and_dead_letters_the_rest(
    broker: Mosquitto,
) -> None:
    base = uid("t")
    twins = [
        pump_binding("p-1", base),
        pump_binding("p-2", base, fields={"q": FieldMap("flow_m3h", 10.0)}),
    ]
    source = MqttSource(settings_for(broker, uid("src"), max_payload_bytes=2000), twins)
    part = open_partition(source)
    pub = Publisher(broker)
    try:
        pub.send(f"{base}/p-1/telemetry", b'{"ts": 1767225601, "flow_m3h": 1.0}')
        pub.send(f"{base}/p-1/telemetry", b'{"ts": [1767225602, 1767225603], "flow_m3h": [2, 3]}')
        pub.send(f"{base}/p-2/telemetry", b'{"ts": "2026-01-01T00:00:01Z", "q": 4.5}')
        pub.send(f"{base}/p-2/telemetry", b'{"ts": 1, "q": "four"}')
        pub.send(f"{base}/p-2/telemetry", b"\x00" * 3000)
        pub.send(f"{base}/p-9/telemetry", b'{"ts": 1, "flow_m3h": 1}')  # no such twin: not
        # subscribed, so the broker does not even deliver it
        items = drain(
            part, lambda xs: rows(xs) >= 4 and sum(isinstance(x, DeadLetter) for x in xs) >= 2
        )
    finally:
        pub.close()
        part.close()
    frames = [i for i in items if isinstance(i, TelemetryFrame)]
    by_twin: dict[str, list[float]] = {}
    for f in frames:
        by_twin.setdefault(f.twin_id, []).extend(f.signals["flow_m3h"].tolist())
    assert sorted(by_twin["p-1"]) == [1.0, 2.0, 3.0]
    assert by_twin["p-2"] == [45.0]
    dead = {d.reason: d for d in items if isinstance(d, DeadLetter)}
    assert len(dead) == 2 and all(d.twin_id == "p-2" for d in dead.values())
    assert any("must be a number or null" in r for r in dead)
    assert any("3000 bytes exceeds the limit of 2000" in r for r in dead)


@pytest.mark.services
@pytest.mark.timeout(30)
def test_shared_topic_pattern_is_one_subscription(broker: Mosquitto) -> None:
    site = uid("site")
    twins = [
        MqttBinding(t, "pump", site + "/{area}/{twin_id}/telemetry", "c/{twin_id}", "r/{twin_id}")
        for t in ("p-1", "p-2")
    ]
    source = MqttSource(settings_for(broker, uid("src")), twins)
    assert source.decoder.router.filters == (f"{site}/+/+/telemetry",)
    part = open_partition(source)
    pub = Publisher(broker)
    try:
        pub.send(f"{site}/north/p-2/telemetry", b'{"ts": 1767225601, "flow_m3h": 2}')
        pub.send(f"{site}/north/p-7/telemetry", b'{"ts": 1767225601, "flow_m3h": 7}')
        items = drain(part, lambda xs: len(xs) >= 2)
    finally:
        pub.close()
        part.close()
    frame = next(i for i in items if isinstance(i, TelemetryFrame))
    dead = next(i for i in items if isinstance(i, DeadLetter))
    assert frame.twin_id == "p-2"
    assert "twin 'p-7' has no MQTT binding" in dead.reason


def create_session(source: MqttSource) -> None:
    """Connect once so the broker holds the persistent session and its subscriptions."""
    open_partition(source).close()


def run_flow(source: MqttSource, workers: int = 1) -> list[Any]:
    out: list[Any] = []
    flow = Dataflow(uid("mqtt_flow"))
    op.output("out", op.input("in", flow, source), TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:  # one fixed partition: exactly one worker holds the MQTT session
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


@pytest.mark.services
@pytest.mark.timeout(40)
def test_flow_restarted_picks_up_what_the_broker_queued(broker: Mosquitto) -> None:
    base, client_id = uid("t"), uid("flow")
    twins = [pump_binding("p-1", base)]
    settings = settings_for(broker, client_id)
    create_session(MqttSource(settings, twins))
    devices = MqttDevices(Plant(PlantConfig(n_twins=2, duration_s=60, seed=1)), settings, twins)
    assert devices.start()
    try:
        devices.publish(seq_frame("p-1", 0, 300))
        assert devices.flush()
        first = run_flow(MqttSource(settings, twins, max_batch=50, max_messages=200))
        # The flow is down: the broker queues what is published meanwhile.
        devices.publish(seq_frame("p-1", 300, 200))
        assert devices.flush()
        second = run_flow(MqttSource(settings, twins, max_messages=300), workers=2)
    finally:
        devices.stop()
    assert rows(first) == 200 and rows(second) == 300
    got = Counter(times_of(first) + times_of(second))
    assert set(got) == {T0 + i for i in range(500)}
    assert max(got.values()) == 1  # a clean close acknowledges exactly what the flow took
    assert len([i for i in first if isinstance(i, TelemetryFrame)]) < 200  # frames carry batches


@pytest.mark.services
@pytest.mark.timeout(30)
def test_messages_taken_but_not_acknowledged_come_again_after_a_crash(broker: Mosquitto) -> None:
    base, client_id = uid("t"), uid("crash")
    twins = [pump_binding("p-1", base)]
    settings = settings_for(broker, client_id)
    source = MqttSource(settings, twins, max_batch=40)
    part = open_partition(source)
    pub = Publisher(broker)
    for i in range(100):
        pub.send(f"{base}/p-1/telemetry", json.dumps({"ts": T0 + i, "flow_m3h": i}))
    pub.close()
    # One batch only: the source acknowledges a batch when the flow asks for the next one,
    # so every message must have arrived before the single batch is taken.
    deadline = time.monotonic() + 15
    while len(part._buffer) < 100:
        assert time.monotonic() < deadline, f"only {len(part._buffer)} of 100 messages arrived"
        time.sleep(0.01)
    handed = part.next_batch()
    part.abort()  # as if the process died: the 40 handed over were never acknowledged
    fresh = open_partition(MqttSource(settings, twins))
    try:
        again = drain(fresh, lambda xs: rows(xs) >= 100)
    finally:
        fresh.close()
    assert times_of(handed) == [T0 + i for i in range(40)]
    assert sorted(times_of(again)) == [T0 + i for i in range(100)]  # at least once


@pytest.mark.services
@pytest.mark.timeout(60)
def test_broker_restarted_mid_stream_loses_no_reading(tmp_path: Path) -> None:
    own = start_broker(data_dir=tmp_path / "broker")
    base, client_id = uid("t"), uid("restart")
    twins = [pump_binding("p-1", base)]
    settings = settings_for(own, client_id)
    n, chunk = 3000, 50
    devices = MqttDevices(Plant(PlantConfig(n_twins=2, duration_s=60, seed=1)), settings, twins)
    part = open_partition(MqttSource(settings, twins, max_batch=200))
    reconnects = metric("twinflow_mqtt_reconnects_total", client=client_id)
    assert devices.start()
    halfway = threading.Event()

    def publish_all() -> None:  # keeps publishing at QoS 1 while the broker goes away
        for start in range(0, n, chunk):
            devices.publish(seq_frame("p-1", start, chunk))
            if start >= n // 3:
                halfway.set()
            time.sleep(0.002)  # pace the stream so that the restart falls in its middle

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    try:
        items = drain(part, lambda xs: halfway.is_set() and rows(xs) >= n // 4)
        assert len(set(times_of(items))) < n  # mid-stream
        own.restart()
        items += drain(part, lambda xs: len(set(times_of(items + xs))) >= n, timeout_s=40)
        # The rest may have been in the client's buffers already: wait for the reconnect.
        deadline = time.monotonic() + 20
        while metric("twinflow_mqtt_reconnects_total", client=client_id) <= reconnects:
            assert time.monotonic() < deadline, "the source never reconnected"
            part.next_batch()
            time.sleep(0.1)
    finally:
        publisher.join(10)
        devices.stop()
        part.close()
        own.close()
    got = Counter(times_of(items))
    assert set(got) == {T0 + i for i in range(n)}, "a reading was lost"
    duplicates = sum(got.values()) - n
    redelivered = metric("twinflow_mqtt_messages_total", client=client_id, outcome="redelivered")
    print(f"broker restart: {n} readings, {duplicates} duplicates, {redelivered:g} recognised")
    assert metric("twinflow_mqtt_reconnects_total", client=client_id) > reconnects


@pytest.mark.services
@pytest.mark.timeout(30)
def test_broker_away_at_start_then_up(tmp_path: Path) -> None:
    base = uid("plant")
    later = start_broker(data_dir=tmp_path / "broker")
    settings = settings_for(later, uid("away"))
    plant = Plant(PlantConfig(n_twins=3, duration_s=120, seed=3, fault_fraction=0.0))
    twins = [pump_binding("pump-002", base)]
    # The devices' persistent session (their command subscriptions) survives the broker.
    first = MqttDevices(plant, settings, twins)
    assert first.start()
    first.stop()
    later.stop()
    part = MqttSource(settings, twins).build_part("in", "mqtt", None)
    feedback = CommandFeedback()
    patient = Backoff(base_s=0.05, cap_s=0.5, max_attempts=1000)  # retries until the broker is up
    sink = MqttCommandSink(settings, twins, feedback=feedback, backoff=patient, connect_wait_s=0.05)
    out = sink.build("out", 0, 1)
    cmd = make_command("pump-002", "pump", "set_flow", {"m3h": 150.0})
    devices = MqttDevices(plant, settings, twins)
    try:
        for _ in range(5):
            assert part.next_batch() == []  # no broker: nothing, and no error
        out.write_batch([cmd])  # retried by the sink until the broker is back
        assert not part.connected
        time.sleep(0.5)
        later.start()
        assert devices.start()
        done = feedback.wait_for(cmd.command_id, {CommandStatus.SUCCEEDED}, 15)
        assert done is not None, feedback.history(cmd.command_id)
        [sent] = [o for o in feedback.history(cmd.command_id) if o.status is CommandStatus.SENT]
        assert sent.attempt > 1  # the attempts while the broker was away did not count as sent
        assert part.ready.wait(10)
        devices.publish(seq_frame("pump-002", 0, 5))
        assert rows(drain(part, lambda xs: rows(xs) >= 5)) == 5
    finally:
        devices.stop()
        out.close()
        part.close()
        later.close()


def make_command(twin: str, twin_type: str, name: str, params: dict[str, float]) -> Command:
    issued = utc(T0)
    return Command(
        command_id=Command.make_id(twin, name, issued),
        twin_id=twin,
        twin_type=twin_type,
        name=name,
        params=params,
        issued_at=issued,
        expires_at=datetime.now(UTC) + timedelta(minutes=10),  # ahead in wall time
        reason="test",
        status=CommandStatus.QUEUED,
    )


@pytest.mark.services
@pytest.mark.timeout(60)
def test_command_round_trip_changes_what_the_simulator_produces(broker: Mosquitto) -> None:
    base, client_id = uid("plant"), uid("loop")
    plant = Plant(
        PlantConfig(
            n_twins=3,
            duration_s=600,
            seed=5,
            fault_fraction=0.0,
            bad_message_rate=0.0,
            raw_message_rate=0.0,
        )
    )
    twins = [
        MqttBinding(t, ty, f"{base}/{t}/telemetry", f"{base}/{t}/cmd", f"{base}/{t}/resp")
        for t, ty in plant.twins
    ]
    settings = settings_for(broker, client_id)
    devices = MqttDevices(plant, settings, twins)
    assert devices.start()
    feedback = CommandFeedback()
    sink = MqttCommandSink(settings, twins, feedback=feedback)
    part = plant.partition(0, 1)
    derate = make_command("motor-003", "motor", "derate", {"fraction": 0.5})
    chunks = [[f for f in part.next_chunk() if isinstance(f, TelemetryFrame)]]
    total = 2 * sum(len(f.times) for f in chunks[0])

    def decide(item: Any) -> list[Command]:  # the flow's "policy": derate the motor once
        motor = isinstance(item, TelemetryFrame) and item.twin_id == "motor-003"
        if motor and not sent.is_set():
            sent.set()
            return [derate]
        return []

    sent = threading.Event()

    published: list[int] = []

    def drive() -> None:  # the plant, acting as real devices
        published.extend(devices.publish(frame) for frame in chunks[0])
        ended = {CommandStatus.SUCCEEDED, CommandStatus.FAILED}
        if feedback.wait_for(derate.command_id, ended, 20) is None:
            return  # the flow then ends on its idle timeout, and the asserts say why
        chunks.append([f for f in part.next_chunk() if isinstance(f, TelemetryFrame)])
        published.extend(devices.publish(frame) for frame in chunks[1])

    create_session(MqttSource(settings, twins))
    out: list[Any] = []
    flow = Dataflow("mqtt_command_loop")
    source = MqttSource(settings, twins, max_messages=total, idle_timeout_s=10)
    items = op.input("in", flow, source)
    op.output("frames", items, TestingSink(out))
    op.output("actuators", op.flat_map("decide", items, decide), sink)
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        run_main(flow)
    finally:
        driver.join(30)
        devices.stop()
    assert sum(published) == total, "every row of both chunks went out as one message"
    history = feedback.history(derate.command_id)
    assert [o.status for o in history] == [
        CommandStatus.SENT,
        CommandStatus.ACKNOWLEDGED,
        CommandStatus.SUCCEEDED,
    ]
    assert {o.twin_id for o in history} == {"motor-003"}
    assert "derate(fraction=0.5) accepted" in history[-1].detail
    (record,) = [r for r in plant.command_log if r.command_id == derate.command_id]
    assert record.accepted
    load = {}
    for frame in (i for i in out if isinstance(i, TelemetryFrame) and i.twin_id == "motor-003"):
        for t, v in zip(frame.times.tolist(), frame.signals["load_pct"].tolist(), strict=True):
            load[t] = v
    first = [load[t] for f in chunks[0] if f.twin_id == "motor-003" for t in f.times.tolist()]
    second = [load[t] for f in chunks[1] if f.twin_id == "motor-003" for t in f.times.tolist()]
    assert np.mean(second[-20:]) < 55.0 < np.mean(first) - 15.0  # load limited to 50 %


@pytest.mark.services
@pytest.mark.timeout(30)
def test_sink_and_devices_refuse_what_they_must(broker: Mosquitto) -> None:
    base = uid("plant")
    plant = Plant(PlantConfig(n_twins=3, duration_s=120, seed=5, fault_fraction=0.0))
    twins = [
        MqttBinding(t, ty, f"{base}/{t}/telemetry", f"{base}/{t}/cmd", f"{base}/{t}/resp")
        for t, ty in plant.twins
    ]
    settings = settings_for(broker, uid("sink"))
    devices = MqttDevices(plant, settings, twins)
    assert devices.start()
    feedback = CommandFeedback()
    sink = MqttCommandSink(settings, twins, feedback=feedback)
    out = sink.build("out", 0, 1)
    unknown_before = metric("twinflow_mqtt_commands_total", outcome="unknown_twin")
    invalid_before = metric("twinflow_mqtt_command_responses_total", status="invalid")
    bad_range = make_command("motor-003", "motor", "derate", {"fraction": 5.0})
    bad_name = make_command("pump-002", "pump", "explode", {})
    ghost = make_command("ghost-9", "pump", "set_flow", {"m3h": 100.0})
    done = make_command("pump-002", "pump", "set_flow", {"m3h": 100.0})
    try:
        out.write_batch(
            [
                bad_range,
                bad_name,
                ghost,
                Command(**{**_fields(done), "status": CommandStatus.SUCCEEDED}),
            ]
        )
        # The sink refuses what it can judge before anything is published.
        rejected = {CommandStatus.REJECTED}
        for cmd in (bad_range, bad_name, ghost):
            assert feedback.wait_for(cmd.command_id, rejected, 0) is not None, cmd.name
        assert "outside [0.2, 1]" in feedback.history(bad_range.command_id)[0].detail
        assert "has no command 'explode'" in feedback.history(bad_name.command_id)[0].detail
        assert "no MQTT binding" in feedback.history(ghost.command_id)[0].detail
        assert feedback.history(done.command_id) == []  # not queued: not sent
        # A malformed command straight to a device is answered "failed" too; the sink counts
        # the answer without a command id as invalid.
        pub = Publisher(broker)
        pub.send(f"{base}/pump-002/cmd", b'{"command_id": "x1", "name": 3}')
        pub.send(f"{base}/pump-002/resp", b"not json")
        pub.close()
        response = feedback.wait_for("x1", {CommandStatus.FAILED}, 10)
        assert response is not None and response.twin_id == "pump-002"
        assert "'params' must be an object of numbers" in response.detail
    finally:
        out.close()
        devices.stop()
    assert metric("twinflow_mqtt_commands_total", outcome="unknown_twin") == unknown_before + 1
    assert metric("twinflow_mqtt_command_responses_total", status="invalid") >= invalid_before + 1
    assert not plant.command_log or all(not r.accepted for r in plant.command_log)


def _fields(cmd: Command) -> dict[str, Any]:
    return {k: getattr(cmd, k) for k in Command.__slots__}  # type: ignore[attr-defined]


def test_devices_decide_on_commands_once_and_check_them() -> None:
    plant = Plant(PlantConfig(n_twins=3, duration_s=3600, seed=5, fault_fraction=0.0))
    twins = [
        MqttBinding(t, ty, f"d/{t}/telemetry", f"d/{t}/cmd", f"d/{t}/resp") for t, ty in plant.twins
    ]
    devices = MqttDevices(plant, MqttSettings(), twins, check_expiry=True)  # never started
    motor, pump = twins[2], twins[1]
    derate = make_command("motor-003", "motor", "derate", {"fraction": 0.7})
    payload = json.dumps(derate.to_json()).encode()
    assert devices.handle_command(motor, payload)[1] == "succeeded"
    assert devices.handle_command(motor, payload)[1] == "succeeded"  # a redelivery: same answer
    assert len([r for r in plant.command_log if r.command_id == derate.command_id]) == 0
    plant.partition(0, 1).next_chunk()  # the plant applies what it accepted, once
    assert [r.accepted for r in plant.command_log] == [True]
    _, status, detail = devices.handle_command(pump, payload)
    assert status == "failed" and "arrived on the command topic of 'pump-002'" in detail
    late = Command(**{**_fields(derate), "command_id": "late", "expires_at": utc(T0 - 1)})
    _, status, detail = devices.handle_command(motor, json.dumps(late.to_json()).encode())
    assert status == "failed" and "expired" in detail
    for bad, why in [
        (b"nope", "not JSON"),
        (b'{"schema": "twinflow.alert"}', "is not 'twinflow.command'"),
        (json.dumps({**derate.to_json(), "version": 3}).encode(), "version 3 is not supported"),
        (
            json.dumps({**derate.to_json(), "issued_at": "2026-01-01T00:00:00"}).encode(),
            "no time zone",
        ),
        (
            json.dumps({**derate.to_json(), "status": "succeeded", "command_id": "s"}).encode(),
            "not a request",
        ),
    ]:
        _, status, detail = devices.handle_command(motor, bad)
        assert status == "failed" and why in detail, detail


# ----------------------------------------------------------------------------- TLS and auth


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (EC keys: fast to make)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("twinflow test CA"))
        .issuer_name(name("twinflow test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.mark.services
@pytest.mark.timeout(30)
def test_tls_with_username_and_password(tmp_path: Path) -> None:
    import subprocess

    ca, cert, key = _tls_files(tmp_path)
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwords), "twin", "s3cret"], check=True, timeout=10
    )
    own = start_broker(
        data_dir=tmp_path / "broker",
        allow_anonymous=False,
        extra_config=(
            f"password_file {passwords}",
            f"cafile {ca}",
            f"certfile {cert}",
            f"keyfile {key}",
        ),
    )
    base = uid("t")
    twins = [pump_binding("p-1", base)]
    tls = TlsSettings(ca_file=str(ca))
    good = settings_for(own, uid("tls"), tls=tls, username="twin", password="s3cret")
    wrong = settings_for(own, uid("tls"), tls=tls, username="twin", password="guess")
    refused = MqttSource(wrong, twins).build_part("in", "mqtt", None)
    try:
        part = open_partition(MqttSource(good, twins))
        devices = MqttDevices(Plant(PlantConfig(n_twins=2, duration_s=60, seed=1)), good, twins)
        assert devices.start()
        devices.publish(seq_frame("p-1", 0, 10))
        assert rows(drain(part, lambda xs: rows(xs) >= 10)) == 10
        devices.stop()
        part.close()
        assert refused.next_batch() == [] and not refused.connected  # refused, not crashed
    finally:
        refused.close()
        own.close()


def test_zz_no_mqtt_client_thread_is_left_running() -> None:
    left = [t.name for t in threading.enumerate() if t.name.startswith("paho-mqtt-client")]
    assert not left
