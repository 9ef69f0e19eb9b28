"""Conformance-style cases: whole models with the verdict the DTDL specifications give them.

Each case is a list of documents, the parser options and the expected verdict, in the shape
of the public DTDL conformance material (the cases themselves are written for twinflow).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.operators.dtdl_samples import rules_of

V2, V3 = "dtmi:dtdl:context;2", "dtmi:dtdl:context;3"
UNDEFINED = "dtmi:acme:madeUpExtension;1"
ALLOW = {"allow_undefined_extensions": True}


def iface(context: Any, **members: Any) -> dict[str, Any]:
    return {"@context": context, "@id": "dtmi:acme:Case;1", "@type": "Interface"} | members


def tel(**members: Any) -> dict[str, Any]:
    return {"@type": "Telemetry", "name": "reading", "schema": "double"} | members


def arrays(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"@type": "Enum", "valueSchema": "string"}
    for _ in range(levels):
        schema = {"@type": "Array", "elementSchema": schema}
    return schema


# (case, documents, options, valid)
CASES: list[tuple[str, list[Any], dict[str, Any], bool]] = [
    (
        "v3 undefined co-type",
        [iface(V3, contents=tel(**{"@type": ["Telemetry", "Gizmo"]}))],
        {},
        False,
    ),
    (
        "v3 undefined co-type under an undefined extension, allowed",
        [
            iface(
                V3,
                contents=tel(
                    **{"@context": UNDEFINED, "@type": ["Telemetry", "Gizmo"], "dtmi:acme:x;1": 1}
                ),
            )
        ],
        ALLOW,
        True,
    ),
    (
        "v3 reserved word as a member of an informally co-typed element, allowed",
        [iface([V3, UNDEFINED], **{"@type": ["Interface", "Gizmo"], "double": None})],
        ALLOW,
        True,
    ),
    (
        "v3 member that is not a DTMI but has ':' even when informal",
        [iface([V3, UNDEFINED], **{"@type": ["Interface", "Gizmo"], "acme:x": 1})],
        ALLOW,
        False,
    ),
    ("v3 undefined extension without the option", [iface([V3, UNDEFINED])], {}, False),
    (
        "v2 undefined co-type term",
        [iface(V2, contents=tel(**{"@type": ["Telemetry", "Gizmo"], "extra": 1}))],
        {},
        True,
    ),
    (
        "v2 undefined co-type DTMI",
        [iface(V2, contents=tel(**{"@type": ["Telemetry", "dtmi:acme:g;1"]}))],
        {},
        False,
    ),
    (
        "v2 reserved word as co-type",
        [iface(V2, contents=tel(**{"@type": ["Telemetry", "string"]}))],
        {},
        False,
    ),
    (
        "v2 reserved co-type under an undefined extension, allowed",
        [iface(V2, contents=tel(**{"@context": UNDEFINED, "@type": ["Telemetry", "string"]}))],
        ALLOW,
        True,
    ),
    ("v2 extension context before DTDL's", [iface(["dtmi:iotcentral:context;2", V2])], {}, True),
    (
        "v3 extension context before DTDL's",
        [iface(["dtmi:dtdl:extension:historization;1", V3])],
        {},
        False,
    ),
    ("v2 context repeated", [iface([V2, V2])], {}, True),
    (
        "v2 keyword member on an Array",
        [
            iface(
                V2,
                schemas={
                    "@id": "dtmi:acme:A;1",
                    "@type": "Array",
                    "elementSchema": "long",
                    "@foo": 1,
                },
            )
        ],
        {},
        True,
    ),
    (
        "v3 keyword member on an Array",
        [
            iface(
                V3,
                schemas={
                    "@id": "dtmi:acme:A;1",
                    "@type": "Array",
                    "elementSchema": "long",
                    "@foo": 1,
                },
            )
        ],
        {},
        False,
    ),
    (
        "v2 semantic type given twice",
        [
            iface(
                V2,
                contents=tel(
                    **{
                        "@type": ["Telemetry", "Force", "dtmi:standard:class:Force;2"],
                        "unit": "newton",
                    }
                ),
            )
        ],
        {},
        True,
    ),
    (
        "@id given as an array",
        [iface(V3, schemas={"@id": ["dtmi:acme:A;1"], "@type": "Array", "elementSchema": "long"})],
        {},
        False,
    ),
    (
        "unresolved element reference",
        [
            iface(
                V3,
                contents=tel(schema={"@type": "Array", "elementSchema": ["dtmi:acme:nothing;1"]}),
            )
        ],
        {},
        False,
    ),
    (
        "other version's schema IRI",
        [iface(V3, contents=tel(schema="dtmi:dtdl:instance:Schema:double;2"))],
        {},
        False,
    ),
    (
        "v2 valueSchema IRI in a v3 Enum",
        [
            iface(
                V3,
                contents=tel(
                    schema={"@type": "Enum", "valueSchema": "dtmi:dtdl:instance:Schema:integer;2"}
                ),
            )
        ],
        {},
        True,
    ),
    ("five Arrays of an Enum", [iface(V3, contents=tel(schema=arrays(5)))], {}, True),
    ("six Arrays of an Enum", [iface(V3, contents=tel(schema=arrays(6)))], {}, False),
    (
        "Component of an ancestor",
        [
            iface(
                V3,
                extends="dtmi:acme:Base;1",
                contents={"@type": "Component", "name": "base", "schema": "dtmi:acme:Base;1"},
            ),
            iface(V3) | {"@id": "dtmi:acme:Base;1"},
        ],
        {},
        True,
    ),
    (
        "Component of itself",
        [iface(V3, contents={"@type": "Component", "name": "me", "schema": "dtmi:acme:Case;1"})],
        {},
        False,
    ),
]


@pytest.mark.parametrize(
    ("docs", "options", "valid"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_verdict(tmp_path: Path, docs: list[Any], options: dict[str, Any], valid: bool) -> None:
    rules = rules_of(tmp_path, *docs, **options)
    assert (rules == []) == valid, rules


def _spec_cases() -> list[tuple[str, dict[str, Any]]]:
    folder = os.environ.get("DTDL_SPEC_TESTS")
    if not folder:
        return []
    return [
        (f"{path.name}[{i}]", case)
        for path in sorted(Path(folder).rglob("*.json"))
        for i, case in enumerate(json.loads(path.read_text(encoding="utf-8-sig")))
    ]


@pytest.mark.skipif(
    not os.environ.get("DTDL_SPEC_TESTS"),
    reason="set DTDL_SPEC_TESTS to a folder of conformance case files (JSON arrays of "
    "{valid, options, input}, such as the DTDL repository's spec-tests) to run them",
)
def test_conformance_case_files(tmp_path: Path) -> None:
    """Every case of the files under DTDL_SPEC_TESTS gets the verdict the file states."""
    wrong = []
    for name, case in _spec_cases():
        allow = "AllowUndefinedExtensions" in case.get("options", [])
        rules = rules_of(tmp_path, *case["input"], allow_undefined_extensions=allow)
        if (rules == []) != case["valid"]:
            wrong.append(f"{name}: expected valid={case['valid']}, got {rules}")
    assert wrong == []
