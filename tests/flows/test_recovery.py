"""Crash recovery end to end: ``twinflow run`` on Kafka input into PostgreSQL.

The same recorded plant (a Kafka topic, produced once) is processed three ways, each into a
database of its own:

- a reference run that nobody disturbs;
- a run killed hard (SIGKILL) in the middle and started again with the same command and
  ``--recovery-dir``, which resumes from its last snapshot and replays the input since;
- a run whose PostgreSQL server is restarted, then crashed, in the middle.

Each disturbed database must then hold exactly the reference's rows: none lost, none
duplicated. Only the columns the database fills in itself (``updated_at``, ``recorded_at``)
are left out of the comparison.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from tests.services.postgres import Postgres
from tests.services.waiting import wait_until
from twinflow.connectors.postgres import migrate
from twinflow.connectors.postgres.connection import psycopg
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import RawMessage, TelemetryFrame

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
#: Columns that say when a row was processed, not what it holds: the database's own
#: ``DEFAULT now()`` columns, and the moment (reference clock) a command reached a status.
#: They differ between any two runs.
DB_TIME_COLUMNS = frozenset({"updated_at", "recorded_at", "status_at"})
#: Roll-ups aggregate over twins: which intermediate roll-ups are emitted (and at which
#: newest event time) depends on the order in which different twins' alerts and windows meet
#: in the site's step, which differs between any two runs, disturbed or not. Their history is
#: left out; the end state of every asset must match (its time too depends on that order).
ORDER_DEPENDENT = {
    "asset_rollups": None,
    "asset_rollups_latest": frozenset({"time"}),
    # A state's health is the newest RUL estimate when the state passed by: which windows had
    # been analysed by then depends on the same order. The latest state carries the last one.
    "twin_state_history": frozenset({"health"}),
}
#: Simulated hours of plant data in the topic: long enough that a run lasts a few seconds.
HOURS = 4
#: The broker refuses bigger messages (the simulator's oversized bad payload is left out).
MAX_MESSAGE = 900_000


@dataclass(frozen=True)
class Recording:
    """The plant recorded on a topic, and the deployment file that reads it."""

    config: Path
    twins: int
    messages: int


def wire_json(frame: TelemetryFrame) -> bytes:
    """A frame in telemetry wire format v1 (batch shape; NaN becomes null)."""
    signals = {
        name: [None if math.isnan(v) else v for v in values.tolist()]
        for name, values in frame.signals.items()
    }
    doc = {
        "twin_id": frame.twin_id,
        "twin_type": frame.twin_type,
        "times": frame.times.tolist(),
        "signals": signals,
    }
    return json.dumps(doc).encode()


def record_plant(bootstrap: str, topic: str) -> tuple[list[tuple[str, str]], int]:
    """Produce a seeded plant's telemetry (and its few bad messages) to ``topic``."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=HOURS + 2
    )
    plant = Plant(PlantConfig(n_twins=6, duration_s=HOURS * 3600, seed=11, start=start, chunk_s=10))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    sent = 0
    for item in plant.items():
        if isinstance(item, TelemetryFrame):
            producer.produce(topic, wire_json(item), key=item.twin_id.encode())
        elif isinstance(item, RawMessage) and len(item.payload) < MAX_MESSAGE:
            # Raw JSON and bad payloads, keyed by their twin where they name one: a twin's
            # messages must share a partition, or their order (and so what is late) would
            # depend on how fast each partition happens to be read.
            producer.produce(topic, item.payload, key=_twin_key(item.payload))
        else:  # waveform bursts do not travel in telemetry wire format v1
            continue
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return plant.twins, sent


