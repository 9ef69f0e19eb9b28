"""The official DTDL v3 extensions: Historization, Annotation, Overriding, MQTT (and QT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.operators.dtdl_samples import QT, V3, rules_of, write
from twinflow.operators.dtdl import EnumSchema, parse_files

HIST = "dtmi:dtdl:extension:historization;1"
ANNOT = "dtmi:dtdl:extension:annotation;1"
OVER = "dtmi:dtdl:extension:overriding;1"
MQTT = "dtmi:dtdl:extension:mqtt;1"
TEMP = {
    "@type": ["Telemetry", "Temperature"],
    "name": "currentTemp",
    "schema": "double",
    "unit": "degreeFahrenheit",
}


def iface(contexts: list[str], *contents: Any, **more: Any) -> dict[str, Any]:
    doc = {"@context": [V3, *contexts], "@id": "dtmi:test:E;1", "@type": "Interface"}
    return doc | {"contents": list(contents)} | more


def annotation(**more: Any) -> dict[str, Any]:
    return {
        "@type": ["Property", "ValueAnnotation"],
        "name": "accuracy",
        "annotates": "currentTemp",
        "schema": "double",
    } | more


OVERRIDE = {
    "@type": ["Property", "ValueAnnotation", "Override"],
    "name": "currentTempUnit",
    "annotates": "currentTemp",
    "overrides": "unit",
    "schema": "TemperatureUnit",
    "writable": True,
}
MQTT_IFACE = {"@type": ["Interface", "Mqtt"], "payloadFormat": "proto3", "telemetryTopic": "a/b"}
INDEXED = {"@type": ["Telemetry", "Indexed"], "name": "distance", "schema": "double", "index": 1}

VALID = {
    "Historized Property and Telemetry": iface(
        [QT, HIST],
        TEMP | {"@type": ["Telemetry", "Temperature", "Historized"]},
        {"@type": ["Property", "Historized"], "name": "p", "schema": "double"},
    ),
    "ValueAnnotation": iface([QT, ANNOT], TEMP, annotation()),
    "Override of the unit": iface([QT, ANNOT, OVER], TEMP, OVERRIDE),
    "Mqtt Interface with Indexed, Idempotent and Cacheable": iface(
        [MQTT],
        INDEXED,
        INDEXED | {"name": "color", "index": 2, "schema": "string"},
        {"@type": ["Command", "Idempotent"], "name": "getSpeed"},
        {"@type": ["Command", "Cacheable"], "name": "getColor", "ttl": "PT1M"},
        **MQTT_IFACE,
    ),
}

M = "dtmi:dtdl:extension:mqtt:v1:"
VALID["adjunct types and members by their IRIs"] = iface(
    [QT, ANNOT, MQTT],
    TEMP,
    annotation(**{"@type": ["Property", "dtmi:dtdl:extension:annotation:v1:ValueAnnotation"]}),
    {
        "@type": ["Telemetry", M + "Indexed"],
        "name": "d",
        "schema": "double",
        M + "Indexed:index": 1,
    },
    **{"@type": ["Interface", M + "Mqtt"], M + "Mqtt:payloadFormat": M + "payloadFormat:cbor"},
)

INVALID = {
    "adjunct type without its context": (iface([QT], TEMP, annotation()), ["type-unknown"]),
    "Historized on a Command": (
        iface([HIST], {"@type": ["Command", "Historized"], "name": "c"}),
        ["type-cotype"],
    ),
    "ValueAnnotation without annotates": (
        iface([QT, ANNOT], TEMP, annotation(annotates=[])),
        ["property-missing"],
    ),
    "annotates no sibling": (
        iface([QT, ANNOT], TEMP, annotation(annotates="nothing")),
        ["annotation-target"],
    ),
    "Override without ValueAnnotation": (
        iface([QT, ANNOT, OVER], TEMP, OVERRIDE | {"@type": ["Property", "Override"]}),
        ["type-cotype", "property-unknown"],
    ),
    "Override of a member the target lacks": (
        iface([QT, ANNOT, OVER], TEMP, OVERRIDE | {"overrides": "colour"}),
        ["annotation-target"],
    ),
    "Override schema of another unit type": (
        iface([QT, ANNOT, OVER], TEMP, OVERRIDE | {"schema": "PressureUnit"}),
        ["annotation-target"],
    ),
    "Mqtt without payloadFormat": (
        iface([MQTT], **{"@type": ["Interface", "Mqtt"]}),
        ["property-missing"],
    ),
    "unknown payloadFormat": (
        iface([MQTT], **(MQTT_IFACE | {"payloadFormat": "xml"})),
        ["extension-value"],
    ),
    "index below 1": (iface([MQTT], INDEXED | {"index": 0}), ["extension-value"]),
    "index used twice": (
        iface([MQTT], INDEXED, INDEXED | {"name": "other"}),
        ["extension-value"],
    ),
    "ttl not a duration": (
        iface([MQTT], {"@type": ["Command", "Cacheable"], "name": "c", "ttl": "1 minute"}),
        ["extension-value"],
    ),
    "adjunct member without the adjunct type": (
        iface([MQTT], INDEXED | {"@type": "Telemetry"}),
        ["property-unknown"],
    ),
}


@pytest.mark.parametrize("doc", VALID.values(), ids=VALID.keys())
def test_each_extension_is_understood(tmp_path: Path, doc: dict[str, Any]) -> None:
    assert rules_of(tmp_path, doc) == []


@pytest.mark.parametrize(("doc", "rules"), INVALID.values(), ids=INVALID.keys())
def test_each_extension_rule_is_enforced(
    tmp_path: Path, doc: dict[str, Any], rules: list[str]
) -> None:
    assert rules_of(tmp_path, doc) == rules


def test_annotation_may_name_an_inherited_element(tmp_path: Path) -> None:
    base = iface([QT], TEMP) | {"@id": "dtmi:test:Base;1"}
    sensor = iface([QT, ANNOT], annotation(), extends="dtmi:test:Base;1")
    assert rules_of(tmp_path, base, sensor) == []


def test_a_unit_type_is_a_schema_listing_its_units(tmp_path: Path) -> None:
    models = parse_files(write(tmp_path, {"e.json": iface([QT, ANNOT, OVER], TEMP, OVERRIDE)}))
    schema = models.property("dtmi:test:E;1", "currentTempUnit").schema
    assert isinstance(schema, EnumSchema)
    assert {v.name for v in schema.values} == {"degreeCelsius", "degreeFahrenheit", "kelvin"}


def test_an_undefined_extension_is_refused_unless_allowed(tmp_path: Path) -> None:
    doc = iface(
        ["dtmi:ex:flavours;1"],
        {"@type": ["Property", "Flavor"], "name": "f", "schema": "string", "sweetness": 3},
    )
    assert rules_of(tmp_path, doc) == ["context-extension", "type-unknown"]
    assert rules_of(tmp_path, doc, allow_undefined_extensions=True) == []
    plain = iface([], {"@type": ["Property", "Flavor"], "name": "f", "schema": "string"})
    assert rules_of(tmp_path, plain, allow_undefined_extensions=True) == ["type-unknown"]
