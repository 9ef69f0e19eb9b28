"""DTDL v2 Interfaces: read beside v3 ones, with v2's own rules (a twin type may come from v2)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.operators.compressor import INTERFACE, PROFILE
from tests.operators.dtdl_samples import V3, rules_of, write
from twinflow.operators.catalog import load_catalogue
from twinflow.operators.dtdl import CommandPayload, EnumSchema, MapSchema, parse_files

V2 = "dtmi:dtdl:context;2"


def v2(dtmi: str = "dtmi:test:V2;1", *contents: Any, **more: Any) -> dict[str, Any]:
    return {"@context": V2, "@id": dtmi, "@type": "Interface", "contents": list(contents)} | more


ENUM = {
    "@type": "Property",
    "name": "mode",
    "writable": True,
    "schema": {
        "@type": "Enum",
        "valueSchema": "string",
        "enumValues": [
            {"name": "auto", "enumValue": "A"},
            {"@type": "EnumValue", "name": "manual", "enumValue": "M"},
        ],
    },
}
MAP = {
    "@type": "Telemetry",
    "name": "levels",
    "schema": {
        "@type": "Map",
        "mapKey": {"name": "tank", "schema": "string"},
        "mapValue": {"name": "level", "schema": "double"},
    },
}
TEMP = {
    "@type": ["Telemetry", "Temperature"],
    "name": "temp",
    "schema": "double",
    "unit": "degreeCelsius",
}
RESET = {
    "@type": "Command",
    "name": "reset",
    "commandType": "synchronous",
    "request": {"@type": "CommandPayload", "name": "delay", "schema": "integer"},
    "response": {"name": "ok", "schema": "boolean"},
}


def test_a_v2_interface_with_enum_map_semantic_types_and_commands_loads(tmp_path: Path) -> None:
    doc = v2("dtmi:test:V2;1", ENUM, MAP, TEMP, RESET, displayName="V2 device")
    models = parse_files(write(tmp_path, {"v2.json": doc}))
    mode = models.property("dtmi:test:V2;1", "mode").schema
    assert isinstance(mode, EnumSchema) and [v.value for v in mode.values] == ["A", "M"]
    assert isinstance(models.telemetry("dtmi:test:V2;1", "levels").schema, MapSchema)
    temp = models.telemetry("dtmi:test:V2;1", "temp")
    assert (temp.semantic_type, temp.unit) == ("Temperature", "degreeCelsius")
    reset = models.command("dtmi:test:V2;1", "reset")
    assert isinstance(reset.request, CommandPayload) and reset.response is not None


def test_v2_and_v3_mix_a_v3_interface_may_use_a_v2_one(tmp_path: Path) -> None:
    part = v2("dtmi:test:Part;1", TEMP)
    whole = {
        "@context": V3,
        "@id": "dtmi:test:Whole;1",
        "@type": "Interface",
        "extends": "dtmi:test:Part;1",
        "contents": [{"@type": "Component", "name": "p", "schema": "dtmi:test:Part;1"}],
    }
    models = parse_files(write(tmp_path, {"a.json": part, "b.json": whole}))
    assert models.telemetry("dtmi:test:Whole;1", "temp").unit == "degreeCelsius"
    inline = copy.deepcopy(whole) | {"extends": part, "contents": []}
    assert rules_of(tmp_path, inline) == []
    # a v2 Interface may not use a v3 one, by reference or inline
    up = v2("dtmi:test:Up;1", extends="dtmi:test:Whole;1")
    assert rules_of(tmp_path, part, whole, up) == ["version-mix"]
    assert rules_of(tmp_path, part, up | {"extends": whole}) == ["context-version"]


def test_v2_units_and_semantic_types_may_be_written_as_dtmis(tmp_path: Path) -> None:
    temp = TEMP | {
        "@type": ["Telemetry", "dtmi:standard:class:Temperature;2"],
        "dtmi:dtdl:property:unit;2": "dtmi:standard:unit:kelvin;2",
    }
    del temp["unit"]
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", temp)) == []


V2_INVALID = {
    "semantic type without unit": (TEMP | {"unit": []}, "property-missing"),
    "unit of another semantic type": (TEMP | {"unit": "bar"}, "unit-mismatch"),
    "v3-only unit": (
        TEMP | {"@type": ["Telemetry", "Power"], "unit": "joulePerSecond"},
        "unit-mismatch",
    ),
    "semantic type on a non-numeric schema": (TEMP | {"schema": "string"}, "semantic-type-schema"),
    "Array schema in a Property": (
        {"@type": "Property", "name": "p", "schema": {"@type": "Array", "elementSchema": "long"}},
        "schema-v2-property",
    ),
    "geospatial schema in a Property": (
        {"@type": "Property", "name": "p", "schema": "point"},
        "schema-v2-property",
    ),
    "name longer than 64": (TEMP | {"name": "n" * 65}, "name-length"),
    "displayName longer than 64": (TEMP | {"displayName": "n" * 65}, "string-length"),
    "v3 CommandRequest class": (
        RESET | {"request": {"@type": "CommandRequest", "name": "d", "schema": "long"}},
        "type-invalid",
    ),
    "Enum without values": (
        ENUM | {"schema": {"@type": "Enum", "valueSchema": "string", "enumValues": []}},
        "count-limit",
    ),
    "Object without fields": (
        MAP | {"schema": {"@type": "Object", "fields": []}},
        "count-limit",
    ),
    "undefined DTMI co-type": (
        TEMP | {"@type": ["Telemetry", "dtmi:ex:x;1"], "unit": []},
        "type-unknown",
    ),
    "@graph member": (TEMP | {"@graph": {}}, "property-unknown"),
    "maxMultiplicity over 500": (
        {"@type": "Relationship", "name": "r", "maxMultiplicity": 501},
        "multiplicity",
    ),
}


@pytest.mark.parametrize(("content", "rule"), V2_INVALID.values(), ids=V2_INVALID.keys())
def test_each_v2_rule_names_itself(tmp_path: Path, content: dict[str, Any], rule: str) -> None:
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", content)) == [rule]


def test_v2_allows_undefined_co_types_and_their_members(tmp_path: Path) -> None:
    """v2 lets an element carry an undefined term as co-type (and then any member)."""
    odd = MAP | {"@type": ["Telemetry", "Event"], "severity": "high"}
    assert (
        rules_of(tmp_path, v2("dtmi:test:V2;1", odd, **{"@type": ["Interface", "x:Device"]})) == []
    )
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", MAP | {"severity": "high"})) == [
        "property-unknown"
    ]


def test_v2_limits_at_their_boundaries(tmp_path: Path) -> None:
    def props(n: int) -> list[dict[str, Any]]:
        return [{"@type": "Property", "name": f"p{i}", "schema": "long"} for i in range(n)]

    assert rules_of(tmp_path, v2("dtmi:test:V2;1", *props(300))) == []
    rel = {"@type": "Relationship", "name": "r", "maxMultiplicity": 500}
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", rel)) == []
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", *props(301))) == ["count-limit"]
    bases = [v2(f"dtmi:test:B{i};1") for i in range(3)]
    two = v2("dtmi:test:V2;1", extends=["dtmi:test:B0;1", "dtmi:test:B1;1"])
    assert rules_of(tmp_path, two, *bases) == []
    three = two | {"extends": [*two["extends"], "dtmi:test:B2;1"]}
    assert rules_of(tmp_path, three, *bases) == ["count-limit"]
    fields = [{"name": f"f{i}", "schema": "long"} for i in range(31)]
    obj = MAP | {"schema": {"@type": "Object", "fields": fields[:30]}}
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", obj)) == []
    obj["schema"]["fields"] = fields
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", obj)) == ["count-limit"]
    values = [{"name": f"v{i}", "enumValue": i} for i in range(101)]
    enum = ENUM | {
        "schema": {"@type": "Enum", "valueSchema": "integer", "enumValues": values[:100]}
    }
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", enum)) == []
    enum["schema"]["enumValues"] = values
    assert rules_of(tmp_path, v2("dtmi:test:V2;1", enum)) == ["count-limit"]


def test_a_twin_type_may_come_from_a_v2_model(tmp_path: Path) -> None:
    doc = copy.deepcopy(INTERFACE)
    doc["@context"] = V2
    for content in doc["contents"]:  # v2 has semantic types built in; request is a payload
        if content["@type"] == "Command":
            content["request"]["@type"] = "CommandPayload"
    models = tmp_path / "models"
    models.mkdir()
    write(models, {"compressor.json": doc, "compressor.yaml": PROFILE})
    compressor = load_catalogue([models])["compressor"]
    assert compressor.model_id == "dtmi:example:Compressor;1"
    assert {s.name for s in compressor.signals} >= {"discharge_pressure", "motor_power"}
