"""Crash recovery of OPC UA and Modbus twins: ``twinflow run`` killed hard, then resumed live.

`twinflow simulate` serves a plant over OPC UA (a pump) and Modbus TCP (a motor, through a
relay the test can cut). ``twinflow run --recovery-dir DIR --snapshot-interval 0.5s`` reads
both twins and carries desired changes from a Kafka request topic to the devices over the
sources' own connections. The test then:

1. changes both twins' setpoints (commands A) and waits until they succeeded and a snapshot
   was committed after that;
2. cuts the Modbus device off and asks the motor for another setpoint (command B): the book
   queues it, the sink cannot write it; after a snapshot holds it queued, the run is killed
   with SIGKILL;
3. resumes with the same command, ``--out`` and recovery directory, the device reachable
   again, and changes both setpoints once more (commands C).

What must hold: the resumed run reads both devices again and commands them (C succeeds); a
command that ended before the kill is not written to its device again (the simulated plant
logs each setpoint write once); the command in flight at the kill is sent again by the
restored command book, reaches the motor before C and ends ``succeeded``, each status once
(its ``queued`` row is the one written before the kill); each twin's reading count goes on
from the snapshot rather than from zero; every JSON Lines file parses line by line, and what
the killed run wrote after its last snapshot was cut back rather than written twice.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.flows.test_run_deployment import SimulatorThread
from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.ports import free_port
from tests.services.tcp_relay import Relay
from tests.services.waiting import wait_until
from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.simulator import Plant
from twinflow.flows.deploy import load_deployment
from twinflow.operators.command_book import desired_command_id

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

ROOT = Path(__file__).absolute().parents[2]
#: Seconds after being queued that an unanswered command ends ``timed_out``: longer than
#: the kill and resume take, so command B is still open when the resumed run sends it again.
COMMAND_TIMEOUT_S = 60
#: Each step's desired change: (request id, twin, property, value).
BEFORE = [
    ("a-pump", "pump-002", "flow_setpoint", 150.0),
    ("a-motor", "motor-003", "load_setpoint", 70.0),
]
IN_FLIGHT = ("b-motor", "motor-003", "load_setpoint", 80.0)
AFTER = [
    ("c-pump", "pump-002", "flow_setpoint", 180.0),
    ("c-motor", "motor-003", "load_setpoint", 60.0),
]
LIFECYCLE = ["queued", "sent", "acknowledged", "succeeded"]
ENDS = {"succeeded", "failed", "timed_out", "rejected", "expired"}


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


def plant_text(opcua_port: int, modbus_port: int) -> str:
    """The simulated plant (ten times real time): the pump on OPC UA, the motor on Modbus."""
    return f"""
version: 1
simulator:
  twins: 6
  seed: 7
  speed: 10
  duration: 2h
  opcua_endpoint: "opc.tcp://127.0.0.1:{opcua_port}/twinflow/"
  modbus_port: {modbus_port}
flow: {{max_future_s: 864000}}
twins:
  - {{id: pump-002, type: pump, protocol: opcua, opcua: {{sampling_interval_ms: 200}}}}
  - {{id: motor-003, type: motor, protocol: modbus, modbus: {{unit: 3, poll_interval_s: 0.5}}}}
"""


def run_text(bootstrap: str, topic: str, opcua_port: int, modbus_port: int) -> str:
    """The flow's deployment: the same two twins, the motor through the test's relay."""
    return f"""
version: 1
services:
  kafka: {{bootstrap: "{bootstrap}", command_requests_topic: {topic}}}
flow: {{max_future_s: 864000, command_timeout_s: {COMMAND_TIMEOUT_S}}}
twins:
  - id: pump-002
    type: pump
    protocol: opcua
    opcua: {{endpoint: "opc.tcp://127.0.0.1:{opcua_port}/twinflow/", sampling_interval_ms: 200}}
  - id: motor-003
    type: motor
    protocol: modbus
    modbus: {{port: {modbus_port}, unit: 3, poll_interval_s: 0.5}}
"""


def start(
    config: Path, out: Path, recovery: Path, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """``twinflow run`` with recovery and a 0.5 s snapshot interval; returns it and its
    metrics port."""
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        "import sys; from twinflow.flows.cli import main; sys.exit(main())",
        "run",
        str(config),
        "--out",
        str(out),
        "--recovery-dir",
        str(recovery),
        "--snapshot-interval",
        "0.5s",
        "--metrics-port",
        str(port),
    ]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    sink = open(log, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        argv, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=sink, stderr=sink
    )
    return proc, port


def readings(port: int) -> dict[str, float]:
    """``twinflow_readings_total`` of a run by twin type (empty while it is not serving)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "twinflow_readings":
            for s in fam.samples:
                if s.name.endswith("_total"):
                    out[s.labels["twin_type"]] = s.value
    return out


