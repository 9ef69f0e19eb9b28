"""Kafka consumer lag per partition, from the source's own position and a real broker's end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.config import consumer_config
from twinflow.connectors.kafka.source import KafkaMessageSource
from twinflow.connectors.kafka.telemetry import raw_messages
from twinflow.flows.kafka_lag import LAG
from twinflow.flows.run import Watch

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with KafkaBroker() as broker:
        yield broker.bootstrap


def test_lag_is_the_partition_end_minus_the_source_position(bootstrap: str) -> None:
    topic = create_topic(bootstrap, unique_topic("lag"), partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(100):  # one record batch each: Tansu reports the end of a partition as
        producer.produce(topic, b'{"n": %d}' % i)  # its last batch's base offset + 1
        assert producer.flush(10) == 0
    settings = KafkaSettings(bootstrap=bootstrap, telemetry_topics=(topic,))
    source = KafkaMessageSource(settings, [topic], raw_messages, batch_size=30)
    watch = Watch()
    [wrapped] = watch.sources([source])
    assert watch.lag.active
    part = wrapped.build_part("in", f"0-{topic}", None)  # type: ignore[attr-defined]
    taken: list[object] = []
    deadline = time.monotonic() + 30
    while not taken and time.monotonic() < deadline:
        taken = list(part.next_batch())
    assert len(taken) == 30
    consumer = Consumer(consumer_config(settings, **{"group.id": "lag-test"}))
    try:
        watch.lag.sample(consumer)
    finally:
        consumer.close()
        part.close()
    assert watch.lag.by_partition() == {(topic, 0): 70}
    assert watch.lag.total() == 70
    assert LAG.labels(topic, "0")._value.get() == 70
    watch.stop.set()
    with pytest.raises(StopIteration):
        part.next_batch()
