"""The Kafka connector against a real Kafka-protocol broker (KAFKA_BOOTSTRAP, else Tansu).

Telemetry produced by a plain confluent-kafka Producer flows through the source in Bytewax
runs; what the sinks write is read back by an independent Consumer and checked against the
JSON Schemas in ``operators/schemas``. No mocks: delivery failures come from a port nothing
listens on, consumer errors from confluent-kafka's own Message objects.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import Consumer as KafkaConsumer
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema import ValidationError as SchemaError
from prometheus_client import REGISTRY

from tests.services.kafka import (
    KafkaBroker,
    KafkaUnavailable,
    create_topic,
    free_port,
    running_kafka,
    unique_topic,
)
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka import (
    KafkaConnectorError,
    KafkaJsonSink,
    alert_sink,
    command_sink,
    kafka_command_request_source,
    kafka_telemetry_source,
    parse_command_request,
    producer_config,
    rollup_sink,
    twin_state_json,
    twin_state_sink,
)
from twinflow.connectors.kafka.command_requests import command_id_for
from twinflow.connectors.simulator.types import PUMP
from twinflow.core.errors import ConfigError
from twinflow.core.records import (
    Alert,
    AlertState,
    AssetRollup,
    Command,
    CommandStatus,
    DeadLetter,
    DesiredChange,
    PropertyState,
    Quality,
    RawMessage,
    RulEstimate,
    Severity,
    SignalState,
    SyncStatus,
    TelemetryFrame,
    TwinState,
)
from twinflow.operators.command_book import CommandBook
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

SCHEMAS = Path(__file__).resolve().parents[2] / "operators" / "schemas"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH0 = T0.timestamp()


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    """The broker's ``host:port``; the tests fail (never skip) when there is none."""
    yield from running_kafka()


def settings(bootstrap: str, **changes: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, **changes)


def run(source: Source, sink: Sink | None = None) -> list[Any]:
    """Run input -> output once; return what reached the sink (a TestingSink by default)."""
    out: list[Any] = []
    flow = Dataflow("kafka-test")
    op.output("out", op.input("in", flow, source), sink or TestingSink(out))
    run_main(flow)
    return out


def write(sink: Sink, items: list[tuple[str, Any]]) -> None:
    run(TestingSource(items, batch_size=3), sink)


def produce(bootstrap: str, topic: str, values: list[bytes | None], **kw: Any) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4_000_000})
    for i, value in enumerate(values):
        producer.produce(topic, value, key=f"k{i}".encode(), **kw)
    assert producer.flush(10) == 0


def read_back(bootstrap: str, topic: str, timeout_s: float = 15.0) -> list[Message]:
    """Every message of ``topic``, read by an independent consumer up to each partition's end."""
    consumer = KafkaConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_topic("reader"),
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Message] = []
    ended: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(ended) < len(partitions):
            assert time.monotonic() < deadline, f"topic {topic} not read to its end in time"
            for m in consumer.consume(500, 0.2):
                if m.error() is None:
                    out.append(m)
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(m.partition())
                else:
                    raise AssertionError(m.error())
    finally:
        consumer.close()
    return out


FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _utc_date_time(value: object) -> bool:
    """RFC 3339 times as twinflow writes them (jsonschema checks none without extra deps)."""
    if not isinstance(value, str):
        return True
    if not value.endswith("Z") or datetime.fromisoformat(value).tzinfo is None:
        raise ValueError(f"{value!r} is not a UTC date-time ending in Z")
    return True


def schema(name: str) -> Draft202012Validator:
    doc = json.loads((SCHEMAS / name).read_text())
    return Draft202012Validator(doc, format_checker=FORMATS)


def delivery_errors(topic: str) -> float:
    value = REGISTRY.get_sample_value("twinflow_kafka_delivery_errors_total", {"topic": topic})
    return value or 0.0


# ------------------------------------------------------------------------------ telemetry in


def batch_payload(twin: str, t0: float, n: int = 5) -> bytes:
    times = [t0 + i for i in range(n)]
    return json.dumps(
        {
            "twin_id": twin,
            "twin_type": "pump",
            "times": times,
            "signals": {"flow_m3h": [250.0] * n, "suction_bar": [1.0] * (n - 1) + [None]},
        }
    ).encode()