def command_writes(port: int) -> dict[str, float]:
    """``twinflow_command_writes_total`` of a run by ``protocol/connection``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        f"{s.labels['protocol']}/{s.labels['connection']}": s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "twinflow_command_writes"
        for s in fam.samples
        if s.name.endswith("_total")
    }


def reads_both(proc: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """Whether the run has taken in readings of the pump and of the motor (it must be up)."""
    assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    got = readings(port)
    return got.get("pump", 0) > 0 and got.get("motor", 0) > 0


def committed(recovery: Path) -> int:
    """The newest epoch whose snapshot every recovery partition has committed."""
    epochs = []
    for part in sorted(recovery.glob("part-*.sqlite3")):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
        epochs.append(int(row[0]) if row and row[0] is not None else 0)
    return min(epochs, default=0)


def wait_snapshot(recovery: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until a snapshot begun after this call is committed (two epochs on)."""
    mark = committed(recovery)

    def done() -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        return committed(recovery) >= mark + 2

    wait_until("a snapshot to be committed", done, 30)


def request(producer: Producer, topic: str, asks: list[tuple[str, str, str, float]]) -> None:
    """Send desired changes to the request topic (valid for ten minutes)."""
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    for rid, twin, prop, value in asks:
        doc = {"request_id": rid, "twin_id": twin, "desired": {prop: value}, "expires_at": expires}
        producer.produce(topic, json.dumps(doc).encode())
    assert producer.flush(10) == 0


def cid(ask: tuple[str, str, str, float]) -> str:
    """The command id of a desired change."""
    rid, twin, prop, _ = ask
    return desired_command_id(twin, prop, rid)


def jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON Lines file, parsed; a torn or empty line fails the test."""
    text = path.read_text() if path.exists() else ""
    assert not text or text.endswith("\n"), f"{path.name}: its last line is torn"
    return [json.loads(line) for line in text.splitlines()]


def statuses(out: Path) -> dict[str, list[str]]:
    """Each command's statuses, in the order ``commands.jsonl`` holds them."""
    seen: dict[str, list[str]] = {}
    for row in jsonl_rows(out / "commands.jsonl"):
        seen.setdefault(row["command_id"], []).append(row["status"])
    return seen


def has(out: Path, ask: tuple[str, str, str, float], status: str) -> bool:
    return status in statuses(out).get(cid(ask), [])


def writes(plant: Plant, twin: str) -> list[str]:
    """What the simulated device of ``twin`` applied, write by write."""
    return [r.detail for r in plant.command_log if r.twin_id == twin and r.accepted]


