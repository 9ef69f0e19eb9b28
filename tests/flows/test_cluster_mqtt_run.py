"""Two ``twinflow run`` processes reading MQTT and commanding MQTT devices, against one process.

A seeded plant is published once, one message per reading, through the simulator's MQTT
devices (a real mosquitto) into the persistent sessions of two deployments made beforehand:
one session (``client_id``) for the single process, and ``partitions: 2`` (each session reads
the twins a hash of the twin id gives it) for a cluster of two processes of one worker. A
command request per twin waits in a Kafka topic of two partitions; a device client answers
every command it receives (acknowledged, then succeeded).

Each run is stopped (SIGTERM: the flow drains and flushes) once every twin's last reading and
every requested command's success are stored. The cluster's database must then hold the
single process's rows in every table: none lost, none duplicated, equal but for what depends
on where MQTT frames end (floats in their last digits, the points where a twin state is
emitted) or on the wall clock (when a payload without a time was received). Each command
reached the device once in each run, was published by one process of the cluster, and its
answer, received by process 0, reached the twin's command book on either process.

Not here: a process killed and resumed. MQTT has no offsets to rewind to: a message is
acknowledged to the broker once the flow has taken it, so what a killed process had taken
since its last snapshot cannot come again, and the rows could not match exactly (see
docs/guide/cluster.md).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.flows.test_recovery import contents, new_database, query, tables
from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.mosquitto import Mosquitto
from tests.services.ports import free_port
from tests.services.postgres import Postgres
from tests.services.waiting import wait_until
from twinflow.connectors.mqtt import MqttSource
from twinflow.connectors.mqtt.client import make_client
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.devices.mqtt import MqttDevices
from twinflow.core.records import RawMessage, TelemetryFrame
from twinflow.flows.deploy import Deployment, load_deployment

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

ROOT = Path(__file__).absolute().parents[2]
TWINS = 6
#: Seconds a device takes to act on a command before it answers.
ANSWER_S = 0.5
HOURS = 1.0

Rows = dict[str, list[tuple[Any, ...]]]


class Device:
    """The twins' actuator end: a plain MQTT client subscribed to every command topic that
    counts how often each command id was published and answers each command on the twin's
    response topic, ``acknowledged`` then ``succeeded``, ``ANSWER_S`` after it arrived (a
    device acts, then answers)."""

    def __init__(self, dep: Deployment) -> None:
        settings = dep.services["mqtt"]
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = make_client(settings, f"watch-{uuid.uuid4().hex[:6]}", v5=True)
        self._client.on_connect = lambda c, *_: c.subscribe("plant/+/+/commands", qos=1)
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = self._on_message
        self._client.loop_start()
        assert self._ready.wait(10), "the command watcher did not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        command_id = json.loads(msg.payload)["command_id"]
        with self._lock:
            self.seen[command_id] += 1
        topic = msg.topic.rpartition("/")[0] + "/responses"
        threading.Timer(ANSWER_S, self._answer, (topic, command_id)).start()

    def _answer(self, topic: str, command_id: str) -> None:
        for status in ("acknowledged", "succeeded"):
            doc = {"command_id": command_id, "status": status, "detail": "derated"}
            self._client.publish(topic, json.dumps(doc), qos=1)

    def counts(self) -> Counter[str]:
        with self._lock:
            out = Counter(self.seen)
            self.seen.clear()
        return out

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Setup:
    """The recorded plant in both deployments' sessions, the requests, devices and watcher."""

    def __init__(self, mqtt: Mosquitto, kafka: KafkaBroker, folder: Path) -> None:
        self.bootstrap = kafka.bootstrap
        self.topics = [create_topic(kafka.bootstrap, unique_topic("requests"), 2) for _ in "ab"]
        self.expires = datetime.now(UTC) + timedelta(hours=1)
        tag = uuid.uuid4().hex[:6]
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        self.plant = Plant(
            PlantConfig(n_twins=TWINS, duration_s=HOURS * 3600, seed=9, start=start, chunk_s=10)
        )
        self.single = self._deployment(
            folder / "single.yaml", f"one-{tag}", 0, mqtt, kafka, self.topics[0]
        )
        self.pair = self._deployment(
            folder / "pair.yaml", f"two-{tag}", 2, mqtt, kafka, self.topics[1]
        )
        # The sessions exist before anything is published, so the broker queues it all.
        for path, spread in ((self.single, 0), (self.pair, 2)):
            dep = load_deployment(path, {})
            source = MqttSource(dep.services["mqtt"], dep.bindings("mqtt"), partitions=spread)
            for part in [source.build_part("in", p, None) for p in source.list_parts()]:
                assert part.ready.wait(10)
                part.close()
        dep = load_deployment(self.single, {})
        self.watch = Device(dep)
        devices = MqttDevices(self.plant, dep.services["mqtt"], dep.bindings("mqtt"))
        assert devices.start()
        try:
            self.last = self._publish(devices)
        finally:
            devices.stop()

    def _deployment(
        self,
        path: Path,
        client_id: str,
        partitions: int,
        mqtt: Mosquitto,
        kafka: KafkaBroker,
        requests: str,
    ) -> Path:
        spread = f", partitions: {partitions}" if partitions else ""
        lines = [
            "version: 1",
            "site: s1",
            "services:",
            f'  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "{client_id}"{spread}}}',
            f'  kafka: {{bootstrap: "{kafka.bootstrap}", command_requests_topic: {requests}}}',
            "flow: {window_s: 120, lateness_s: 30, command_timeout_s: 120}",
            "twins:",
            *(f"  - {{id: {t}, type: {k}, protocol: mqtt}}" for t, k in self.plant.twins),
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def _publish(self, devices: MqttDevices) -> dict[str, float]:
        """Every reading and raw payload of the plant; each twin's last reading time."""
        last: dict[str, float] = {}
        for item in self.plant.items():
            if isinstance(item, TelemetryFrame):
                devices.publish(item)
                last[item.twin_id] = max(last.get(item.twin_id, 0.0), float(item.times[-1]))
            elif isinstance(item, RawMessage) and len(item.payload) < 100_000:
                twin = _twin_of(item.payload)
                if twin in last:
                    devices.publish_payload(twin, item.payload)
        assert devices.flush(60), "the broker did not take every reading"
        return last

    def request(self, topic: str) -> None:
        """One derate request per twin into ``topic``, the same documents and message times
        for every run (a request's ``issued_at`` is its message's time)."""
        expires = self.expires.isoformat().replace("+00:00", "Z")
        at = int(self.expires.timestamp() * 1000) - 3_600_000
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for twin, _ in self.plant.twins:
            doc = {
                "request_id": f"derate-{twin}",
                "twin_id": twin,
                "command": "derate",
                "params": {"fraction": 0.8},
                "expires_at": expires,
            }
            producer.produce(topic, json.dumps(doc).encode(), key=twin.encode(), timestamp=at)
        assert producer.flush(10) == 0

    def close(self) -> None:
        self.watch.close()


def _twin_of(payload: bytes) -> str | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    twin = doc.get("twin_id") if isinstance(doc, dict) else None
    return twin if isinstance(twin, str) else None


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Setup, Postgres]]:
    with Mosquitto() as mqtt, KafkaBroker() as kafka, Postgres() as pg:
        s = Setup(mqtt, kafka, tmp_path_factory.mktemp("mqtt_cluster"))
        try:
            yield s, pg
        finally:
            s.close()


