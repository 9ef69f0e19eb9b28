"""The command loop end to end: requests on Kafka, the flow's command book, real devices.

`twinflow simulate` serves the plant over MQTT (a real mosquitto), OPC UA and Modbus TCP; the
deployment's flow reads command requests and desired-property changes from a Kafka topic,
checks them against the twins' DTDL models, sends them over each twin's protocol and follows
each to its end on the commands stream:

- a desired change of each protocol's twin becomes the property's command, reaches the
  simulated device and ends ``succeeded`` (MQTT: the device's response; OPC UA: the reported
  flow setpoint matches; Modbus: the write was acknowledged and the motor has no reported
  counterpart);
- a value out of the property's range is ``rejected`` before anything is sent;
- a request that expired before it arrived ends ``expired``;
- a command to a device whose server is not there ends ``timed_out``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from confluent_kafka import Producer

from tests.flows.test_run_deployment import SimulatorThread
from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.mosquitto import Mosquitto, free_port
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.files import read_jsonl
from twinflow.flows.deploy import Deployment, load_deployment
from twinflow.flows.run import deployment_flow

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

#: Seconds (wall clock) a command may take before the book ends it timed out.
TIMEOUT_S = 10


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[Mosquitto, KafkaBroker]]:
    with Mosquitto() as mqtt, KafkaBroker() as kafka:
        yield mqtt, kafka


def deployment(tmp_path: Path, mqtt: Mosquitto, kafka: KafkaBroker, requests: str) -> Deployment:
    nowhere = f"opc.tcp://127.0.0.1:{free_port()}/nobody-home/"
    text = f"""
version: 1
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "loop-{free_port()}"}}
  kafka:
    bootstrap: "{kafka.bootstrap}"
    commands_topic: {unique_topic("commands")}
    command_requests_topic: {requests}
simulator:
  twins: 6
  seed: 7
  speed: 10
  duration: 2h
  opcua_endpoint: "opc.tcp://127.0.0.1:{free_port()}/twinflow/"
  modbus_port: {free_port()}
flow: {{max_future_s: 864000, command_timeout_s: {TIMEOUT_S}}}
twins:
  - {{id: wt-001, type: wind_turbine, protocol: mqtt}}
  - {{id: pump-002, type: pump, protocol: opcua, opcua: {{sampling_interval_ms: 200}}}}
  - {{id: motor-003, type: motor, protocol: modbus, modbus: {{unit: 3, poll_interval_s: 0.5}}}}
  - {{id: pump-005, type: pump, protocol: opcua, opcua: {{endpoint: "{nowhere}"}}}}
"""
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return load_deployment(path, env={})


def send_requests(bootstrap: str, topic: str, requests: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for r in requests:
        producer.produce(topic, json.dumps(r).encode(), key=r["twin_id"].encode())
    assert producer.flush(10) == 0


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def lifecycles(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each command's transitions from the flow's commands output, keyed by reason."""
    path = out / "commands.jsonl"
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for c in read_jsonl(path) if path.exists() else []:
        by_reason.setdefault(c["reason"], []).append(c)
    return by_reason


#: How far each status is along a command's lifecycle; every end state is furthest.
PROGRESS = {"issued": 0, "queued": 1, "sent": 2, "acknowledged": 3}


def furthest(history: list[dict[str, Any]]) -> dict[str, Any]:
    """A command's document of its furthest status (its end state once it has one): a
    ``sent`` or ``acknowledged`` the command book learnt after the end is output after it,
    as history (docs/guide/command-loop.md), so the last document need not be the end."""
    return max(history, key=lambda c: PROGRESS.get(c["status"], 4))


def ended(history: list[dict[str, Any]]) -> bool:
    return any(
        c["status"] in {"succeeded", "failed", "timed_out", "expired", "rejected"} for c in history
    )


def run_until_ended(
    flow: Any, out: Path, reasons: Iterable[str], sim: SimulatorThread, stop: threading.Event
) -> None:
    """Run ``flow`` until every command of ``reasons`` has ended (at most 120 s), then stop
    the simulated plant and the flow's feedback source."""
    wanted = list(reasons)

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = lifecycles(out)
            if all(r in seen and ended(seen[r]) for r in wanted):
                break
            time.sleep(0.5)
        sim.stop_flag.set()
        sim.join(timeout=30)
        stop.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run_main(flow)
    watcher.join(timeout=60)


