"""Two ``twinflow run`` processes command OPC UA and Modbus devices over the sources' own
connections.

`twinflow simulate` serves a plant over OPC UA (one asyncua server) and Modbus TCP (one
pymodbus server per port). The cluster's deployment reaches each device through a counting
TCP relay of its own, so that it has four devices (two OPC UA server connections, two Modbus
endpoints), each a source partition that Bytewax places on one of the two processes. A
desired change per twin comes from a Kafka topic; its command is written by the process that
reads the twin's device, over the source's connection, and its outcomes reach the twin's
command book wherever Bytewax keeps it: the relays' ports are chosen so that, by Bytewax's
placement (:mod:`twinflow.connectors.placement_keys`), at least one device of each protocol
is read by the other process than the one that holds its twin's command book.

What must hold: every device sees one client connection, the source's (besides the start-up
probes of `twinflow run`, which connect and say nothing; a command sink's own session would
be a second one, open while the source's is); every write used a
source's connection (``twinflow_command_writes_total{connection="own"}`` is 0 in both
processes, and both wrote some); every command has each row of its lifecycle once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.flows.test_run_deployment import SimulatorThread
from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.ports import free_port
from twinflow.connectors.files import read_jsonl
from twinflow.connectors.placement_keys import key_worker, part_workers
from twinflow.flows.deploy import load_deployment

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

ROOT = Path(__file__).absolute().parents[2]

#: Each twin's desired change (a property the simulated device reports back).
DESIRED = {
    "pump-002": ("flow_setpoint", 150.0),
    "pump-005": ("flow_setpoint", 160.0),
    "motor-003": ("load_setpoint", 70.0),
    "motor-006": ("load_setpoint", 65.0),
}
LIFECYCLE = ["queued", "sent", "acknowledged", "succeeded"]


class CountingRelay:
    """``127.0.0.1:port`` relayed to ``127.0.0.1:target``, counting its connections: those
    over which the client said something (``talked``: not the start-up probes, which only
    connect) and how many of those were open at most at once (``most``). A probe is left out
    of both: the other process's probe may well come while the source's connection is open."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.talked = 0
        self.most = 0
        self._open = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            done, talking = threading.Event(), threading.Event()
            for a, b in ((client, upstream), (upstream, client)):
                args = (a, b, done, talking, a is client)
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        done: threading.Event,
        talking: threading.Event,
        asks: bool,
    ) -> None:
        try:
            while data := src.recv(65536):
                if asks:  # the client's first bytes: a connection in use
                    asks = False
                    with self._lock:
                        if not done.is_set():
                            self.talked += 1
                            self._open += 1
                            self.most = max(self.most, self._open)
                            talking.set()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        with self._lock:
            if not done.is_set():  # the first of the two directions to end closes it
                done.set()
                if talking.is_set():
                    self._open -= 1


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


def plant_text(opcua_port: int, modbus_ports: tuple[int, int]) -> str:
    """The simulated plant: where its devices really are."""
    return f"""
version: 1
simulator:
  twins: 6
  seed: 7
  speed: 10
  duration: 2h
  opcua_endpoint: "opc.tcp://127.0.0.1:{opcua_port}/twinflow/"
  modbus_port: {modbus_ports[0]}
flow: {{max_future_s: 864000}}
twins:
  - {{id: pump-002, type: pump, protocol: opcua, opcua: {{sampling_interval_ms: 200}}}}
  - {{id: pump-005, type: pump, protocol: opcua, opcua: {{sampling_interval_ms: 200}}}}
  - {{id: motor-003, type: motor, protocol: modbus, modbus: {{unit: 3, poll_interval_s: 0.5}}}}
  - id: motor-006
    type: motor
    protocol: modbus
    modbus: {{port: {modbus_ports[1]}, unit: 4, poll_interval_s: 0.5}}
"""


def opcua_key(port: int) -> str:
    return f"opc.tcp://127.0.0.1:{port}/twinflow/"


def modbus_key(port: int) -> str:
    return f"127.0.0.1:{port}"


def crossing(targets: dict[str, int], key: Callable[[int], str]) -> dict[str, CountingRelay]:
    """A relay per twin to its device's port, on ports such that in a cluster of two workers
    at least one twin's device is read (and commanded) on another worker than the one that
    holds the twin's command book, so that its outcomes must cross to the other process."""
    for _ in range(50):
        relays = {t: CountingRelay(port) for t, port in targets.items()}
        keys = {t: key(r.port) for t, r in relays.items()}
        where = part_workers(list(keys.values()), 2)
        if any(where[keys[t]] != key_worker(t, 2) for t in targets):
            return relays
        for r in relays.values():
            r.close()
    raise AssertionError(f"no relay ports put a device of {sorted(targets)} off its book")