def single_payload(twin: str, t: float) -> bytes:
    when = datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"twin_id": twin, "twin_type": "pump", "time": when, "values": {"flow_m3h": 200.0}}
    ).encode()


BAD_PAYLOADS: dict[bytes | None, str] = {
    b"not json at all": "payload is not JSON",
    b'{"twin_id": "P1", "x": "\xff"}': "payload is not UTF-8",
    b"[1, 2, 3]": "payload is an array",
    b'{"twin_id": "P1", "twin_type": "pump", "times": [1]}': "missing field 'signals'",
    None: "tombstone",
    b'{"twin_id": "P1", "pad": "' + b"x" * 1_100_000 + b'"}': "exceeds the 1048576-byte limit",
}


@pytest.mark.services
@pytest.mark.timeout(30)
def test_telemetry_payloads_become_frames_and_bad_ones_dead_letters(bootstrap: str) -> None:
    topic = create_topic(bootstrap, unique_topic("telemetry"), partitions=2)
    now = T0.timestamp()
    good = [batch_payload(f"P{i % 3}", now - 100 + i) for i in range(12)]
    good += [single_payload("P1", now - 50 + i) for i in range(4)]
    produce(bootstrap, topic, [*good, *BAD_PAYLOADS])

    source = kafka_telemetry_source(settings(bootstrap, telemetry_topics=(topic,)), tail=False)
    raw = run(source)
    validator = Validator(twins={"P0": "pump", "P1": "pump", "P2": "pump"})
    items = [x for item in raw for x in check_item(item, validator, now)]

    frames = [x for x in items if isinstance(x, TelemetryFrame)]
    dead = [x for x in items if isinstance(x, DeadLetter)]
    assert all(isinstance(x, RawMessage | DeadLetter) for x in raw)
    assert len(frames) == 16
    assert sum(f.readings for f in frames) == 12 * 10 + 4
    assert {f.source for f in frames} == {f"kafka:{topic}"}
    batches = [f for f in frames if len(f.times) == 5]
    assert len(batches) == 12 and all(math.isnan(f.signals["suction_bar"][-1]) for f in batches)
    assert len(dead) == len(BAD_PAYLOADS)
    for expected in BAD_PAYLOADS.values():
        assert sum(expected in d.reason for d in dead) == 1, (expected, [d.reason for d in dead])
    assert {d.source for d in dead} == {f"kafka:{topic}"}
    assert {d.stage for d in dead} == {"decode"}


@pytest.mark.services
@pytest.mark.timeout(30)
def test_recovery_resumes_after_the_last_snapshot(bootstrap: str, tmp_path: Path) -> None:
    """A second run with the same recovery store reads only what was produced since."""
    topic = create_topic(bootstrap, unique_topic("resume"), partitions=2)
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    s = settings(bootstrap, telemetry_topics=(topic,))

    def run_once() -> list[bytes]:
        out: list[Any] = []
        flow = Dataflow("kafka-resume")
        op.output(
            "out", op.input("in", flow, kafka_telemetry_source(s, tail=False)), TestingSink(out)
        )
        run_main(flow, recovery_config=recovery)
        return sorted(m.payload for m in out)

    produce(bootstrap, topic, [b"a%d" % i for i in range(10)])
    assert run_once() == sorted(b"a%d" % i for i in range(10))
    produce(bootstrap, topic, [b"b%d" % i for i in range(4)])
    assert run_once() == sorted(b"b%d" % i for i in range(4))
    assert run_once() == []


