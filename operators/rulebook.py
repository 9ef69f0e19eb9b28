"""The rule grammar of a twin-type profile: ``rules:``, ``generic:`` and ``reactions:``.

A rule is *threshold for a duration, with hysteresis* on one feature of a window (a window
statistic ``<signal>.<stat>``, a residual, ``anomaly.ratio``, a slope, a spectral feature,
a derived key of the ``health:`` section). The readers here turn the profile's sections
into plain values (:class:`Rule`, :class:`GenericRules`, :class:`ReactionSpec`); every
error names the file and the field. :mod:`twinflow.operators.rules` evaluates them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from twinflow.core.config import (
    Choice,
    Duration,
    Flag,
    Names,
    Number,
    Part,
    Schema,
    Section,
    Text,
    Whole,
)
from twinflow.core.errors import ConfigError
from twinflow.core.records import Severity
from twinflow.operators.twin_type import TwinType

_COMPARISONS = ("above", "below")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    """A parsed profile section that pickles as ``(file, where)`` and is read again from its
    file when unpickled: a :class:`TwinType` travels inside per-twin state (snapshots), and
    its rules and models must not make that state grow. ``where`` is the section's dotted
    place in the file: its key in a profile file, ``types.<name>.<key>`` in a deployment's."""

    value: T
    file: str
    where: str

    def __reduce__(self) -> tuple[Callable[[str, str], Any], tuple[str, str]]:
        return (_reread, (self.file, self.where))

    def __copy__(self) -> Parsed[T]:
        return self

    def __deepcopy__(self, _memo: object) -> Parsed[T]:
        return self


@functools.cache
def _profile_sections(file: str, where: str) -> Mapping[str, Any]:
    # the reader imports this module
    from twinflow.operators.profile import profile_from, read_profile

    if not where:
        return read_profile(Path(file)).sections
    node: Any = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    for part in where.split("."):
        node = node[part]
    return profile_from(node, Path(file), where, where.rsplit(".", 1)[-1]).sections


def _reread(file: str, where: str) -> Any:
    profile, _, key = where.rpartition(".")
    return _profile_sections(file, profile)[key]


def section_of(kind: TwinType, key: str, default: T) -> T:
    """The parsed value of a type's profile section ``key`` (``default`` when it has none)."""
    v = kind.sections.get(key)
    return v.value if isinstance(v, Parsed) else default


def parsed(key: str, read: Callable[[Section], T]) -> Callable[[Section], Parsed[T]]:
    """A section reader whose value pickles by reference (see :class:`Parsed`)."""

    def reader(s: Section) -> Parsed[T]:
        return Parsed(read(s), str(s.file), s.where)

    reader.__doc__ = read.__doc__
    return reader


@dataclass(frozen=True, slots=True)
class Rule:
    """One alarm rule. ``explain=True`` takes the diagnosis from the other rules' evidence;
    ``context`` names further features copied into the evidence (e.g. the load, which a
    command policy may scale a derate by)."""

    name: str
    feature: str
    comparison: str
    threshold: float
    duration_s: float
    clear_threshold: float
    clear_duration_s: float
    severity: Severity = Severity.WARNING
    diagnosis: str | None = None
    description: str = ""
    explain: bool = False
    context: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.comparison not in _COMPARISONS:
            raise ConfigError(
                f"rule {self.name!r}: comparison must be 'above' or 'below', "
                f"got {self.comparison!r}"
            )
        above = self.comparison == "above"
        if (
            (self.clear_threshold > self.threshold)
            if above
            else (self.clear_threshold < self.threshold)
        ):
            raise ConfigError(
                f"rule {self.name!r}: clear_threshold {self.clear_threshold:g} must be on the "
                f"healthy side of threshold {self.threshold:g} ({self.comparison})"
            )
        if self.duration_s < 0 or self.clear_duration_s < 0:
            raise ConfigError(f"rule {self.name!r}: durations must be >= 0")

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.comparison == "above" else value < self.threshold

    def cleared(self, value: float) -> bool:
        if self.comparison == "above":
            return value < self.clear_threshold
        return value > self.clear_threshold

    def proximity(self, value: float) -> float:
        """0 at the clear level, 1 at the threshold (how far the value went toward raising)."""
        band = self.threshold - self.clear_threshold
        if band == 0.0:
            return 1.0 if self.breached(value) else 0.0
        return (value - self.clear_threshold) / band


# -- rules: ---------------------------------------------------------------------------------

