"""Command policy: which alerts turn into commands to the machine, as data.

A :class:`Reaction` says "on a RAISED alert with this diagnosis, on these twin types, send this
command with these parameters". A type's reactions come from its profile's ``reactions:``
section (:func:`reactions_of`; the grammar is in :mod:`twinflow.operators.rulebook`), unless a
policy is given its own. :class:`CommandPolicy` applies the first matching reaction,
rate-limits commands per twin in event time, checks the parameters against the type's
:class:`~twinflow.operators.catalog.ActuatorSpec` ranges (a :class:`ValidationError`
otherwise) and gives every command a deterministic id, so a replay issues the same commands.

A reaction parameter may name the flow setting ``derate_fraction`` instead of a number; with
``scale_by``, every parameter is scaled by that evidence value over ``scale_full`` (a derate
relative to the output at the alert) and clamped into the command's range.

Two guards keep the policy from acting on bad evidence or repeating itself:

- *Suspect sensors*: while a ``sensor_fault`` alarm is open on a signal of the twin (and for
  ``quarantine_s`` after it clears), a reaction whose alert's evidence uses that signal is
  not sent; the policy emits the command with status ``rejected`` and the reason instead, so
  operators see what was held back.
- *Compounding*: a reaction with ``compound: <param>`` takes that parameter further on a
  twin's next command (``previous × its configured value``, clamped to the command's range);
  the bundled derates do, and are never lifted automatically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from twinflow.core.errors import ValidationError
from twinflow.core.records import Alert, AlertState, Command, CommandStatus
from twinflow.core.times import epoch
from twinflow.operators.catalog import CATALOG, TwinType, twin_type
from twinflow.operators.rulebook import ReactionSpec, section_of

#: Evidence keys that are not feature values (so name no signal).
_NOT_SIGNALS = frozenset({"threshold", "clear_threshold"})


def evidence_signals(alert: Alert) -> frozenset[str]:
    """Signals whose features an alert's evidence quotes (``"power_kw.mean"`` -> power_kw)."""
    return frozenset(k.split(".", 1)[0] for k in alert.evidence if k not in _NOT_SIGNALS)


@dataclass(frozen=True, slots=True)
class Reaction:
    """On a raised alert with ``diagnosis`` on one of ``twin_types``, send ``command``.

    With ``scale_by`` set and present in the alert's evidence, every parameter is multiplied
    by ``evidence[scale_by] / scale_full`` and then clamped into the actuator's range.
    """

    diagnosis: str
    twin_types: tuple[str, ...]
    command: str
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    scale_by: str | None = None
    scale_full: float = 1.0
    compound: str | None = None

    def matches(self, alert: Alert) -> bool:
        return alert.diagnosis == self.diagnosis and alert.twin_type in self.twin_types

    def params_for(self, alert: Alert, kind: TwinType) -> dict[str, float]:
        params = {k: float(v) for k, v in self.params.items()}
        scale = alert.evidence.get(self.scale_by) if self.scale_by else None
        if scale is None or not math.isfinite(scale) or self.scale_full <= 0:
            return params
        ranges = kind.actuator(self.command).params
        out = {}
        for k, v in params.items():
            low, high = ranges.get(k, (-math.inf, math.inf))
            out[k] = min(high, max(low, v * scale / self.scale_full))
        return out


def _reaction(kind: TwinType, r: ReactionSpec, derate_fraction: float) -> Reaction:
    params = {k: derate_fraction if isinstance(v, str) else v for k, v in r.params.items()}
    return Reaction(
        r.diagnosis,
        (kind.name,),
        r.command,
        MappingProxyType(params),
        r.scale_by,
        r.scale_full,
        r.compound,
    )


#: Built reactions by (type identity, derate fraction); the type is kept alive here.
_BUILT: dict[tuple[int, float], tuple[TwinType, tuple[Reaction, ...]]] = {}


def reactions_of(kind: TwinType, derate_fraction: float) -> tuple[Reaction, ...]:
    """The reactions of a type's profile, with the flow's ``derate_fraction`` filled in."""
    hit = _BUILT.get((id(kind), derate_fraction))
    if hit is not None and hit[0] is kind:
        return hit[1]
    specs: tuple[ReactionSpec, ...] = section_of(kind, "reactions", ())
    out = tuple(_reaction(kind, r, derate_fraction) for r in specs)
    _BUILT[(id(kind), derate_fraction)] = (kind, out)
    return out


def check_reactions(kind: TwinType, derate_fraction: float) -> None:
    """Raise :class:`ValidationError` unless the type's reactions fit its commands."""
    where = f"{kind.profile_file or kind.name}: reactions"
    for r in reactions_of(kind, derate_fraction):
        try:
            check_params("(any)", kind, r.command, r.params)
        except ValidationError as exc:
            raise ValidationError(f"{where}.{r.diagnosis}: {exc}") from None


def check_params(
    twin: str, kind: str | TwinType, command: str, params: Mapping[str, float]
) -> None:
    """Raise :class:`ValidationError` unless ``params`` fit the actuator's declared ranges."""
    ttype = twin_type(kind) if isinstance(kind, str) else kind
    kind = ttype.name
    spec = ttype.actuator(command)
    unknown = sorted(set(params) - set(spec.params))
    missing = sorted(set(spec.params) - set(params))
    if unknown or missing:
        raise ValidationError(
            f"twin {twin!r} ({kind}): command {command!r} takes {sorted(spec.params)}; "
            f"unknown {unknown}, missing {missing}"
        )
    for name, (low, high) in spec.params.items():
        v = params[name]
        if not (math.isfinite(v) and low <= v <= high):
            raise ValidationError(
                f"twin {twin!r} ({kind}): command {command!r} parameter {name!r} = {v!r} is "
                f"outside [{low:g}, {high:g}]; fix the policy configuration"
            )


