"""Each protocol's twins expect only the signals their binding carries: MQTT and Kafka twins
list them (``signals:``), OPC UA and Modbus twins map them (nodes, registers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from tests.operators.compressor import compressor_frames, write_compressor
from twinflow.connectors.bindings import KafkaBinding
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame, WindowFeatures
from twinflow.flows.config import FlowConfig
from twinflow.flows.deploy import Deployment, load_deployment
from twinflow.flows.telemetry import FlowOutputs, build_flow

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PART = {"discharge_pressure", "motor_power"}

HEAD = """\
version: 1
models: [models]
services:
  kafka: {telemetry_topics: [plant.telemetry]}
twins:
"""


def _load(tmp_path: Path, twins: str) -> Deployment:
    write_compressor(tmp_path / "models")
    path = tmp_path / "plant.yaml"
    path.write_text(HEAD + twins)
    return load_deployment(path, env={})


def test_a_kafka_twin_lists_the_signals_it_sends(tmp_path: Path) -> None:
    dep = _load(
        tmp_path,
        """\
  - {id: k-1, type: compressor, protocol: kafka,
     kafka: {signals: [discharge_pressure, motor_power]}}
  - {id: k-2, type: compressor, protocol: kafka}
  - {id: k-3, type: pump, protocol: kafka, kafka: {}}
""",
    )
    deployed = dep.deployed_types()
    assert deployed["k-1"].signal_names == PART
    assert deployed["k-2"].signal_names == {s.name for s in dep.types["compressor"].signals}
    assert deployed["k-3"].signal_names == {s.name for s in dep.types["pump"].scalar_signals}
    k1 = dep.twins[0].binding
    assert isinstance(k1, KafkaBinding) and k1.kind is dep.types["compressor"]
    assert dep.bindings("kafka")[1].signals == ()


@pytest.mark.parametrize(
    ("twin", "message"),
    [
        (
            "{id: k-1, type: compressor, protocol: kafka, kafka: {signals: [flow]}}",
            r"twins\[0\].kafka.signals\[0\]: 'flow' is not a Telemetry of compressor's model "
            r"dtmi:example:Compressor;1; known: discharge_pressure, ",
        ),
        (
            "{id: m-1, type: motor, protocol: kafka, kafka: {signals: [current_a, vibration]}}",
            r"twins\[0\].kafka.signals\[1\]: 'vibration' is a waveform signal; Kafka telemetry "
            "carries scalar signals",
        ),
        (
            "{id: k-1, type: compressor, protocol: kafka, kafka: {signal: [motor_power]}}",
            r"unknown field 'twins\[0\].kafka.signal'; did you mean 'signals'",
        ),
        (
            "{id: k-1, type: compressor, protocol: kafka, kafka: {signals: motor_power}}",
            r"twins\[0\].kafka.signals",
        ),
    ],
)
def test_kafka_signal_lists_are_checked(tmp_path: Path, twin: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, f"  - {twin}\n")


def test_opcua_and_modbus_twins_expect_what_they_map(tmp_path: Path) -> None:
    dep = _load(
        tmp_path,
        """\
  - id: o-1
    type: compressor
    protocol: opcua
    opcua:
      nodes: {discharge_pressure: "ns=2;s=o1.p", motor_power: "ns=2;s=o1.kw"}
      commands: {}
  - id: m-1
    type: compressor
    protocol: modbus
    modbus:
      registers: {motor_power: {address: 0, type: float32}}
      commands: {}
  - {id: o-2, type: compressor, protocol: opcua}
""",
    )
    deployed = dep.deployed_types()
    assert deployed["o-1"].signal_names == PART
    assert deployed["m-1"].signal_names == {"motor_power"}
    assert deployed["o-2"].signal_names == {s.name for s in dep.types["compressor"].signals}


def _frames(twin: str, signals: dict[str, float], minutes: int) -> list[TelemetryFrame]:
    return compressor_frames(twin, signals, minutes, START)


def test_a_kafka_twin_with_a_signal_list_is_judged_on_it_alone(tmp_path: Path) -> None:
    dep = _load(
        tmp_path,
        """\
  - {id: k-1, type: compressor, protocol: kafka,
     kafka: {signals: [discharge_pressure, motor_power]}}
  - {id: k-2, type: compressor, protocol: kafka}
""",
    )
    # Both send the same two signals; only k-1 says so.
    part = {"discharge_pressure": 8.0, "motor_power": 120.0}
    frames = _frames("k-1", part, 30) + _frames("k-2", part, 30)
    windows: list[Any] = []
    states: list[Any] = []
    flow = build_flow(
        TestingSource(frames),
        FlowOutputs(
            windows=TestingSink(windows),
            twin_states=TestingSink(states),
            alerts=TestingSink([]),
            dead_letters=TestingSink([]),
            commands=TestingSink([]),
        ),
        FlowConfig(window_s=300, lateness_s=30),
        clock=lambda: START + 1800,
        twins=dep.twin_types,
        twin_types=dep.deployed_types(),
        catalog=dep.types,
    )
    run_main(flow)
    got = [w for _k, w in windows if isinstance(w, WindowFeatures)]
    missing: dict[str, set[str]] = {"k-1": set(), "k-2": set()}
    for w in got:
        missing[w.twin_id] |= {k for k, v in w.features.items() if k.endswith(".missing") and v}
    assert missing == {"k-1": set(), "k-2": {"discharge_temp.missing"}}
    last = {s.twin_id: s.status.value for _k, s in states}
    assert last == {"k-1": "synchronized", "k-2": "initializing"}
