"""The ``replay:`` description: how a recording's columns become twins, times and signals.

It lives in a YAML file of its own (top-level key ``replay:``) and the command line's flags
override it. Both go through :class:`~twinflow.core.config.Section`, so a bad value names the
file (``<command line>`` for a flag) and the field.

>>> replay_spec({"time": {"zone": "UTC"}, "columns": {"p": "flow_m3h"}}, Path("rig.yaml")).zone
'UTC'
>>> replay_spec({"chunk_rows": 0}, Path("rig.yaml"))
Traceback (most recent call last):
...
twinflow.core.errors.ConfigError: rig.yaml: replay.chunk_rows must be an integer >= 1, got 0
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from twinflow.core.config import (
    Choice,
    Names,
    Number,
    OptionalText,
    Part,
    Schema,
    Section,
    Text,
    Whole,
)
from twinflow.core.errors import ConfigError

#: What a flag's errors name as their file.
COMMAND_LINE = Path("<command line>")

REPLAY = Schema(
    "replay",
    "How a recording (CSV or Parquet) maps to twins, times and signals.",
    (
        Choice(
            "format",
            "`wide`: a time column and a column per signal; `long`: time, twin, signal, value.",
            "wide",
            choices=("wide", "long"),
        ),
        Part("time", "The time column.", see="replay.time"),
        Text("twin_column", "Column holding the twin id (when the file has it).", "twin_id"),
        OptionalText(
            "twin", "The one twin of every file without a twin column (default: the file name)."
        ),
        Text("signal_column", "Long format: column holding the signal name.", "signal"),
        Text("value_column", "Long format: column holding the value.", "value"),
        Part(
            "columns",
            "Column (wide) or recorded signal name (long) -> signal, with scale and offset.",
            kind="mapping",
            see="replay.columns.<name>",
        ),
        Names("ignore", "Columns that are not replayed and not reported.", what="column names"),
        OptionalText("label_column", "Column of anomaly labels (0/1) to score against."),
        Whole("chunk_rows", "Rows read per batch.", 100_000, 1, coerce=True),
        Whole("frame_rows", "Timestamps per telemetry frame (per twin).", 600, 1, coerce=True),
    ),
)
TIME = Schema(
    "replay.time",
    "The time column and how to read it.",
    (
        Text("column", "Its name.", "time"),
        Choice(
            "unit",
            "`iso`: ISO-8601 text or a date-time column; `s`/`ms`: epoch seconds/milliseconds.",
            "iso",
            choices=("iso", "s", "ms"),
        ),
        OptionalText(
            "zone", "Zone of times without a UTC offset (IANA name, e.g. `Europe/Berlin`)."
        ),
    ),
)
COLUMN = Schema(
    "replay.columns.<name>",
    "One column's signal: `value = raw * scale + offset` (a plain string names the signal).",
    (
        Text("signal", "The twin type's signal.", "", required=True),
        Number("scale", "Factor applied to the raw value.", 1.0, finite=True),
        Number("offset", "Added after scaling.", 0.0, finite=True),
    ),
)


@dataclass(frozen=True)
class ColumnMap:
    """One recorded column (or long-format signal name) as a signal: ``raw * scale + offset``."""

    signal: str
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class ReplaySpec:
    """A validated ``replay:`` description (defaults as in :data:`REPLAY`)."""

    format: str = "wide"
    time_column: str = "time"
    time_unit: str = "iso"
    zone: str | None = None
    twin_column: str = "twin_id"
    twin: str | None = None
    signal_column: str = "signal"
    value_column: str = "value"
    columns: Mapping[str, ColumnMap] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    label_column: str | None = None
    chunk_rows: int = 100_000
    frame_rows: int = 600
    where: str = ""
    """Where the description came from (a file, ``<command line>``), for messages."""

    def mapping(self, name: str) -> ColumnMap:
        """The column's signal: as mapped, else a signal of the same name."""
        return self.columns.get(name) or ColumnMap(name)

    def reserved(self) -> frozenset[str]:
        """Columns that carry no signal values."""
        names = {self.time_column, self.twin_column, *self.ignore}
        if self.label_column:
            names.add(self.label_column)
        if self.format == "long":
            names |= {self.signal_column, self.value_column}
        return frozenset(names)


