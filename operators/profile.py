"""Twin-type profiles: what a DTDL Interface cannot say, read from one YAML file per type.

A profile names its type (``name``) and the DTDL Interface it completes (``model``, a DTMI),
and adds per signal the valid range, reporting rate, waveform bursts, unit (only where the
DTDL has none) and whether it is optional; command parameter limits; how each writable
property is set by a command; and the spectral settings of waveforms. Every value is checked
through :mod:`twinflow.core.config`, so each error names the file and the field.

The top-level sections are the rows of :data:`SECTIONS`: a new section (rules, physics,
health, reactions) is one more :class:`ProfileSection` whose reader returns any value; it
arrives on :attr:`Profile.sections` and on the built type's ``TwinType.sections``. Unknown
keys stay an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from twinflow.core.config import Flag, Number, OptionalText, Part, Schema, Section, Text
from twinflow.core.errors import ConfigError
from twinflow.operators.anomaly_profile import ANOMALY, AnomalyProfile, read_anomaly
from twinflow.operators.dtdl import is_dtmi
from twinflow.operators.health_profile import HEALTH, read_health
from twinflow.operators.physics import MODEL, read_physics
from twinflow.operators.replication.consistency import CONSISTENCY, read_consistency
from twinflow.operators.rulebook import (
    GENERIC,
    REACTION,
    RULE,
    parsed,
    read_generic,
    read_reactions,
    read_rules,
)
from twinflow.operators.whatif.dynamics import WHATIF_PROFILE, read_whatif_profile

#: A profile's type name: a letter, then letters, digits and underscores.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
#: Names a profile may not take (``site`` is the root of every deployment's registry).
RESERVED = frozenset({"site"})


@dataclass(frozen=True, slots=True)
class SignalProfile:
    """Range and timing of one Telemetry; ``unit`` only where the DTDL has none."""

    low: float
    high: float
    rate_hz: float = 1.0
    waveform: bool = False
    burst_interval_s: float = 0.0
    unit: str | None = None
    optional: bool = False


@dataclass(frozen=True, slots=True)
class PropertyProfile:
    """Limits of a writable Property and the command (and parameter scale) that sets it."""

    low: float
    high: float
    command: str
    param: str
    scale: float = 1.0
    reported_signal: str | None = None
    tolerance: float = 0.0
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """What twinflow adds to one DTDL Interface to make a twin type; ``file`` is where it
    was read from (errors name it), ``sections`` the parsed values of further sections."""

    name: str
    model_id: str
    signals: Mapping[str, SignalProfile]
    actuators: Mapping[str, Mapping[str, tuple[float, float]]]
    properties: Mapping[str, PropertyProfile] = field(default_factory=dict)
    fault_frequencies: Mapping[str, float] = field(default_factory=dict)
    bands: tuple[tuple[float, float], ...] = ()
    file: Path = Path("<profile>")
    sections: Mapping[str, Any] = field(default_factory=dict)


# -- schemas -------------------------------------------------------------------------------

TOP = Schema(
    "",
    "A twin type's profile (one YAML file per type, beside its DTDL Interface).",
    (
        Text("name", "Short type name twins may use (`type: <name>`).", "", required=True),
        Text("model", "DTMI of the DTDL Interface this profile completes.", "", required=True),
        Part("signals", "Per Telemetry of the Interface: range and timing.", see="signals.<name>"),
        Part("commands", "Per Command: each request field's `[low, high]`.", see="commands"),
        Part("properties", "Per writable Property: its command.", see="properties.<name>"),
        Part("spectrum", "Spectral features of waveform signals.", see="spectrum"),
    ),
)
SIGNAL = Schema(
    "signals.<name>",
    "One signal: every Telemetry of the Interface needs an entry.",
    (
        Number("low", "Lowest physically valid value.", 0.0, required=True),
        Number("high", "Highest physically valid value (above `low`).", 0.0, required=True),
        Number("rate_hz", "Readings per second expected (inside a burst: samples).", 1.0, above=0),
        Flag("waveform", "Arrives as bursts of samples (vibration).", False),
        Number("burst_interval_s", "Seconds between bursts (waveforms only).", 0.0, low=0),
        OptionalText("unit", "Unit symbol, only when the DTDL gives no unit."),
        Flag("optional", "Not every twin sends it: never missing, never stale.", False),
    ),
)
PROPERTY = Schema(
    "properties.<name>",
    "One writable Property: its limits and the command that sets it.",
    (
        Number("low", "Lowest allowed desired value.", 0.0, required=True),
        Number("high", "Highest allowed desired value.", 0.0, required=True),
        Text("command", "The command that sets it.", "", required=True),
        Text("param", "The command's parameter that carries the value.", "", required=True),
        Number("scale", "`param = value * scale`.", 1.0, finite=True),
        OptionalText("reported_signal", "The signal that reports it back (none: not reported)."),
        Number("tolerance", "How close the report must come to count as done.", 0.0, low=0),
        OptionalText("unit", "Unit symbol, only when the DTDL gives no unit."),
    ),
)
SPECTRUM = Schema(
    "spectrum",
    "Spectral features of the waveform signals.",
    (
        Part("fault_frequencies", "Named frequencies (Hz > 0) whose tone power is a feature.",
             kind="mapping"),
        Part("bands", "Frequency bands `[low, high]` (Hz) whose energy is a feature.",
             kind="list"),
    ),
)  # fmt: skip


# -- section readers -----------------------------------------------------------------------


def _entries(s: Section, what: str) -> list[tuple[str, Section]]:
    """The named entries of a mapping section, each as its own section."""
    out = []
    for key, value in s.data.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{s.file}: {s.where}: {what} names must be strings, got {key!r}")
        out.append((key, Section(value, s.path(key), s.file)))
    return out


def _range(s: Section, low: float, high: float) -> None:
    if not low < high:
        raise s.error("high", f" must be above low ({low:g}), got {high:g}")


def read_signals(s: Section) -> dict[str, SignalProfile]:
    """``signals:``: one entry per Telemetry."""
    out = {}
    for name, e in _entries(s, "signal"):
        e.check_keys(SIGNAL)
        low, high = e.get(SIGNAL["low"]), e.get(SIGNAL["high"])
        _range(e, low, high)
        waveform = e.get(SIGNAL["waveform"])
        burst = e.get(SIGNAL["burst_interval_s"])
        if burst and not waveform:
            raise e.error("burst_interval_s", ": only a waveform signal comes in bursts")
        out[name] = SignalProfile(
            low,
            high,
            e.get(SIGNAL["rate_hz"]),
            waveform,
            burst,
            e.get(SIGNAL["unit"]),
            e.get(SIGNAL["optional"]),
        )
    return out


_END_LOW = Number("low", "Lowest allowed value.", 0.0, finite=True, required=True)
_END_HIGH = Number("high", "Highest allowed value.", 0.0, finite=True, required=True)


def read_commands(s: Section) -> dict[str, dict[str, tuple[float, float]]]:
    """``commands:``: ``command -> {parameter: [low, high]}``."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for name, e in _entries(s, "command"):
        params: dict[str, tuple[float, float]] = {}
        for param, raw in e.data.items():
            ends = raw if isinstance(raw, list) else None
            if ends is None or len(ends) != 2:
                raise e.fail(str(param), "[low, high], two numbers")
            pair = Section({"low": ends[0], "high": ends[1]}, e.path(str(param)), e.file)
            low, high = pair.get(_END_LOW), pair.get(_END_HIGH)
            if not low <= high:
                raise e.error(str(param), f" = {raw!r}: low must not be above high")
            params[str(param)] = (low, high)
        out[name] = params
    return out


