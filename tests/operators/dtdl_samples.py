"""A broad set of valid DTDL v3 models written for twinflow's tests (not copied from anywhere).

Together the documents use every element kind and feature the parser supports, so a parser
change that rejects valid DTDL shows up here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

V3 = "dtmi:dtdl:context;3"
QT = "dtmi:dtdl:extension:quantitativeTypes;1"
HIST = "dtmi:dtdl:extension:historization;1"


def base() -> dict[str, Any]:
    """One Interface with one of each content kind and complex schema; tests mutate copies."""
    return {
        "@context": [V3, QT],
        "@id": "dtmi:test:Base;1",
        "@type": "Interface",
        "displayName": {"en": "Base", "de": "Basis"},
        "description": "An interface with one of everything.",
        "comment": "for tests",
        "contents": [
            {
                "@type": ["Telemetry", "Temperature"],
                "name": "temp",
                "schema": "double",
                "unit": "degreeCelsius",
            },
            {"@type": "Property", "name": "setpoint", "schema": "double", "writable": True},
            {
                "@type": "Command",
                "name": "reboot",
                "request": {"name": "delay", "schema": "integer"},
                "response": {"@type": "CommandResponse", "name": "ok", "schema": "boolean"},
            },
            {
                "@type": "Relationship",
                "name": "feeds",
                "target": "dtmi:test:Other;1",
                "minMultiplicity": 0,
                "maxMultiplicity": 3,
                "writable": True,
                "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}],
            },
            {
                "@type": "Telemetry",
                "name": "state",
                "schema": {
                    "@type": "Enum",
                    "valueSchema": "integer",
                    "enumValues": [
                        {"name": "off", "enumValue": 0},
                        {"name": "on", "enumValue": 1, "displayName": "On"},
                    ],
                },
            },
            {
                "@type": "Property",
                "name": "modules",
                "schema": {
                    "@type": "Map",
                    "mapKey": {"name": "module", "schema": "string"},
                    "mapValue": {"name": "state", "schema": "string"},
                },
            },
            {
                "@type": "Telemetry",
                "name": "leds",
                "schema": {"@type": "Array", "elementSchema": "boolean"},
            },
            {"@type": "Telemetry", "name": "accel", "schema": "dtmi:test:Base:accel;1"},
        ],
        "schemas": [
            {
                "@id": "dtmi:test:Base:accel;1",
                "@type": "Object",
                "fields": [
                    {"name": "x", "schema": "double"},
                    {
                        "@type": ["Field", "Acceleration"],
                        "name": "y",
                        "schema": "double",
                        "unit": "gForce",
                    },
                ],
            }
        ],
    }


def broad_set() -> dict[str, Any]:
    """File name -> document: a valid set exercising every DTDL v3 feature the parser reads."""
    device = {
        "@context": [V3, QT, HIST],
        "@id": "dtmi:test:Device;2.1",
        "@type": "Interface",
        "extends": ["dtmi:test:Base;1", "dtmi:test:Named"],
        "contents": [
            {"@type": "Component", "name": "info", "schema": "dtmi:test:Info;1"},
            {
                "@type": "Component",
                "name": "inline_part",
                "schema": {
                    "@id": "dtmi:test:Part;1",
                    "@type": "Interface",
                    "contents": [{"@type": "Property", "name": "serial", "schema": "string"}],
                },
            },
            {"@type": "Telemetry", "name": "location", "schema": "point"},
            {
                "@type": "Command",
                "name": "set_rate",
                "request": {
                    "@type": ["CommandRequest", "VolumeFlowRate"],
                    "name": "rate",
                    "schema": "float",
                    "unit": "litrePerSecond",
                },
            },
            {"@type": "Command", "name": "ping"},
            {"@type": "Relationship", "name": "children"},
            {
                "@type": ["Property", "Power"],
                "@id": "dtmi:test:Device:limit;1",
                "name": "limit",
                "schema": "long",
                "unit": "kilowatt",
                "writable": False,
            },
            {
                "@type": "Telemetry",
                "name": "readings",
                "schema": {
                    "@type": "Map",
                    "mapKey": {"@type": "MapKey", "name": "sensor", "schema": "string"},
                    "mapValue": {
                        "@type": ["MapValue", "Pressure"],
                        "name": "value",
                        "schema": "double",
                        "unit": "bar",
                    },
                },
            },
            {
                "@type": "Telemetry",
                "name": "mode",
                "schema": {
                    "@type": "Enum",
                    "valueSchema": "string",
                    "enumValues": [{"@type": "EnumValue", "name": "auto", "enumValue": "A"}],
                },
            },
            {
                "@type": "Property",
                "name": "nested",
                "schema": {
                    "@type": "Array",
                    "elementSchema": {
                        "@type": "Object",
                        "fields": [
                            {"name": "when", "schema": "date"},
                            {"name": "at", "schema": "time"},
                            {"name": "for", "schema": "duration"},
                            {
                                "name": "tags",
                                "schema": {"@type": "Array", "elementSchema": "string"},
                            },
                        ],
                    },
                },
            },
            {"@type": ["Telemetry", "Historized"], "name": "custom", "schema": "double"},
        ],
    }
    named = {
        "@context": V3,
        "@id": "dtmi:test:Named",
        "@type": "Interface",
        "extends": {
            "@id": "dtmi:test:Root;1",
            "@type": "Interface",
            "contents": [{"@type": "Property", "name": "label", "schema": "string"}],
        },
        "contents": [{"@type": "Property", "name": "title", "schema": "string", "writable": True}],
    }
    info = {
        "@context": V3,
        "@id": "dtmi:test:Info;1",
        "@type": "Interface",
        "contents": [{"@type": "Property", "name": "model", "schema": "string"}],
    }
    return {"base.json": base(), "device.json": device, "more.json": [named, info]}


def write(folder: Path, docs: dict[str, Any]) -> list[Path]:
    """Write documents (JSON values, or raw text for a str) and return their paths."""
    paths = []
    for name, doc in docs.items():
        p = folder / name
        p.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=1))
        paths.append(p)
    return paths


def ontology(count: int = 800, depth: int = 8) -> dict[str, Any]:
    """File name -> Interface: a RealEstateCore-like ontology of about ``count`` Interfaces.

    Written for the tests (no ontology file is copied): Interfaces stand in ``depth + 1``
    levels, each below the first extending one Interface of the level above (so ``extends``
    chains are ``depth`` deep) and every third one a second one too (multiple inheritance,
    diamonds included). Each has a language map, QuantitativeTypes Properties, a Relationship
    with a Property and a target, and some a Component whose Interface is one of the parts.
    """
    parts = max(1, count // 20)
    per_level = max(1, (count - parts) // (depth + 1))
    docs: dict[str, Any] = {}
    for p in range(parts):
        docs[f"parts/Part{p}.json"] = {
            "@context": [V3, QT],
            "@id": f"dtmi:org:rec:part:Part{p};1",
            "@type": "Interface",
            "displayName": {"en": f"Part {p}", "sv": f"Del {p}"},
            "contents": [
                {
                    "@type": ["Property", "Temperature"],
                    "name": f"part{p}Temperature",
                    "schema": "double",
                    "unit": "degreeCelsius",
                }
            ],
        }
    for level in range(depth + 1):
        for i in range(per_level):
            n = level * per_level + i
            doc: dict[str, Any] = {
                "@context": [V3, QT],
                "@id": f"dtmi:org:rec:Space{n};1",
                "@type": "Interface",
                "displayName": {"en": f"Space {n}", "sv": f"Utrymme {n}"},
                "description": {"en": f"A level-{level} space of the test ontology."},
                "contents": [
                    {"@type": "Property", "name": f"s{n}Name", "schema": "string"},
                    {
                        "@type": ["Property", "Area"],
                        "name": f"s{n}Area",
                        "schema": "double",
                        "unit": "squareMetre",
                        "writable": True,
                    },
                    {
                        "@type": "Relationship",
                        "name": f"s{n}Feeds",
                        "target": f"dtmi:org:rec:Space{i};1",
                        "maxMultiplicity": 10,
                        "properties": [{"@type": "Property", "name": "since", "schema": "date"}],
                    },
                ],
            }
            if level:
                above = (level - 1) * per_level
                parents = [f"dtmi:org:rec:Space{above + i};1"]
                if i % 3 == 0 and per_level > 1:
                    parents.append(f"dtmi:org:rec:Space{above + (i + 1) % per_level};1")
                doc["extends"] = parents if len(parents) > 1 else parents[0]
            if n % 4 == 0:
                doc["contents"].append(
                    {
                        "@type": "Component",
                        "name": f"s{n}Part",
                        "schema": f"dtmi:org:rec:part:Part{n % parts};1",
                    }
                )
            docs[f"level{level}/Space{n}.json"] = doc
    return docs


def write_bom(folder: Path, docs: dict[str, Any]) -> list[Path]:
    """Write documents as UTF-8 with a byte-order mark, in sub-folders as their names say."""
    paths = []
    for name, doc in docs.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc, indent=2).encode())
        paths.append(p)
    return paths


def interface(dtmi: str = "dtmi:test:I;1", *contents: Any, **more: Any) -> dict[str, Any]:
    """A DTDL v3 Interface (QuantitativeTypes on) holding ``contents``; ``more`` adds members."""
    return {
        "@context": [V3, QT],
        "@id": dtmi,
        "@type": "Interface",
        "contents": list(contents),
    } | more


def rules_of(folder: Path, *docs: Any, **options: Any) -> list[str]:
    """The rule codes of every problem in ``docs`` (each written to its own file), in order."""
    from twinflow.operators.dtdl import check_paths

    for old in folder.glob("doc*.json"):
        old.unlink()
    paths = write(folder, {f"doc{i}.json": d for i, d in enumerate(docs)})
    return [p.rule for p in check_paths(paths, **options)]
