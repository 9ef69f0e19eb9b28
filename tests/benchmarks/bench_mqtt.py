"""Benchmark: MqttSource in a minimal Bytewax flow against a bare paho-mqtt loop.

Not a test (nothing is asserted on time); prints messages/s, readings/s and the ratio
source / bare (target: at least 0.8). A local mosquitto is started (tests/services).

Method: both consumers first create their persistent sessions (subscribed, QoS 1), then a
publisher loads the same fixed set of messages (JSON reading sets of ``--signals`` signals
for ``--twins`` pumps) into the broker, which queues a copy for each session. Each consumer
is then timed from connecting until it has taken every message:

- source: ``MqttSource`` (decoding into one frame per twin per batch, acknowledging after
  hand-over) driven by ``run_main`` through ``input -> count readings``;
- bare: a paho client (same protocol, QoS, receive maximum) whose ``on_message`` only counts;
- bare+json: the same, plus ``json.loads`` of each payload (what any consumer must do).

Run: ``.venv/bin/python tests/benchmarks/bench_mqtt.py [--messages 50000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for tests.services

import bytewax.operators as op
import paho.mqtt.client as mqtt
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.services.mosquitto import Mosquitto
from twinflow.connectors.bindings import MqttBinding, MqttSettings
from twinflow.connectors.mqtt import MqttSource
from twinflow.connectors.simulator.types import PUMP
from twinflow.core.records import TelemetryFrame

RECEIVE_MAXIMUM = 20_000


def payloads(n: int, twins: int, signals: int) -> list[tuple[str, bytes]]:
    """``n`` (topic, JSON reading set) pairs, round-robin over the twins."""
    names = [s.name for s in PUMP.signals][:signals]
    out = []
    for i in range(n):
        twin = i % twins
        row = {"ts": 1_767_225_600.0 + i // twins}
        row.update({name: round(100.0 + k + (i % 97) * 0.01, 3) for k, name in enumerate(names)})
        out.append((f"bench/p-{twin}/telemetry", json.dumps(row).encode()))
    return out


def bare_client(
    broker: Mosquitto, client_id: str, on_message: Callable[[mqtt.MQTTMessage], None]
) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    ready = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe("bench/+/telemetry", qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, m: on_message(m)
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    client.loop_start()
    if not ready.wait(10):
        raise RuntimeError("bare client did not subscribe")
    return client


def run_bare(broker: Mosquitto, client_id: str, n: int, decode: bool) -> tuple[float, float]:
    """Wall and CPU seconds for a bare paho client to receive ``n`` queued messages."""
    count = 0
    done = threading.Event()

    def on_message(m: mqtt.MQTTMessage) -> None:
        nonlocal count
        if decode:
            json.loads(m.payload)
        count += 1
        if count >= n:
            done.set()

    t0, c0 = time.perf_counter(), time.process_time()
    client = bare_client(broker, client_id, on_message)
    if not done.wait(300):
        raise RuntimeError(f"bare client got {count} of {n} messages")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    client.disconnect()
    client.loop_stop()
    return elapsed, cpu


def run_source(
    settings: MqttSettings, bindings: list[MqttBinding], n: int
) -> tuple[float, float, int]:
    """Wall and CPU seconds for MqttSource in a Bytewax flow to take ``n`` queued messages,
    and the readings counted."""
    readings = 0

    def count(_step: str, item: object) -> None:
        nonlocal readings
        if isinstance(item, TelemetryFrame):
            readings += len(item.times) * len(item.signals)

    flow = Dataflow("bench_mqtt")
    items = op.input("in", flow, MqttSource(settings, bindings, max_messages=n))
    op.inspect("count", items, count)
    t0, c0 = time.perf_counter(), time.process_time()
    run_main(flow)
    return time.perf_counter() - t0, time.process_time() - c0, readings


def publish_all(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> float:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(2000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    t0 = time.perf_counter()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--signals", type=int, default=6)
    parser.add_argument("--twins", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.messages
    messages = payloads(n, args.twins, args.signals)
    bindings = [
        MqttBinding(f"p-{i}", "pump", f"bench/p-{i}/telemetry", f"bench/p-{i}/c", f"bench/p-{i}/r")
        for i in range(args.twins)
    ]
    names = ("source", "bare", "bare+json")
    rates: dict[str, list[float]] = {k: [] for k in names}
    cpu_us: dict[str, list[float]] = {k: [] for k in names}
    with Mosquitto(autosave_interval_s=0) as broker:  # saving a 50k backlog stalls it
        settings = MqttSettings(host=broker.host, port=broker.port, client_id="bench-source")
        # Create the sessions (subscriptions) so that the broker queues for each consumer.
        first = MqttSource(settings, bindings).build_part("in", "mqtt", None)
        first.ready.wait(10)
        first.close()
        for cid in ("bench-bare", "bench-bare-json"):
            c = bare_client(broker, cid, lambda _m: None)
            c.disconnect()
            c.loop_stop()
        for r in range(args.repeat):
            pub_s = publish_all(broker, messages)
            src_s, src_cpu, readings = run_source(settings, bindings, n)
            bare_s, bare_cpu = run_bare(broker, "bench-bare", n, decode=False)
            json_s, json_cpu = run_bare(broker, "bench-bare-json", n, decode=True)
            assert readings == n * args.signals, (readings, n * args.signals)
            for name, wall, cpu in zip(
                names, (src_s, bare_s, json_s), (src_cpu, bare_cpu, json_cpu), strict=True
            ):
                rates[name].append(n / wall)
                cpu_us[name].append(cpu / n * 1e6)
            print(
                f"run {r + 1}: published {n} in {pub_s:.2f} s; wall/CPU s: source "
                f"{src_s:.2f}/{src_cpu:.2f}, bare {bare_s:.2f}/{bare_cpu:.2f}, "
                f"bare+json {json_s:.2f}/{json_cpu:.2f}",
                flush=True,
            )
    print(f"\nMQTT, {n} messages of {args.signals} readings, {args.twins} twins, QoS 1, median:")
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_us.items()}
    for name in names:
        print(
            f"  {name:10s} {med[name]:10,.0f} messages/s {med[name] * args.signals:12,.0f} "
            f"readings/s   {cpu[name]:6.1f} CPU us/message"
        )
    print(
        f"  ratio source / bare, messages/s:      {med['source'] / med['bare']:.2f} (target >= 0.8)"
    )
    print(f"  ratio source / bare+json, messages/s: {med['source'] / med['bare+json']:.2f}")
    print(f"  ratio by CPU cost, bare / source:     {cpu['bare'] / cpu['source']:.2f}")
    print(f"  ratio by CPU cost, bare+json / source: {cpu['bare+json'] / cpu['source']:.2f}")


if __name__ == "__main__":
    main()
