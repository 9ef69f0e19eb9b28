"""A machine type defined only by files, for tests: a compressor (DTDL v3 + profile)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.operators.catalog import TwinType, load_catalogue

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


def load_compressor(tmp_path: Path, extra: str = "") -> TwinType:
    """The compressor type with ``extra`` profile sections, loaded as a deployment would."""
    write_compressor(tmp_path / "models", PROFILE + extra)
    return load_catalogue([tmp_path / "models"])["compressor"]


def profile_error(tmp_path: Path, extra: str) -> str:
    """The message of the error the compressor's profile with ``extra`` raises."""
    with pytest.raises(ConfigError) as info:
        load_compressor(tmp_path, extra + "\n")
    return str(info.value)


def compressor_frames(
    twin: str, signals: dict[str, float], minutes: int, start: float
) -> list[TelemetryFrame]:
    """One frame a minute of 1 Hz readings near ``signals``' values (1 % noise, seeded)."""
    out = []
    for m in range(minutes):
        times = start + 60.0 * m + np.arange(60, dtype=np.float64)
        rng = np.random.default_rng(m)
        values = {k: v + rng.normal(0.0, 0.01 * max(abs(v), 1.0), 60) for k, v in signals.items()}
        out.append(TelemetryFrame(twin, "compressor", times, values))
    return out
