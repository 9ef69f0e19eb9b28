"""A machine type defined only by files, for tests: a compressor (DTDL v3 + profile)."""

from __future__ import annotations

import json
from pathlib import Path

DTMI = "dtmi:example:Compressor;1"


def _telemetry(name: str, semantic: str | None, unit: str | None) -> dict[str, object]:
    t: dict[str, object] = {"@type": ["Telemetry", semantic] if semantic else "Telemetry"}
    t |= {"name": name, "schema": "double"}
    if unit:
        t["unit"] = unit
    return t


INTERFACE = {
    "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
    "@id": DTMI,
    "@type": "Interface",
    "displayName": "Compressor",
    "contents": [
        _telemetry("discharge_pressure", "Pressure", "bar"),
        _telemetry("discharge_temp", "Temperature", "degreeCelsius"),
        _telemetry("motor_power", "Power", "kilowatt"),
        _telemetry("oil_level", None, None),
        {
            "@type": "Command",
            "name": "set_pressure",
            "request": {
                "name": "params",
                "schema": {
                    "@type": "Object",
                    "fields": [{"name": "bar", "schema": "double"}],
                },
            },
        },
        {"@type": "Property", "name": "pressure_setpoint", "schema": "double", "writable": True},
    ],
}

PROFILE = """\
name: compressor
model: "dtmi:example:Compressor;1"
signals:
  discharge_pressure: {low: 0, high: 16}
  discharge_temp: {low: -20, high: 150}
  motor_power: {low: 0, high: 250, rate_hz: 0.5}
  oil_level: {low: 0, high: 100, unit: "%", optional: true}
commands:
  set_pressure: {bar: [4, 12]}
properties:
  pressure_setpoint:
    low: 4
    high: 12
    command: set_pressure
    param: bar
    reported_signal: discharge_pressure
    tolerance: 0.3
    unit: bar
"""


def write_compressor(folder: Path, profile: str = PROFILE) -> Path:
    """Write the compressor's DTDL and profile into ``folder``; returns the profile file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compressor.json").write_text(json.dumps(INTERFACE))
    path = folder / "compressor.yaml"
    path.write_text(profile)
    return path