class CommandPolicy:
    """Alerts in, validated and rate-limited commands out.

    Per-twin state is the event time of the last command of each twin it has seen (one entry
    when the flow keeps one policy per twin) and two counters.

    >>> from twinflow.core.records import Severity
    >>> from twinflow.core.times import utc
    >>> from twinflow.operators.catalog import CATALOG
    >>> kind = CATALOG["motor"]  # a bundled type: its profile reacts to overheating
    >>> alert = Alert("a1", "M1", kind.name, "overtemp", AlertState.RAISED,
    ...               Severity.CRITICAL, utc(3600), utc(3600), "hot", "overheating")
    >>> policy = CommandPolicy()
    >>> [(c.name, dict(c.params), c.reason) for c in policy.decide(alert, kind)]
    [('derate', {'fraction': 0.7}, 'a1')]
    >>> policy.decide(alert, kind)  # rate-limited: one command per 30 min of event time
    []
    """

    def __init__(
        self,
        min_interval_s: float = 1800.0,
        derate_fraction: float = 0.7,
        ttl_s: float = 600.0,
        reactions: tuple[Reaction, ...] | None = None,
        quarantine_s: float = 3600.0,
    ) -> None:
        if min_interval_s < 0 or ttl_s <= 0:
            raise ValidationError(
                f"CommandPolicy needs min_interval_s >= 0 and ttl_s > 0, got "
                f"{min_interval_s!r}, {ttl_s!r}"
            )
        self.min_interval_s = min_interval_s
        self.derate_fraction = derate_fraction
        self.ttl_s = ttl_s
        self.reactions = reactions
        self.quarantine_s = quarantine_s
        # configuration errors show up at start-up
        if reactions is None:
            for ttype in CATALOG.values():
                check_reactions(ttype, derate_fraction)
        for r in reactions or ():
            for name in r.twin_types:
                check_params("(any)", name, r.command, r.params)
        self.last_issued: dict[str, float] = {}
        #: Last value of a compounding parameter sent per twin, so a second goes further.
        self.last_fraction: dict[str, float] = {}
        #: Signals with a suspect sensor: signal -> (alert id, event time the suspicion ends).
        self.suspect: dict[str, tuple[str, float]] = {}
        self.suppressed = 0
        self.issued = 0
        self.held = 0

    def active_reactions(self, kind: TwinType | None) -> tuple[Reaction, ...]:
        if self.reactions is not None:
            return self.reactions
        return () if kind is None else reactions_of(kind, self.derate_fraction)

    def decide(self, alert: Alert, kind: TwinType | None = None) -> list[Command]:
        """Commands for one alert: at most one, none for a cleared alert or within the
        rate limit of the twin's previous command. ``kind`` is the twin's type (``None``:
        the bundled type of ``alert.twin_type``)."""
        now = epoch(alert.time)
        if alert.diagnosis == "sensor_fault":
            self._track_sensor(alert, now)
        if alert.state is not AlertState.RAISED:
            return []
        kind = kind if kind is not None else CATALOG.get(alert.twin_type)
        reaction = next((r for r in self.active_reactions(kind) if r.matches(alert)), None)
        if reaction is None or kind is None:
            return []
        last = self.last_issued.get(alert.twin_id)
        if last is not None and now - last < self.min_interval_s:
            self.suppressed += 1
            return []
        params = reaction.params_for(alert, kind)
        step = reaction.compound
        if step is not None and alert.twin_id in self.last_fraction:
            low = kind.actuator(reaction.command).params[step][0]
            further = max(low, self.last_fraction[alert.twin_id] * float(reaction.params[step]))
            params[step] = min(params[step], further)
        check_params(alert.twin_id, kind, reaction.command, params)
        suspects = sorted(
            (sig, aid)
            for sig, (aid, until) in self.suspect.items()
            if now <= until and sig in evidence_signals(alert)
        )
        status, detail = CommandStatus.ISSUED, f"{alert.rule}: {alert.diagnosis}"
        if suspects:
            self.held += 1
            status = CommandStatus.REJECTED
            detail = (
                f"held: {alert.rule} rests on {', '.join(s for s, _ in suspects)}, whose sensor "
                f"is suspect (alert {', '.join(a for _, a in suspects)})"
            )
        else:
            self.last_issued[alert.twin_id] = now
            self.issued += 1
            if step is not None:
                self.last_fraction[alert.twin_id] = params[step]
        return [
            Command(
                command_id=Command.make_id(alert.twin_id, reaction.command, alert.time),
                twin_id=alert.twin_id,
                twin_type=alert.twin_type,
                name=reaction.command,
                params=params,
                issued_at=alert.time,
                expires_at=alert.time + timedelta(seconds=self.ttl_s),
                reason=alert.alert_id,
                status=status,
                detail=detail,
            )
        ]

    def _track_sensor(self, alert: Alert, now: float) -> None:
        """Mark (raised) or start releasing (cleared) the signals a sensor alarm names."""
        until = math.inf if alert.state is AlertState.RAISED else now + self.quarantine_s
        for sig in evidence_signals(alert):
            self.suspect[sig] = (alert.alert_id, until)
        for sig in [s for s, (_a, u) in self.suspect.items() if u < now]:
            del self.suspect[sig]