@pytest.mark.services
def test_consumer_error_events_become_dead_letters_and_reading_goes_on(bootstrap: str) -> None:
    """An error event in a fetched batch (here: an ACL refusal) is a dead letter, not a crash,
    and it does not move the resume offset; the batch's messages still flow."""
    topic = create_topic(bootstrap, unique_topic("errors"))
    source = kafka_telemetry_source(settings(bootstrap, telemetry_topics=(topic,)))
    part = source.build_part("in", f"0-{topic}", 7)
    try:
        refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
        batch = [
            Message(topic=topic, partition=0, offset=7, value=b"{}"),
            Message(topic=topic, partition=0, offset=8, error=refused),
        ]
        items = part.process(batch, T0.timestamp())
        assert part.snapshot() == 8
    finally:
        part.close()
    dead = [x for x in items if isinstance(x, DeadLetter)]
    assert [type(x) for x in items].count(RawMessage) == 1
    assert len(dead) == 1
    assert "Topic authorization failed" in dead[0].reason
    assert dead[0].source == f"kafka:{topic}"
    assert REGISTRY.get_sample_value("twinflow_kafka_consumer_errors_total", {"topic": topic}) == 1


@pytest.mark.services
@pytest.mark.timeout(30)
def test_fatal_consumer_error_stops_the_source(bootstrap: str) -> None:
    topic = create_topic(bootstrap, unique_topic("fatal"))
    part = kafka_telemetry_source(settings(bootstrap, telemetry_topics=(topic,))).build_part(
        "in", f"0-{topic}", None
    )
    fatal = KafkaError(KafkaError._FATAL, "fenced", fatal=True)
    try:
        with pytest.raises(KafkaConnectorError, match="fatal Kafka error reading topic"):
            part.process([Message(topic=topic, partition=0, offset=0, error=fatal)], 0.0)
    finally:
        part.close()


@pytest.mark.services
@pytest.mark.timeout(40)
def test_source_survives_the_broker_going_away(caplog: pytest.LogCaptureFixture) -> None:
    """While the broker is down the source returns nothing and does not raise; once it is back
    the same partition reads on. Tansu keeps topics in memory, so the new log starts empty:
    the source sees that and reads it from its beginning, saying so."""

    def drain(part: Any, want: int, seconds: float) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + seconds
        while len(got) < want and time.monotonic() < deadline:
            got += part.next_batch()
            time.sleep(0.01)
        return got

    broker = KafkaBroker(local=True)
    try:
        broker.start()
    except KafkaUnavailable as exc:
        pytest.fail(f"this test crashes a broker of its own, so it needs Tansu: {exc}")
    try:
        topic = create_topic(broker.bootstrap, "away")
        produce(broker.bootstrap, topic, [b"a0", b"a1"])
        source = kafka_telemetry_source(settings(broker.bootstrap, telemetry_topics=(topic,)))
        part = source.build_part("in", f"0-{topic}", None)
        assert [m.payload for m in drain(part, 2, 10)] == [b"a0", b"a1"]
        broker.crash()
        assert drain(part, 1, 1.5) == []
        broker.restart()
        create_topic(broker.bootstrap, topic)
        produce(broker.bootstrap, topic, [b"b0", b"b1", b"b2", b"b3"], partition=0)
        # b2 and b3 may be read once at the old position before the new log is noticed
        want = [b"b0", b"b1", b"b2", b"b3"]
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while got[-4:] != want and time.monotonic() < deadline:
            got += [m.payload for m in part.next_batch()]
            time.sleep(0.01)
        assert got[-4:] == want, got
        assert "the broker lost its data or the topic was recreated" in caplog.text
        part.close()
    finally:
        broker.stop()


# ------------------------------------------------------------------------------ JSON out


def alert(twin: str, rule: str, minute: int, state: AlertState = AlertState.RAISED) -> Alert:
    raised = T0 + timedelta(minutes=minute)
    return Alert(
        alert_id=Alert.make_id(twin, rule, raised),
        twin_id=twin,
        twin_type="pump",
        rule=rule,
        state=state,
        severity=Severity.WARNING,
        time=raised + timedelta(minutes=5 if state is AlertState.CLEARED else 0),
        raised_at=raised,
        message=f"{rule} on {twin} — ü",
        diagnosis="impeller_wear" if rule == "underperformance" else None,
        evidence={"flow_m3h.mean": 180.5, "efficiency": float("nan")},
    )


def alerts() -> list[tuple[str, Alert]]:
    out = []
    for i in range(12):
        twin = f"P{i % 4}"
        out.append((twin, alert(twin, "underperformance", i)))
        out.append((twin, alert(twin, "underperformance", i, AlertState.CLEARED)))
    return out


