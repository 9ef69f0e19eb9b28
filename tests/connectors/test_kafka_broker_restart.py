"""Issue 11 (deliverable 3, must show): the telemetry flow reading Kafka and writing Kafka
follows a broker that restarts without its data. Before, input never resumed and, about 45 s
later, the flow stopped storing anything, stuck in the Kafka sink's snapshot.

One Tansu (topics in memory) carries the telemetry in and the twin states out. Mid-run it is
killed and started again empty; the test then finds every reading produced after the restart
in the Parquet files (input resumed from the new log), and every twin state the files hold
from after the restart on the new states topic (the sink followed with a new producer).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from confluent_kafka import Producer

from tests.connectors.test_kafka import read_back
from tests.services.kafka import KafkaBroker, KafkaUnavailable, create_topic, unique_topic
from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.kafka import KafkaJsonSink, kafka_telemetry_source, twin_state_json
from twinflow.flows.config import FlowConfig
from twinflow.flows.outputs import file_outputs
from twinflow.flows.shutdown import stoppable
from twinflow.flows.telemetry import build_flow

pytestmark = pytest.mark.services

TWINS = ("P1", "P2", "P3")
FAST = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


class Telemetry:
    """Produces a reading of each twin every 0.1 s (wall-clock times) while not paused."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, **FAST})
        self.topic = topic
        self.sent: list[tuple[str, float]] = []
        self.running = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.running.wait(0.1):
                continue
            now = round(time.time(), 3)
            for twin in TWINS:
                doc = {"twin_id": twin, "twin_type": "pump", "time": now}
                doc["values"] = {"flow_m3h": 250.0, "suction_bar": 1.2}
                self.producer.produce(self.topic, json.dumps(doc).encode(), twin.encode())
                self.sent.append((twin, now))
            self.producer.poll(0)
            time.sleep(0.1)

    def pause(self) -> None:
        self.running.clear()
        time.sleep(0.3)
        assert self.producer.flush(10) == 0


def readings(out: Path) -> set[tuple[str, float]]:
    for _ in range(20):
        try:  # the sink may be compacting parts as they are read: read again
            df = read_parquet_dir(out / "telemetry")
        except Exception:
            time.sleep(0.1)
            continue
        if not df.height:
            return set()
        return {(r["twin_id"], round(r["time"].timestamp(), 3)) for r in df.iter_rows(named=True)}
    raise AssertionError("the Parquet telemetry could not be read")


def wait(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.timeout(180)
def test_the_flow_follows_a_kafka_broker_restarted_without_its_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = KafkaBroker(local=True)
    try:
        broker.start()
    except KafkaUnavailable as exc:
        pytest.fail(f"this test restarts a broker of its own, so it needs Tansu: {exc}")
    try:
        telemetry_topic, states_topic = unique_topic("telemetry"), unique_topic("states")
        for topic in (telemetry_topic, states_topic):
            create_topic(broker.bootstrap, topic)
        k = KafkaSettings(bootstrap=broker.bootstrap, telemetry_topics=(telemetry_topic,))
        k = replace(k, extra=FAST)
        config = FlowConfig(
            out_dir=tmp_path, window_s=2, lateness_s=1, state_snapshot_s=1, parquet_max_delay_s=0.5
        )
        files = file_outputs(config)
        states = KafkaJsonSink(k, states_topic, twin_state_json, stall_s=2.0)
        source = kafka_telemetry_source(k)
        source.watch_s = 1.0
        stop = threading.Event()
        flow = build_flow(
            stoppable(source, stop),
            replace(files, twin_states=[files.twin_states, states]),
            config,
            twins=dict.fromkeys(TWINS, "pump"),
        )
        errors: list[BaseException] = []

        def run() -> None:
            try:
                run_main(flow, epoch_interval=timedelta(seconds=1))
            except BaseException as exc:  # handed to the test's thread
                errors.append(exc)

        producer = Telemetry(broker.bootstrap, telemetry_topic)
        producer.thread.start()
        producer.running.set()
        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        try:
            wait(lambda: len(readings(tmp_path)) > 60, 60, "readings before the restart")
            producer.pause()
            broker.crash()
            time.sleep(3.0)
            broker.restart()
            for topic in (telemetry_topic, states_topic):
                create_topic(broker.bootstrap, topic)
            restarted_at = time.time()
            before = len(producer.sent)
            producer.running.set()
            time.sleep(5.0)
            producer.pause()
            after = set(producer.sent[before:])
            assert len(after) > 60
            # input resumed: readings sent after the restart reach the files while it runs
            wait(lambda: len(after & readings(tmp_path)) > len(after) / 2, 60, "new readings")
            time.sleep(2.0)  # the twin states of the last readings
        finally:
            producer.stop.set()
            stop.set()  # the source's partitions end, the flow drains and closes its sinks
            runner.join(60)
        assert not runner.is_alive() and not errors, errors
        # every reading sent after the restart is in the files (the windows may hold the
        # first frames after the pause until the end of the run)
        assert after <= readings(tmp_path), sorted(after - readings(tmp_path))[:5]
        assert "the broker lost its data or the topic was recreated" in caplog.text

        # every twin state the files hold from after the restart is on the new states topic
        held = read_parquet_dir(tmp_path / "twin_states")
        in_files = {
            (r["twin_id"], r["time"].timestamp())
            for r in held.iter_rows(named=True)
            if r["time"].timestamp() > restarted_at + 1
        }
        in_kafka = {
            (doc["twin_id"], datetime.fromisoformat(doc["time"]).timestamp())
            for doc in (json.loads(m.value()) for m in read_back(broker.bootstrap, states_topic))
        }
        assert in_files and in_files <= in_kafka, sorted(in_files - in_kafka)[:5]
    finally:
        broker.stop()