RULE = Schema(
    "rules.<name>",
    "One alarm rule: a feature past a threshold for a duration, cleared with hysteresis. "
    "Exactly one of `above`, `below` and `outside`.",
    (
        Text("feature", "The window feature judged, e.g. `bearing_temp.mean`.", "",
             required=True),
        Number("above", "Raise when the feature is above this.", 0.0, finite=True),
        Number("below", "Raise when the feature is below this.", 0.0, finite=True),
        Number("outside", "Raise when the feature leaves [-v, v]: two rules, `<name>_high` "
               "and `<name>_low`.", 0.0, above=0, finite=True),
        Number("clear", "Clear level (on the healthy side of the threshold).", 0.0,
               finite=True, required=True),
        Duration("for", "How long the condition must hold before raising (`0`: at once).",
                 600.0),
        Duration("clear_for", "How long the clear condition must hold (default: `for`).", 0.0),
        Choice("severity", "Alert severity.", "warning", choices=tuple(s.value for s in Severity)),
        Text("diagnosis", "The diagnosis label the alert carries.", "", required=True),
        Text("message", "What the alert says (`outside`: `reads high`/`reads low` added).",
             ""),
        Names("context", "Further features quoted in the alert's evidence.", what="features"),
    ),
)  # fmt: skip


def _seconds(s: Section, key: str, default: float) -> float:
    """A duration field that also accepts ``0`` (at once)."""
    raw = s.data.get(key)
    if raw == 0 and not isinstance(raw, bool):
        return 0.0
    value: float = s.get(RULE[key], default)
    return value


def read_rules(s: Section) -> tuple[Rule, ...]:
    """``rules:``: rule name -> rule, in file order (the order rules are evaluated)."""
    out: list[Rule] = []
    for name, raw in s.data.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{s.file}: {s.where}: rule names must be strings, got {name!r}")
        e = Section(raw, s.path(name), s.file)
        e.check_keys(RULE)
        out.extend(_rule(name, e))
    return tuple(out)


def _rule(name: str, e: Section) -> list[Rule]:
    given = [k for k in ("above", "below", "outside") if k in e.data]
    if len(given) != 1:
        raise e.error("above", ": give exactly one of above, below or outside, got "
                      f"{', '.join(given) or 'none'}")  # fmt: skip
    how = given[0]
    level = e.get(RULE[how])
    clear = e.get(RULE["clear"])
    duration = _seconds(e, "for", 600.0)
    clear_for = _seconds(e, "clear_for", duration) if "clear_for" in e.data else duration
    common: dict[str, Any] = {
        "severity": Severity(e.get(RULE["severity"])),
        "diagnosis": e.get(RULE["diagnosis"]),
        "context": e.get(RULE["context"]),
    }
    feature, message = e.get(RULE["feature"]), e.get(RULE["message"])
    if how == "outside":
        if not 0 <= clear <= level:
            raise e.error("clear", f" must be in [0, outside = {level:g}], got {clear:g}")
        text = message or feature
        return [
            Rule(f"{name}_high", feature, "above", level, duration, clear, clear_for,
                 description=f"{text} reads high", **common),
            Rule(f"{name}_low", feature, "below", -level, duration, -clear, clear_for,
                 description=f"{text} reads low", **common),
        ]  # fmt: skip
    if (clear > level) if how == "above" else (clear < level):
        side = "at or below" if how == "above" else "at or above"
        raise e.error("clear", f" must be {side} {how} ({level:g}), got {clear:g}")
    return [Rule(name, feature, how, level, duration, clear, clear_for, description=message,
                 **common)]  # fmt: skip


# -- generic: --------------------------------------------------------------------------------

#: The generic rules every type gets, by the name ``generic.disable`` lists.
GENERIC_RULES = ("stuck", "dropout", "spikes", "range", "anomaly")

