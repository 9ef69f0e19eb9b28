"""Issue 11, deliverable 5: a twin's telemetry is accepted only from its binding's protocol."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.core.records import DeadLetter, TelemetryFrame, WaveformFrame
from twinflow.flows.config import FlowConfig
from twinflow.flows.telemetry import FlowOutputs, build_flow
from twinflow.operators.validate import Validator

NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
TWINS = {"P-opc": "pump", "P-kafka": "pump", "P-replay": "pump", "P-mb": "pump", "P-free": "pump"}
BINDINGS = {"P-opc": "opcua", "P-kafka": "kafka", "P-replay": "replay", "P-mb": "modbus"}


def frame(twin: str, source: str, t: float = NOW) -> TelemetryFrame:
    return TelemetryFrame(
        twin, "pump", np.array([t]), {"flow_m3h": np.array([250.0])}, source=source
    )


@pytest.mark.parametrize(
    ("twin", "source", "ok"),
    [
        ("P-opc", "opcua", True),
        ("P-opc", "kafka:plant.telemetry", False),
        ("P-opc", "mqtt:plant/p1", False),
        ("P-opc", "replay:rec.parquet", False),
        ("P-kafka", "kafka:plant.telemetry", True),
        ("P-kafka", "opcua", False),
        ("P-replay", "replay:rec.parquet", True),
        ("P-mb", "modbus://127.0.0.1:502/1", True),
        ("P-mb", "mqtt:x", False),
        ("P-free", "kafka:plant.telemetry", True),  # a twin the bindings do not name
    ],
)
def test_source_must_match_binding(twin: str, source: str, ok: bool) -> None:
    v = Validator(twins=TWINS, bindings=BINDINGS)
    out, dead = v.validate(frame(twin, source), NOW)
    if ok:
        assert out is not None and dead == []
    else:
        assert out is None and len(dead) == 1
        assert f"bound to {BINDINGS[twin]}" in dead[0].reason
        assert dead[0].twin_id == twin and dead[0].source == source


def test_waveforms_are_checked_too() -> None:
    v = Validator(twins={"M1": "motor"}, bindings={"M1": "opcua"})
    wave = WaveformFrame(
        "M1", "motor", "vibration", NOW, 8192.0, np.zeros(64), source="kafka:plant"
    )
    assert "bound to opcua" in v.validate(wave, NOW)[1][0].reason


def test_without_bindings_any_source_is_accepted() -> None:
    v = Validator(twins=TWINS)
    assert v.validate(frame("P-opc", "kafka:t"), NOW)[0] is not None


def test_flow_dead_letters_a_kafka_reading_for_an_opcua_twin() -> None:
    items = [
        frame("P-opc", "opcua", NOW),
        frame("P-opc", "kafka:plant.telemetry", NOW + 1),
        frame("P-kafka", "kafka:plant.telemetry", NOW),
        frame("P-opc", "opcua", NOW + 2),
    ]
    telemetry: list[tuple[str, TelemetryFrame]] = []
    dead: list[tuple[str, DeadLetter]] = []
    flow = build_flow(
        TestingSource(items),
        FlowOutputs(
            telemetry=TestingSink(telemetry),
            dead_letters=TestingSink(dead),
            alerts=None,
            commands=None,
        ),
        FlowConfig(),
        clock=lambda: NOW + 3,
        twins=TWINS,
        bindings=BINDINGS,
    )
    run_main(flow)
    kept = sorted((f.twin_id, f.source, float(f.times[0])) for _k, f in telemetry)
    assert kept == [
        ("P-kafka", "kafka:plant.telemetry", NOW),
        ("P-opc", "opcua", NOW),
        ("P-opc", "opcua", NOW + 2),
    ]
    assert [(d.twin_id, d.reason) for _k, d in dead] == [
        ("P-opc", "twin 'P-opc' is bound to opcua: telemetry from 'kafka:plant.telemetry' refused")
    ]