def cluster_text(bootstrap: str, topic: str, via: dict[str, CountingRelay]) -> str:
    """The cluster's deployment: every device through its own relay."""
    a, b, c, d = (via[t].port for t in DESIRED)
    return f"""
version: 1
services:
  kafka: {{bootstrap: "{bootstrap}", command_requests_topic: {topic}}}
flow: {{max_future_s: 864000, command_timeout_s: 60}}
twins:
  - id: pump-002
    type: pump
    protocol: opcua
    opcua: {{endpoint: "opc.tcp://127.0.0.1:{a}/twinflow/", sampling_interval_ms: 200}}
  - id: pump-005
    type: pump
    protocol: opcua
    opcua: {{endpoint: "opc.tcp://127.0.0.1:{b}/twinflow/", sampling_interval_ms: 200}}
  - id: motor-003
    type: motor
    protocol: modbus
    modbus: {{port: {c}, unit: 3, poll_interval_s: 0.5}}
  - id: motor-006
    type: motor
    protocol: modbus
    modbus: {{port: {d}, unit: 4, poll_interval_s: 0.5}}
"""


def start(config: Path, folder: Path, index: int, addresses: str) -> tuple[Any, int]:
    """``twinflow run`` process ``index`` of the cluster; returns it and its metrics port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        "import sys; from twinflow.flows.cli import main; sys.exit(main())",
        "run",
        str(config),
        "--out",
        str(folder / "out"),
        "--metrics-port",
        str(port),
        "--process-id",
        str(index),
        "--addresses",
        addresses,
    ]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    log = open(folder / "run.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        argv, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log
    ), port


def writes(port: int) -> dict[str, float]:
    """``twinflow_command_writes_total`` of one process, by ``protocol/connection``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "twinflow_command_writes":
            for x in fam.samples:
                if x.name.endswith("_total"):
                    key = f"{x.labels['protocol']}/{x.labels['connection']}"
                    out[key] = out.get(key, 0.0) + x.value
    return out


def histories(folders: list[Path]) -> dict[str, list[str]]:
    """Each command's statuses, by twin, from every process's commands output."""
    out: dict[str, list[str]] = {}
    for folder in folders:
        path = folder / "out" / "commands.jsonl"
        for c in read_jsonl(path) if path.exists() else []:
            out.setdefault(c["twin_id"], []).append(c["status"])
    return out


def test_each_device_is_commanded_over_its_source_connection(
    tmp_path: Path, kafka: KafkaBroker
) -> None:
    opcua_port, modbus_ports = free_port(), (free_port(), free_port())
    (tmp_path / "plant.yaml").write_text(plant_text(opcua_port, modbus_ports))
    sim = SimulatorThread(load_deployment(tmp_path / "plant.yaml", env={}))
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error
    via = crossing({"pump-002": opcua_port, "pump-005": opcua_port}, opcua_key)
    via |= crossing(dict(zip(("motor-003", "motor-006"), modbus_ports, strict=True)), modbus_key)
    relays = [via[t] for t in DESIRED]
    topic = create_topic(kafka.bootstrap, unique_topic("requests"))
    config = tmp_path / "cluster.yaml"
    config.write_text(cluster_text(kafka.bootstrap, topic, via))
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    folders = [tmp_path / f"p{i}" for i in range(2)]
    runs = [start(config, folders[i], i, addresses) for i in range(2)]
    try:
        # Requests once every device is read, so that each command meets its source.
        deadline = time.monotonic() + 90
        while any(r.talked == 0 for r in relays) and time.monotonic() < deadline:
            for proc, _ in runs:
                assert proc.poll() is None, (folders[0] / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        assert all(r.talked for r in relays), [r.talked for r in relays]
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        for twin, (prop, value) in DESIRED.items():
            doc = {"request_id": f"want-{twin}", "twin_id": twin, "desired": {prop: value}}
            producer.produce(topic, json.dumps({**doc, "expires_at": expires}).encode())
        assert producer.flush(10) == 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = histories(folders)
            if all(sorted(seen.get(t, []), key=LIFECYCLE.index) == LIFECYCLE for t in DESIRED):
                break
            time.sleep(0.5)
        counted = [writes(port) for _, port in runs]
    finally:
        for proc, _ in runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in runs:
            try:
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        sim.stop_flag.set()
        sim.join(timeout=30)
        for relay in relays:
            relay.close()

    seen = histories(folders)
    for twin in DESIRED:  # each status once, whichever process stored it
        assert sorted(seen.get(twin, []), key=LIFECYCLE.index) == LIFECYCLE, (twin, seen)
    clients = [(r.talked, r.most) for r in relays]
    assert clients == [(1, 1)] * len(relays), clients  # one client each, the source's
    # Each process wrote to the one OPC UA server and the one Modbus endpoint it reads (of
    # two keys, Bytewax gives each worker one), over the source's connection.
    # (A try while the source is still subscribing is retried, so count connections, not tries.)
    used = [{k for k, v in c.items() if v} for c in counted]
    assert used == [{"opcua/source", "modbus/source"}] * 2, counted
    accepted = {r.twin_id for r in (sim.plant.command_log if sim.plant else []) if r.accepted}
    assert accepted == set(DESIRED), accepted