GENERIC = Schema(
    "generic",
    "The generic rules every type gets: stuck, dropout, spikes, declared-range violation "
    "and sustained anomaly.",
    (
        Names("commanded", "Signals that carry commanded values, not measurements: no "
              "sensor rules.", what="signal names"),
        Part("spikes_on", "Derived signals also judged for spikes: name -> `[low, high]`.",
             kind="mapping"),
        Names("disable", f"Generic rules to switch off: {', '.join(GENERIC_RULES)}.",
              what="generic rule names"),
        Flag("anomaly_alert", "A sustained anomaly no rule explains raises an alert of its "
             "own, naming the features that drive it (default: on when the type has no "
             "`rules:`).", False),
        Number("anomaly_windows", "Anomalous windows in a row that make a sustained anomaly.",
               3.0, low=1, finite=True),
        Number("explain_proximity", "How close (0 = clear level, 1 = threshold) a rule's "
               "feature must be to explain an anomaly.", 0.7, low=0, finite=True),
        Number("out_of_range", "Share of a window's readings of a signal outside its "
               "declared range that raises a range alert (it clears below a tenth of it).",
               0.01, above=0, high=1, finite=True),
        Number("spike_crest", "Smallest excursion from a window's mean, in window standard "
               "deviations, that counts as a spike (Gaussian noise over 300 readings rarely "
               "passes 4; one outlier among n readings reaches up to sqrt(n)).", 12.0, above=0,
               finite=True),
        Whole("min_readings", "Fewest readings of a signal in a window for the stuck and "
              "spike indicators to judge it.", 10, 2, coerce=True),
        Whole("range_readings", "Readings in a row outside the declared range that raise a "
              "range alert (judged as readings arrive; it clears after 30 min in range).", 3,
              1, coerce=True),
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GenericRules:
    """Settings of the generic rules (``anomaly_alert`` ``None``: on without ``rules:``)."""

    commanded: tuple[str, ...] = ()
    spikes_on: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    disable: tuple[str, ...] = ()
    anomaly_alert: bool | None = None
    anomaly_windows: float = 3.0
    explain_proximity: float = 0.7
    out_of_range: float = 0.01
    spike_crest: float = 12.0
    min_readings: int = 10
    range_readings: int = 3


_DEFAULT_GENERIC = GenericRules()


def generic_of(kind: TwinType) -> GenericRules:
    """The type's ``generic:`` settings (defaults when its profile has none)."""
    return section_of(kind, "generic", _DEFAULT_GENERIC)


def read_generic(s: Section) -> GenericRules:
    """``generic:``: the generic rules' settings."""
    s.check_keys(GENERIC)
    disable = s.get(GENERIC["disable"])
    for name in disable:
        if name not in GENERIC_RULES:
            raise s.error("disable", f": unknown generic rule {name!r}; use "
                          f"{', '.join(GENERIC_RULES)}")  # fmt: skip
    spikes: dict[str, tuple[float, float]] = {}
    for name, ends in s.section("spikes_on").data.items():
        if not (isinstance(ends, list) and len(ends) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in ends)
                and ends[0] < ends[1]):  # fmt: skip
            raise s.section("spikes_on").fail(str(name), "[low, high], two numbers, low < high")
        spikes[str(name)] = (float(ends[0]), float(ends[1]))
    alert = s.get(GENERIC["anomaly_alert"]) if "anomaly_alert" in s.data else None
    return GenericRules(
        commanded=s.get(GENERIC["commanded"]),
        spikes_on=spikes,
        disable=disable,
        anomaly_alert=alert,
        anomaly_windows=s.get(GENERIC["anomaly_windows"]),
        explain_proximity=s.get(GENERIC["explain_proximity"]),
        out_of_range=s.get(GENERIC["out_of_range"]),
        spike_crest=s.get(GENERIC["spike_crest"]),
        min_readings=s.get(GENERIC["min_readings"]),
        range_readings=s.get(GENERIC["range_readings"]),
    )


# -- reactions: ------------------------------------------------------------------------------

REACTION = Schema(
    "reactions.<diagnosis>",
    "What to send when an alert with this diagnosis is raised (rate-limited per twin).",
    (
        Text("command", "The command to send (one of the profile's `commands`).", "",
             required=True),
        Part("params", "Parameter -> number, or `derate_fraction` (the flow setting).",
             kind="mapping"),
        Text("scale_by", "An evidence feature that scales every parameter "
             "(`value * evidence / scale_full`, clamped to the command's range).", ""),
        Number("scale_full", "The evidence value at which the parameters apply unscaled.",
               1.0, above=0, finite=True),
        Text("compound", "A parameter a repeated command takes further: previous value x "
             "its configured value.", ""),
    ),
)  # fmt: skip

#: The flow settings a reaction parameter may name instead of a number.
PARAM_SETTINGS = ("derate_fraction",)


@dataclass(frozen=True, slots=True)
class ReactionSpec:
    """A profile reaction: ``params`` values are numbers or a name of :data:`PARAM_SETTINGS`."""

    diagnosis: str
    command: str
    params: Mapping[str, float | str]
    scale_by: str | None = None
    scale_full: float = 1.0
    compound: str | None = None


def read_reactions(s: Section) -> tuple[ReactionSpec, ...]:
    """``reactions:``: diagnosis -> the command it triggers."""
    out = []
    for diagnosis, raw in s.data.items():
        e = Section(raw, s.path(str(diagnosis)), s.file)
        e.check_keys(REACTION)
        p = e.section("params")
        params: dict[str, float | str] = {}
        for key, v in p.data.items():
            if isinstance(v, str) and v in PARAM_SETTINGS:
                params[str(key)] = v
            elif isinstance(v, int | float) and not isinstance(v, bool):
                params[str(key)] = float(v)
            else:
                raise p.fail(str(key), f"a number or {', '.join(PARAM_SETTINGS)}")
        compound = e.get(REACTION["compound"]) or None
        if compound is not None and compound not in params:
            raise e.error("compound", f": {compound!r} is not one of params ({', '.join(params)})")
        out.append(
            ReactionSpec(
                str(diagnosis),
                e.get(REACTION["command"]),
                params,
                e.get(REACTION["scale_by"]) or None,
                e.get(REACTION["scale_full"]),
                compound,
            )
        )
    return tuple(out)


__all__ = [
    "GENERIC",
    "GENERIC_RULES",
    "PARAM_SETTINGS",
    "REACTION",
    "RULE",
    "GenericRules",
    "Parsed",
    "ReactionSpec",
    "Rule",
    "generic_of",
    "parsed",
    "read_generic",
    "read_reactions",
    "read_rules",
    "section_of",
]
