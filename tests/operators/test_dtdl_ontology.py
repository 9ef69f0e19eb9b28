"""Real ontologies and hostile input: BOM files, deep extends, any nesting depth, bulk loads."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.operators.dtdl_samples import (
    V3,
    broad_set,
    interface,
    ontology,
    rules_of,
    write,
    write_bom,
)
from twinflow.flows.cli import main
from twinflow.operators.dtdl import Component, DtdlError, Relationship, parse_files, parse_text
from twinflow.operators.dtdl.parser import check


def test_a_realestatecore_like_folder_loads(tmp_path: Path) -> None:
    """BOM-prefixed files, extends chains 8 deep, multiple inheritance, Components."""
    write_bom(tmp_path, ontology(count=200, depth=8))
    assert (tmp_path / "level8").is_dir()
    assert next(tmp_path.rglob("*.json")).read_bytes().startswith(b"\xef\xbb\xbf")
    found = check([tmp_path])
    assert found.problems == []
    models = found.models
    assert len(models) == found.files
    deepest = f"dtmi:org:rec:Space{8 * 21};1"  # 200 // 20 = 10 parts; 190 // 9 = 21 per level
    chain = models.ancestors(deepest)
    assert len(chain) >= 9  # itself and one Interface on each of the 8 levels above
    multiple = [i for i in models if len(i.extends) == 2]
    assert multiple, "the ontology has multiple inheritance"
    names = {c.name for c in models.contents(deepest)}
    assert {"s0Name", f"s{8 * 21}Area"} <= names  # own and inherited from 8 levels up
    kinds = {type(c) for c in models.contents(deepest)}
    assert {Relationship, Component} <= kinds


def test_a_byte_order_mark_is_not_a_syntax_error(tmp_path: Path) -> None:
    doc = interface("dtmi:test:Bom;1", {"@type": "Property", "name": "p", "schema": "string"})
    [path] = write_bom(tmp_path, {"bom.json": doc})
    assert len(parse_files([path])) == 1
    path.write_bytes(b"\xff\xfe" + json.dumps(doc).encode("utf-16-le"))
    [problem] = check([path]).problems
    assert (problem.rule, "UTF-16" in problem.message) == ("file-read", True)


@pytest.mark.parametrize("depth", [200, 999, 10_000])
def test_any_nesting_depth_ends_in_one_clean_error(
    tmp_path: Path, depth: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * depth + "]" * depth)
    assert [p.rule for p in check([path]).problems] == ["json-depth"]
    head = {"@context": V3, "@id": "dtmi:test:D;1", "@type": "Interface"}
    nested = json.dumps(head)[:-1] + ', "comment": '
    path.write_text(nested + '{"a": ' * depth + "1" + "}" * depth + "}")
    assert [p.rule for p in check([path]).problems] == ["json-depth"]
    assert main(["models", "check", str(path)]) == 1
    out = capsys.readouterr()
    assert "json-depth" in out.out and "Traceback" not in out.out + out.err


def test_nesting_within_dtdl_limits_is_read(tmp_path: Path) -> None:
    """Inline extends 10 deep with 5-deep schemas stays well inside the JSON depth limit."""
    schema: object = "double"
    for _ in range(5):
        schema = {"@type": "Object", "fields": [{"name": "f", "schema": schema}]}
    inner: dict[str, object] = {
        "@id": "dtmi:test:L10;1",
        "@type": "Interface",
        "contents": [{"@type": "Telemetry", "name": "t", "schema": schema}],
    }
    for level in range(9, -1, -1):
        inner = {"@id": f"dtmi:test:L{level};1", "@type": "Interface", "extends": [inner]}
    inner["@context"] = V3
    assert rules_of(tmp_path, inner) == []


def test_bulk_summary_counts_elements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"a.json": interface("dtmi:test:A;1", {"@type": "Command", "name": "c"})})
    assert main(["models", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(
        "1 file, 1 interface: all valid (2 elements checked in "
    )


def _objects(value: object, out: list[dict[str, object]]) -> list[dict[str, object]]:
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            _objects(v, out)
    elif isinstance(value, list):
        for v in value:
            _objects(v, out)
    return out


_KEYS = sorted(
    {k for doc in broad_set().values() for o in _objects(doc, []) for k in o}
    | {"dtmi:dtdl:property:name;3", "@graph", "unit", "annotates", "index", "@value"}
)
_JUNK = [
    None,
    True,
    0,
    2**40,
    3.5,
    "",
    "dtmi:a:b;1",
    "dtmi:bad",
    [],
    [None],
    [1, 2],
    {},
    {"@value": 1},
    {"@value": "s", "@type": "xsd:string"},
    ["a", {"@value": "b"}],
    {"en": 5},
    {"@type": "Object"},
    {"@type": "Interface", "@id": "dtmi:x:Y;1"},
    ["Telemetry", "Power"],
]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(broad_set())),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(_KEYS), st.sampled_from(_JUNK)),
        min_size=1,
        max_size=4,
    ),
)
def test_any_mutation_ends_in_a_verdict(
    name: str, mutations: list[tuple[int, str, object]]
) -> None:
    """Junk at any member of a valid model gives problems (or none), never another exception."""
    doc = copy.deepcopy(broad_set()[name])
    for where, key, value in mutations:
        objects = _objects(doc, [])
        objects[where % len(objects)][key] = copy.deepcopy(value)
    try:
        parse_text(json.dumps(doc))
    except DtdlError as exc:
        assert exc.problems


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    [path] = write(tmp_path, {"a.json": interface("dtmi:test:Once;1")})
    found = check([tmp_path, path, tmp_path / "." / "a.json"])
    assert (found.files, found.problems) == (1, [])