def command(twin: str, minute: int) -> Command:
    issued = T0 + timedelta(minutes=minute)
    return Command(
        command_id=Command.make_id(twin, "derate", issued),
        twin_id=twin,
        twin_type="pump",
        name="derate",
        params={"fraction": 0.7},
        issued_at=issued,
        expires_at=issued + timedelta(minutes=10),
        reason=Alert.make_id(twin, "overheating", issued),
        status=CommandStatus.ISSUED,
    )


def twin_state(twin: str, minute: int) -> TwinState:
    t = T0 + timedelta(minutes=minute)
    return TwinState(
        twin_id=twin,
        twin_type="pump",
        time=t,
        status=SyncStatus.STALE if minute % 2 else SyncStatus.SYNCHRONIZED,
        signals={
            "flow_m3h": SignalState(251.5, t.timestamp(), Quality.GOOD),
            "suction_bar": SignalState(float("nan"), t.timestamp() - 30, Quality.BAD, True),
        },
        readings=100 * minute,
        dead_letters=minute,
        properties={
            "flow_setpoint": PropertyState(
                desired=260.0 + minute,
                desired_version=minute,
                desired_at=t - timedelta(seconds=5),
                reported=float("nan") if minute % 3 == 0 else 255.0,
                reported_version=minute // 2,
                reported_at=None if minute % 3 == 0 else t,
                in_sync=False,
            )
        },
    )


@pytest.mark.services
@pytest.mark.timeout(30)
def test_alerts_are_read_back_by_an_independent_consumer(bootstrap: str) -> None:
    topic = create_topic(bootstrap, unique_topic("alerts"), partitions=3)
    items = alerts()
    write(alert_sink(settings(bootstrap, alerts_topic=topic)), items)

    msgs = read_back(bootstrap, topic)
    validator = schema("alert.v1.json")
    docs = []
    for m in msgs:
        doc = json.loads(m.value())
        validator.validate(doc)
        assert m.key().decode() == doc["twin_id"]
        assert dict(m.headers()) == {"schema": b"twinflow.alert", "version": b"1"}
        docs.append(doc)
    assert sorted(json.dumps(d, sort_keys=True) for d in docs) == sorted(
        json.dumps(a.to_json(), sort_keys=True) for _, a in items
    )
    # One twin, one partition, written in order.
    for twin in {t for t, _ in items}:
        assert len({m.partition() for m in msgs if m.key() == twin.encode()}) == 1
        mine = [json.loads(m.value()) for m in msgs if m.key() == twin.encode()]
        assert mine == [a.to_json() for t, a in items if t == twin]
    assert docs[0]["evidence"]["efficiency"] is None and "ü" in docs[0]["message"]


@pytest.mark.services
@pytest.mark.timeout(30)
def test_replayed_alerts_keep_their_ids(bootstrap: str) -> None:
    """A replay (as after recovery) writes the same alerts again with the same ids."""
    topic = create_topic(bootstrap, unique_topic("replay"))
    items = alerts()
    sink = alert_sink(settings(bootstrap, alerts_topic=topic))
    write(sink, items)
    write(sink, items)
    docs = [json.loads(m.value()) for m in read_back(bootstrap, topic)]
    assert len(docs) == 2 * len(items)
    first, second = docs[: len(items)], docs[len(items) :]
    assert first == second
    assert len({(d["alert_id"], d["state"]) for d in docs}) == len(items)


@pytest.mark.services
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("make_sink", "field", "schema_file", "make_item", "to_json"),
    [
        (command_sink, "commands_topic", "command.v2.json", command, Command.to_json),
        (twin_state_sink, "twin_state_topic", "twin_state.v3.json", twin_state, twin_state_json),
    ],
    ids=["commands", "twin_states"],
)
def test_commands_and_twin_states_are_read_back(
    bootstrap: str,
    make_sink: Callable[[KafkaSettings], Sink],
    field: str,
    schema_file: str,
    make_item: Callable[[str, int], Any],
    to_json: Callable[[Any], dict[str, Any]],
) -> None:
    topic = create_topic(bootstrap, unique_topic(field), partitions=2)
    items = [(f"P{i % 3}", make_item(f"P{i % 3}", i)) for i in range(9)]
    write(make_sink(settings(bootstrap, **{field: topic})), items)
    msgs = read_back(bootstrap, topic)
    validator = schema(schema_file)
    assert len(msgs) == len(items)
    for m in msgs:
        doc = json.loads(m.value())
        validator.validate(doc)
        assert m.key().decode() == doc["twin_id"]
    for twin in {t for t, _ in items}:
        mine = [json.loads(m.value()) for m in msgs if m.key() == twin.encode()]
        assert mine == [to_json(x) for t, x in items if t == twin]