def test_desired_changes_and_requests_end_as_the_devices_answer(
    tmp_path: Path, services: tuple[Mosquitto, KafkaBroker]
) -> None:
    mqtt, kafka = services
    topic = create_topic(kafka.bootstrap, unique_topic("requests"))
    dep = deployment(tmp_path, mqtt, kafka, topic)
    sim = SimulatorThread(dep)
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error
    now = datetime.now(UTC)
    later = iso(now + timedelta(minutes=10))
    desired = {
        "wt-001": ("power_limit", 1200.0),
        "pump-002": ("flow_setpoint", 150.0),
        "motor-003": ("load_setpoint", 70.0),
    }
    requests = [
        {"request_id": f"want-{t}", "twin_id": t, "desired": {p: v}, "expires_at": later}
        for t, (p, v) in desired.items()
    ]
    requests += [
        {
            "request_id": "too-much",
            "twin_id": "pump-002",
            "desired": {"flow_setpoint": 9999},
            "expires_at": later,
        },
        {
            "request_id": "stale",
            "twin_id": "pump-002",
            "command": "set_flow",
            "params": {"m3h": 200},
            "expires_at": iso(now - timedelta(minutes=1)),
        },
        {
            "request_id": "nobody-home",
            "twin_id": "pump-005",
            "command": "set_flow",
            "params": {"m3h": 200},
            "expires_at": later,
        },
    ]
    stop = threading.Event()
    out = tmp_path / "out"
    flow = deployment_flow(
        dep,
        out,
        limits={
            "mqtt": {"idle_timeout_s": 3.0},
            "opcua": {"stop": stop},
            "modbus": {"stop": stop},
            "requests": {"tail": False},
            "feedback": {"until": stop.is_set},
        },
        feedback=CommandFeedback(),
    )
    reasons = {
        **{f"desired:{p}={v:g} (want-{t})": t for t, (p, v) in desired.items()},
        "desired:flow_setpoint=9999 (too-much)": "pump-002",
        "request:stale": "pump-002",
        "request:nobody-home": "pump-005",
    }

    send_requests(kafka.bootstrap, topic, requests)
    run_until_ended(flow, out, reasons, sim, stop)
    assert sim.error is None, sim.error

    seen = lifecycles(out)
    statuses = {r: [c["status"] for c in seen.get(r, [])] for r in reasons}
    for t, (p, v) in desired.items():
        history = statuses[f"desired:{p}={v:g} (want-{t})"]
        assert history[0] == "queued" and "succeeded" in history, (t, history)
        # Each status once. The reported value may show the change before the device's
        # acknowledgement is back (which then ends the command first; the acknowledgement
        # follows as history), and the broker's PUBACK (sent) and the device's answer travel
        # on different connections: not every intermediate status need be seen, but one must.
        assert len(history) == len(set(history)) and len(history) >= 3, (t, history)
        assert set(history) <= {"queued", "sent", "acknowledged", "succeeded"}, (t, history)
    assert statuses["desired:flow_setpoint=9999 (too-much)"] == ["rejected"]
    assert statuses["request:stale"] == ["expired"]
    unreachable = statuses["request:nobody-home"]
    assert unreachable[0] == "queued" and unreachable[-1] == "timed_out", unreachable
    assert "acknowledged" not in unreachable

    # The devices really changed: the plant took each accepted command once, the bad
    # ones never reached it.
    log = sim.plant.command_log if sim.plant else []
    accepted = {r.twin_id for r in log if r.accepted}
    assert {"wt-001", "pump-002", "motor-003"} <= accepted, log
    assert not any(r.twin_id == "pump-005" for r in log)
    pump = furthest(seen["desired:flow_setpoint=150 (want-pump-002)"])
    assert "flow_setpoint_m3h=150" in pump["detail"], pump
    # Every transition is a command v2 document with its origin and time.
    for history in seen.values():
        for c in history:
            assert c["version"] == 2 and c["origin"] in {"desired", "request"}
            assert c["status_at"] is not None
