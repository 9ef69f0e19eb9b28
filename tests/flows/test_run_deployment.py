"""End to end on real peers: `twinflow simulate` beside `twinflow run` on one deployment file.

The simulated plant serves its twins over MQTT (a real mosquitto), OPC UA (its asyncua server)
and Modbus TCP (its pymodbus server); the flow reads them, writes its files and sends alerts,
commands and twin states to a Kafka-protocol broker, read back by an independent consumer.
Commands then travel back to the simulated devices over each protocol.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSource, run_main
from confluent_kafka import Consumer, TopicPartition

from tests.services.kafka import KafkaBroker, unique_topic
from tests.services.mosquitto import Mosquitto, free_port
from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.simulator import Plant
from twinflow.core.records import Command, CommandStatus
from twinflow.core.times import utc
from twinflow.flows.deploy import Deployment, load_deployment
from twinflow.flows.run import actuators_for, deployment_flow
from twinflow.flows.simulate import simulate

pytestmark = pytest.mark.services

TWINS = """
  - {id: wt-001, type: wind_turbine, protocol: mqtt}
  - {id: pump-002, type: pump, protocol: opcua}
  - {id: motor-003, type: motor, protocol: modbus, modbus: {unit: 3, poll_interval_s: 0.5}}
  - id: wt-004
    type: wind_turbine
    protocol: mqtt
    mqtt: {fields: {wind: wind_speed, power_w: {signal: power_kw, scale: 0.001}}}
"""


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[Mosquitto, KafkaBroker]]:
    with Mosquitto() as mqtt, KafkaBroker() as kafka:
        yield mqtt, kafka


def deployment(tmp_path: Path, mqtt: Mosquitto, kafka: KafkaBroker) -> Deployment:
    alerts, commands, states = (unique_topic(t) for t in ("alerts", "commands", "states"))
    text = f"""
version: 1
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "flow-{free_port()}"}}
  kafka:
    bootstrap: "{kafka.bootstrap}"
    alerts_topic: {alerts}
    commands_topic: {commands}
    twin_state_topic: {states}
simulator:
  twins: 6
  seed: 7
  speed: 600
  duration: 2h
  opcua_endpoint: "opc.tcp://127.0.0.1:{free_port()}/twinflow/"
  modbus_port: {free_port()}
flow: {{window_s: 300, lateness_s: 60, max_future_s: 864000}}
twins:{TWINS}"""
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return load_deployment(path, env={})


def read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Every message of a topic, read by an independent consumer (assign, not a group)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions]
        consumer.assign(parts)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        idle_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - idle_since < 3.0:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is None:
                    out.append(json.loads(msg.value()))
                    idle_since = time.monotonic()
        return out
    finally:
        consumer.close()


class SimulatorThread(threading.Thread):
    """`twinflow simulate` in a background thread, started and stopped by the test."""

    def __init__(self, dep: Deployment):
        super().__init__(daemon=True)
        self.dep = dep
        self.stop_flag = threading.Event()
        self.up = threading.Event()
        self.plant: Plant | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        def started(plant: Plant) -> None:
            self.plant = plant
            self.up.set()

        try:
            asyncio.run(simulate(self.dep, stop=self.stop_flag, on_start=started))
        except BaseException as exc:  # surfaced by the test
            self.error = exc
            self.up.set()


@pytest.mark.timeout(240)
def test_simulate_beside_run_carries_every_protocol_end_to_end(
    tmp_path: Path, services: tuple[Mosquitto, KafkaBroker]
) -> None:
    mqtt, kafka = services
    dep = deployment(tmp_path, mqtt, kafka)
    sim = SimulatorThread(dep)
    stop_sources = threading.Event()
    # The flow's MQTT session must exist before devices publish (QoS 1 queues it from then on).
    flow = deployment_flow(
        dep,
        tmp_path / "out",
        limits={
            "mqtt": {"idle_timeout_s": 8.0},
            "opcua": {"stop": stop_sources},
            "modbus": {"max_polls": 36},
            "feedback": {"until": stop_sources.is_set},
        },
    )
    sim.start()
    assert sim.up.wait(30), "the simulated devices came up"
    assert sim.error is None, sim.error

    def finish() -> None:
        sim.join(timeout=120)
        time.sleep(2.0)
        stop_sources.set()

    threading.Thread(target=finish, daemon=True).start()
    run_main(flow)
    assert sim.error is None, sim.error

    telemetry = read_parquet_dir(tmp_path / "out" / "telemetry")
    windows = read_parquet_dir(tmp_path / "out" / "windows")
    deployed = set(dep.twin_types)
    assert set(telemetry["twin_id"].unique()) == deployed, "readings from every twin"
    assert set(windows["twin_id"].unique()) == deployed
    wt4 = telemetry.filter(telemetry["twin_id"] == "wt-004")["power_kw"].drop_nans()
    assert 0 < wt4.max() <= 2100, "power_w (W) was scaled to power_kw by the field map"

    k = dep.kafka
    assert k is not None
    alerts = read_topic(kafka.bootstrap, str(k.alerts_topic))
    assert alerts, "alerts reached the Kafka alert topic"
    assert all(a["schema"] == "twinflow.alert" and a["twin_id"] in deployed for a in alerts)
    states = read_topic(kafka.bootstrap, str(k.twin_state_topic))
    assert {s["twin_id"] for s in states} == deployed


@pytest.mark.timeout(180)
def test_commands_reach_the_simulated_devices_over_each_protocol(
    tmp_path: Path, services: tuple[Mosquitto, KafkaBroker]
) -> None:
    mqtt, kafka = services
    dep = deployment(tmp_path, mqtt, kafka)
    sim = SimulatorThread(dep)
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error
    plant = sim.plant
    try:
        now = utc(plant.now())
        commands = [
            Command(
                Command.make_id(t, "derate", now),
                t,
                kind,
                "derate",
                {"fraction": 0.5},
                now,
                utc(max(plant.now(), time.time()) + 86400),  # the sinks judge expiry by wall time
                "test",
                CommandStatus.QUEUED,
            )
            for t, kind in (
                ("wt-001", "wind_turbine"),
                ("pump-002", "pump"),
                ("motor-003", "motor"),
            )
        ]
        import bytewax.operators as op
        from bytewax.dataflow import Dataflow

        flow = Dataflow("send-commands")
        op.output("actuators", op.input("in", flow, TestingSource(commands)), actuators_for(dep))
        run_main(flow)
        deadline = time.monotonic() + 60
        applied: set[str] = set()
        while time.monotonic() < deadline and len(applied) < 3:
            applied = {r.twin_id for r in plant.command_log if r.accepted}
            time.sleep(0.2)
        assert applied == {"wt-001", "pump-002", "motor-003"}, plant.command_log
    finally:
        sim.stop_flag.set()
        sim.join(timeout=30)