def asset_rollup(asset: str, minute: int) -> AssetRollup:
    """A roll-up of ``asset``: no health estimate for the first minutes, info never counted."""
    warning, critical = minute % 3, minute // 4
    return AssetRollup(
        asset_id=asset,
        asset_type="site" if asset == "site1" else "pump_skid",
        time=T0 + timedelta(minutes=minute),
        twins_total=6,
        twins_in_alarm=warning + critical,
        in_alarm_by_severity={"warning": warning, "critical": critical},
        worst_health=None if minute < 2 else round(1.0 - minute / 10, 2),
        worst_twin=None if minute < 2 else f"P{minute % 3}",
    )


@pytest.mark.services
@pytest.mark.timeout(30)
def test_rollups_are_read_back_keyed_by_asset(bootstrap: str) -> None:
    with pytest.raises(ConfigError, match=r"kafka.rollups_topic is not set"):
        rollup_sink(settings(bootstrap))  # off unless a topic is named
    topic = create_topic(bootstrap, unique_topic("rollups"), partitions=3)
    assets = ("site1", "skid-1", "skid-2")
    items = [(a, asset_rollup(a, minute)) for minute in range(8) for a in assets]
    write(rollup_sink(settings(bootstrap, rollups_topic=topic)), items)

    msgs = read_back(bootstrap, topic)
    validator = schema("asset_rollup.v1.json")
    assert len(msgs) == len(items)
    for m in msgs:
        doc = json.loads(m.value())
        validator.validate(doc)
        assert m.key().decode() == doc["asset_id"]
        assert dict(m.headers()) == {"schema": b"twinflow.asset_rollup", "version": b"1"}
        assert sum(doc["in_alarm_by_severity"].values()) == doc["twins_in_alarm"]
    for asset in assets:  # one asset, one partition, in the order written
        assert len({m.partition() for m in msgs if m.key() == asset.encode()}) == 1
        mine = [json.loads(m.value()) for m in msgs if m.key() == asset.encode()]
        assert mine == [r.to_json() for a, r in items if a == asset]
    first = next(json.loads(m.value()) for m in msgs if m.key() == b"site1")
    assert first["worst_health"] is None and first["in_alarm_by_severity"]["info"] == 0


def test_twin_state_json_maps_nan_to_null_and_names_quality() -> None:
    doc = twin_state_json(twin_state("P1", 3))
    schema("twin_state.v3.json").validate(doc)
    assert doc["signals"]["suction_bar"] == {
        "value": None,
        "time": "2026-01-01T00:02:30Z",
        "quality": "bad",
        "stale": True,
    }
    assert (doc["status"], doc["readings"], doc["dead_letters"]) == ("stale", 300, 3)
    assert doc["properties"]["flow_setpoint"] == {
        "desired": 263.0,
        "desired_version": 3,
        "desired_at": "2026-01-01T00:02:55Z",
        "reported": None,
        "reported_version": 1,
        "reported_at": None,
        "in_sync": False,
    }


def test_twin_state_v3_is_v2_plus_health_and_v2_is_v1_plus_properties() -> None:
    """Every earlier field keeps its meaning: without ``health`` and with version 2, a version
    3 document is a valid version 2 document; without ``properties`` too, a version 1."""
    doc = twin_state_json(twin_state("P1", 4))
    assert (doc["schema"], doc["version"], doc["health"]) == ("twinflow.twin_state", 3, None)
    v2 = {k: v for k, v in doc.items() if k != "health"} | {"version": 2}
    schema("twin_state.v2.json").validate(v2)
    v1 = {k: v for k, v in v2.items() if k != "properties"} | {"version": 1}
    schema("twin_state.v1.json").validate(v1)
    with pytest.raises(SchemaError, match="health"):
        schema("twin_state.v3.json").validate(v2 | {"version": 3})
    with pytest.raises(SchemaError, match="properties"):
        schema("twin_state.v2.json").validate(v1 | {"version": 2})
    empty = twin_state_json(replace(twin_state("P1", 4), properties={}))
    schema("twin_state.v3.json").validate(empty)
    assert empty["properties"] == {}


