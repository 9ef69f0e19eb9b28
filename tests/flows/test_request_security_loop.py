"""Issue 11 end to end: signed requests steer a real device, the rest end rejected or dead.

A deployment with ``services.kafka.requests`` reads a request topic that carries, next to
one signed and granted desired change, an unsigned request, a forged one, a granted issuer
asking for something it was not granted, and the poison requests of the issue (nesting
10,000 deep, integers of 400 and 5,000 digits, an ``expires_at`` past the datetime range,
a payload over the size limit, a Kafka timestamp after 9999). The flow keeps running: the
granted change reaches the simulated turbine over MQTT and ends ``succeeded``, the refused
ones end ``rejected`` with the reason and the poison ones are dead letters.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.connectors.test_request_poison import DEEP_ARRAY, INT_400, INT_5000
from tests.flows.test_command_loop import (  # noqa: F401
    furthest,
    lifecycles,
    run_until_ended,
    services,
)
from tests.flows.test_run_deployment import SimulatorThread
from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.mosquitto import Mosquitto, free_port
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.files import read_jsonl
from twinflow.connectors.kafka.request_auth import ISSUER_HEADER, SIGNATURE_HEADER, Key
from twinflow.flows.deploy import load_deployment
from twinflow.flows.run import deployment_flow

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

KEY = "ops-key-for-the-loop-test-0123"
#: A Kafka timestamp (ms) after the year 9999.
AFTER_9999_MS = 253_402_300_800_000 * 2


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def request(rid: str, later: str, **what: Any) -> bytes:
    import json

    return json.dumps(
        {"request_id": rid, "twin_id": "wt-001", **what, "expires_at": later}
    ).encode()


def headers(value: bytes, key: str = KEY) -> list[tuple[str, bytes]]:
    sig = Key(key.encode()).sign(value)
    return [(ISSUER_HEADER, b"ops"), (SIGNATURE_HEADER, sig.encode())]


def test_signed_granted_request_succeeds_and_the_rest_are_refused(
    tmp_path: Path,
    services: tuple[Mosquitto, KafkaBroker],  # noqa: F811
) -> None:
    mqtt, kafka = services
    topic = create_topic(kafka.bootstrap, unique_topic("secure-requests"))
    path = tmp_path / "plant.yaml"
    path.write_text(f"""
version: 1
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "secure-{free_port()}"}}
  kafka:
    bootstrap: "{kafka.bootstrap}"
    commands_topic: {unique_topic("commands")}
    command_requests_topic: {topic}
    requests:
      issuers: {{ops: {{key_env: OPS_KEY}}}}
      allow: [{{issuer: ops, properties: [power_limit], twins: [wt-001]}}]
simulator:
  twins: 6
  seed: 7
  speed: 10
  duration: 2h
  opcua_endpoint: "opc.tcp://127.0.0.1:{free_port()}/twinflow/"
  modbus_port: {free_port()}
flow: {{max_future_s: 864000, command_timeout_s: 10}}
twins:
  - {{id: wt-001, type: wind_turbine, protocol: mqtt}}
""")
    dep = load_deployment(path, env={"OPS_KEY": KEY})
    sim = SimulatorThread(dep)
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error
    later = iso(datetime.now(UTC) + timedelta(minutes=10))

    granted = request("granted", later, desired={"power_limit": 1200})
    unsigned = request("unsigned", later, desired={"power_limit": 1100})
    forged = request("forged", later, desired={"power_limit": 1000})
    forbidden = request("forbidden", later, command="derate", params={"fraction": 0.5})
    poison = [
        DEEP_ARRAY,
        INT_400,
        INT_5000,
        request("late", "9999-12-31T23:59:59-23:59", desired={"power_limit": 1200}),
        b'{"request_id": "' + b"x" * 100_000 + b'"}',
    ]
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "message.max.bytes": 4_000_000})
    for value in poison[:3]:
        producer.produce(topic, value)
    producer.produce(topic, forged, headers=headers(forged, "not-the-key-0123456789"))
    producer.produce(topic, unsigned)
    for value in poison[3:]:
        producer.produce(topic, value, headers=headers(value))
    future = request("future", later, desired={"power_limit": 1200})
    producer.produce(topic, future, headers=headers(future), timestamp=AFTER_9999_MS)
    producer.produce(topic, forbidden, headers=headers(forbidden))
    producer.produce(topic, granted, headers=headers(granted))
    assert producer.flush(10) == 0

    stop = threading.Event()
    out = tmp_path / "out"
    flow = deployment_flow(
        dep,
        out,
        limits={
            "mqtt": {"idle_timeout_s": 3.0},
            "requests": {"tail": False},
            "feedback": {"until": stop.is_set},
        },
        feedback=CommandFeedback(),
    )
    reasons = [
        "desired:power_limit=1200 (granted)",
        "desired:power_limit=1100 (unsigned)",
        "desired:power_limit=1000 (forged)",
        "request:forbidden",
    ]

    run_until_ended(flow, out, reasons, sim, stop)
    assert sim.error is None, sim.error

    seen = lifecycles(out)
    last = {r: furthest(seen[r]) for r in reasons if r in seen}
    assert last["desired:power_limit=1200 (granted)"]["status"] == "succeeded", seen
    for r, detail in [
        ("desired:power_limit=1100 (unsigned)", "not authenticated: no twinflow-issuer header"),
        ("desired:power_limit=1000 (forged)", "signature does not match issuer 'ops'"),
        ("request:forbidden", "issuer 'ops' may not send command 'derate' to twin 'wt-001'"),
    ]:
        assert [c["status"] for c in seen[r]] == ["rejected"], seen[r]
        assert detail in seen[r][0]["detail"], seen[r]
    accepted = [c for c in (sim.plant.command_log if sim.plant else []) if c.accepted]
    assert len(accepted) == 1 and accepted[0].twin_id == "wt-001", accepted

    dead = [d for d in read_jsonl(out / "deadletter.jsonl") if d["source"] == f"kafka:{topic}"]
    reasons_dead = sorted(d["reason"] for d in dead)
    assert len(dead) == len(poison) + 1, reasons_dead
    parts = ("nested 10000 deep", "400 digits", "5000 digits", "lies outside", "exceeds", "Kafka")
    for part in parts:
        assert any(part in r for r in reasons_dead), (part, reasons_dead)
