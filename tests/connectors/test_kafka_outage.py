"""Kafka outages against a broker of the test's own (Tansu): the sink and the source follow a
broker that restarts without its data or becomes unreachable with it, and never hang.

Issue 11 (deliverable 3) and issue 14 (deliverable 3). An unreachable broker that keeps its
data is a Tansu behind a relay that the test cuts and mends (``KafkaBroker(proxied=True)``);
a restart without data is Tansu killed and started again (it keeps topics in memory).
"""

from __future__ import annotations

import json
import pickle
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from tests.connectors.test_kafka import read_back, settings
from tests.services.kafka import KafkaBroker, KafkaUnavailable, create_topic, unique_topic
from twinflow.connectors.kafka import KafkaJsonSink, kafka_telemetry_source

pytestmark = pytest.mark.services

#: librdkafka settings that make the tests' clients reconnect quickly.
FAST = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


class Item:
    """An item of the flow: its twin and a number."""

    def __init__(self, twin: str, n: int) -> None:
        self.twin_id = twin
        self.n = n


def to_json(item: Item) -> dict[str, Any]:
    return {"schema": "test", "version": 1, "twin_id": item.twin_id, "n": item.n}


def items(start: int, count: int) -> list[Item]:
    return [Item(f"T{n % 3}", n) for n in range(start, start + count)]


def metric(name: str, topic: str) -> float:
    return REGISTRY.get_sample_value(name, {"output": f"kafka:{topic}"}) or 0.0


def until(check: Callable[[], bool], seconds: float, what: str, tend: Callable[[], Any]) -> None:
    """Call ``tend`` (a snapshot, as Bytewax would) until ``check`` holds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        tend()
        time.sleep(0.05)


def numbers(bootstrap: str, topic: str) -> list[int]:
    return [json.loads(m.value())["n"] for m in read_back(bootstrap, topic)]


def local(proxied: bool = False) -> KafkaBroker:
    broker = KafkaBroker(local=True, proxied=proxied)
    try:
        return broker.start()
    except KafkaUnavailable as exc:
        pytest.fail(f"these tests stop a broker of their own, so they need Tansu: {exc}")


@pytest.fixture
def proxied() -> Iterator[KafkaBroker]:
    broker = local(proxied=True)
    yield broker
    broker.stop()


@pytest.mark.timeout(60)
def test_sink_follows_a_broker_restarted_without_its_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kill the broker: writes and snapshots go on (snapshots return the held messages at
    once); start it again empty: its broker no longer knows the producer, so the sink starts
    a new one and sends everything unacknowledged; nothing written after the crash is lost."""
    broker = local()
    try:
        topic = create_topic(broker.bootstrap, unique_topic("restart"))
        sink = KafkaJsonSink(
            settings(broker.bootstrap, extra=FAST),
            topic,
            to_json,
            down_after_s=0.5,
            stall_s=1.0,
        )
        part = sink.build_part("out", f"{topic}-0", None)
        part.write_batch(items(0, 10))
        until(lambda: part.snapshot() is None, 20, "the first acknowledgements", lambda: None)
        broker.crash()
        for i in range(10, 40, 5):
            part.write_batch(items(i, 5))
            state = part.snapshot()
            assert state is not None and len(state) == i - 5
            time.sleep(0.2)
        until(lambda: metric("twinflow_output_up", topic) == 0, 10, "down", part.snapshot)
        broker.restart()
        create_topic(broker.bootstrap, topic)
        until(lambda: part.snapshot() is None, 40, "the held messages to go", lambda: None)
        assert metric("twinflow_output_up", topic) == 1
        assert metric("twinflow_output_retries_total", topic) >= 1
        part.close()
        got = numbers(broker.bootstrap, topic)
        assert set(got) == set(range(10, 40))  # the new broker has what followed the crash
        for twin in ("T0", "T1", "T2"):  # each twin's messages in order
            mine = [n for n in got if f"T{n % 3}" == twin]
            assert sorted(mine) == [n for n in dict.fromkeys(mine)]
        assert f"output kafka:{topic} is down" in caplog.text
        assert f"output kafka:{topic} is back" in caplog.text
        assert "starting a new producer" in caplog.text
    finally:
        broker.stop()


@pytest.mark.timeout(60)
def test_a_full_outbox_holds_the_flow_until_the_broker_answers(proxied: KafkaBroker) -> None:
    """Cut the broker off (it keeps its data): writes fill the outbox; the write that finds it
    full waits, and goes on once the broker is reachable; every message arrives, in order."""
    topic = create_topic(proxied.bootstrap, unique_topic("full"))
    sink = KafkaJsonSink(
        settings(proxied.bootstrap, extra=FAST), topic, to_json, max_messages=20, down_after_s=0.5
    )
    part = sink.build_part("out", f"{topic}-0", None)
    part.write_batch(items(0, 5))
    until(lambda: part.snapshot() is None, 20, "the first acknowledgements", lambda: None)
    proxied.cut()
    part.write_batch(items(5, 20))  # fills the outbox to its bound
    assert len(part.snapshot() or []) == 20
    written = threading.Event()

    def write_more() -> None:
        part.write_batch(items(25, 10))
        written.set()

    blocked_before = metric("twinflow_output_backpressure_seconds_total", topic)
    writer = threading.Thread(target=write_more, daemon=True)
    writer.start()
    assert not written.wait(1.0)  # waits while the broker is away
    proxied.mend()
    assert written.wait(30)
    writer.join(5)
    assert metric("twinflow_output_backpressure_seconds_total", topic) > blocked_before
    until(lambda: part.snapshot() is None, 30, "the outbox to empty", lambda: None)
    part.close()
    got = numbers(proxied.bootstrap, topic)
    assert set(got) == set(range(35))
    assert got == sorted(got)  # one partition's order is the order of the writes