def test_twin_state_v3_carries_the_rul_with_its_interval() -> None:
    rul = RulEstimate("bearing_ratio", 0.42, 31.5, 20.25, float("inf"))
    doc = twin_state_json(replace(twin_state("P1", 4), rul=rul))
    schema("twin_state.v3.json").validate(doc)
    assert doc["health"] == {
        "indicator": "bearing_ratio",
        "health": 0.42,
        "hours": 31.5,
        "low_hours": 20.25,
        "high_hours": None,
    }
    doc["health"]["hours"] = "soon"
    with pytest.raises(SchemaError):
        schema("twin_state.v3.json").validate(doc)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("desired_version", -1),
        ("in_sync", None),
        ("reported", "255"),
        ("desired_at", "yesterday"),
        ("extra", 1),
    ],
)
def test_twin_state_schema_refuses_malformed_properties(field: str, value: Any) -> None:
    doc = twin_state_json(twin_state("P1", 4))
    doc["properties"]["flow_setpoint"][field] = value
    with pytest.raises(SchemaError):
        schema("twin_state.v3.json").validate(doc)


def output_metric(name: str, topic: str) -> float:
    value = REGISTRY.get_sample_value(name, {"output": f"kafka:{topic}"})
    return value or 0.0


@pytest.mark.timeout(30)
def test_undeliverable_messages_are_held_never_raised_nor_waited_for() -> None:
    """Nothing listens on the port and messages time out (``message.timeout.ms`` is set here):
    each failure is counted, a new producer sends them again, the output is marked down, and
    each snapshot returns them as the partition's state at once instead of waiting or raising;
    writes go on."""
    bootstrap = f"127.0.0.1:{free_port()}"
    topic = unique_topic("nowhere")
    s = settings(bootstrap, extra={"message.timeout.ms": "300"})
    sink = KafkaJsonSink(s, topic, Alert.to_json, down_after_s=0.2, stall_s=0.2, close_wait_s=0.2)
    part = sink.build_part("alerts_out", f"{topic}-0", None)
    items = [a for _, a in alerts()[:3]]
    part.write_batch(items[:2])
    deadline = time.monotonic() + 15
    while delivery_errors(topic) < 2 or output_metric("twinflow_output_up", topic) != 0:
        assert time.monotonic() < deadline, "the failures were not reported"
        state = part.snapshot()
        time.sleep(0.05)
    state = part.snapshot()
    assert state is not None
    assert [json.loads(value) for _key, value, _headers in state] == [
        a.to_json() for a in items[:2]
    ]
    assert output_metric("twinflow_output_backlog", topic) == 2
    assert output_metric("twinflow_output_retries_total", topic) >= 1
    part.write_batch(items[2:])  # the flow goes on while the output is down
    assert len(part.snapshot() or []) == 3
    part.close()  # logs what stays unsent; raising here would abort a flow being torn down


@pytest.mark.timeout(30)
def test_an_output_that_cannot_deliver_does_not_stop_a_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = unique_topic("nowhere")
    s = settings(f"127.0.0.1:{free_port()}")
    write(KafkaJsonSink(s, topic, Alert.to_json, close_wait_s=0.2), alerts()[:3])
    assert f"kafka topic '{topic}': closing with 3 message(s) unacknowledged" in caplog.text


# ------------------------------------------------------------------------------ settings


