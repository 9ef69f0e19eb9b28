"""Each DTDL v3 limit at its boundary: the value at the limit passes, one beyond fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.operators.dtdl_samples import V3, interface, rules_of
from twinflow.operators.dtdl.reading import limits
from twinflow.operators.dtdl.reading.documents import own_size


def tel(**more: Any) -> dict[str, Any]:
    return {"@type": "Telemetry", "name": "t", "schema": "double"} | more


def nested_arrays(levels: int) -> Any:
    schema: Any = "double"
    for _ in range(levels):
        schema = {"@type": "Array", "elementSchema": schema}
    return schema


def chain(length: int) -> list[dict[str, Any]]:
    """Interfaces L0 extends L1 ... extends L<length>: an extends path of ``length``."""
    docs = [interface(f"dtmi:test:L{i};1", extends=f"dtmi:test:L{i + 1};1") for i in range(length)]
    return [*docs, interface(f"dtmi:test:L{length};1")]


# (what, document at the limit, document one beyond it, rule broken beyond it)
CASES: list[tuple[str, Any, Any, str]] = [
    ("name 512", tel(name="n" * 512), tel(name="n" * 513), "name-length"),
    ("displayName 512", tel(displayName="d" * 512), tel(displayName="d" * 513), "string-length"),
    ("description 512", tel(description="d" * 512), tel(description="d" * 513), "string-length"),
    ("comment 512", tel(comment="c" * 512), tel(comment="c" * 513), "string-length"),
    (
        "complex schemas nested 5",
        tel(schema=nested_arrays(5)),
        tel(schema=nested_arrays(6)),
        "schema-depth",
    ),
    (
        "maxMultiplicity up to a 4-byte integer",
        {"@type": "Relationship", "name": "r", "maxMultiplicity": 2**31 - 1},
        {"@type": "Relationship", "name": "r", "maxMultiplicity": 2**31},
        "multiplicity",
    ),
    (
        "maxMultiplicity at least 1",
        {"@type": "Relationship", "name": "r", "maxMultiplicity": 1},
        {"@type": "Relationship", "name": "r", "maxMultiplicity": 0},
        "multiplicity",
    ),
    (
        "integer enumValue in 4 bytes",
        tel(
            schema={
                "@type": "Enum",
                "valueSchema": "integer",
                "enumValues": [{"name": "a", "enumValue": -(2**31)}],
            }
        ),
        tel(
            schema={
                "@type": "Enum",
                "valueSchema": "integer",
                "enumValues": [{"name": "a", "enumValue": -(2**31) - 1}],
            }
        ),
        "enum-value-type",
    ),
    (
        "DTMI of an element 2048 characters",
        tel(**{"@id": "dtmi:test:" + "e" * 2036 + ";1"}),
        tel(**{"@id": "dtmi:test:" + "e" * 2037 + ";1"}),
        "dtmi-length",
    ),
    (
        "major version 9 digits",
        tel(**{"@id": "dtmi:test:t;123456789"}),
        tel(**{"@id": "dtmi:test:t;1234567890"}),
        "dtmi-syntax",
    ),
    (
        "minor version 6 digits",
        tel(**{"@id": "dtmi:test:t;1.123456"}),
        tel(**{"@id": "dtmi:test:t;1.1234567"}),
        "dtmi-syntax",
    ),
]


@pytest.mark.parametrize(
    ("at_limit", "beyond", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_contents_limits(tmp_path: Path, at_limit: Any, beyond: Any, rule: str) -> None:
    assert rules_of(tmp_path, interface("dtmi:test:I;1", at_limit)) == []
    assert rules_of(tmp_path, interface("dtmi:test:I;1", beyond)) == [rule]


def test_interface_id_128_characters(tmp_path: Path) -> None:
    assert rules_of(tmp_path, interface("dtmi:test:" + "i" * 116 + ";1")) == []
    assert rules_of(tmp_path, interface("dtmi:test:" + "i" * 117 + ";1")) == ["dtmi-length"]


def test_extends_10_deep(tmp_path: Path) -> None:
    assert rules_of(tmp_path, *chain(10)) == []
    assert rules_of(tmp_path, *chain(11)) == ["extends-depth"]


def test_extends_hierarchy_of_1024(tmp_path: Path) -> None:
    parents = [interface(f"dtmi:test:P{i};1") for i in range(1025)]
    ids = [p["@id"] for p in parents]
    assert rules_of(tmp_path, interface("dtmi:test:I;1", extends=ids[:1024]), *parents) == []
    rules = rules_of(tmp_path, interface("dtmi:test:I;1", extends=ids), *parents)
    assert rules == ["extends-count"]


def test_elements_per_interface(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 100,000 elements limit, lowered to 6 for the test (the count is the same code)."""
    monkeypatch.setattr(limits, "MAX_CONTENTS", 6)
    three = [
        tel(name=f"t{i}", schema={"@type": "Array", "elementSchema": "long"}) for i in range(3)
    ]
    assert rules_of(tmp_path, interface("dtmi:test:I;1", *three)) == []
    assert rules_of(tmp_path, interface("dtmi:test:I;1", *three, tel(name="x"))) == [
        "contents-limit"
    ]


def test_interface_text_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 MiB per Interface, lowered for the test; measured on the Interface's own JSON text."""
    doc = interface("dtmi:test:I;1", tel())
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    monkeypatch.setattr(limits, "MAX_INTERFACE_BYTES", size)
    assert rules_of(tmp_path, doc) == []
    monkeypatch.setattr(limits, "MAX_INTERFACE_BYTES", size - 1)
    assert rules_of(tmp_path, doc) == ["interface-size"]


def test_default_limits_are_the_specified_ones() -> None:
    assert (limits.MAX_NAME, limits.MAX_DISPLAY_NAME, limits.MAX_DESCRIPTION) == (512, 512, 512)
    assert (limits.MAX_EXTENDS_DEPTH, limits.MAX_EXTENDS_COUNT) == (10, 1024)
    assert (limits.MAX_CONTENTS, limits.MAX_SCHEMA_DEPTH) == (100_000, 5)
    assert limits.MAX_INTERFACE_BYTES == 1 << 20
    assert V3 == "dtmi:dtdl:context;3"


def test_extends_values_are_counted_per_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A diamond (A extends B and C, both extend D) has 4 'extends' values for 3 ancestors."""
    docs = [
        interface("dtmi:test:A;1", extends=["dtmi:test:B;1", "dtmi:test:C;1"]),
        interface("dtmi:test:B;1", extends="dtmi:test:D;1"),
        interface("dtmi:test:C;1", extends="dtmi:test:D;1"),
        interface("dtmi:test:D;1"),
    ]
    monkeypatch.setattr(limits, "MAX_EXTENDS_COUNT", 4)
    assert rules_of(tmp_path, *docs) == []
    monkeypatch.setattr(limits, "MAX_EXTENDS_COUNT", 3)
    assert rules_of(tmp_path, *docs) == ["extends-count"]


def test_interface_size_leaves_out_interfaces_written_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = {"@id": "dtmi:test:Inner;1", "@type": "Interface", "comment": "c" * 400}
    doc = interface("dtmi:test:I;1", {"@type": "Component", "name": "c", "schema": inner})
    monkeypatch.setattr(limits, "MAX_INTERFACE_BYTES", own_size(doc))
    assert own_size(doc) < len(json.dumps(doc, separators=(",", ":")))
    assert rules_of(tmp_path, doc) == []
