"""DTDL v3 parser: valid models of every kind load; each rule has one invalid variant."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.operators.dtdl_samples import QT, V3, base, broad_set, write
from twinflow.core.errors import ConfigError
from twinflow.operators.dtdl import (
    ArraySchema,
    Command,
    Component,
    DtdlError,
    EnumSchema,
    MapSchema,
    ObjectSchema,
    Property,
    Relationship,
    Telemetry,
    check_paths,
    parse_files,
    reading,
)
from twinflow.operators.dtdl import parser as dtdl_parser
from twinflow.operators.dtdl.reading import limits as dtdl_limits

BASE = "dtmi:test:Base;1"


def test_broad_valid_set_parses_with_every_element_kind(tmp_path: Path) -> None:
    write(tmp_path, broad_set())
    models = parse_files([tmp_path])
    assert {i.id for i in models} >= {
        BASE,
        "dtmi:test:Device;2.1",
        "dtmi:test:Named",
        "dtmi:test:Root;1",
        "dtmi:test:Info;1",
        "dtmi:test:Part;1",
    }
    kinds = {type(c) for c in models.contents("dtmi:test:Device;2.1")}
    assert kinds == {Telemetry, Property, Command, Relationship, Component}
    temp = models.telemetry("dtmi:test:Device;2.1", "temp")  # inherited from Base
    assert (temp.semantic_type, temp.unit) == ("Temperature", "degreeCelsius")
    assert isinstance(models.telemetry(BASE, "state").schema, EnumSchema)
    assert isinstance(models.property(BASE, "modules").schema, MapSchema)
    assert isinstance(models.telemetry(BASE, "leds").schema, ArraySchema)
    accel = models.telemetry(BASE, "accel").schema
    assert isinstance(accel, ObjectSchema) and accel.id == "dtmi:test:Base:accel;1"
    assert accel.fields[1].unit == "gForce"
    rel = models.contents(BASE)[3]
    assert isinstance(rel, Relationship) and rel.max_multiplicity == 3 and rel.writable
    reboot = models.command(BASE, "reboot")
    assert reboot.request is not None and reboot.request.schema.name == "integer"  # type: ignore[union-attr]
    assert models.interface(BASE).display_name == {"en": "Base", "de": "Basis"}
    # "label" comes from an Interface defined inline in Named's extends
    assert "label" in {c.name for c in models.contents("dtmi:test:Device;2.1")}


def test_single_interface_file_and_array_file_both_work(tmp_path: Path) -> None:
    docs = {"one.json": base(), "two.json": [base() | {"@id": "dtmi:test:Copy;1", "schemas": []}]}
    docs["two.json"][0]["contents"] = docs["two.json"][0]["contents"][:7]
    assert len(parse_files(write(tmp_path, docs))) == 2


def _set(path: str, value: Any) -> Callable[[Any], Any]:
    """A mutation setting ``path`` (dotted, with [i]) inside the Base interface to ``value``."""

    def mutate(doc: Any) -> Any:
        target = doc
        keys = path.replace("[", ".").replace("]", "").split(".")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        last = keys[-1]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
        return doc

    return mutate


_DELETE = object()


def _many(*mutations: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def mutate(doc: Any) -> Any:
        for m in mutations:
            doc = m(doc)
        return doc

    return mutate


V2 = "dtmi:dtdl:context;2"
ANNOTATION = "dtmi:dtdl:extension:annotation;1"
MQTT = "dtmi:dtdl:extension:mqtt;1"


def _v2(dtmi: str, **more: Any) -> dict[str, Any]:
    return {"@context": V2, "@id": dtmi, "@type": "Interface", **more}


def _extends(*extra: dict[str, Any], extends: Any = None) -> Callable[[Any], Any]:
    def mutate(doc: Any) -> Any:
        if extends is not None:
            doc["extends"] = extends
        return [doc, *extra]

    return mutate


def _iface(dtmi: str, *, extends: Any = None, contents: Any = ()) -> dict[str, Any]:
    doc: dict[str, Any] = {"@context": V3, "@id": dtmi, "@type": "Interface"}
    if extends is not None:
        doc["extends"] = extends
    doc["contents"] = list(contents)
    return doc


def _component(schema: str) -> Callable[[Any], Any]:
    def mutate(doc: Any) -> Any:
        doc["contents"].append({"@type": "Component", "name": "part", "schema": schema})
        return doc

    return mutate


def _deep_array(levels: int) -> dict[str, Any]:
    schema: Any = "double"
    for _ in range(levels):
        schema = {"@type": "Array", "elementSchema": schema}
    return schema


_CHAIN = [_iface(f"dtmi:test:L{i};1", extends=f"dtmi:test:L{i + 1};1") for i in range(11)]
_CHAIN.append(_iface("dtmi:test:L11;1"))
_TEMP = {"@type": "Property", "name": "temp", "schema": "double"}
_HAS_COMPONENT = _iface(
    "dtmi:test:Outer;1", contents=[{"@type": "Component", "name": "c", "schema": "dtmi:test:In;1"}]
)

# (rule, mutation of the Base document (or raw text), expected element, limit patches)
VARIANTS: list[tuple[str, Any, str, dict[str, int]]] = [
    ("json-syntax", "{", "(file)", {}),
    ("file-read", b"\xff\xfe{", "(file)", {}),
    ("document-shape", "[1]", "[0]", {}),
    ("context-missing", _set("@context", _DELETE), BASE, {}),
    ("context-version", _set("@context", "dtmi:dtdl:context;4"), f"{BASE} @context", {}),
    ("context-extension", _set("@context", [V3, QT, "dtmi:x:ext;1"]), f"{BASE} @context", {}),
    ("type-missing", _set("contents[1].@type", _DELETE), f"{BASE} contents[1]", {}),
    ("type-invalid", _set("contents[1].@type", "Interface"), f"{BASE} contents[1].@type", {}),
    (
        "type-unknown",
        _set("contents[1].@type", ["Property", "Fancy"]),
        f"{BASE} contents[1].@type",
        {},
    ),
    (
        "type-cotype",
        _set("contents[2].@type", ["Command", "Power"]),
        f"{BASE} contents[2].@type",
        {},
    ),
    ("semantic-type-context", _set("@context", V3), f"{BASE} contents[0].@type", {}),
    ("property-unknown", _set("contents[1].writeable", True), f"{BASE} contents[1]", {}),
    ("property-missing", _set("contents[1].schema", _DELETE), f"{BASE} contents[1]", {}),
    ("property-type", _set("contents[1].writable", "yes"), f"{BASE} contents[1].writable", {}),
    ("dtmi-syntax", _set("contents[3].target", "dtmi:test:;1"), f"{BASE} contents[3].target", {}),
    (
        "dtmi-length",
        _set("@id", "dtmi:test:" + "a" * 120 + ";1"),
        "dtmi:test:" + "a" * 120 + ";1 @id",
        {},
    ),
    (
        "dtmi-system",
        _set("contents[3].target", "dtmi:test:_sys;1"),
        f"{BASE} contents[3].target",
        {},
    ),
    ("dtmi-reserved", _set("contents[1].@id", "dtmi:dtdl:mine;1"), f"{BASE} contents[1].@id", {}),
    ("id-duplicate", _set("contents[1].@id", BASE), f"{BASE} contents[1].@id", {}),
    ("name-syntax", _set("contents[1].name", "1bad"), f"{BASE} contents[1].name", {}),
    ("name-length", _set("contents[1].name", "a" * 513), f"{BASE} contents[1].name", {}),
    ("name-duplicate", _set("contents[1].name", "temp"), f"{BASE} contents[1].name", {}),
    ("string-length", _set("displayName", "x" * 513), f"{BASE} displayName", {}),
    ("language-tag", _set("description", {"en gb": "x"}), f"{BASE} description", {}),
    ("schema-unknown", _set("contents[1].schema", "uuid"), f"{BASE} contents[1].schema", {}),
    (
        "schema-unresolved",
        _set("contents[7].schema", "dtmi:test:Base:nope;1"),
        f"{BASE} contents[7].schema",
        {},
    ),
    (
        "schema-cycle",
        _set("schemas[0].fields[1].schema", "dtmi:test:Base:accel;1"),
        "dtmi:test:Base:accel;1 fields[1].schema",
        {},
    ),
    ("schema-depth", _set("contents[6].schema", _deep_array(6)), f"{BASE} contents[6].schema", {}),
    (
        "enum-value-schema",
        _set("contents[4].schema.valueSchema", "double"),
        f"{BASE} contents[4].schema.valueSchema",
        {},
    ),
    (
        "enum-value-type",
        _set("contents[4].schema.enumValues[0].enumValue", "zero"),
        f"{BASE} contents[4].schema.enumValues[0].enumValue",
        {},
    ),
    (
        "enum-value-duplicate",
        _set("contents[4].schema.enumValues[1].enumValue", 0),
        f"{BASE} contents[4].schema.enumValues[1].enumValue",
        {},
    ),
    (
        "map-key-schema",
        _set("contents[5].schema.mapKey.schema", "integer"),
        f"{BASE} contents[5].schema.mapKey.schema",
        {},
    ),
    (
        "multiplicity",
        _set("contents[3].minMultiplicity", 1),
        f"{BASE} contents[3].minMultiplicity",
        {},
    ),
    ("unit-mismatch", _set("contents[0].unit", "bar"), f"{BASE} contents[0].unit", {}),
    (
        "unit-without-semantic-type",
        _set("contents[1].unit", "kilowatt"),
        f"{BASE} contents[1].unit",
        {},
    ),
    (
        "semantic-type-schema",
        _set("contents[0].schema", "string"),
        f"{BASE} contents[0].schema",
        {},
    ),
    ("extends-unresolved", _set("extends", "dtmi:test:Missing;1"), f"{BASE} extends", {}),
    (
        "extends-cycle",
        _extends(_iface("dtmi:test:Loop;1", extends=BASE), extends="dtmi:test:Loop;1"),
        f"{BASE} extends",
        {},
    ),
    ("extends-depth", _extends(*_CHAIN, extends="dtmi:test:L0;1"), f"{BASE} extends", {}),
    (
        "extends-count",
        _extends(
            _iface("dtmi:test:P1;1"),
            _iface("dtmi:test:P2;1"),
            extends=["dtmi:test:P1;1", "dtmi:test:P2;1"],
        ),
        f"{BASE} extends",
        {"MAX_EXTENDS_COUNT": 1},
    ),
    (
        "extends-conflict",
        _extends(_iface("dtmi:test:P;1", contents=[_TEMP]), extends="dtmi:test:P;1"),
        f"{BASE} contents",
        {},
    ),
    ("component-unresolved", _component("dtmi:test:Nowhere;1"), f"{BASE} contents[8].schema", {}),
    (
        "component-nested",
        lambda doc: [
            _component("dtmi:test:Outer;1")(doc),
            _HAS_COMPONENT,
            _iface("dtmi:test:In;1"),
        ],
        f"{BASE} contents[8].schema",
        {},
    ),
    ("contents-limit", _set("comment", "x"), f"{BASE} contents", {"MAX_CONTENTS": 5}),
    (
        "property-repeated",
        _set("contents[1].dtmi:dtdl:property:name;3", "again"),
        f"{BASE} contents[1].dtmi:dtdl:property:name;3",
        {},
    ),
    ("value-object", _set("contents[1].name", {"@value": 5}), f"{BASE} contents[1].name", {}),
    ("localizable-string", _set("description", ["one", "two"]), f"{BASE} description", {}),
    ("context-order", _set("@context", [QT, V3]), f"{BASE} @context", {}),
    ("context-syntax", _set("@context", [V3, QT, "dtmi:x:ext"]), f"{BASE} @context", {}),
    ("json-depth", "[" * 200 + "]" * 200, "(file)", {}),
    (
        "extension-value",
        _many(
            _set("@context", [V3, QT, MQTT]),
            _set("@type", ["Interface", "Mqtt"]),
            _set("payloadFormat", "xml"),
        ),
        f"{BASE} payloadFormat",
        {},
    ),
    (
        "element-unresolved",
        _set("contents[4].schema.enumValues[0]", "dtmi:test:nope;1"),
        f"{BASE} contents[4].schema.enumValues[0]",
        {},
    ),
    (
        "count-limit",
        lambda doc: [
            doc,
            _v2("dtmi:test:V2;1", extends=["dtmi:test:A;1", "dtmi:test:B;1", BASE]),
            _v2("dtmi:test:A;1"),
            _v2("dtmi:test:B;1"),
        ],
        "dtmi:test:V2;1 extends",
        {},
    ),
    (
        "schema-v2-property",
        lambda doc: [
            doc,
            _v2(
                "dtmi:test:V2;1",
                contents=[
                    {
                        "@type": "Property",
                        "name": "p",
                        "schema": {"@type": "Array", "elementSchema": "double"},
                    }
                ],
            ),
        ],
        "dtmi:test:V2;1 contents[0].schema",
        {},
    ),
    (
        "command-type",
        _set("contents[2].commandType", "later"),
        f"{BASE} contents[2].commandType",
        {},
    ),
    (
        "version-mix",
        lambda doc: [doc, _v2("dtmi:test:V2;1", extends=BASE)],
        "dtmi:test:V2;1 extends",
        {},
    ),
    (
        "annotation-target",
        _many(
            _set("@context", [V3, QT, ANNOTATION]),
            _set("contents[1].@type", ["Property", "ValueAnnotation"]),
            _set("contents[1].annotates", "nothing"),
        ),
        f"{BASE} contents[1].annotates",
        {},
    ),
    ("interface-size", _set("comment", "x"), "(root)", {"MAX_INTERFACE_BYTES": 100}),
]


@pytest.mark.parametrize(
    ("rule", "mutation", "element", "limits"), VARIANTS, ids=[v[0] for v in VARIANTS]
)
def test_each_rule_has_an_invalid_variant_naming_file_element_and_rule(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rule: str,
    mutation: Any,
    element: str,
    limits: dict[str, int],
) -> None:
    for name, value in limits.items():
        monkeypatch.setattr(dtdl_limits, name, value)
    path = tmp_path / "bad.json"
    if isinstance(mutation, bytes):
        path.write_bytes(mutation)
    else:
        doc = mutation if isinstance(mutation, str) else mutation(copy.deepcopy(base()))
        write(tmp_path, {"bad.json": doc})
    problems = check_paths([path])
    found = [(p.file, p.element, p.rule) for p in problems]
    assert (str(path), element, rule) in found, "\n".join(map(str, problems))
    with pytest.raises(DtdlError) as info:
        parse_files([path])
    assert any(p.rule == rule for p in info.value.problems)
    assert rule in str(info.value) and str(path) in str(info.value)


def test_every_rule_code_used_by_the_parser_has_a_variant() -> None:
    import re

    # the parser is parser.py and the modules of its readers; a rule code is a string literal
    # passed on as an argument (followed by a comma), however the call is wrapped
    modules = [Path(dtdl_parser.__file__), *sorted(Path(reading.__file__).parent.glob("*.py"))]
    source = "\n".join(m.read_text() for m in modules)
    codes = set(re.findall(r'"([a-z]+(?:-[a-z]+)+)",\s', source))
    codes |= {"extends-unresolved", "component-unresolved"}
    tested = {v[0] for v in VARIANTS}
    assert codes - tested == set()


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    doc = base()
    doc["contents"][0]["unit"] = "bar"
    doc["contents"][1]["name"] = "1bad"
    doc["contents"][3]["minMultiplicity"] = 2
    doc["extends"] = "dtmi:test:Missing;1"
    good = write(tmp_path, {"bad.json": doc, "other.json": "{oops"})
    rules = {(Path(p.file).name, p.rule) for p in check_paths(good)}
    assert rules >= {
        ("bad.json", "unit-mismatch"),
        ("bad.json", "name-syntax"),
        ("bad.json", "multiplicity"),
        ("bad.json", "extends-unresolved"),
        ("other.json", "json-syntax"),
    }


def test_references_resolve_across_files(tmp_path: Path) -> None:
    docs = broad_set()
    paths = write(tmp_path, docs)
    # without the file holding Named and Info, extends and the Component do not resolve
    rules = {p.rule for p in check_paths([p for p in paths if p.name != "more.json"])}
    assert rules == {"extends-unresolved", "component-unresolved"}


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        check_paths([tmp_path / "nope"])


def test_folders_are_searched_for_json(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", {"a.json": base(), "notes.txt": "not a model"})
    assert len(parse_files([tmp_path])) == 1


def _rules(tmp_path: Path, doc: Any) -> list[str]:
    return [p.rule for p in check_paths(write(tmp_path, {"m.json": doc}))]


def test_a_set_of_one_may_be_written_as_the_lone_object(tmp_path: Path) -> None:
    # JSON-LD, which DTDL v3 follows, reads {"contents": {...}} as {"contents": [{...}]}
    doc = {
        "@context": V3,
        "@id": "dtmi:test:Single;1",
        "@type": "Interface",
        "schemas": {
            "@id": "dtmi:test:Single:mode;1",
            "@type": "Enum",
            "valueSchema": "string",
            "enumValues": {"name": "auto", "enumValue": "A"},
        },
        "contents": {
            "@type": "Relationship",
            "name": "feeds",
            "properties": {
                "@type": "Property",
                "name": "flow",
                "schema": {"@type": "Object", "fields": {"name": "rate", "schema": "float"}},
            },
        },
    }
    models = parse_files(write(tmp_path, {"m.json": doc}))
    rel = models.contents("dtmi:test:Single;1")[0]
    assert isinstance(rel, Relationship) and rel.properties[0].name == "flow"
    flow = rel.properties[0].schema
    assert isinstance(flow, ObjectSchema) and flow.fields[0].name == "rate"
    mode = models.interface("dtmi:test:Single;1").schemas[0]
    assert isinstance(mode, EnumSchema) and mode.values[0].value == "A"
    # a scalar is still not a set
    assert _rules(tmp_path, _iface("dtmi:test:Scalar;1") | {"contents": "temp"}) == [
        "property-type"
    ]


def test_standard_schemas_may_be_named_by_their_iri(tmp_path: Path) -> None:
    contents = [
        {
            "@type": "Telemetry",
            "name": "where",
            "schema": "dtmi:standard:schema:geospatial:point;3",
        },
        {"@type": "Telemetry", "name": "speed", "schema": "dtmi:dtdl:instance:Schema:double;3"},
        {
            "@type": "Property",
            "name": "tags",
            "schema": {
                "@type": "Map",
                "mapKey": {"name": "k", "schema": "dtmi:dtdl:instance:Schema:string;3"},
                "mapValue": {"name": "v", "schema": "string"},
            },
        },
        {
            "@type": "Property",
            "name": "level",
            "schema": {"@type": "Enum", "valueSchema": "dtmi:dtdl:instance:Schema:integer;3"},
        },
    ]
    models = parse_files(write(tmp_path, {"m.json": _iface("dtmi:test:Iri;1", contents=contents)}))
    assert models.telemetry("dtmi:test:Iri;1", "where").schema.name == "point"  # type: ignore[union-attr]
    assert models.telemetry("dtmi:test:Iri;1", "speed").schema.name == "double"  # type: ignore[union-attr]
    level = models.property("dtmi:test:Iri;1", "level").schema
    assert isinstance(level, EnumSchema) and level.value_schema == "integer"


def test_a_class_may_be_repeated_or_written_as_its_iri(tmp_path: Path) -> None:
    doc = _iface(
        "dtmi:test:Twice;1",
        contents=[
            {"@type": ["Telemetry", "dtmi:dtdl:class:Telemetry;3"], "name": "t", "schema": "long"}
        ],
    )
    doc["@type"] = ["Interface", "Interface"]
    models = parse_files(write(tmp_path, {"m.json": doc}))
    assert models.telemetry("dtmi:test:Twice;1", "t").schema.name == "long"  # type: ignore[union-attr]
    doc["contents"][0]["@type"] = ["Telemetry", "Property"]  # two classes still conflict
    assert _rules(tmp_path, doc) == ["type-invalid"]


@pytest.mark.parametrize(
    ("context", "rules"),
    [
        ([], []),
        (V3, []),
        ([V3, QT], []),
        ("dtmi:dtdl:context;2", ["context-version"]),
        ("dtmi:test:someExtension;1", ["context-extension"]),
        (7, ["property-type"]),
    ],
)
def test_an_element_inside_an_interface_may_carry_its_own_context(
    tmp_path: Path, context: Any, rules: list[str]
) -> None:
    field = {"@context": context, "name": "x", "schema": "double"}
    telemetry = {
        "@type": "Telemetry",
        "name": "pos",
        "schema": {"@type": "Object", "fields": [field]},
    }
    assert _rules(tmp_path, _iface("dtmi:test:Ctx;1", contents=[telemetry])) == rules


def test_a_reusable_schema_with_a_list_as_id_is_reported(tmp_path: Path) -> None:
    doc = _iface("dtmi:test:ListId;1") | {
        "schemas": [{"@id": ["dtmi:test:ListId:a;1"], "@type": "Array", "elementSchema": "date"}]
    }
    assert _rules(tmp_path, doc) == ["property-type"]


_SAMPLES = os.environ.get("DTDL_V3_SAMPLES")


@pytest.mark.skipif(
    not _SAMPLES,
    reason="official DTDL v3 sample models are not shipped by any PyPI or npm package; set "
    "DTDL_V3_SAMPLES to a folder of them (e.g. a checkout of Azure/opendigitaltwins-dtdl's "
    "v3 samples) to run this test",
)
def test_official_v3_samples_parse() -> None:
    assert _SAMPLES is not None
    problems = check_paths([_SAMPLES])
    assert problems == [], "\n".join(map(str, problems))
