"""Two ``twinflow run`` processes as one Bytewax cluster on loopback, against one process.

A seeded plant is recorded once into a Kafka topic of 4 partitions (each twin's messages
share one partition). One process reads it into a database; a cluster of two processes
(``--process-id``/``--addresses``, one worker each) reads it into another; a second cluster
is killed hard (SIGKILL of one process, which brings its peer down) mid-run and started
again with the same per-process recovery directories. Each cluster's database must hold
exactly the single process's rows: none lost, none duplicated (the comparison of
``test_recovery``: only the columns that say when a row was processed are left out).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.flows.test_recovery import (
    _twin_key,
    assert_same_rows,
    contents,
    count,
    kafka_deployment,
    new_database,
    wire_json,
)
from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.ports import free_port
from tests.services.postgres import Postgres
from tests.services.waiting import wait_until
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import RawMessage, TelemetryFrame

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

ROOT = Path(__file__).absolute().parents[2]
#: Simulated hours in the topic: enough rows that a run can be killed in its middle.
HOURS = 2
PARTITIONS = 4

Rows = dict[str, list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def config(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment reading the recorded plant from a topic of 4 partitions."""
    topic = create_topic(kafka.bootstrap, unique_topic("cluster"), partitions=PARTITIONS)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=HOURS + 2
    )
    plant = Plant(PlantConfig(n_twins=8, duration_s=HOURS * 3600, seed=5, start=start, chunk_s=10))
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    for i, item in enumerate(plant.items()):
        if isinstance(item, TelemetryFrame):
            producer.produce(topic, wire_json(item), key=item.twin_id.encode())
        elif isinstance(item, RawMessage) and len(item.payload) < 900_000:
            producer.produce(topic, item.payload, key=_twin_key(item.payload))
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    path = tmp_path_factory.mktemp("cluster") / "plant.yaml"
    return kafka_deployment(kafka.bootstrap, topic, plant.twins, path)


def start(
    config: Path, db: str, folder: Path, *cluster: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``twinflow run`` to its end into ``db``, outputs and recovery under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
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
        "--until-end",
        "--snapshot-interval",
        "0.5s",
        *cluster,
    ]
    full_env = {**os.environ, "DATABASE_URL": db, "PYTHONPATH": str(ROOT), **(env or {})}
    log = open(folder / "run.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log, stderr=log)


def finish(proc: subprocess.Popen[bytes], folder: Path, timeout_s: float = 180) -> None:
    try:
        rc = proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:  # a run that does not end fails the test, and is ended
            proc.kill()
            proc.wait()
    log = (folder / "run.log").read_text(errors="replace")
    assert rc == 0, f"twinflow run in {folder} exited {rc}:\n{log[-3000:]}"


def start_cluster(config: Path, db: str, base: Path) -> list[subprocess.Popen[bytes]]:
    """Two processes of one worker: the addresses on the command line for process 0, and
    Bytewax's variables (a hostfile, as a StatefulSet mounts one) for process 1."""
    addresses = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    hostfile = base / "hosts.txt"
    base.mkdir(parents=True, exist_ok=True)
    hostfile.write_text("\n".join(addresses) + "\n")
    p0 = start(config, db, base / "p0", "--process-id", "0", "--addresses", ";".join(addresses))
    p1 = start(
        config,
        db,
        base / "p1",
        env={
            "BYTEWAX_POD_NAME": "twinflow-1",
            "BYTEWAX_STATEFULSET_NAME": "twinflow",
            "BYTEWAX_HOSTFILE_PATH": str(hostfile),
        },
    )
    return [p0, p1]


@pytest.fixture(scope="module")
def reference(config: Path, server: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """What one process stores."""
    db = new_database(server, "single")
    folder = tmp_path_factory.mktemp("single")
    finish(start(config, db, folder), folder)
    rows = contents(db)
    assert len(rows["telemetry"]) > 50_000
    assert rows["window_features"] and rows["twin_state"] and rows["alerts"]
    assert rows["dead_letters"], "the plant's bad messages should have been dead-lettered"
    return rows


def test_two_processes_store_exactly_what_one_process_stores(
    config: Path, reference: Rows, server: Postgres, tmp_path: Path
) -> None:
    db = new_database(server, "pair")
    procs = start_cluster(config, db, tmp_path)
    for proc, name in zip(procs, ("p0", "p1"), strict=True):
        finish(proc, tmp_path / name)
    # Each process holds its own half of the cluster's recovery partitions, and per-twin
    # state was snapshotted into both halves: the processes form one cluster.
    for name in ("p0", "p1"):
        parts = sorted((tmp_path / name / "recovery").glob("part-*.sqlite3"))
        assert len(parts) == 2, parts
        assert sum(_twin_state_snapshots(p) for p in parts) > 0, name
    assert_same_rows(reference, db)


@pytest.mark.timeout(600)  # two cluster runs back to back; under load one took over 300 s
def test_a_cluster_killed_mid_run_resumes_to_exactly_the_same_rows(
    config: Path, reference: Rows, server: Postgres, tmp_path: Path
) -> None:
    db = new_database(server, "killed_pair")
    procs = start_cluster(config, db, tmp_path)
    total = len(reference["telemetry"])
    try:
        wait_until("a third of the rows", lambda: _share(db, total) > 0.3, 120)
    finally:
        procs[1].send_signal(signal.SIGKILL)
    assert procs[1].wait(timeout=30) == -signal.SIGKILL
    # Its peer loses the connection and stops with an error (Bytewax does not go on alone).
    assert procs[0].wait(timeout=60) != 0
    assert _share(db, total) < 1.0, "the run had finished before it was killed"

    for proc, name in zip(start_cluster(config, db, tmp_path), ("p0", "p1"), strict=True):
        finish(proc, tmp_path / name)
    assert_same_rows(reference, db)


def _twin_state_snapshots(part: Path) -> int:
    with contextlib.closing(sqlite3.connect(part)) as conn:
        sql = "SELECT count(*) FROM snaps WHERE step_id LIKE '%twin_state.update%'"
        return int(conn.execute(sql).fetchone()[0])


def _share(db: str, total: int) -> float:
    try:
        return count(db, "telemetry") / total
    except Exception:  # the schema is there, but a busy server may refuse a connection
        return 0.0