def _twin_key(payload: bytes) -> bytes:
    try:
        doc = json.loads(payload)
    except ValueError:
        return b"undecodable"
    twin = doc.get("twin_id") if isinstance(doc, dict) else None
    return twin.encode() if isinstance(twin, str) else b"undecodable"


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def recording(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    topic = create_topic(kafka.bootstrap, unique_topic("plant"), partitions=2)
    twins, sent = record_plant(kafka.bootstrap, topic)
    config = kafka_deployment(
        kafka.bootstrap, topic, twins, tmp_path_factory.mktemp("recording") / "plant.yaml"
    )
    return Recording(config, len(twins), sent)


def kafka_deployment(
    bootstrap: str, topic: str, twins: Iterable[tuple[str, str]], path: Path
) -> Path:
    """A deployment file at ``path`` whose ``(twin, type)`` twins read ``topic`` (2-minute
    windows, 30 s lateness)."""
    lines = [
        "version: 1",
        "site: s1",
        "services:",
        "  kafka:",
        f'    bootstrap: "{bootstrap}"',
        f"    telemetry_topics: [{topic}]",
        "flow:",
        "  window_s: 120",
        "  lateness_s: 30",
        "twins:",
        *(f"  - {{id: {t}, type: {kind}, protocol: kafka}}" for t, kind in twins),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def new_database(server: Postgres, name: str) -> str:
    url = server.create_database(name)
    migrate(url)
    return url


def run_command(rec: Recording, out: Path, recovery: Path | None) -> list[str]:
    argv = [
        sys.executable,
        "-c",
        "import sys; from twinflow.flows.cli import main; sys.exit(main())",
        "run",
        str(rec.config),
        "--out",
        str(out),
        "--until-end",
        "--snapshot-interval",
        "0.5s",
    ]
    return argv + (["--recovery-dir", str(recovery)] if recovery is not None else [])


def start_run(
    rec: Recording, db: str, out: Path, recovery: Path | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        run_command(rec, out, recovery), cwd=ROOT, env=env, stdout=log, stderr=log
    )


def finish(proc: subprocess.Popen[bytes], out: Path, timeout_s: float = 180) -> None:
    rc = proc.wait(timeout=timeout_s)
    log = (out.parent / f"{out.name}.log").read_text(errors="replace")
    assert rc == 0, f"twinflow run exited {rc}:\n{log[-3000:]}"


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def count(url: str, table: str) -> int:
    return int(query(url, f"SELECT count(*) FROM twinflow.{table}")[0][0])


def tables(url: str) -> dict[str, list[str]]:
    """The twinflow tables that the sink writes, with the columns the flow decides.

    Telemetry is read through the ``telemetry`` view: the series ids of its storage tables
    (``series``, ``telemetry_points``) depend on the order pairs were first written in.
    """
    rows = query(
        url,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'twinflow' AND table_name IN (SELECT table_name FROM "
        "information_schema.tables WHERE table_schema = 'twinflow' AND (table_type = "
        "'BASE TABLE' OR table_name = 'telemetry') "
        "AND table_name NOT IN ('series', 'telemetry_points')) "
        "ORDER BY table_name, ordinal_position",
    )
    out: dict[str, list[str]] = {}
    for table, column in rows:
        if table in ORDER_DEPENDENT and ORDER_DEPENDENT[table] is None:
            continue
        if column not in DB_TIME_COLUMNS | (ORDER_DEPENDENT.get(table) or frozenset()):
            out.setdefault(table, []).append(column)
    return {t: cols for t, cols in out.items() if t not in {"twinflow_migrations", "quality"}}


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, cols in tables(url).items():
        names = ", ".join(cols)
        order = ", ".join(str(i + 1) for i in range(len(cols)))
        rows = query(url, f"SELECT {names} FROM twinflow.{table} ORDER BY {order}")
        out[table] = [tuple(map(_hashable, row)) for row in rows]
    return out


def _hashable(value: Any) -> Any:
    """JSON columns (dicts, lists) as canonical text, so rows can be compared as sets."""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def assert_same_rows(reference: dict[str, list[tuple[Any, ...]]], url: str) -> None:
    got = contents(url)
    assert got.keys() == reference.keys()
    for table, rows in reference.items():
        mine = got[table]
        lost = set(rows) - set(mine)
        extra = len(mine) - len(set(mine))
        assert not lost, f"{table}: {len(lost)} rows lost, e.g. {sorted(lost)[:2]}"
        assert extra == 0, f"{table}: {extra} duplicated rows"
        unexpected = sorted(set(mine) - set(rows))
        assert not unexpected, f"{table}: {len(unexpected)} rows not in the reference: " + (
            "\n".join(map(repr, unexpected[:6]))
        )
        assert mine == rows, f"{table}: {len(mine)} rows against {len(rows)} in the reference"


@pytest.fixture(scope="module")
def reference(
    recording: Recording, server: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[tuple[Any, ...]]]:
    """What an undisturbed run stores."""
    db = new_database(server, "reference")
    out = tmp_path_factory.mktemp("reference") / "out"
    finish(start_run(recording, db, out, out.parent / "recovery"), out)
    rows = contents(db)
    assert len(rows["telemetry"]) > 100_000
    assert rows["window_features"] and rows["twin_state"] and rows["alerts"]
    assert rows["dead_letters"], "the plant's bad messages should have been dead-lettered"
    assert rows["asset_rollups_latest"], "the site's roll-up should have been stored"
    return rows


def _telemetry_share(db: str, reference: dict[str, list[tuple[Any, ...]]]) -> float:
    try:
        return count(db, "telemetry") / len(reference["telemetry"])
    except psycopg.OperationalError:
        return 0.0


def test_sigkill_mid_run_then_resume_stores_exactly_the_reference_rows(
    recording: Recording,
    reference: dict[str, list[tuple[Any, ...]]],
    server: Postgres,
    tmp_path: Path,
) -> None:
    db = new_database(server, "killed")
    out, recovery = tmp_path / "out", tmp_path / "recovery"
    proc = start_run(recording, db, out, recovery)
    try:
        wait_until("a third of the rows", lambda: _telemetry_share(db, reference) > 0.3, 120)
    finally:
        proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    share = _telemetry_share(db, reference)
    assert share < 1.0, "the run had finished before it was killed; nothing was tested"

    finish(start_run(recording, db, out, recovery), out)
    assert_same_rows(reference, db)


def test_postgres_restarted_mid_run_stores_exactly_the_reference_rows(
    recording: Recording, reference: dict[str, list[tuple[Any, ...]]], tmp_path: Path
) -> None:
    with Postgres() as fragile:
        db = new_database(fragile, "restarted")
        out = tmp_path / "out"
        proc = start_run(recording, db, out)
        events: list[str] = []

        def saboteur() -> None:
            wait_until("a fifth of the rows", lambda: _telemetry_share(db, reference) > 0.2, 120)
            fragile.restart()  # fast shutdown: the sink's sessions are cut
            events.append("restarted")
            wait_until("half of the rows", lambda: _telemetry_share(db, reference) > 0.5, 120)
            fragile.crash()  # immediate: WAL recovery at the next start
            time.sleep(1.0)  # down for a while: the flow buffers, then waits (backpressure)
            fragile.start()
            events.append("crashed")

        thread = threading.Thread(target=saboteur, daemon=True)
        thread.start()
        finish(proc, out)
        thread.join(timeout=60)
        assert events == ["restarted", "crashed"], "the run ended before both disturbances"
        assert_same_rows(reference, db)