def read_properties(s: Section) -> dict[str, PropertyProfile]:
    """``properties:``: one entry per writable Property."""
    out = {}
    for name, e in _entries(s, "property"):
        e.check_keys(PROPERTY)
        low, high = e.get(PROPERTY["low"]), e.get(PROPERTY["high"])
        _range(e, low, high)
        scale = e.get(PROPERTY["scale"])
        if scale == 0:
            raise e.error("scale", " must not be 0")
        out[name] = PropertyProfile(
            low,
            high,
            e.get(PROPERTY["command"]),
            e.get(PROPERTY["param"]),
            scale,
            e.get(PROPERTY["reported_signal"]),
            e.get(PROPERTY["tolerance"]),
            e.get(PROPERTY["unit"]),
        )
    return out


@dataclass(frozen=True, slots=True)
class Spectrum:
    """The spectral settings: named fault frequencies and energy bands (Hz)."""

    fault_frequencies: Mapping[str, float] = field(default_factory=dict)
    bands: tuple[tuple[float, float], ...] = ()


def read_spectrum(s: Section) -> Spectrum:
    """``spectrum:``: ``fault_frequencies`` (name -> Hz) and ``bands`` (``[low, high]``)."""
    s.check_keys(SPECTRUM)
    freqs = s.section("fault_frequencies")
    faults = {
        str(k): freqs.get(Number(str(k), "", 0.0, above=0, finite=True, required=True))
        for k in freqs.data
    } if freqs.data else {}  # fmt: skip
    raw = s.data.get("bands", [])
    if not isinstance(raw, list):
        raise s.fail("bands", "a list of [low, high] bands in Hz")
    bands = []
    for i, band in enumerate(raw):
        where = f"bands[{i}]"
        if not isinstance(band, list) or len(band) != 2:
            raise ConfigError(f"{s.file}: {s.path(where)} = {band!r}: expected [low, high] in Hz")
        b = Section({"low": band[0], "high": band[1]}, s.path(where), s.file)
        low = b.get(Number("low", "", 0.0, low=0, finite=True, required=True))
        high = b.get(Number("high", "", 0.0, above=0, finite=True, required=True))
        _range(b, low, high)
        bands.append((low, high))
    return Spectrum(faults, tuple(bands))


