"""Kafka sink producers made at start-up (when Bytewax lists the partitions), taken by the
partitions Bytewax builds at their first item."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from tests.services.kafka import create_topic, free_port, running_kafka, unique_topic
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.sink import KafkaJsonSink
from twinflow.core.records import Alert, AlertState, Severity


def alert(n: int) -> Alert:
    raised = datetime(2026, 1, 1, 0, n, tzinfo=UTC)
    return Alert(
        alert_id=Alert.make_id(f"P{n}", "underperformance", raised),
        twin_id=f"P{n}",
        twin_type="pump",
        rule="underperformance",
        state=AlertState.RAISED,
        severity=Severity.WARNING,
        time=raised,
        raised_at=raised,
        message="underperformance",
    )


def nowhere() -> KafkaSettings:
    return KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")


def test_listing_the_partitions_makes_one_producer_each_once() -> None:
    sink = KafkaJsonSink(nowhere(), "alerts", Alert.to_json, partitions=2, close_wait_s=0.1)
    assert sink.list_parts() == ["alerts-0", "alerts-1"]
    sink.list_parts()  # every worker lists them: still one producer per partition
    made = {part: sink.spares._ready[part][0] for part in ("alerts-0", "alerts-1")}
    part = sink.build_part("alerts_out", "alerts-0", None)
    assert part._producer is made["alerts-0"]  # the warm one, not a new one
    assert sink.spares.take("alerts-0") is None  # taken once
    other = sink.build_part("alerts_out", "alerts-1", None)
    assert other._producer is made["alerts-1"]
    for p in (part, other):
        p.close()


def test_a_partition_built_without_listing_makes_its_own_producer() -> None:
    sink = KafkaJsonSink(nowhere(), "alerts", Alert.to_json, close_wait_s=0.1)
    part = sink.build_part("alerts_out", "alerts-0", None)
    assert part._producer is not None and not sink.spares._ready
    part.close()


def test_the_spares_callbacks_reach_the_partition_that_took_it() -> None:
    sink = KafkaJsonSink(nowhere(), "alerts", Alert.to_json, close_wait_s=0.1)
    sink.list_parts()
    relay = sink.spares._ready["alerts-0"][1]
    relay.error(KafkaError(KafkaError._TRANSPORT, "before any partition"))  # logged only
    part = sink.build_part("alerts_out", "alerts-0", None)
    relay.error(KafkaError(KafkaError._TRANSPORT, "broker gone"))
    assert "broker gone" in part._last_error
    part.close()


def test_a_sink_pickles_without_its_producers() -> None:
    sink = KafkaJsonSink(nowhere(), "alerts", Alert.to_json)
    sink.list_parts()
    copy = pickle.loads(pickle.dumps(sink))
    assert copy.spares.take("alerts-0") is None
    assert copy.list_parts() == ["alerts-0"] and copy.spares.take("alerts-0") is not None


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    yield from running_kafka()


@pytest.mark.services
@pytest.mark.timeout(60)
def test_a_warm_producer_delivers_the_first_items(bootstrap: str) -> None:
    """The partition's first write goes out through the producer made at start-up."""
    topic = create_topic(bootstrap, unique_topic("spare"))
    sink = KafkaJsonSink(KafkaSettings(bootstrap=bootstrap), topic, Alert.to_json)
    sink.list_parts()
    part = sink.build_part("alerts_out", f"{topic}-0", None)
    part.write_batch([alert(1), alert(2)])
    part.close()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    assert [json.loads(v)["twin_id"] for v in got] == ["P1", "P2"]
