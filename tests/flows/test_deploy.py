"""Deployment files: validated at start, errors that name the field and say what is expected."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from flows.deploy import load_deployment
from operators.errors import ConfigError

BASE = """
version: 1
services:
  mqtt: {url: "mqtt://127.0.0.1:1883"}
  kafka: {bootstrap: "127.0.0.1:9092"}
twins:
  - {id: wt-001, type: wind_turbine, protocol: mqtt}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "plant.yaml"
    p.write_text(dedent(text))
    return p


def test_a_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    dep = load_deployment(write(tmp_path, BASE), env={})
    (twin,) = dep.twins
    assert twin.mqtt is not None
    assert twin.mqtt.telemetry_topic == "plant/site1/wt-001/telemetry"
    assert twin.mqtt.command_topic == "plant/site1/wt-001/commands"
    assert dep.mqtt is not None and (dep.mqtt.host, dep.mqtt.port, dep.mqtt.qos) == (
        "127.0.0.1",
        1883,
        1,
    )
    assert dep.kafka is not None and dep.kafka.alerts_topic == "twinflow.alerts"
    assert dep.flow.window_s == 300


def test_environment_overrides_service_addresses(tmp_path: Path) -> None:
    env = {
        "MQTT_URL": "mqtt://user:secret@10.1.2.3:1999",
        "KAFKA_BOOTSTRAP": "k1:9092,k2:9093",
        "DATABASE_URL": "postgresql://db/twins",
    }
    dep = load_deployment(write(tmp_path, BASE), env=env)
    assert dep.mqtt is not None
    assert (dep.mqtt.host, dep.mqtt.port, dep.mqtt.username, dep.mqtt.password) == (
        "10.1.2.3",
        1999,
        "user",
        "secret",
    )
    assert dep.kafka is not None and dep.kafka.bootstrap == "k1:9092,k2:9093"
    assert dep.database_url == "postgresql://db/twins"


def test_field_maps_and_flow_settings(tmp_path: Path) -> None:
    text = (
        BASE.replace(
            "  - {id: wt-001, type: wind_turbine, protocol: mqtt}",
            """  - id: wt-001
    type: wind_turbine
    protocol: mqtt
    mqtt:
      time_field: t
      fields:
        wind: wind_speed
        power_w: {signal: power_kw, scale: 0.001}""",
        )
        + "flow: {window_s: 60, lateness_s: 10, write_telemetry: false}\n"
    )
    dep = load_deployment(write(tmp_path, text), env={})
    b = dep.twins[0].mqtt
    assert b is not None and b.time_field == "t"
    assert b.fields["power_w"].signal == "power_kw" and b.fields["power_w"].scale == 0.001
    assert (dep.flow.window_s, dep.flow.lateness_s, dep.flow.write_telemetry) == (60, 10, False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("version: 1", "version: 1\nsevrices: {}"),
            "unknown field 'sevrices'; did you mean 'services'",
        ),
        (("type: wind_turbine", "type: windmill"), "twins[0].type = 'windmill': expected one of"),
        (("protocol: mqtt}", "protocol: zigbee}"), "twins[0].protocol = 'zigbee': expected one of"),
        (("mqtt://127.0.0.1:1883", "http://broker"), "services.mqtt.url (or MQTT_URL)"),
        (("127.0.0.1:9092", "nohostport"), "services.kafka.bootstrap (or KAFKA_BOOTSTRAP)"),
        (("twins:\n", "flow: {window_s: -5}\ntwins:\n"), "window_s must be > 0"),
        (
            ("twins:\n", "flow: {window_s: soon}\ntwins:\n"),
            "flow.window_s = 'soon': expected a number",
        ),
        (
            ("protocol: mqtt}", "protocol: mqtt}\n  - {id: wt-001, type: pump, protocol: mqtt}"),
            "twins[1].id 'wt-001' appears twice",
        ),
        (
            ("protocol: mqtt}", "protocol: mqtt, mqtt: {fields: {x: rotor_speed}}}"),
            "'rotor_speed' is not a signal of wind_turbine",
        ),
        (
            ("protocol: mqtt}", "protocol: mqtt, modbus: {unit: 1}}"),
            "twins[0].modbus is set but twin 'wt-001' uses protocol 'mqtt'",
        ),
        (('  mqtt: {url: "mqtt://127.0.0.1:1883"}\n', ""), "twins use MQTT but services.mqtt"),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = BASE.replace(*change)
    assert text != BASE
    with pytest.raises(ConfigError) as exc:
        load_deployment(write(tmp_path, text), env={})
    assert message in str(exc.value)
    assert "plant.yaml" in str(exc.value)


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_deployment(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_deployment(write(tmp_path, "twins: [\n"), env={})
    with pytest.raises(ConfigError, match="twins must be a non-empty list"):
        load_deployment(write(tmp_path, "version: 1\n"), env={})


def test_deployed_types_expect_only_the_signals_a_binding_carries(tmp_path: Path) -> None:
    text = BASE.replace(
        "  - {id: wt-001, type: wind_turbine, protocol: mqtt}",
        "  - {id: wt-001, type: wind_turbine, protocol: mqtt}\n"
        "  - {id: motor-003, type: motor, protocol: mqtt}",
    )
    types = load_deployment(write(tmp_path, text), env={}).deployed_types()
    assert "vibration" not in types["motor-003"].signal_names  # bursts do not travel over MQTT
    assert "winding_temp" in types["motor-003"].signal_names
    assert len(types["wt-001"].signals) == 8


def test_the_simulated_plant_must_hold_the_deployed_twins(tmp_path: Path) -> None:
    from flows.simulate import plant_for

    ok = load_deployment(write(tmp_path, BASE + "simulator: {twins: 3}\n"), env={})
    assert dict(plant_for(ok).twins)["wt-001"] == "wind_turbine"
    wrong_type = BASE.replace("type: wind_turbine", "type: pump") + "simulator: {twins: 3}\n"
    with pytest.raises(ConfigError, match="is a wind_turbine in the simulated plant, not a pump"):
        plant_for(load_deployment(write(tmp_path, wrong_type), env={}))
    missing = BASE.replace("wt-001", "wt-099") + "simulator: {twins: 3}\n"
    with pytest.raises(ConfigError, match="'wt-099' is not a twin of the simulated plant"):
        plant_for(load_deployment(write(tmp_path, missing), env={}))


def test_the_example_deployment_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "infra" / "examples" / "plant.yaml"
    dep = load_deployment(example, env={"KAFKA_BOOTSTRAP": "127.0.0.1:19092"})
    assert {t.protocol for t in dep.twins} == {"mqtt", "opcua", "modbus"}
    assert dep.kafka is not None and dep.kafka.bootstrap == "127.0.0.1:19092"
    by_id = {t.twin_id: t for t in dep.twins}
    opcua, modbus = by_id["pump-002"].opcua, by_id["motor-003"].modbus
    assert opcua is not None and opcua.nodes["flow_m3h"] == "ns=2;s=pump-002.flow_m3h"
    assert "set_flow" in opcua.commands
    assert modbus is not None and modbus.unit == 3 and "winding_temp" in modbus.registers
    assert "vibration" not in dep.deployed_types()["motor-003"].signal_names