@dataclass(frozen=True)
class ProfileSection:
    """One top-level section of a profile: its reader (given the section, empty when the
    file has none) and the schema that documents it."""

    key: str
    read: Callable[[Section], Any]
    schema: Schema | None = None


#: The sections a profile may have, beyond ``name`` and ``model``. Add a row to add one.
SECTIONS: dict[str, ProfileSection] = {
    s.key: s
    for s in (
        ProfileSection("signals", read_signals, SIGNAL),
        ProfileSection("commands", read_commands),
        ProfileSection("properties", read_properties, PROPERTY),
        ProfileSection("spectrum", read_spectrum, SPECTRUM),
        ProfileSection("rules", parsed("rules", read_rules), RULE),
        ProfileSection("generic", parsed("generic", read_generic), GENERIC),
        ProfileSection("reactions", parsed("reactions", read_reactions), REACTION),
        ProfileSection("physics", parsed("physics", read_physics), MODEL),
        ProfileSection("health", parsed("health", read_health), HEALTH),
        ProfileSection("anomaly", parsed("anomaly", read_anomaly), ANOMALY),
        ProfileSection("replication", parsed("replication", read_consistency), CONSISTENCY),
        ProfileSection("whatif", parsed("whatif", read_whatif_profile), WHATIF_PROFILE),
    )
}
#: Sections whose values become the core fields of :class:`Profile`.
CORE = ("signals", "commands", "properties", "spectrum")


# -- files ---------------------------------------------------------------------------------


def read_profile(file: Path) -> Profile:
    """Read and check one profile file; a :class:`ConfigError` names the file and field."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the profile: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return profile_from(data, file)


def profile_from(data: object, file: Path, where: str = "", name: str | None = None) -> Profile:
    """A profile from already loaded YAML at ``where`` in ``file`` (a deployment file's
    ``types.<name>``, whose ``name`` is the key and may be left out); errors name both."""
    top = Section(data, where, file)
    top.check_keys((*TOP.keys[:2], *SECTIONS))
    if name is not None:
        given = top.data.get("name", name)
        if given != name:
            raise top.error("name", f" = {given!r}: must be {name!r}, the key it is under")
        top = Section({**top.data, "name": name}, where, file)
    name = top.get(TOP["name"])
    if not NAME.match(name) or name in RESERVED:
        raise top.fail(
            "name", "a name of letters, digits and underscores that starts with a letter "
            "(not 'site')"
        )  # fmt: skip
    model = top.get(TOP["model"])
    if not is_dtmi(model):
        raise top.fail("model", "a DTMI such as 'dtmi:example:Compressor;1'")
    parts = {key: section.read(top.section(key)) for key, section in SECTIONS.items()}
    spectrum: Spectrum = parts["spectrum"]
    _check_operating(top, parts["anomaly"].value, parts["signals"])
    return Profile(
        name=name,
        model_id=model,
        signals=parts["signals"],
        actuators=parts["commands"],
        properties=parts["properties"],
        fault_frequencies=spectrum.fault_frequencies,
        bands=spectrum.bands,
        file=file,
        sections={k: v for k, v in parts.items() if k not in CORE},
    )


def _check_operating(
    top: Section, anomaly: AnomalyProfile, signals: Mapping[str, SignalProfile]
) -> None:
    """``anomaly.operating`` names scalar signals of the profile."""
    for name in anomaly.operating or ():
        spec = signals.get(name)
        if spec is None or spec.waveform:
            known = ", ".join(k for k, v in signals.items() if not v.waveform)
            raise top.section("anomaly").error(
                "operating", f": {name!r} is not a scalar signal of this type; use one of {known}"
            )


def find_profiles(folder: Path) -> list[Path]:
    """The profile files (``*.yaml``, ``*.yml``) under ``folder``, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


__all__ = [
    "CORE",
    "PROPERTY",
    "SECTIONS",
    "SIGNAL",
    "SPECTRUM",
    "TOP",
    "Profile",
    "ProfileSection",
    "PropertyProfile",
    "SignalProfile",
    "Spectrum",
    "find_profiles",
    "profile_from",
    "read_profile",
]
