"""DTDL v3 written in JSON-LD's other notations: one valid and one invalid case per form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.operators.dtdl_samples import V3, interface, rules_of, write
from twinflow.operators.dtdl import EnumSchema, ObjectSchema, parse_files

TEL = {"@type": "Telemetry", "name": "t", "schema": "double"}
QT_IRI = "dtmi:dtdl:extension:quantitativeTypes:v1:"


def _tel(**more: Any) -> dict[str, Any]:
    return TEL | more


VALID = {
    "member named by its IRI": [
        {
            "@type": "Telemetry",
            "dtmi:dtdl:property:name;3": "t",
            "dtmi:dtdl:property:schema;3": "double",
            "dtmi:dtdl:property:comment;3": "a comment",
        }
    ],
    "class named by its IRI": [_tel(**{"@type": "dtmi:dtdl:class:Telemetry;3"})],
    "typed value object": [_tel(name={"@value": "t", "@type": "xsd:string"})],
    "untyped value object": [_tel(name={"@value": "t"})],
    "boolean value object": [
        {"@type": "Property", "name": "p", "schema": "double", "writable": {"@value": True}}
    ],
    "integer value object": [
        {
            "@type": "Relationship",
            "name": "r",
            "maxMultiplicity": {"@value": 3, "@type": "http://www.w3.org/2001/XMLSchema#integer"},
        }
    ],
    "language map": [_tel(displayName={"en": "T", "sv": "T", "zh-Hant-TW": "T", "es-419": "T"})],
    "array of strings and tagged values": [
        _tel(description=["hello", {"@value": "hej", "@language": "sv"}])
    ],
    "one-element array for one value": [_tel(name=["t"], description=["d"], schema=["double"])],
    "one-element array for an element": [
        _tel(schema=[{"@type": "Array", "elementSchema": ["double"]}])
    ],
    "empty array for an optional member": [_tel(comment=[])],
    "lone object for a set": [
        _tel(schema={"@type": "Object", "fields": {"name": "f", "schema": "long"}})
    ],
    "deprecated commandType": [{"@type": "Command", "name": "c", "commandType": "asynchronous"}],
    "commandType by its IRI": [
        {
            "@type": "Command",
            "name": "c",
            "commandType": "dtmi:dtdl:instance:CommandType:synchronous;3",
        }
    ],
    "empty @context on an element": [_tel(**{"@context": []})],
    "displayName of 512 characters": [_tel(displayName="x" * 512)],
    "QuantitativeTypes terms by their IRIs": [
        _tel(
            **{
                "@type": ["Telemetry", QT_IRI + "class:Temperature"],
                QT_IRI + "property:unit": QT_IRI + "unit:kelvin",
            }
        ),
        {"@type": "Property", "name": "u", "schema": QT_IRI + "enum:TemperatureUnit"},
    ],
}

INVALID = {
    "member as both term and IRI": (
        [_tel(**{"dtmi:dtdl:property:name;3": "u"})],
        "property-repeated",
    ),
    "IRI of another version": ([_tel(**{"dtmi:dtdl:property:comment;2": "c"})], "property-unknown"),
    "value object of the wrong type": ([_tel(name={"@value": 5})], "value-object"),
    "value object with another member": (
        [_tel(name={"@value": "t", "@language": "en"})],
        "value-object",
    ),
    "value object declaring the wrong XSD type": (
        [_tel(name={"@value": "t", "@type": "xsd:integer"})],
        "value-object",
    ),
    "two values for one": ([_tel(name=["t", "u"])], "property-type"),
    "empty array for a required member": ([_tel(schema=[])], "property-type"),
    "null value": ([{"@type": "Relationship", "name": "r", "target": None}], "property-type"),
    "null maxMultiplicity": (
        [{"@type": "Relationship", "name": "r", "maxMultiplicity": None}],
        "property-type",
    ),
    "malformed language tag in a map": ([_tel(description={"en_US": "x"})], "language-tag"),
    "malformed language tag in an array": (
        [_tel(description=[{"@value": "x", "@language": "EN"}])],
        "language-tag",
    ),
    "two default-language texts": (
        [_tel(description=["a", {"@value": "b"}])],
        "localizable-string",
    ),
    "language given twice": (
        [
            _tel(
                description=[{"@value": "a", "@language": "sv"}, {"@value": "b", "@language": "sv"}]
            )
        ],
        "localizable-string",
    ),
    "language map inside an array": ([_tel(description=[{"en": "x"}])], "localizable-string"),
    "tagged value not in an array": (
        [_tel(description={"@value": "x", "@language": "en"})],
        "language-tag",
    ),
    "unknown commandType": (
        [{"@type": "Command", "name": "c", "commandType": "soon"}],
        "command-type",
    ),
    "displayName of 513 characters": ([_tel(displayName="x" * 513)], "string-length"),
    "undefined DTMI co-type": (
        [_tel(**{"@type": ["Telemetry", "dtmi:foo:bar;1"]})],
        "type-unknown",
    ),
    "undefined term co-type": ([_tel(**{"@type": ["Telemetry", "Fancy"]})], "type-unknown"),
    "co-type with ':' that is not a DTMI": (
        [_tel(**{"@type": ["Telemetry", "x:y"]})],
        "type-unknown",
    ),
    "keyword member": ([_tel(**{"@graph": []})], "property-unknown"),
    "class IRI of another version": (
        [_tel(**{"@type": "dtmi:dtdl:class:Telemetry;2"})],
        "type-invalid",
    ),
}


@pytest.mark.parametrize("contents", VALID.values(), ids=VALID.keys())
def test_each_notation_is_accepted(tmp_path: Path, contents: list[Any]) -> None:
    assert rules_of(tmp_path, interface("dtmi:test:I;1", *contents)) == []


@pytest.mark.parametrize(("contents", "rule"), INVALID.values(), ids=INVALID.keys())
def test_each_broken_notation_names_its_rule(
    tmp_path: Path, contents: list[Any], rule: str
) -> None:
    assert rules_of(tmp_path, interface("dtmi:test:I;1", *contents)) == [rule]


def test_notations_read_as_the_plain_form(tmp_path: Path) -> None:
    tel = {
        "@type": "Telemetry",
        "name": {"@value": "t"},
        "description": ["hello", {"@value": "hej", "@language": "sv"}],
        "dtmi:dtdl:property:schema;3": ["long"],
    }
    doc = interface("dtmi:test:I;1", tel)
    models = parse_files(write(tmp_path, {"a.json": doc}))
    t = models.telemetry("dtmi:test:I;1", "t")
    assert (t.schema.name, t.description) == ("long", {"en": "hello", "sv": "hej"})  # type: ignore[union-attr]


def test_an_element_is_referenced_by_its_id_within_its_interface(tmp_path: Path) -> None:
    state = {
        "@id": "dtmi:test:I:state;1",
        "@type": "Enum",
        "valueSchema": "integer",
        "enumValues": [{"@id": "dtmi:test:I:on;1", "name": "on", "enumValue": 1}],
    }
    field = {"@id": "dtmi:test:I:f;1", "name": "f", "schema": "double"}
    doc = interface(
        "dtmi:test:I;1",
        _tel(name="a", schema=state),
        _tel(name="b", schema="dtmi:test:I:state;1"),
        _tel(name="c", schema={"@type": "Object", "fields": [field]}),
        _tel(name="d", schema={"@type": "Object", "fields": ["dtmi:test:I:f;1"]}),
        _tel(
            name="e",
            schema={"@type": "Enum", "valueSchema": "integer", "enumValues": "dtmi:test:I:on;1"},
        ),
    )
    models = parse_files(write(tmp_path, {"a.json": doc}))
    assert isinstance(models.telemetry("dtmi:test:I;1", "b").schema, EnumSchema)
    d = models.telemetry("dtmi:test:I;1", "d").schema
    assert isinstance(d, ObjectSchema) and d.fields[0].name == "f"
    # an element of another Interface cannot be referenced (only Interfaces cross)
    other = interface(
        "dtmi:test:J;1", _tel(schema={"@type": "Object", "fields": ["dtmi:test:I:f;1"]})
    )
    assert rules_of(tmp_path, doc, other) == ["element-unresolved"]
    missing = interface("dtmi:test:K;1", _tel(schema="dtmi:test:K:nothing;1"))
    assert rules_of(tmp_path, missing) == ["schema-unresolved"]


def test_context_rules(tmp_path: Path) -> None:
    plain = {"@id": "dtmi:test:I;1", "@type": "Interface"}
    assert rules_of(tmp_path, plain | {"@context": [V3]}) == []
    assert rules_of(
        tmp_path, plain | {"@context": ["dtmi:dtdl:extension:quantitativeTypes;1", V3]}
    ) == ["context-order"]
    assert rules_of(tmp_path, plain | {"@context": "dtmi:dtdl:context"}) == ["context-syntax"]
    assert rules_of(tmp_path, plain | {"@context": [V3, "dtmi:ex:unknown;1"]}) == [
        "context-extension"
    ]
    assert rules_of(tmp_path, plain | {"@context": "dtmi:dtdl:context;4"}) == ["context-version"]