@pytest.mark.timeout(60)
def test_held_messages_of_a_snapshot_are_sent_by_the_resumed_partition(
    proxied: KafkaBroker,
) -> None:
    """A partition's snapshot while the broker is unreachable holds what is unacknowledged; a
    partition built from that state (a resumed flow) sends it."""
    topic = create_topic(proxied.bootstrap, unique_topic("resume"))
    sink = KafkaJsonSink(settings(proxied.bootstrap, extra=FAST), topic, to_json, close_wait_s=0.2)
    part = sink.build_part("out", f"{topic}-0", None)
    proxied.cut()
    part.write_batch(items(0, 8))
    state = pickle.loads(pickle.dumps(part.snapshot()))  # as Bytewax keeps it
    part.close()  # the process ends: without the state, these would be lost
    assert state is not None and len(state) == 8
    proxied.mend()
    resumed = sink.build_part("out", f"{topic}-0", state)
    until(lambda: resumed.snapshot() is None, 30, "the held messages to go", lambda: None)
    resumed.close()
    assert sorted(set(numbers(proxied.bootstrap, topic))) == list(range(8))


@pytest.mark.timeout(60)
def test_source_resumes_after_the_broker_is_cut_off(
    proxied: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Input stops while the broker is unreachable and resumes where it was when it is back
    (the broker kept its data: nothing is read twice, nothing skipped); the connection state
    is in the metrics and the log says once that it was lost and once that it is back."""
    topic = create_topic(proxied.bootstrap, unique_topic("in"))
    producer = Producer({"bootstrap.servers": proxied.bootstrap, **FAST})
    source = kafka_telemetry_source(settings(proxied.bootstrap, telemetry_topics=(topic,)))
    part = source.build_part("in", f"0-{topic}", None)
    got: list[bytes] = []

    def read(want: int) -> None:
        def more() -> None:
            got.extend(m.payload for m in part.next_batch())

        until(lambda: len(got) >= want, 30, f"{want} messages", more)

    def send(start: int, n: int) -> None:
        for i in range(start, start + n):
            producer.produce(topic, b"m%d" % i, partition=0)
        assert producer.flush(20) == 0

    def connected() -> float | None:
        labels = {"protocol": "kafka", "role": "source", "peer": proxied.bootstrap}
        return REGISTRY.get_sample_value("twinflow_connection_up", labels)

    send(0, 5)
    read(5)
    until(lambda: connected() == 1, 20, "the source to report its connection", part.next_batch)
    proxied.cut()
    for _ in range(20):  # no exception, nothing read, no long wait
        assert part.next_batch() == []
    until(lambda: connected() == 0, 20, "the source to report no connection", part.next_batch)
    proxied.mend()
    send(5, 5)
    read(10)
    until(lambda: connected() == 1, 20, "the source to report its connection", part.next_batch)
    part.close()
    assert got == [b"m%d" % i for i in range(10)]
    assert f"kafka source: no connection to the brokers at {proxied.bootstrap}" in caplog.text
    assert f"kafka source: brokers at {proxied.bootstrap} reachable again" in caplog.text
    # librdkafka's lines: each condition (numbers aside) once a minute, however often it recurs
    conditions = Counter(
        (r.levelno, re.sub(r"\d+", "#", r.getMessage()))
        for r in caplog.records
        if r.name == "twinflow.kafka"
    )
    # (librdkafka may say nothing at all during a short cut: then there is nothing to limit)
    assert max(conditions.values(), default=1) == 1, conditions.most_common(3)


@pytest.mark.timeout(90)
def test_a_crash_during_an_outage_loses_nothing_with_recovery(
    proxied: KafkaBroker, tmp_path: Path
) -> None:
    """With Bytewax recovery: the broker is cut off, the flow writes on and crashes; resumed
    with the broker back, it sends what its last snapshot held and replays the rest, so
    every message arrives (at least once)."""
    topic = create_topic(proxied.bootstrap, unique_topic("crash"))
    sink = KafkaJsonSink(settings(proxied.bootstrap, extra=FAST), topic, to_json, close_wait_s=0.2)
    pairs: list[Any] = [(i.twin_id, i) for i in items(0, 30)]
    pairs.insert(20, TestingSource.ABORT())
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))

    def run() -> None:
        flow = Dataflow("kafka_crash")
        op.output("out", op.input("in", flow, TestingSource(pairs, batch_size=4)), sink)
        run_main(flow, epoch_interval=timedelta(seconds=0), recovery_config=recovery)

    proxied.cut()
    run()  # aborts (a simulated crash) after 20 items, none of them acknowledged
    proxied.mend()
    run()  # resumes: the held messages of the last snapshot, then the replay
    assert set(numbers(proxied.bootstrap, topic)) == set(range(30))
