"""Wire format b1 over a real Kafka-protocol broker (KAFKA_BOOTSTRAP, else Tansu).

Binary and JSON messages mixed on one topic, produced by a plain confluent-kafka Producer,
read by the telemetry source in a Bytewax run and checked by the flow's own decode and
validate step: every good message becomes its frame, the malformed ones dead letters.
"""

from __future__ import annotations

from collections.abc import Iterator

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Producer

from tests.services.kafka import (
    create_topic,
    running_kafka,
    unique_topic,
)
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka import kafka_telemetry_source
from twinflow.connectors.simulator.wire import encode_frame
from twinflow.core.records import DeadLetter, TelemetryFrame, WaveformFrame
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator
from twinflow.operators.wire_binary import encode_binary

T0 = 1_767_225_600.0


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    yield from running_kafka()


def pump(twin: str, t0: float, n: int = 10) -> TelemetryFrame:
    times = t0 + np.arange(n, dtype=np.float64)
    return TelemetryFrame(
        twin, "pump", times, {"flow_m3h": np.linspace(240, 250, n), "suction_bar": np.ones(n)}
    )


@pytest.mark.services
@pytest.mark.timeout(60)
def test_binary_and_json_messages_share_a_topic(bootstrap: str) -> None:
    topic = create_topic(bootstrap, unique_topic("telemetry-b1"), partitions=2)
    frames = [pump(f"P{i % 3}", T0 + 10 * i) for i in range(9)]
    wave = WaveformFrame("M1", "motor", "vibration", T0, 2560.0, np.sin(np.arange(2560.0)))
    payloads = [encode_binary(f) for f in frames[:6]] + [encode_frame(f) for f in frames[6:]]
    payloads += [encode_binary(wave), encode_binary(frames[0])[:-3]]
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, payload in enumerate(payloads):
        producer.produce(topic, payload, key=f"k{i}".encode())
    assert producer.flush(10) == 0

    raw: list[object] = []
    flow = Dataflow("kafka-b1")
    source = kafka_telemetry_source(
        KafkaSettings(bootstrap=bootstrap, telemetry_topics=(topic,)), tail=False
    )
    op.output("out", op.input("in", flow, source), TestingSink(raw))
    run_main(flow)

    validator = Validator(twins={"P0": "pump", "P1": "pump", "P2": "pump", "M1": "motor"})
    items = [x for item in raw for x in check_item(item, validator, T0 + 300)]
    got = sorted(
        (x.twin_id, x.start, x.signals["flow_m3h"].tobytes())
        for x in items
        if isinstance(x, TelemetryFrame)
    )
    want = sorted((f.twin_id, f.start, f.signals["flow_m3h"].tobytes()) for f in frames)
    assert got == want
    waves = [x for x in items if isinstance(x, WaveformFrame)]
    assert len(waves) == 1 and waves[0].samples.tobytes() == wave.samples.tobytes()
    dead = [x for x in items if isinstance(x, DeadLetter)]
    assert len(dead) == 1 and dead[0].stage == "decode"
    assert "header announces" in dead[0].reason and dead[0].source == f"kafka:{topic}"
