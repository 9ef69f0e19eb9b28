"""Benchmark: the Kafka source and alert sink against the bare confluent-kafka client.

Not a test; prints figures and ratios (target: the source at least 0.8x the bare client).
A fixed set of telemetry payloads (wire format v1, 10 timestamps x 4 signals = 40 readings
each) is produced once; then, alternating, in the same run:

- transport: ``kafka_telemetry_source`` -> a counting sink in a minimal Bytewax flow, against
  a bare ``Consumer.consume`` loop that counts messages and payload bytes;
- decoded: the same with ``check_item`` (decode + validate, what the telemetry flow does
  first) on each message, counting readings;
- alerts: ``alert_sink`` in a flow (TestingSource -> sink) against a bare idempotent
  ``Producer`` loop writing the same JSON, each flushed to the end.

Both sides use the same librdkafka settings (``twinflow.connectors.kafka.config``). The broker is
``KAFKA_BOOTSTRAP`` or a local Tansu. Run:
``.venv/bin/python tests/benchmarks/bench_kafka.py [--messages 200000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka import (
    alert_sink,
    consumer_config,
    kafka_telemetry_source,
    producer_config,
)
from twinflow.core.records import Alert, AlertState, DeadLetter, RawMessage, Severity
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

#: Pump signals and a plausible level of each (inside the catalog's ranges).
SIGNALS = {"flow_m3h": 250.0, "suction_bar": 1.0, "discharge_bar": 6.0, "motor_current_a": 120.0}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_RATIO = 0.8


def payloads(n: int, twins: int, per_message: int = 10) -> list[tuple[bytes, bytes]]:
    """``n`` (key, payload) pairs: pump telemetry batches, round robin over ``twins``."""
    out = []
    start = time.time() - 86_400  # a day ago: inside the validator's accepted past
    for i in range(n):
        twin = f"P{i % twins}"
        t = start + (i // twins) * per_message
        doc = {
            "twin_id": twin,
            "twin_type": "pump",
            "times": [t + k for k in range(per_message)],
            "signals": {
                s: [level + (i + k) % 7 * 0.01 for k in range(per_message)]
                for s, level in SIGNALS.items()
            },
        }
        out.append((twin.encode(), json.dumps(doc).encode()))
    return out


def fill(bootstrap: str, topic: str, data: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "queue.buffering.max.messages": 500_000}
    )
    for key, value in data:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0, "telemetry not produced"


class _Count(StatelessSinkPartition[Any]):
    def __init__(self, totals: dict[str, int], weigh: Callable[[Any], int]) -> None:
        self.totals = totals
        self.weigh = weigh

    def write_batch(self, items: list[Any]) -> None:
        self.totals["items"] += len(items)
        self.totals["weight"] += sum(map(self.weigh, items))


class CountingSink(DynamicSink[Any]):
    """Counts items and their weight (payload bytes, or readings)."""

    def __init__(self, weigh: Callable[[Any], int]) -> None:
        self.totals = {"items": 0, "weight": 0}
        self.weigh = weigh

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
        return _Count(self.totals, self.weigh)


def payload_bytes(item: Any) -> int:
    return len(item.payload) if isinstance(item, RawMessage) else 0


def readings(item: Any) -> int:
    return 0 if isinstance(item, DeadLetter) else int(item.readings)


#: One run: wall seconds, CPU seconds of this process (all threads), items, weight.
Run = tuple[float, float, int, int]


def timed(body: Callable[[], tuple[int, int]]) -> Run:
    wall, cpu = time.perf_counter(), time.process_time()
    items, weight = body()
    return time.perf_counter() - wall, time.process_time() - cpu, items, weight


def through_source(settings: KafkaSettings, decoded: bool, bytewax_source: bool = False) -> Run:
    """A minimal flow: the source (optionally checking each message) into a counting sink.

    ``bytewax_source`` reads with Bytewax's own KafkaSource (same librdkafka settings) and
    maps its messages to RawMessage in the next step, for reference.
    """

    def body() -> tuple[int, int]:
        flow = Dataflow("bench-kafka")
        if bytewax_source:
            config = consumer_config(settings)
            del config["bootstrap.servers"], config["logger"], config["error_cb"]
            kafka = KafkaSource(
                [settings.bootstrap], settings.telemetry_topics, tail=False, add_config=config
            )
            source = f"kafka:{settings.telemetry_topics[0]}"
            stream = op.map(
                "raw",
                op.input("in", flow, kafka),
                lambda m: RawMessage(source, m.value, time.time()),
            )
        else:
            stream = op.input("in", flow, kafka_telemetry_source(settings, tail=False))
        if decoded:
            validator = Validator()
            stream = op.flat_map("check", stream, lambda m: check_item(m, validator, m.received))
        sink = CountingSink(readings if decoded else payload_bytes)
        op.output("out", stream, sink)
        run_main(flow)
        return sink.totals["items"], sink.totals["weight"]

    return timed(body)


def through_consumer(settings: KafkaSettings, decoded: bool) -> Run:
    """The same with a bare Consumer: consume(1000, 0.1) until every partition's end."""

    def body() -> tuple[int, int]:
        consumer = Consumer(consumer_config(settings, **{"enable.partition.eof": True}))
        topic = settings.telemetry_topics[0]
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        validator = Validator()
        source = f"kafka:{topic}"
        count = weight = ended = 0
        while ended < len(parts):
            for m in consumer.consume(1000, 0.1):
                if m.error() is not None:
                    ended += m.error().code() == KafkaError._PARTITION_EOF
                    continue
                value = m.value()
                if decoded:
                    now = time.time()
                    for x in check_item(RawMessage(source, value, now), validator, now):
                        count += 1
                        weight += readings(x)
                else:
                    count += 1
                    weight += len(value)
        consumer.close()
        return count, weight

    return timed(body)