def replay_spec(data: object, file: Path, base: ReplaySpec | None = None) -> ReplaySpec:
    """The description under ``replay`` (``data`` is its mapping) over ``base``'s values."""
    s = Section(data, "replay", file)
    s.check_keys(REPLAY)
    values: dict[str, Any] = {}
    for f in REPLAY.fields:
        if f.key in s.data and not isinstance(f, Part):
            values[f.key] = s.get(f)
    t = s.section("time")
    t.check_keys(TIME)
    for key, name in (("column", "time_column"), ("unit", "time_unit"), ("zone", "zone")):
        if key in t.data:
            values[name] = t.get(TIME[key])
    zone = values.get("zone")
    if zone is not None:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise t.error(
                "zone", f" = {zone!r}: not a time zone name (IANA, e.g. UTC or Europe/Berlin)"
            ) from None
    if "columns" in s.data:
        values["columns"] = {**(base.columns if base else {}), **_columns(s.section("columns"))}
    start = base or ReplaySpec()
    spec = replace(start, **values, where=str(file))
    for key in ("twin_column", "signal_column", "value_column"):
        if spec.format == "long" and getattr(spec, key) == spec.time_column:
            raise s.error(key, f" = {getattr(spec, key)!r} is also the time column")
    return spec


def _columns(s: Section) -> dict[str, ColumnMap]:
    out: dict[str, ColumnMap] = {}
    for name, raw in s.data.items():
        if isinstance(raw, str) and raw:
            out[str(name)] = ColumnMap(raw)
            continue
        c = Section(raw, s.path(str(name)), s.file)
        c.check_keys(COLUMN)
        out[str(name)] = ColumnMap(
            c.get(COLUMN["signal"]), c.get(COLUMN["scale"]), c.get(COLUMN["offset"])
        )
    return out


def load_spec(
    path: Path | None,
    flags: Mapping[str, Any] | None = None,
    *,
    deployment: Path | None = None,
) -> ReplaySpec:
    """The description in ``path`` (a YAML file with a top-level ``replay:``), else the
    ``replay:`` section of the ``deployment`` file, if any; the command line's ``flags`` (a
    ``replay:`` mapping) go over it."""
    spec = ReplaySpec()
    if path is not None:
        spec = replay_spec(_replay_part(path), path)
    elif deployment is not None:
        part = _deployment_part(deployment)
        if part is not None:
            spec = replay_spec(part, deployment)
    if flags:
        spec = replay_spec(flags, COMMAND_LINE, spec)
    return spec


def _deployment_part(path: Path) -> object:
    """The ``replay:`` section of a deployment file (which the loader has checked), or None."""
    try:
        top = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None  # the deployment loader reports an unreadable file
    return top.get("replay") if isinstance(top, dict) else None


def _replay_part(path: Path) -> object:
    try:
        top = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"replay description {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    s = Section(top, "", path)
    if "replay" not in s.data:
        raise ConfigError(f"{path}: no top-level 'replay:' section")
    s.check_keys(("replay",))
    return s.data["replay"]


def parse_map(text: str) -> tuple[str, dict[str, Any]]:
    """A ``--map COLUMN=SIGNAL[:SCALE[:OFFSET]]`` flag as a ``columns`` entry."""
    column, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not column or not parts[0] or len(parts) > 3:
        raise ConfigError(f"--map {text!r}: expected COLUMN=SIGNAL[:SCALE[:OFFSET]]")
    entry: dict[str, Any] = {"signal": parts[0]}
    for key, value in zip(("scale", "offset"), parts[1:], strict=False):
        try:
            entry[key] = float(value)
        except ValueError:
            raise ConfigError(f"--map {text!r}: {key} {value!r} is not a number") from None
    return column, entry


__all__ = ["COLUMN", "REPLAY", "TIME", "ColumnMap", "ReplaySpec", "load_spec", "replay_spec"]
