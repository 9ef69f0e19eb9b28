"""Twin types from files: DTDL v3 Interfaces joined with twinflow profiles, in a catalogue.

A twin type is a DTDL Interface (names, units, commands and their request schemas, writable
properties, relationships) joined with its *profile*, a YAML file beside it
(:mod:`twinflow.operators.profile`: ranges, rates, bursts, command limits, which command sets
which property, spectral settings). :func:`load_catalogue` builds a :class:`Catalogue` from
folders of such files; the three simulated machines are bundled type files in
``operators/types/`` loaded by the same code (:data:`CATALOG`). Every disagreement between
an Interface and its profile is reported at once, each naming the profile file and field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from twinflow.core.errors import ConfigError, ValidationError
from twinflow.operators.dtdl import ModelSet, parse_files
from twinflow.operators.dtdl.model import (
    Command,
    PrimitiveSchema,
    Property,
    Relationship,
    Telemetry,
)
from twinflow.operators.profile import Profile, find_profiles, read_profile
from twinflow.operators.twin_type import (
    SIGNAL_SCHEMAS,
    ActuatorSpec,
    PropertySpec,
    RelationshipSpec,
    SignalSpec,
    TwinType,
)

#: The bundled twin types: the simulator's machines, as DTDL and profile files.
TYPES_DIR = Path(__file__).parent / "types"

#: twinflow's short unit symbol for DTDL units (other DTDL units show as their DTDL name).
UNIT_SYMBOLS: Mapping[str, str] = MappingProxyType(
    {
        "metrePerSecond": "m/s",
        "kilowatt": "kW",
        "revolutionPerMinute": "rpm",
        "degreeCelsius": "degC",
        "degreeOfArc": "deg",
        "cubicMetrePerHour": "m3/h",
        "bar": "bar",
        "ampere": "A",
        "volt": "V",
        "gForce": "g",
    }
)


def _unit(dtdl_unit: str | None, profile_unit: str | None, where: str, problems: list[str]) -> str:
    if dtdl_unit is not None and profile_unit is not None:
        problems.append(f"{where}.unit: the DTDL gives unit {dtdl_unit!r}; drop the profile's unit")
    if dtdl_unit is not None:
        return UNIT_SYMBOLS.get(dtdl_unit, dtdl_unit)
    if profile_unit is None:
        problems.append(f"{where}.unit: the DTDL has no unit, so the profile must give one")
        return ""
    return profile_unit


def _diff(
    kind: str, section: str, dtdl: Mapping[str, object], profile: Mapping[str, object]
) -> list[str]:
    out = [
        f"{section}: {kind} {n!r} is in the DTDL but not in the profile"
        for n in dtdl
        if n not in profile
    ]
    out += [
        f"{section}.{n}: {kind} {n!r} is in the profile but not in the DTDL"
        for n in profile
        if n not in dtdl
    ]
    return out


def _signals(
    profile: Profile, telemetry: Mapping[str, Telemetry], problems: list[str]
) -> tuple[SignalSpec, ...]:
    signals = []
    for name, sp in profile.signals.items():
        if name not in telemetry:
            continue
        t = telemetry[name]
        schema = t.schema.name if isinstance(t.schema, PrimitiveSchema) else None
        if schema not in SIGNAL_SCHEMAS or (sp.waveform and schema not in ("double", "float")):
            allowed = "double or float" if sp.waveform else ", ".join(SIGNAL_SCHEMAS)
            problems.append(f"signals.{name}: Telemetry {name!r}: schema must be {allowed}")
        unit = _unit(t.unit, sp.unit, f"signals.{name}", problems)
        signals.append(
            SignalSpec(
                name,
                unit,
                sp.low,
                sp.high,
                sp.rate_hz,
                sp.waveform,
                sp.burst_interval_s,
                schema=schema or "double",
                dtdl_unit=t.unit,
                optional=sp.optional,
            )
        )
    return tuple(signals)


def _actuators(
    profile: Profile, commands: Mapping[str, Command], problems: list[str]
) -> tuple[ActuatorSpec, ...]:
    actuators = []
    for name, limits in profile.actuators.items():
        if name not in commands:
            continue
        c = commands[name]
        request = c.request.schema if c.request is not None else None
        fields = {f.name for f in getattr(request, "fields", ())}
        if fields != set(limits):
            problems.append(
                f"commands.{name}: Command {name!r}: request fields {sorted(fields)} differ "
                f"from the profile's parameters {sorted(limits)}"
            )
        description = c.description.get("en", "")
        actuators.append(ActuatorSpec(name, dict(limits), description, request))
    return tuple(actuators)


def _properties(
    profile: Profile, props: Mapping[str, Property], problems: list[str]
) -> tuple[PropertySpec, ...]:
    properties = []
    for name, pp in profile.properties.items():
        if name not in props:
            continue
        where = f"properties.{name}"
        if pp.command not in profile.actuators:
            problems.append(f"{where}.command: {pp.command!r} is not a command of the profile")
        elif pp.param not in profile.actuators[pp.command]:
            problems.append(f"{where}.param: command {pp.command!r} has no parameter {pp.param!r}")
        if pp.reported_signal is not None and pp.reported_signal not in profile.signals:
            problems.append(f"{where}.reported_signal: {pp.reported_signal!r} is not a signal")
        unit = _unit(props[name].unit, pp.unit, where, problems)
        properties.append(
            PropertySpec(
                name,
                unit,
                pp.low,
                pp.high,
                True,
                pp.command,
                pp.param,
                pp.scale,
                pp.reported_signal,
                pp.tolerance,
            )
        )
    return tuple(properties)


def build_twin_type(profile: Profile, models: ModelSet) -> TwinType:
    """Join a DTDL Interface with its profile; raise ``ConfigError`` listing every mismatch,
    each line naming the profile file and field."""
    try:
        iface = models.interface(profile.model_id)
    except ValidationError as exc:
        raise ConfigError(
            f"{profile.file}: model = {profile.model_id!r}: twin type {profile.name!r}: {exc}"
        ) from None
    contents = models.contents(profile.model_id)
    telemetry = {c.name: c for c in contents if isinstance(c, Telemetry)}
    commands = {c.name: c for c in contents if isinstance(c, Command)}
    props = {c.name: c for c in contents if isinstance(c, Property) and c.writable}
    relationships = tuple(
        RelationshipSpec(c.name, c.target, c.max_multiplicity)
        for c in contents
        if isinstance(c, Relationship)
    )
    problems = _diff("Telemetry", "signals", telemetry, profile.signals)
    problems += _diff("Command", "commands", commands, profile.actuators)
    problems += _diff("writable Property", "properties", props, profile.properties)
    signals = _signals(profile, telemetry, problems)
    actuators = _actuators(profile, commands, problems)
    properties = _properties(profile, props, problems)
    if (profile.fault_frequencies or profile.bands) and not any(
        s.waveform for s in profile.signals.values()
    ):
        problems.append("spectrum: spectral settings need a waveform signal; the type has none")
    if problems:
        raise ConfigError(
            f"twin type {profile.name!r}: the DTDL Interface {profile.model_id!r} "
            f"({iface.file}) and its profile {profile.file} disagree:\n  "
            + "\n  ".join(f"{profile.file}: {p}" for p in problems)
        )
    return TwinType(
        name=profile.name,
        signals=signals,
        actuators=actuators,
        fault_frequencies=dict(profile.fault_frequencies),
        bands=profile.bands,
        model_id=profile.model_id,
        properties=properties,
        relationships=relationships,
        profile_file=str(profile.file),
        sections=dict(profile.sections),
    )


class Catalogue(Mapping[str, TwinType]):
    """Twin types by short name; :meth:`resolve` also finds one by its model's DTMI.

    ``folders`` are the folders the types were read from (the bundled one first).
    """

    def __init__(self, types: Sequence[TwinType], folders: Sequence[Path] = ()) -> None:
        self._types: dict[str, TwinType] = {t.name: t for t in types}
        #: The type name of each model's DTMI.
        self.by_model: Mapping[str, str] = MappingProxyType({t.model_id: t.name for t in types})
        self.folders = tuple(folders)

    def __getitem__(self, name: str) -> TwinType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        return f"Catalogue({', '.join(self._types)})"

    def resolve(self, ref: str) -> TwinType | None:
        """The type named ``ref``, or the type of the model whose DTMI is ``ref``."""
        if ref in self._types:
            return self._types[ref]
        name = self.by_model.get(ref)
        return None if name is None else self._types[name]

    def lookup(self, name: str) -> TwinType:
        """The type ``name`` (or DTMI), with an error that lists the known ones."""
        found = self.resolve(name)
        if found is None:
            raise ValidationError(
                f"unknown twin type {name!r}; known types: {', '.join(sorted(self))}"
            )
        return found


def bundled_profiles() -> tuple[Profile, ...]:
    """The profiles of the bundled types."""
    return tuple(read_profile(p) for p in find_profiles(TYPES_DIR))


def build_types(models: ModelSet, profiles: Sequence[Profile]) -> tuple[TwinType, ...]:
    """One type per profile; two profiles with one name or one DTMI are an error."""
    names: dict[str, Profile] = {}
    dtmis: dict[str, Profile] = {}
    for p in profiles:
        if p.name in names:
            raise ConfigError(
                f"{p.file}: name = {p.name!r}: twin type {p.name!r} is also declared by "
                f"{names[p.name].file}; give one of them another name"
            )
        if p.model_id in dtmis:
            raise ConfigError(
                f"{p.file}: model = {p.model_id!r}: the Interface already has a profile, "
                f"{dtmis[p.model_id].file}; keep one profile per Interface"
            )
        names[p.name], dtmis[p.model_id] = p, p
    return tuple(build_twin_type(p, models) for p in profiles)


def build_catalog(
    models: ModelSet | None = None, profiles: Sequence[Profile] | None = None
) -> Catalogue:
    """The types of ``profiles`` (default: the bundled ones) over ``models`` (default: the
    bundled Interfaces)."""
    models = parse_files([TYPES_DIR]) if models is None else models
    return Catalogue(build_types(models, bundled_profiles() if profiles is None else profiles))


def load_catalogue(
    folders: Sequence[Path | str] = (),
    *,
    bundled: bool = True,
    profiles: Sequence[Profile] = (),
) -> Catalogue:
    """The twin types of the bundled folder (unless ``bundled=False``) and ``folders``.

    Every DTDL Interface with a profile in these folders (or among ``profiles``, e.g. those a
    deployment file holds) becomes a type; Interfaces without one (base interfaces,
    components) may be extended or used by the others. The DTDL is parsed together, so a
    user's model may extend or target a bundled one.
    """
    roots = [TYPES_DIR] if bundled else []
    for f in map(Path, folders):
        if not f.is_dir():
            raise ConfigError(f"{f}: not a folder of DTDL Interfaces and twin-type profiles")
        roots.append(f)
    if roots == [TYPES_DIR] and not profiles:
        return CATALOG
    models = parse_files(roots)
    found = [read_profile(p) for root in roots for p in find_profiles(root)]
    return Catalogue(build_types(models, [*found, *profiles]), roots)


#: The bundled twin types (the simulator's machines), the default catalogue.
CATALOG: Catalogue = Catalogue(
    build_types(parse_files([TYPES_DIR]), bundled_profiles()), (TYPES_DIR,)
)


def twin_type(name: str) -> TwinType:
    """Look a bundled twin type up by name or DTMI, with an error that lists the known ones."""
    return CATALOG.lookup(name)


__all__ = [
    "CATALOG",
    "SIGNAL_SCHEMAS",
    "TYPES_DIR",
    "UNIT_SYMBOLS",
    "ActuatorSpec",
    "Catalogue",
    "PropertySpec",
    "RelationshipSpec",
    "SignalSpec",
    "TwinType",
    "build_catalog",
    "build_twin_type",
    "build_types",
    "bundled_profiles",
    "load_catalogue",
    "twin_type",
]
