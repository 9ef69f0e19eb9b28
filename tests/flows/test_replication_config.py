"""The deployment file's replication: section and a profile's replication: section."""

from __future__ import annotations

from pathlib import Path

import pytest

import twinflow.operators
from twinflow.core.errors import ConfigError
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replication import node_for
from twinflow.operators.replication.consistency import consistency_of

BASE = """
version: 1
site: north
services:
  mqtt: {url: "mqtt://127.0.0.1:1883", client_id: "edge"}
twins:
  - {id: pump-1, type: pump, protocol: mqtt}
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "plant.yaml"
    path.write_text(BASE + text)
    return load_deployment(path, env={})


def test_no_section_is_one_instance_as_before(tmp_path: Path) -> None:
    dep = load(tmp_path, "")
    assert dep.replication is None


def test_an_edge_section_gets_its_defaults(tmp_path: Path) -> None:
    dep = load(tmp_path, "replication: {role: edge}\n")
    rep = dep.replication
    assert (rep.role, rep.replica, rep.link, rep.topic_base()) == (
        "edge",
        "north",
        "mqtt",
        "twinflow/replication",
    )
    assert rep.forward == ("twin_state", "windows", "alerts", "command_outcomes")
    assert rep.outbox_dir(tmp_path) == tmp_path / "replication-outbox"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("replication: {role: cloud}", "role"),
        ("replication: {link: mqtt}", "role"),
        ("replication: {role: edge, forward: [readings]}", "'readings' is not one of"),
        ("replication: {role: edge, link: kafka}", "services.kafka is not set"),
        ("replication: {role: edge, outbox_mb: 0}", "outbox_mb"),
        ("replication: {role: edge, colour: blue}", "colour"),
    ],
)
def test_bad_sections_are_refused_with_the_field_named(
    tmp_path: Path, section: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, section + "\n")


def test_the_profile_declares_each_property_s_consistency(tmp_path: Path) -> None:
    dep = load(tmp_path, "replication: {role: central}\n")
    assert consistency_of(dep.types["pump"], "flow_setpoint") == "eventual"
    # a type of one's own: the bundled pump under another name, flow_setpoint strong
    types = Path(twinflow.operators.__file__).parent / "types"
    own = tmp_path / "models"
    own.mkdir()
    dtmi = "dtmi:example:StrongPump;1"
    model = (types / "pump.json").read_text().replace("dtmi:twinflow:sim:Pump;1", dtmi)
    (own / "strong_pump.json").write_text(model)
    profile = (types / "pump.yaml").read_text()
    profile = profile.replace("name: pump", "name: strong_pump").replace(
        "model: dtmi:twinflow:sim:Pump;1", f"model: {dtmi}"
    )
    profile += "replication:\n  properties: {flow_setpoint: strong}\n"
    (own / "strong_pump.yaml").write_text(profile)
    text = BASE.replace("type: pump", "type: strong_pump").replace(
        "twins:", "models: [models]\ntwins:"
    )
    path = tmp_path / "own.yaml"
    path.write_text(text + "replication: {role: central}\n")
    dep = load_deployment(path, env={})
    node = node_for(dep, dep.replication, tmp_path)  # type: ignore[arg-type]
    try:
        assert node.role == "central" and node.owned == {}
        assert node.consistency("pump-1", "flow_setpoint") == "strong"
        assert node.consistency("nobody", "x") == "eventual"
    finally:
        node.link.outbox.close()


def test_a_profile_replication_section_is_read_and_checked() -> None:
    from twinflow.core.config import Section
    from twinflow.operators.replication.consistency import read_consistency

    c = read_consistency(
        Section({"consistency": "causal", "properties": {"flow_setpoint": "strong"}}, "r", "p")
    )
    assert (c.of("flow_setpoint"), c.of("other")) == ("strong", "causal")
    with pytest.raises(ConfigError, match="flow_setpoint"):
        read_consistency(Section({"properties": {"flow_setpoint": "firm"}}, "r", "p"))
    with pytest.raises(ConfigError, match="consistency"):
        read_consistency(Section({"consistency": "firm"}, "r", "p"))


def test_a_kafka_edge_uses_the_deployment_s_broker_topics_and_group(tmp_path: Path) -> None:
    from twinflow.connectors.replication.kafka_link import KafkaLink

    text = BASE.replace(
        "services:\n", 'services:\n  kafka: {bootstrap: "k1:9092", group_id: plant}\n'
    )
    path = tmp_path / "kafka.yaml"
    path.write_text(text + "replication: {role: edge, link: kafka, replica: edge-7}\n")
    dep = load_deployment(path, env={})
    node = node_for(dep, dep.replication, tmp_path)  # type: ignore[arg-type]
    try:
        link = node.link
        assert isinstance(link, KafkaLink)
        assert (link.bootstrap, link.produce_topic, link.consume_topic, link.group_id) == (
            "k1:9092",
            "twinflow.replication.up",
            "twinflow.replication.down",
            "plant-replication-edge-7",
        )
        assert not link.relay and node.owned == {"pump-1": "pump"}
    finally:
        link.outbox.close()
