"""Real ontologies and hostile input: BOM files, deep extends, any nesting depth, bulk loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.operators.dtdl_samples import V3, interface, ontology, rules_of, write, write_bom
from twinflow.flows.cli import main
from twinflow.operators.dtdl import Component, Relationship, parse_files
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
    nested = '{"@context": "%s", "@id": "dtmi:test:D;1", "@type": "Interface", "comment": ' % V3
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
    assert capsys.readouterr().out.startswith("1 file, 1 interface, 2 elements checked in ")
