"""Issue 14 (deliverable 3), issue 11 (deliverable 3): an output that is away does not stop the
others or the analysis, and catches up without loss when it is back.

The telemetry flow runs on live, paced telemetry with its embedded files, a Kafka output
(twin states and alerts, on a broker of its own behind a relay) and PostgreSQL. The test cuts
the Kafka broker off for ``OUTAGE_S`` seconds (``TWINFLOW_OUTAGE_S``, default 30) and stops
PostgreSQL for part of that time; the Parquet files keep being written throughout; both
outputs are reported down; once back, the Kafka topic holds every twin state the files hold
and the database every reading.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import run_main
from prometheus_client import REGISTRY

from tests.connectors.test_kafka import read_back
from tests.services.kafka import KafkaBroker, KafkaUnavailable, create_topic, unique_topic
from tests.services.postgres import Postgres
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.kafka import alert_sink, twin_state_sink
from twinflow.connectors.postgres import PostgresSink, migrate
from twinflow.core.records import TelemetryFrame
from twinflow.flows.config import FlowConfig
from twinflow.flows.outputs import file_outputs
from twinflow.flows.telemetry import build_flow

pytestmark = pytest.mark.services

#: How long the Kafka output is cut off, and PostgreSQL stopped (within that time).
OUTAGE_S = float(os.environ.get("TWINFLOW_OUTAGE_S", "30"))
PG_OUTAGE_S = min(8.0, OUTAGE_S / 2)
TWINS = ("P1", "P2", "P3")
PERIOD_S = 0.1
FAST = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


class _Paced(StatelessSourcePartition[TelemetryFrame]):
    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._next = time.time()

    def next_batch(self) -> list[TelemetryFrame]:
        if self._stop.is_set():
            raise StopIteration
        now = time.time()
        if now < self._next:
            return []
        self._next = max(self._next + PERIOD_S, now)
        times = np.array([now])
        signals = {"flow_m3h": np.array([250.0]), "suction_bar": np.array([1.2])}
        return [TelemetryFrame(t, "pump", times, signals, source="test") for t in TWINS]

    def next_awake(self) -> datetime:
        return datetime.fromtimestamp(self._next, UTC)


class Paced(DynamicSource[TelemetryFrame]):
    """A reading of each twin every ``PERIOD_S`` on the wall clock, until ``stop`` is set."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Paced:
        return _Paced(self.stop)


def outputs(*prefixes: str) -> dict[str, float]:
    """``twinflow_output_up`` of every output whose name starts with one of ``prefixes``."""
    return {
        s.labels["output"]: s.value
        for metric in REGISTRY.collect()
        if metric.name == "twinflow_output_up"
        for s in metric.samples
        if s.labels.get("output", "").startswith(prefixes)
    }


def newest(out: Path) -> float:
    """The time of the newest reading in the Parquet files (0 when there is none yet)."""
    for _ in range(20):
        try:  # the sink may be compacting parts as they are read: read again
            df = read_parquet_dir(out / "telemetry")
        except Exception:
            time.sleep(0.1)
            continue
        return float(df["time"].max().timestamp()) if df.height else 0.0
    raise AssertionError("the Parquet telemetry could not be read")


def wait(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def kafka() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(local=True, proxied=True)
    try:
        broker.start()
    except KafkaUnavailable as exc:
        pytest.fail(f"this test cuts a broker of its own off, so it needs Tansu: {exc}")
    yield broker
    broker.stop()


@pytest.fixture
def database() -> Iterator[tuple[Postgres, str]]:
    with Postgres() as server:
        url = server.create_database("outage")
        migrate(url)
        yield server, url


@pytest.mark.timeout(240)
def test_outputs_that_go_away_stop_nothing_and_catch_up(
    kafka: KafkaBroker, database: tuple[Postgres, str], tmp_path: Path
) -> None:
    server, url = database
    states_topic = create_topic(kafka.bootstrap, unique_topic("states"))
    alerts_topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    k = KafkaSettings(
        bootstrap=kafka.bootstrap,
        twin_state_topic=states_topic,
        alerts_topic=alerts_topic,
        extra=FAST,
    )
    config = FlowConfig(
        out_dir=tmp_path, window_s=2, lateness_s=1, state_snapshot_s=1, parquet_max_delay_s=0.5
    )
    files = file_outputs(config)
    db = PostgresSink(url, max_latency_s=0.2, retry_max_s=0.5)
    sinks = {
        "telemetry": [files.telemetry, db],
        "windows": [files.windows, db],
        "twin_states": [files.twin_states, twin_state_sink(k), db],
        "alerts": [files.alerts, alert_sink(k)],
    }
    stop = threading.Event()
    flow_id = unique_topic("outage")  # names this run's PostgreSQL outputs in the metrics
    mine = (f"kafka:{states_topic}", f"kafka:{alerts_topic}", f"postgres:{flow_id}.")
    flow = build_flow(
        Paced(stop),
        replace(files, **sinks),
        config,
        twins=dict.fromkeys(TWINS, "pump"),
        flow_id=flow_id,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_main(flow, epoch_interval=timedelta(seconds=1))
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        wait(lambda: newest(tmp_path) > 0, 30, "the first Parquet parts")
        kafka.cut()
        cut_at, at_cut = time.monotonic(), newest(tmp_path)
        time.sleep(2.0)
        server.stop()
        time.sleep(PG_OUTAGE_S)
        at_pg_back = newest(tmp_path)
        assert at_pg_back > at_cut, "the files stopped while both outputs were away"
        assert 0 in outputs(mine[2]).values(), outputs(mine[2])
        server.start()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        assert outputs(f"kafka:{states_topic}") == {f"kafka:{states_topic}": 0}
        at_mend = newest(tmp_path)
        assert at_mend > at_pg_back, "the files stopped while Kafka was away"
        kafka.mend()
        wait(lambda: set(outputs(*mine[:2]).values()) == {1}, 60, "Kafka to be up again")
        wait(lambda: set(outputs(mine[2]).values()) == {1}, 60, "PostgreSQL up again")
        time.sleep(1.0)
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive() and not errors, errors

    # Every twin state the files hold reached Kafka; every reading reached PostgreSQL.
    states = read_parquet_dir(tmp_path / "twin_states")
    in_files = {(r["twin_id"], r["time"].timestamp()) for r in states.iter_rows(named=True)}
    in_kafka = {
        (doc["twin_id"], datetime.fromisoformat(doc["time"]).timestamp())
        for doc in (_json(m.value()) for m in read_back(kafka.bootstrap, states_topic))
    }
    assert len(in_files) > 3 * OUTAGE_S / 2  # states kept coming through the outage
    assert in_files <= in_kafka, sorted(in_files - in_kafka)[:5]
    alerts_in_file = [_json(line.encode()) for line in (tmp_path / "alerts.jsonl").open()]
    alerts_in_kafka = [_json(m.value()) for m in read_back(kafka.bootstrap, alerts_topic)]
    assert {json.dumps(a, sort_keys=True) for a in alerts_in_file} <= {
        json.dumps(a, sort_keys=True) for a in alerts_in_kafka
    }
    telemetry = read_parquet_dir(tmp_path / "telemetry")
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT count(DISTINCT (twin_id, time)) FROM twinflow.telemetry"
        ).fetchone()
    assert stored is not None and stored[0] == telemetry.height > OUTAGE_S / PERIOD_S


def _json(value: bytes | None) -> dict[str, Any]:
    assert value is not None
    doc: dict[str, Any] = json.loads(value)
    return doc
