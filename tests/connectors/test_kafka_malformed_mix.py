"""Issue 11: legitimate readings interleaved with every kind of malformed message on a real
Kafka telemetry topic; the source, decoder and validator lose none of the legitimate ones and
make every malformed message a dead letter with a reason (the MQTT counterpart is
test_mqtt_malformed_mix.py)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Producer

from tests.operators.test_poison import AFTER_9999_MS, POISON
from tests.services.kafka import (
    create_topic,
    running_kafka,
    unique_topic,
)
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka import kafka_telemetry_source
from twinflow.core.records import DeadLetter, TelemetryFrame
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

pytestmark = pytest.mark.services

NOW = time.time()
HEAD = b'{"twin_id": "P1", "twin_type": "pump", '


def single(t: float, values: bytes = b'{"flow_m3h": 250, "suction_bar": 1.5}') -> bytes:
    return HEAD + b'"time": %r, "values": %s}' % (t, values)


#: Malformed messages beside the issue's poison (POISON): times outside the horizon, bad
#: ISO, bad JSON and shapes, unknown twins and types, tombstones, an oversized payload.
MALFORMED: list[bytes | None] = [
    *POISON.values(),
    single(NOW + 10_000),  # beyond max_future_s
    single(NOW - 30 * 86400),  # beyond max_past_s
    HEAD + b'"time": "yesterday", "values": {"flow_m3h": 5}}',
    HEAD + b'"time": "2026-13-45T99:00:00Z", "values": {"flow_m3h": 5}}',
    HEAD + b'"values": {"flow_m3h": 5}}',  # no time
    HEAD + b'"times": [1, 2], "signals": {"flow_m3h": [1]}}',  # lengths differ
    HEAD + b'"time": %r, "values": "flat"}' % NOW,
    b'{"twin_id": "X9", "twin_type": "pump", "time": %r, "values": {"flow_m3h": 5}}' % NOW,
    b'{"twin_id": "P1", "twin_type": "rocket", "time": %r, "values": {"flow_m3h": 5}}' % NOW,
    b"[" * 5000,
    b"not json",
    b"[1, 2, 3]",
    b"",
    None,  # a tombstone
    HEAD + b'"pad": "' + b"x" * 1_100_000 + b'"}',  # beyond the 1 MiB payload limit
]


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    yield from running_kafka()


@pytest.mark.timeout(120)
def test_malformed_mix_over_kafka_loses_no_legitimate_reading(bootstrap: str) -> None:
    rng = random.Random(11)
    topic = create_topic(bootstrap, unique_topic("mix"), partitions=2)
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4_000_000})
    legit: list[float] = []
    malformed = 0
    t = NOW - 3000.0
    for _ in range(1500):
        if rng.random() < 0.5:
            value = rng.choice(MALFORMED)
            # some with a Kafka timestamp after year 9999, as a broken client may set
            stamp = AFTER_9999_MS if rng.random() < 0.1 else None
            malformed += 1
            kw: dict[str, Any] = {"timestamp": stamp} if stamp else {}
            producer.produce(topic, value, b"P1", **kw)
        else:
            t += 1.0
            if rng.random() < 0.3:  # a batch of three readings
                times = [t, t + 0.25, t + 0.5]
                doc = {"times": times, "signals": {"flow_m3h": [250.0] * 3}}
                value = HEAD + json.dumps(doc).encode()[1:]
                legit.extend(times)
            else:
                value = single(t)
                legit.append(t)
            producer.produce(topic, value, b"P1")
        producer.poll(0)
    assert producer.flush(30) == 0

    validator = Validator(twins={"P1": "pump"})
    out: list[Any] = []
    flow = Dataflow("kafka_malformed_mix")
    raw = op.input(
        "in",
        flow,
        kafka_telemetry_source(
            KafkaSettings(bootstrap=bootstrap, telemetry_topics=(topic,)), tail=False
        ),
    )
    checked = op.flat_map("check", raw, lambda item: check_item(item, validator, NOW))
    op.output("out", checked, TestingSink(out))
    run_main(flow)

    kept: list[float] = []
    letters = 0
    for item in out:
        if isinstance(item, TelemetryFrame):
            finite = item.signals["flow_m3h"] == item.signals["flow_m3h"]
            kept.extend(item.times[finite].tolist())
        else:
            assert isinstance(item, DeadLetter) and item.reason, item
            letters += 1
    assert len(legit) > 500 and malformed > 500
    assert sorted(kept) == sorted(legit)  # 0 legitimate readings lost, none made up
    assert letters >= malformed  # every malformed message is a dead letter (or more)