@dataclass
class Run:
    """One ``twinflow run`` process, its folder and its metrics port."""

    proc: subprocess.Popen[bytes]
    folder: Path
    port: int

    def log(self) -> str:
        return (self.folder / "run.log").read_text(errors="replace")

    def counted(self, family: str, label: str, value: str) -> float:
        """A counter of the process's metrics, by one label."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        for fam in text_string_to_metric_families(text):
            if fam.name == family:
                return sum(
                    x.value
                    for x in fam.samples
                    if x.name.endswith("_total") and x.labels.get(label) == value
                )
        return 0.0


def start(config: Path, db: str, folder: Path, *cluster: str) -> Run:
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
        "--recovery-dir",
        str(folder / "recovery"),
        "--snapshot-interval",
        "0.5s",
        "--metrics-port",
        str(port),
        *cluster,
    ]
    full_env = {**os.environ, "DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    log = open(folder / "run.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log, stderr=log)
    return Run(proc, folder, port)


def run_to_the_end(s: Setup, runs: list[Run], db: str, topic: str) -> list[tuple[float, float]]:
    """Wait until every twin's last reading is stored, then send the requests into ``topic``
    (so that when a command arrives does not depend on how far the telemetry is), wait
    until each has succeeded, then stop the processes as an operator would (SIGTERM) and
    expect a clean exit. Returns each process's commands published and device answers
    ``succeeded`` it received."""
    want = {t: datetime.fromtimestamp(v, UTC) for t, v in s.last.items()}

    def read(sql: str) -> list[tuple[Any, ...]] | None:
        for run in runs:
            if run.proc.poll() is not None:
                code = run.proc.returncode
                raise AssertionError(f"{run.folder.name} exited {code}:\n{run.log()[-3000:]}")
        try:
            return query(db, sql)
        except Exception:  # the tables fill while a busy server may refuse a connection
            return None

    def stored() -> bool:
        newest = read("SELECT twin_id, max(time) FROM twinflow.telemetry GROUP BY 1")
        return newest is not None and dict(newest) == want

    def done() -> bool:
        # The end and the `sent` row: a command's `sent` may come after its end (cluster.md).
        sql = "SELECT status, count(*) FROM twinflow.commands GROUP BY 1"
        got = dict(read(sql) or ())
        return all(got.get(status, 0) >= TWINS for status in ("sent", "succeeded"))

    try:
        wait_until("every reading", stored, 180)
        s.request(topic)
        wait_until("every command's success and sending", done, 60)
        counts = [
            (
                r.counted("twinflow_mqtt_commands", "outcome", "published"),
                r.counted("twinflow_mqtt_command_responses", "status", "succeeded"),
            )
            for r in runs
        ]
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
    for run in runs:
        try:
            rc = run.proc.wait(timeout=120)
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
        assert rc == 0, f"twinflow run in {run.folder} exited {rc}:\n{run.log()[-3000:]}"
    return counts


#: Where a state is emitted depends on where a frame ends (a state at most per frame), and an
#: MQTT frame is what one read of the session brought: these keep what does not depend on it.
BY_FRAME = {"twin_state": ("twin_id", "twin_type", "status"), "twin_state_history": None}
#: A payload with no time of its own is dead-lettered at the time it was received.
RECEIVED = ("dead_letter_id", "time")


def assert_same_up_to_batching(reference: Rows, url: str) -> None:
    """Every table holds the reference's rows, none lost, none duplicated, floats equal to
    1e-7 (statistics merged frame by frame round differently when frames are cut elsewhere);
    twin states compared on what does not depend on where frames end."""
    got, names = contents(url), tables(url)
    assert got.keys() == reference.keys()
    for table, rows in reference.items():
        mine, keep = got[table], list(range(len(names[table])))
        by_frame = BY_FRAME.get(table, ())
        if table in BY_FRAME:
            cols = by_frame or ("twin_id", "status")
            keep = [names[table].index(c) for c in cols]
        elif table == "dead_letters":
            keep = [i for i, c in enumerate(names[table]) if c not in RECEIVED]
        ours = sorted(_rounded(tuple(r[i] for i in keep)) for r in mine)
        theirs = sorted(_rounded(tuple(r[i] for i in keep)) for r in rows)
        if table in BY_FRAME:
            ours, theirs = sorted(set(ours)), sorted(set(theirs))
        if len(ours) != len(theirs):
            keys = {o[0] for o in ours}, {t[0] for t in theirs}
            lost = [r[1] for r in theirs if r[0] not in keys[0]][:4]
            extra = [r[1] for r in ours if r[0] not in keys[1]][:4]
            raise AssertionError(
                f"{table}: {len(ours)} rows against {len(theirs)}; lost {lost}, extra {extra}"
            )
        for a, b in zip(ours, theirs, strict=True):
            assert _close(a, b), f"{table}: {a!r}\nin the reference: {b!r}"


def _rounded(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A sort key that survives rounding in the last digits: floats to 6 significant ones."""
    return tuple(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row), row  # type: ignore[return-value]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], tuple):  # (key, row)
        a, b = a[1], b[1]
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "{[" and a != b:
        try:
            a, b = json.loads(a), json.loads(b)
        except ValueError:
            return False
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-7) or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def requested(rows: Rows) -> dict[str, list[str]]:
    """Each requested command's statuses, from the commands table's rows."""
    out: dict[str, list[str]] = {}
    for row in rows["commands"]:
        command_id, status, *_rest = row
        reason = row[8]
        if str(reason).startswith("request:"):
            out.setdefault(command_id, []).append(status)
    return out


