"""Deployment files: validated at start, errors that name the field and say what is expected."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from twinflow.core.errors import ConfigError
from twinflow.flows.deploy import load_deployment
from twinflow.operators.catalog import CATALOG

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
    # a password over plain mqtt:// needs allow_insecure since issue 11
    text = BASE.replace(
        '"mqtt://127.0.0.1:1883"}', '"mqtt://127.0.0.1:1883", allow_insecure: true}'
    )
    dep = load_deployment(write(tmp_path, text), env=env)
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
            "'rotor_speed' is not a Telemetry of wind_turbine's model "
            "dtmi:twinflow:sim:WindTurbine;1",
        ),
        (
            (
                "protocol: mqtt}",
                "protocol: opcua, opcua: {commands: {fly: {node: 'ns=2;s=x', param: up}}}}",
            ),
            "wind_turbine's model dtmi:twinflow:sim:WindTurbine;1 declares no command 'fly'",
        ),
        (
            (
                "protocol: mqtt}",
                "protocol: opcua, opcua: {commands: {derate: {node: 'ns=2;s=x', param: up}}}}",
            ),
            "command 'derate' of dtmi:twinflow:sim:WindTurbine;1 has no request field 'up'",
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
    from twinflow.flows.simulate import plant_for

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


# -- assets and relationships -------------------------------------------------------------

PLANT = """
version: 1
site: north
services:
  mqtt: {url: "mqtt://127.0.0.1:1883"}
assets:
  - {id: line-a, type: line}
  - {id: skid-1, type: pump_skid, part_of: line-a, model_id: "dtmi:plant:PumpSkid;1"}
twins:
  - id: pump-002
    type: pump
    protocol: mqtt
    part_of: skid-1
    relationships: {drivenBy: [motor-003], feeds: wt-001}
  - {id: motor-003, type: motor, protocol: mqtt, component_of: skid-1}
  - {id: wt-001, type: wind_turbine, protocol: mqtt}
