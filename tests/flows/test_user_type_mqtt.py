"""A machine type defined only by files runs through `twinflow run` over a real mosquitto.

The compressor is a DTDL v3 Interface and a profile in a temporary ``models:`` folder; its
devices are plain paho publishers sending JSON telemetry in the MQTT connector's wire format
(single reading sets and batches). One twin maps only part of the type's signals; one that
sends the same part without saying so is the control.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import polars as pl
import pytest
from bytewax.testing import run_main

from tests.operators.compressor import write_compressor
from tests.services.mosquitto import Mosquitto, free_port
from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.mqtt import MqttSource
from twinflow.flows.deploy import Deployment, load_deployment
from twinflow.flows.run import deployment_flow

pytestmark = pytest.mark.services

SECONDS = 1200  # 20 minutes at 1 Hz per twin
BAD_AT = 600  # comp-2's discharge_pressure reads 25 bar here; the profile allows [0, 16]

TWINS = """\
twins:
  - id: comp-1                  # maps two of the type's signals, under its own field names
    type: compressor
    protocol: mqtt
    mqtt:
      signals: [discharge_pressure, motor_power]
      fields: {p: discharge_pressure, power_w: {signal: motor_power, scale: 0.001}}
  - id: comp-2                  # every signal but the optional oil_level
    type: "dtmi:example:Compressor;1"
    protocol: mqtt
  - id: comp-3                  # the control: sends what comp-1 sends, but does not say so
    type: compressor
    protocol: mqtt
"""


def deployment(tmp_path: Path, broker: Mosquitto) -> Deployment:
    write_compressor(tmp_path / "models")
    path = tmp_path / "plant.yaml"
    path.write_text(
        f"""version: 1
site: plant9
models: [models]
services:
  mqtt: {{url: "{broker.url}", client_id: "flow-{free_port()}"}}
flow: {{window_s: 120, lateness_s: 10}}
{TWINS}"""
    )
    return load_deployment(path, env={})


def create_session(dep: Deployment) -> None:
    """Connect the flow's client once, so the broker queues what the devices publish."""
    assert dep.mqtt is not None
    source = MqttSource(dep.mqtt, dep.bindings("mqtt"))
    part = source.build_part("in", source.list_parts()[0], None)
    assert part.ready.wait(10), "the flow's session did not subscribe in time"
    part.close()


def payloads(t0: float) -> list[tuple[str, dict[str, Any]]]:
    """(topic, JSON payload) of the three devices: comp-1 and comp-3 one reading set per
    message, comp-2 batches of 60 readings."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(SECONDS):
        ts = t0 + i
        wobble = 0.05 * math.sin(i / 7.0)
        out.append(
            (
                "plant/plant9/comp-1/telemetry",
                {"ts": ts, "p": 8.0 + wobble, "power_w": 120_000.0 + 500 * wobble},
            )
        )
        out.append(
            (
                "plant/plant9/comp-3/telemetry",
                {"ts": ts, "discharge_pressure": 8.0 + wobble, "motor_power": 118.0 + wobble},
            )
        )
    for start in range(0, SECONDS, 60):
        idx = range(start, start + 60)
        pressure = [7.5 + 0.05 * math.cos(i / 5.0) for i in idx]
        if start <= BAD_AT < start + 60:
            pressure[BAD_AT - start] = 25.0
        out.append(
            (
                "plant/plant9/comp-2/telemetry",
                {
                    "ts": [t0 + i for i in idx],
                    "discharge_pressure": pressure,
                    "discharge_temp": [80.0 + 0.1 * math.sin(i / 9.0) for i in idx],
                    "motor_power": [110.0 + 0.2 * math.sin(i / 11.0) for i in idx],
                },
            )
        )
    return out


def publish(broker: Mosquitto, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """A plain paho client (MQTT v3.1.1) publishing at QoS 1, as a device would."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{free_port()}")
    client.max_inflight_messages_set(500)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(t, json.dumps(p), qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def judged(windows: pl.DataFrame, feature: str) -> list[Any]:
    """The values a feature took in these windows (none when no window has it)."""
    return windows[feature].drop_nulls().to_list() if feature in windows.columns else []


@pytest.mark.timeout(180)
def test_a_type_defined_only_by_files_runs_over_mqtt(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        dep = deployment(tmp_path, broker)
        create_session(dep)
        t0 = float(math.floor(time.time())) - SECONDS - 5
        publish(broker, payloads(t0))
        out = tmp_path / "out"
        flow = deployment_flow(
            dep,
            out,
            limits={"mqtt": {"idle_timeout_s": 3.0}, "feedback": {"until": lambda: True}},
        )
        run_main(flow)

    twins = {"comp-1", "comp-2", "comp-3"}
    telemetry = read_parquet_dir(out / "telemetry")
    assert set(telemetry["twin_id"].unique()) == twins
    assert set(telemetry["twin_type"].unique()) == {"compressor"}
    one = telemetry.filter(pl.col("twin_id") == "comp-1")
    assert one.height == SECONDS
    assert one["motor_power"].mean() == pytest.approx(120.0, rel=0.01)  # W scaled to kW
    assert one["discharge_pressure"].mean() == pytest.approx(8.0, rel=0.01)

    # The reading outside the profile's range: NaN in the telemetry, one dead letter.
    two = telemetry.filter(pl.col("twin_id") == "comp-2").sort("time")
    assert two.height == SECONDS
    bad = two["discharge_pressure"][BAD_AT]
    assert bad is None or math.isnan(bad)
    assert two["discharge_pressure"].drop_nulls().drop_nans().len() == SECONDS - 1
    assert two["discharge_temp"].drop_nans().len() == SECONDS
    dead = jsonl(out / "deadletter.jsonl")
    assert [(d["twin_id"], d["stage"]) for d in dead] == [("comp-2", "validate")], dead
    assert "discharge_pressure" in dead[0]["reason"]
    assert "outside its valid range [0, 16]" in dead[0]["reason"]

    windows = read_parquet_dir(out / "windows")
    assert set(windows["twin_id"].unique()) == twins
    w1 = windows.filter(pl.col("twin_id") == "comp-1")
    assert w1.height >= 8
    assert w1["discharge_pressure.missing"].max() == 0
    assert w1["motor_power.missing"].max() == 0
    assert judged(w1, "discharge_temp.missing") == [], "unmapped: not judged"
    w2 = windows.filter(pl.col("twin_id") == "comp-2")
    assert judged(w2, "oil_level.missing") == [], "optional: not judged"
    assert w2["discharge_temp.missing"].max() == 0
    # The control sends no discharge_temp without saying so: judged missing in every window.
    w3 = windows.filter(pl.col("twin_id") == "comp-3")
    assert w3["discharge_temp.missing"].min() == 1

    # Generic dropout rules judge only what a twin is expected to send: the control alone
    # raises one, for the signal it never sends.
    alerts = jsonl(out / "alerts.jsonl")
    dropouts = {(a["twin_id"], a["rule"]) for a in alerts if "dropout" in a["rule"]}
    assert dropouts == {("comp-3", "discharge_temp_dropout")}

    states = read_parquet_dir(out / "twin_states").sort("time")
    assert set(states["twin_id"].unique()) == twins
    last = {r["twin_id"]: r for r in states.iter_rows(named=True)}
    assert last["comp-1"]["status"] == "synchronized"
    assert last["comp-2"]["status"] == "synchronized"
    assert last["comp-3"]["status"] == "initializing", "it waits for discharge_temp"
    assert last["comp-1"]["discharge_pressure"] == pytest.approx(8.0, abs=0.1)