def test_two_processes_over_mqtt_store_and_command_exactly_as_one(
    setup: tuple[Setup, Postgres], tmp_path: Path
) -> None:
    s, pg = setup
    single = new_database(pg, "mqtt_single")
    ((published, answered),) = run_to_the_end(
        s, [start(s.single, single, tmp_path / "one")], single, s.topics[0]
    )
    reference = contents(single)
    once = s.watch.counts()

    assert len(reference["telemetry"]) > 50_000
    assert reference["window_features"] and reference["twin_state"]
    assert reference["dead_letters"], "the plant's bad messages should have been dead-lettered"
    statuses = requested(reference)
    assert len(statuses) == TWINS
    assert all({"queued", "sent", "succeeded"} <= set(v) for v in statuses.values()), statuses
    assert set(statuses) <= set(once) and max(once.values()) == 1, once
    assert published == answered == TWINS

    pair = new_database(pg, "mqtt_pair")
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    runs = [
        start(s.pair, pair, tmp_path / f"p{i}", "-i", str(i), "-a", addresses) for i in range(2)
    ]
    counts = run_to_the_end(s, runs, pair, s.topics[1])
    # Every row, commands too: the `sent` that process 1 reports for a command it published
    # may reach the twin's book after the answer process 0 received; it is still stored.
    assert_same_up_to_batching(reference, pair)
    twice = s.watch.counts()
    assert twice == once, f"commands published by the cluster {twice} against one process {once}"
    # Each command was published once, by the process whose worker holds the twin's command
    # book; the devices' answers all reached process 0 (worker 0 listens), and yet the
    # commands sent by process 1 ended succeeded in their books: outcomes cross processes.
    (sent0, answered0), (sent1, answered1) = counts
    assert sent0 + sent1 == TWINS and sent0 > 0 and sent1 > 0, counts
    assert (answered0, answered1) == (TWINS, 0), counts