"""


def test_assets_and_relationships_build_the_registry(tmp_path: Path) -> None:
    dep = load_deployment(write(tmp_path, PLANT), env={})
    reg = dep.registry()
    assert [a.asset_id for a in dep.assets] == ["line-a", "skid-1"]
    assert reg.get("north").type == "site" and reg.parent("line-a") == "north"
    assert reg.children("skid-1") == ("pump-002", "motor-003")
    assert reg.get("motor-003").containment == "isComponentOf"
    assert reg.parent("wt-001") == "north"  # no part_of: directly in the site
    assert reg.ancestors("motor-003") == ("skid-1", "line-a", "north")
    assert {reg.site_of(e.id) for e in reg} == {"north"}
    assert reg.related("pump-002", "drivenBy") == ("motor-003",)
    assert reg.related("pump-002", "feeds") == ("wt-001",)
    assert reg.get("skid-1").model_id == "dtmi:plant:PumpSkid;1"
    assert reg.get("pump-002").protocol == "mqtt" and reg.get("skid-1").protocol is None
    assert reg.twins_under("north") == ("pump-002", "motor-003", "wt-001")
    # twins take their DTMI from the catalogue's type (when the type has one)
    assert reg.get("pump-002").model_id == (getattr(CATALOG["pump"], "model_id", None) or None)


def test_a_file_without_assets_puts_every_twin_in_the_site(tmp_path: Path) -> None:
    reg = load_deployment(write(tmp_path, BASE), env={}).registry()
    assert [(e.id, reg.parent(e.id)) for e in reg] == [("site1", None), ("wt-001", "site1")]


def test_the_example_deployment_has_a_skid() -> None:
    example = Path(__file__).resolve().parents[2] / "infra" / "examples" / "plant.yaml"
    reg = load_deployment(example, env={}).registry()
    assert reg.children("skid-1") == ("pump-002", "motor-003")
    assert reg.site_of("motor-003") == "site1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("part_of: skid-1\n", "part_of: skid-9\n"),
            "twins[0].part_of: 'skid-9' is not a declared twin or asset; did you mean 'skid-1'?",
        ),
        (
            ("feeds: wt-001", "feeds: wt-009"),
            "twins[0].relationships.feeds: 'wt-009' is not a declared twin or asset",
        ),
        (
            ("{id: line-a, type: line}", "{id: line-a, type: line, part_of: skid-1}"),
            "assets[0].part_of: containment cycle line-a -> skid-1 -> line-a",
        ),
        (
            ("component_of: skid-1}", "component_of: skid-1, part_of: line-a}"),
            "twins[1].part_of: 'motor-003' has more than one parent",
        ),
        (
            ("part_of: skid-1\n", "part_of: [skid-1, line-a]\n"),
            "twins[0].part_of = ['skid-1', 'line-a']: expected one id",
        ),
        (
            ("{id: wt-001, type:", "{id: skid-1, type:"),
            "twins[2].id: id 'skid-1' is declared twice (also at assets[1])",
        ),
        (
            ("{id: line-a, type: line}", "{id: north, type: line}"),
            "'north' is the deployment's site",
        ),
        (("{id: line-a, type: line}", "{id: line-a, type: pump}"), "is a telemetry twin type"),
        (("{id: line-a, type: line}", "{id: line-a, type: site}"), "'site' is the top-level site"),
        (("{id: line-a, type: line}", "{id: line-a}"), "assets[0].type is required"),
        (
            ("{id: line-a, type: line}", "{id: line-a, type: line, parent: north}"),
            "unknown field 'assets[0].parent'",
        ),
        (
            ("feeds: wt-001}", "feeds: wt-001, partOf: [line-a]}"),
            "twins[0].relationships.partOf: containment is not a named relationship",
        ),
        (("feeds: wt-001}", "feeds: 7}"), "twins[0].relationships.feeds = 7: expected a twin"),
        (("{drivenBy:", "{bad name:"), "relationship name 'bad name'"),
        (('"dtmi:plant:PumpSkid;1"', '"PumpSkid"'), "assets[1].model_id: 'PumpSkid' is not a DTMI"),
    ],
)
def test_bad_assets_and_relationships_name_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = PLANT.replace(*change)
    assert text != PLANT
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_deployment(path, env={})
    assert message in str(exc.value)
    assert str(path) in str(exc.value)


def test_assets_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"assets = \{'skid-1': 'pump_skid'\}: expected a list"):
        load_deployment(write(tmp_path, BASE + "assets: {skid-1: pump_skid}\n"), env={})


# -- free relationships must be declared by the twin type's DTDL model ------------------------


def test_the_example_deployment_uses_declared_relationships() -> None:
    example = Path(__file__).resolve().parents[2] / "infra" / "examples" / "plant.yaml"
    reg = load_deployment(example, env={}).registry()
    assert reg.related("pump-002", "drivenBy") == ("motor-003",)
    assert reg.related("pump-005", "drivenBy") == ("motor-006",)
    declared = {t.model_id: {r.name for r in t.relationships} for t in CATALOG.values()}
    for e in reg.twins():
        free = set(e.relationships) - {"partOf", "isComponentOf"}
        assert free <= declared[e.model_id], e.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("{drivenBy: [motor-003],", "{poweredBy: [motor-003],"),
            "twins[0].relationships.poweredBy: the model of 'pump-002', "
            f"{CATALOG['pump'].model_id}, declares no Relationship 'poweredBy' (it declares: "
            "drivenBy, feeds); use a declared one, or add a Relationship named 'poweredBy' to "
            "the model",
        ),
        (
            ("{drivenBy: [motor-003],", "{drivenBy: [wt-001],"),
            "twins[0].relationships.drivenBy: 'wt-001' has model "
            f"{CATALOG['wind_turbine'].model_id}, but Relationship 'drivenBy' of "
            f"{CATALOG['pump'].model_id} targets {CATALOG['motor'].model_id}",
        ),
        (
            ("{drivenBy: [motor-003],", "{drivenBy: [line-a],"),
            "twins[0].relationships.drivenBy: 'line-a' has no DTDL model, but Relationship "
            "'drivenBy' of dtmi:twinflow:sim:Pump;1 targets dtmi:twinflow:sim:Motor;1; name a "
            "twin of dtmi:twinflow:sim:Motor;1 or fix the id",
        ),
        (
            ("{drivenBy: [motor-003],", "{drivenBy: [motor-003, motor-004],"),
            "twins[0].relationships.drivenBy: 'pump-002' names 2 targets (motor-003, motor-004) "
            "but Relationship 'drivenBy' of dtmi:twinflow:sim:Pump;1 allows at most 1",
        ),
        (
            ("component_of: skid-1}", "component_of: skid-1, relationships: {drives: [wt-001]}}"),
            "twins[1].relationships.drives: 'wt-001' has model",
        ),
    ],
)
def test_undeclared_relationships_name_the_field_and_model(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = PLANT.replace(*change) + "  - {id: motor-004, type: motor, protocol: mqtt}\n"
    assert text != PLANT + "  - {id: motor-004, type: motor, protocol: mqtt}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_deployment(path, env={})
    assert f"{path}: {message}" in str(exc.value)


def test_assets_keep_free_relationships_unchecked(tmp_path: Path) -> None:
    text = PLANT.replace(
        "{id: line-a, type: line}", "{id: line-a, type: line, relationships: {supplies: [wt-001]}}"
    )
    reg = load_deployment(write(tmp_path, text), env={}).registry()
    assert reg.related("line-a", "supplies") == ("wt-001",)
