"""Issue 11: the flow keeps running through every poison message and loses no good reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bytewax.testing import TestingSink, TestingSource, run_main

from tests.operators.test_poison import AFTER_9999_MS, MQTT_POISON, POISON, _KafkaMessage
from twinflow.connectors.bindings import MqttBinding
from twinflow.connectors.kafka.telemetry import raw_messages
from twinflow.connectors.mqtt.frames import MessageDecoder
from twinflow.core.records import DeadLetter, RawMessage
from twinflow.flows.config import FlowConfig
from twinflow.flows.metrics import RunStats
from twinflow.flows.telemetry import FlowOutputs, build_flow

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
ROWS = 120


def _good(t: float) -> bytes:
    doc = {"twin_id": "P1", "twin_type": "pump", "time": t, "values": {"flow_m3h": 250.0}}
    return json.dumps(doc).encode()


def test_poison_among_good_messages() -> None:
    """Each poison payload (wire format over Kafka, MQTT batches) sits between good ones."""
    items: list[Any] = []
    poison = iter(sorted(POISON.values()))
    mqtt_poison = iter(sorted(MQTT_POISON.values()))
    decoder = MessageDecoder([MqttBinding("P2", "pump", "plant/p2/telemetry", "c", "r")])
    for i in range(ROWS):
        t = START + i
        items.append(RawMessage("kafka:plant.telemetry", _good(t), t))
        batch = [("plant/p2/telemetry", b'{"ts": %r, "flow_m3h": 250}' % t)]
        if (bad := next(mqtt_poison, None)) is not None:
            batch.append(("plant/p2/telemetry", bad))
        items.extend(decoder.decode(batch, now=t))
        if i == 10:  # a clock error inside max_future_s: it must not make later data late
            items.append(RawMessage("kafka:plant.telemetry", _good(t + 250), t))
        if (raw := next(poison, None)) is not None:
            items.append(RawMessage("kafka:plant.telemetry", raw, t))
    kafka = [_KafkaMessage(b"\xff", AFTER_9999_MS), _KafkaMessage(None, AFTER_9999_MS)]
    items.extend(raw_messages(kafka, received=START))  # type: ignore[arg-type]
    frames: list[Any] = []
    dead: list[Any] = []
    windows: list[Any] = []
    stats = RunStats()
    flow = build_flow(
        TestingSource(items),
        FlowOutputs(
            telemetry=TestingSink(frames),
            windows=TestingSink(windows),
            dead_letters=TestingSink(dead),
            alerts=None,
            commands=None,
        ),
        FlowConfig(window_s=60, lateness_s=30),
        clock=lambda: START + ROWS,
        twins={"P1": "pump", "P2": "pump"},
        stats=stats,
    )
    run_main(flow)
    got = [f for _k, f in frames] if frames and isinstance(frames[0], tuple) else frames
    per_twin: dict[str, list[float]] = {}
    for f in got:
        per_twin.setdefault(f.twin_id, []).extend(f.times.tolist())
    assert sorted(per_twin["P1"]) == [START + i for i in range(ROWS)] + [START + 260]
    assert sorted(per_twin["P2"]) == [START + i for i in range(ROWS)]
    letters = [d for _k, d in dead] if dead and isinstance(dead[0], tuple) else dead
    assert all(isinstance(d, DeadLetter) and d.reason for d in letters)
    assert len(letters) >= len(POISON) + len(MQTT_POISON) + len(kafka)
    assert not [d for d in letters if "late" in d.reason.lower()]
    counts: dict[str, int] = {}
    for _k, w in windows:
        counts[w.twin_id] = counts.get(w.twin_id, 0) + w.counts["flow_m3h"]
    assert counts == {"P1": ROWS + 1, "P2": ROWS}


def test_poison_then_crash_then_resume(tmp_path: Any) -> None:
    """The flow stops (the source aborts) after every poison message; resuming from
    recovery replays them into dead letters again, never into a crash loop."""
    from datetime import timedelta

    from bytewax.recovery import RecoveryConfig, init_db_dir

    items: list[Any] = []
    for i, raw in enumerate(sorted(POISON.values())):
        items.append(RawMessage("kafka:plant.telemetry", _good(START + i), START + i))
        items.append(RawMessage("kafka:plant.telemetry", raw, AFTER_9999_MS / 1000))
    items.append(TestingSource.ABORT())
    items.append(RawMessage("kafka:plant.telemetry", _good(START + 100), START + 100))
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    frames: list[Any] = []
    dead: list[Any] = []

    def run() -> None:
        flow = build_flow(
            TestingSource(items),
            FlowOutputs(
                telemetry=TestingSink(frames),
                dead_letters=TestingSink(dead),
                alerts=None,
                commands=None,
            ),
            FlowConfig(window_s=60, lateness_s=30),
            clock=lambda: START + ROWS,
            twins={"P1": "pump"},
        )
        run_main(flow, epoch_interval=timedelta(seconds=0), recovery_config=recovery)

    run()  # aborts (a simulated crash) after every poison message went through
    assert START + 100 not in {float(t) for _k, f in frames for t in f.times}
    crashed_with = len(dead)
    assert crashed_with >= len(POISON)
    run()  # resumes from the last snapshot and finishes
    times = sorted({float(t) for _k, f in frames for t in f.times})
    assert times == [START + i for i in range(len(POISON))] + [START + 100]
    assert all(isinstance(d, DeadLetter) and d.reason for _k, d in dead)
    replayed = [d for _k, d in dead[crashed_with:]]
    assert {(d.reason, d.time) for d in replayed} <= {(d.reason, d.time) for _k, d in dead}