def test_extra_reaches_librdkafka() -> None:
    """SASL/TLS keys pass through: a CA file that does not exist is librdkafka's error."""
    s = settings(
        "127.0.0.1:9",
        alerts_topic="a",
        extra={"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"},
    )
    with pytest.raises(KafkaException, match=r"ssl.ca.location"):
        alert_sink(s).build_part("alerts_out", "a-0", None)
    sasl = settings("k:9092", extra={"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u"})
    config = producer_config(sasl)
    assert (config["sasl.mechanism"], config["sasl.username"], config["acks"]) == (
        "SCRAM-SHA-512",
        "u",
        "all",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"acks": "1"}, "acks='1', which would weaken"),
        ({"enable.idempotence": "false"}, "enable.idempotence='false'"),
        ({"bootstrap.servers": "x:1"}, "set kafka.bootstrap instead"),
        ({"group.id": "g"}, "set kafka.group_id instead"),
    ],
)
def test_settings_that_break_the_guarantees_are_refused(
    extra: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        alert_sink(settings("k:9092", extra=extra))


def test_missing_topics_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"kafka.telemetry_topics is empty"):
        kafka_telemetry_source(settings("k:9092"))
    with pytest.raises(ConfigError, match=r"kafka.alerts_topic is not set"):
        alert_sink(settings("k:9092", alerts_topic=None))
    with pytest.raises(ConfigError, match=r"kafka.command_requests_topic is not set"):
        kafka_command_request_source(settings("k:9092"))


# ------------------------------------------------------------------------------ requests in

TWINS = {"P1": "pump", "T1": "wind_turbine"}