def stop(proc: subprocess.Popen[bytes], how: signal.Signals) -> int:
    """Send ``how`` to a run and wait for it to end."""
    if proc.poll() is None:
        proc.send_signal(how)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_opcua_and_modbus_twins_resume_after_sigkill(tmp_path: Path, kafka: KafkaBroker) -> None:
    opcua_port, modbus_port = free_port(), free_port()
    (tmp_path / "plant.yaml").write_text(plant_text(opcua_port, modbus_port))
    sim = SimulatorThread(load_deployment(tmp_path / "plant.yaml", env={}))
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error
    plant = sim.plant
    relay = Relay(free_port(), modbus_port)
    relay.open()
    topic = create_topic(kafka.bootstrap, unique_topic("requests"))
    config = tmp_path / "run.yaml"
    config.write_text(run_text(kafka.bootstrap, topic, opcua_port, relay.port))
    out, recovery, log = tmp_path / "out", tmp_path / "recovery", tmp_path / "run.log"
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    runs: list[subprocess.Popen[bytes]] = []
    try:
        first, port = start(config, out, recovery, log)
        runs.append(first)
        wait_until("readings of both twins", lambda: reads_both(first, port, log), 90)
        # A: both setpoints changed and ended, then a snapshot that holds their end.
        request(producer, topic, BEFORE)
        wait_until(
            "commands A to succeed", lambda: all(has(out, a, "succeeded") for a in BEFORE), 60
        )
        wait_snapshot(recovery, first, log)
        # B: in flight at the kill. The motor's device is away, so its sink retries the write.
        relay.close()
        request(producer, topic, [IN_FLIGHT])
        wait_until("command B to be queued", lambda: has(out, IN_FLIGHT, "queued"), 30)
        wait_snapshot(recovery, first, log)
        assert stop(first, signal.SIGKILL) == -signal.SIGKILL
        killed = (out / "commands.jsonl").read_text().splitlines()
        before_resume = {t: len(writes(plant, t)) for t in ("pump-002", "motor-003")}

        relay.open()
        second, port = start(config, out, recovery, log)
        runs.append(second)
        wait_until("readings after the resume", lambda: reads_both(second, port, log), 90)
        request(producer, topic, AFTER)
        wait_until(
            "commands B and C to end",
            lambda: all(
                any(s in ENDS for s in statuses(out).get(cid(a), [])) for a in [IN_FLIGHT, *AFTER]
            ),
            COMMAND_TIMEOUT_S + 30,
        )
        # B, sent again at the resume, and C went over the sources' own connections.
        resumed_writes = command_writes(port)
        wait_snapshot(recovery, second, log)
        assert stop(second, signal.SIGTERM) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        for proc in runs:
            stop(proc, signal.SIGKILL)
        sim.stop_flag.set()
        sim.join(timeout=30)
        relay.close()

    # No output file is torn: every JSON Lines file parses line by line.
    for path in sorted(out.glob("*.jsonl")):
        jsonl_rows(path)
    # Each command has one lifecycle: every status once, one end state; B's too, though it
    # was queued by the killed run and sent by the resumed one.
    seen = statuses(out)
    for ask in [*BEFORE, IN_FLIGHT, *AFTER]:
        assert seen.get(cid(ask)) == LIFECYCLE, (ask, seen.get(cid(ask)))
    resent = [r for r in jsonl_rows(out / "commands.jsonl") if r["command_id"] == cid(IN_FLIGHT)]
    # Queued by the killed run (no try yet); the resumed run's sending is one attempt more.
    attempts = [r["attempt"] for r in resent]
    assert attempts[0] == 0 and all(n >= 1 for n in attempts[1:]), resent
    # The rows the killed run had written are the start of the file, not written twice.
    final = (out / "commands.jsonl").read_text().splitlines()
    pairs = zip(killed, final, strict=False)
    kept = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(killed), len(final)))
    kept_ids = {(json.loads(x)["command_id"], json.loads(x)["status"]) for x in final[:kept]}
    assert {(cid(a), "succeeded") for a in BEFORE} <= kept_ids, (killed, final)
    assert (cid(IN_FLIGHT), "queued") in kept_ids, (killed, final)
    # Devices: each command that ended before the kill was written once; the one in flight
    # had not reached the motor (its device was away) and was written once after the
    # resume, before C; the new ones once each.
    assert before_resume == {"pump-002": 1, "motor-003": 1}, plant.command_log
    assert writes(plant, "pump-002") == ["flow setpoint 150 m3/h", "flow setpoint 180 m3/h"]
    assert writes(plant, "motor-003") == [
        "load setpoint 70 %",
        "load setpoint 80 %",
        "load setpoint 60 %",
    ]
    assert resumed_writes.get("modbus/source", 0) >= 2, resumed_writes
    assert resumed_writes.get("opcua/source", 0) >= 1, resumed_writes
    assert not any(n for k, n in resumed_writes.items() if k.endswith("/own")), resumed_writes
    # Per-twin state went on from the snapshot: a twin's reading count never falls back, and
    # its desired setpoint is never forgotten (a state rebuilt from nothing would have
    # counted from zero and desired nothing until commands C).
    states = read_parquet_dir(out / "twin_states").sort("time")
    for twin, prop, wanted in (
        ("pump-002", "flow_setpoint", [150.0, 180.0]),
        ("motor-003", "load_setpoint", [70.0, 80.0, 60.0]),
    ):
        rows = states.filter(states["twin_id"] == twin)
        counts = rows["readings"].to_list()
        assert all(a <= b for a, b in itertools.pairwise(counts)), (twin, counts)
        desired = rows[f"{prop}__desired"].to_list()
        set_at = next(i for i, v in enumerate(desired) if not math.isnan(v))
        assert not any(math.isnan(v) for v in desired[set_at:]), (twin, desired)
        changes = [v for v, _ in itertools.groupby(desired[set_at:])]
        assert changes == wanted, (twin, desired)