def alerts(n: int, twins: int) -> list[tuple[str, Alert]]:
    out = []
    for i in range(n):
        twin = f"P{i % twins}"
        raised = T0 + timedelta(seconds=i)
        a = Alert(
            alert_id=Alert.make_id(twin, "underperformance", raised),
            twin_id=twin,
            twin_type="pump",
            rule="underperformance",
            state=AlertState.RAISED,
            severity=Severity.WARNING,
            time=raised,
            raised_at=raised,
            message="flow below the pump curve",
            diagnosis="impeller_wear",
            evidence={"flow_m3h.mean": 180.5, "efficiency": 0.61},
        )
        out.append((twin, a))
    return out


def through_alert_sink(bootstrap: str, items: list[tuple[str, Alert]]) -> Run:
    settings = KafkaSettings(bootstrap=bootstrap, alerts_topic=unique_topic("bench-alerts"))
    create_topic(bootstrap, settings.alerts_topic or "", partitions=3)

    def body() -> tuple[int, int]:
        flow = Dataflow("bench-alerts")
        source = TestingSource(items, batch_size=1000)
        op.output("out", op.input("in", flow, source), alert_sink(settings))
        run_main(flow)
        return len(items), 0

    return timed(body)


def through_producer(bootstrap: str, items: list[tuple[str, Alert]]) -> Run:
    topic = create_topic(bootstrap, unique_topic("bench-alerts"), partitions=3)

    def body() -> tuple[int, int]:
        producer = Producer(producer_config(KafkaSettings(bootstrap=bootstrap)))
        for twin, a in items:
            value = json.dumps(a.to_json(), separators=(",", ":"), allow_nan=False).encode()
            while True:
                try:
                    producer.produce(topic, value, twin.encode())
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        assert producer.flush(120) == 0
        return len(items), 0

    return timed(body)


def median_rate(runs: list[Run], i: int) -> float:
    return statistics.median(r[i] / r[0] for r in runs)


def cpu_us(runs: list[Run]) -> float:
    """Median CPU microseconds per message (this process, all threads)."""
    return statistics.median(r[1] / r[2] * 1e6 for r in runs)


def report(name: str, unit: str, runs: dict[str, list[Run]]) -> None:
    bare = runs["bare"]
    print(f"{name}:")
    for kind, rs in runs.items():
        ratio = median_rate(rs, 2) / median_rate(bare, 2)
        cpu_ratio = cpu_us(bare) / cpu_us(rs)
        weight = f"{median_rate(rs, 3):>13,.0f} {unit}/s" if unit else ""
        print(
            f"  {kind:<20} {median_rate(rs, 2):>9,.0f} msg/s {weight}  {cpu_us(rs):6.1f} us "
            f"CPU/msg  ratio {ratio:.2f} (CPU {cpu_ratio:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--twins", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with KafkaBroker() as broker:
        bootstrap = broker.bootstrap
        topic = create_topic(bootstrap, unique_topic("bench-telemetry"), args.partitions)
        data = payloads(args.messages, args.twins)
        start = time.perf_counter()
        fill(bootstrap, topic, data)
        size = sum(len(v) for _, v in data) / len(data)
        print(
            f"broker {bootstrap} ({'external' if broker.external else 'Tansu'}); "
            f"{args.messages:,} messages of {size:.0f} bytes, 40 readings each, "
            f"{args.partitions} partition(s), produced in {time.perf_counter() - start:.1f}s"
        )
        settings = KafkaSettings(bootstrap=bootstrap, telemetry_topics=(topic,))
        print(
            f"median of {args.repeat} alternating runs; ratio = rate / bare rate "
            f"(target {TARGET_RATIO}), CPU = bare CPU per message / CPU per message"
        )
        for decoded, name, unit in ((False, "transport", "bytes"), (True, "decoded", "readings")):
            runs: dict[str, list[Run]] = {"bare": [], "source": []}
            if not decoded:
                runs["bytewax KafkaSource"] = []
            for _ in range(args.repeat):
                runs["bare"].append(through_consumer(settings, decoded))
                runs["source"].append(through_source(settings, decoded))
                if not decoded:
                    runs["bytewax KafkaSource"].append(through_source(settings, False, True))
            for kind, rs in runs.items():
                assert all(r[2] == args.messages for r in rs), (kind, [r[2] for r in rs])
            report(name, unit, runs)

        items = alerts(args.alerts, args.twins)
        sink_runs: dict[str, list[Run]] = {"bare": [], "alert_sink": []}
        for _ in range(args.repeat):
            sink_runs["bare"].append(through_producer(bootstrap, items))
            sink_runs["alert_sink"].append(through_alert_sink(bootstrap, items))
        report(f"alerts ({args.alerts:,}, acks=all, idempotent, flushed)", "", sink_runs)


if __name__ == "__main__":
    main()