def request(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "request_id": "ops-1",
        "twin_id": "P1",
        "command": "set_flow",
        "params": {"m3h": 250},
        "expires_at": "2026-01-01T00:05:00Z",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def desired(**changes: Any) -> dict[str, Any]:
    doc = request(command=..., params=..., desired={"flow_setpoint": 250})
    doc.update(changes)
    return doc


def parse(doc: Any, twins: dict[str, str] | None = TWINS) -> Command | DesiredChange | DeadLetter:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_command_request(body, source="kafka:req", issued_at=T0, twins=twins)


def test_valid_request_is_an_issued_command_with_a_deterministic_id() -> None:
    cmd = parse(request())
    assert isinstance(cmd, Command)
    assert cmd.command_id == command_id_for("ops-1") == parse(request()).command_id
    assert (cmd.twin_type, cmd.status, cmd.issued_at, cmd.reason) == (
        "pump",
        CommandStatus.ISSUED,
        T0,
        "request:ops-1",
    )
    assert cmd.expires_at == T0 + timedelta(minutes=5)
    schema("command.v2.json").validate(cmd.to_json())
    typed = parse(request(twin_id="X9", twin_type="pump"), twins=None)
    assert isinstance(typed, Command) and typed.twin_type == "pump"


@pytest.mark.parametrize(
    ("doc", "stage", "reason"),
    [
        (b"{nope", "decode", "not JSON"),
        (b"\xff\xfe", "decode", "not UTF-8"),
        (b"[1]", "decode", "must be a JSON object"),
        (request(params=...), "validate", "missing field(s) params"),
        (request(extra=1), "validate", "unknown field(s) extra"),
        (request(request_id=""), "validate", "'request_id' must be a non-empty string"),
        (request(twin_id=7), "validate", "'twin_id' must be a non-empty string"),
        (request(twin_id="P404"), "validate", "unknown twin"),
        (request(twin_type="motor"), "validate", "does not match the twin's type 'pump'"),
        (request(params=[250]), "validate", "'params' must be an object"),
        (request(params={"m3h": "250"}), "validate", "'m3h' must be a number"),
        (request(params={"m3h": True}), "validate", "'m3h' must be a number"),
        (request(expires_at="soon"), "validate", "not ISO-8601"),
        (request(expires_at=1767225900), "validate", "must be an ISO-8601 string"),
        (request(expires_at="2026-01-01T00:05:00"), "validate", "has no zone"),
        (request(desired={"flow_setpoint": 1}), "validate", "not both"),
        (desired(desired={}), "validate", "exactly one property"),
        (desired(desired={"flow_setpoint": "max"}), "validate", "must be a number"),
        (desired(desired=[1]), "validate", "exactly one property"),
    ],
)
def test_bad_requests_are_dead_letters_with_the_reason(doc: Any, stage: str, reason: str) -> None:
    dead = parse(doc)
    assert isinstance(dead, DeadLetter), dead
    assert (dead.stage, dead.source) == (stage, "kafka:req")
    assert reason in dead.reason, dead.reason


@pytest.mark.parametrize(
    ("doc", "status", "reason"),
    [
        (request(command="explode"), "rejected", "has no command 'explode'"),
        (request(params={}), "rejected", "missing parameter 'm3h'"),
        (request(params={"m3h": 250, "rpm": 1}), "rejected", "unknown parameter 'rpm'"),
        (request(params={"m3h": 9000}), "rejected", "m3h=9000 is outside [20, 400]"),
        (request(expires_at="2025-12-31T23:59:00Z"), "expired", "expired before it was sent"),
        (desired(desired={"flow_setpoint": 9000}), "rejected", "outside [20, 400]"),
        (desired(desired={"warp": 1}), "rejected", "warp"),
    ],
)
def test_requests_the_model_refuses_end_on_the_commands_stream(
    doc: dict[str, Any], status: str, reason: str
) -> None:
    """Well-formed requests reach the command book, which ends them with the reason."""
    item = parse(doc)
    assert isinstance(item, Command | DesiredChange), item
    book = CommandBook(PUMP)
    out = (
        book.desire(item, EPOCH0) if isinstance(item, DesiredChange) else book.submit(item, EPOCH0)
    )
    assert [c.status.value for c in out] == [status] and reason in out[0].detail, out
    assert out[0].origin == ("desired" if isinstance(item, DesiredChange) else "request")
    schema("command.v2.json").validate(out[0].to_json())


def test_a_desired_change_request_names_property_value_and_expiry() -> None:
    change = parse(desired())
    assert isinstance(change, DesiredChange)
    assert (change.twin_id, change.twin_type, change.prop, change.value) == (
        "P1",
        "pump",
        "flow_setpoint",
        250.0,
    )
    assert (change.at, change.expires_at, change.request_id) == (
        T0,
        T0 + timedelta(minutes=5),
        "ops-1",
    )


def test_request_without_twin_type_needs_a_registry() -> None:
    dead = parse(request(twin_id="X9"), twins=None)
    assert isinstance(dead, DeadLetter)
    assert "'twin_type' is needed" in dead.reason and dead.twin_id == "X9"
    unknown = parse(request(twin_type="boiler"), twins=None)
    assert isinstance(unknown, DeadLetter) and "unknown twin type 'boiler'" in unknown.reason


@pytest.mark.services
@pytest.mark.timeout(30)
def test_command_requests_from_a_topic(bootstrap: str) -> None:
    topic = create_topic(bootstrap, unique_topic("requests"))
    sent_ms = int(T0.timestamp() * 1000)
    values = [
        json.dumps(request()).encode(),
        json.dumps(
            request(request_id="ops-2", twin_id="T1", command="derate", params={"fraction": 0.5})
        ).encode(),
        json.dumps(request(request_id="ops-3", params={"m3h": "one"})).encode(),
        json.dumps(desired(request_id="ops-4")).encode(),
        b"garbage",
        None,
    ]
    produce(bootstrap, topic, values, timestamp=sent_ms)
    s = settings(bootstrap, command_requests_topic=topic)
    items = run(kafka_command_request_source(s, twins=TWINS, tail=False))
    commands = [x for x in items if isinstance(x, Command)]
    dead = [x for x in items if isinstance(x, DeadLetter)]
    assert [c.command_id for c in commands] == [command_id_for("ops-1"), command_id_for("ops-2")]
    assert {c.issued_at for c in commands} == {T0}
    assert [(c.twin_id, c.name, dict(c.params)) for c in commands] == [
        ("P1", "set_flow", {"m3h": 250.0}),
        ("T1", "derate", {"fraction": 0.5}),
    ]
    changes = [x for x in items if isinstance(x, DesiredChange)]
    assert [(c.request_id, c.prop, c.value, c.at) for c in changes] == [
        ("ops-4", "flow_setpoint", 250.0, T0)
    ]
    assert len(dead) == 3
    assert "must be a number" in dead[0].reason and dead[0].twin_id == "P1"
    assert "not JSON" in dead[1].reason and "tombstone" in dead[2].reason
    assert all(d.source == f"kafka:{topic}" for d in dead)
