"""Roll-ups along containment: how many of an asset's twins are in alarm, which part is worst.

:class:`RollupOperator` is a ``(state, item) -> (state, roll-ups)`` mapper for one site. It
takes the per-twin facts the telemetry flow already has:

- :class:`~twinflow.core.records.Alert` transitions: an alarm (``alert_id``) is open from its
  ``raised`` to its ``cleared`` transition. A twin is in alarm while any of its alarms is
  open, at the worst severity open. A clear is final (a new raise gets a new id), so the
  result does not depend on the order the transitions arrive in: a raise that comes after
  its own clear (e.g. merged streams) stays cleared.
- :class:`~twinflow.core.records.WindowFeatures` with ``rul``: the twin's health is the
  RUL estimate's ``health`` (1 healthy .. 0 at the failure level of its worst indicator),
  rounded to ``resolution`` so noise does not emit a roll-up every window. A window
  without an estimate changes nothing.
- :class:`TwinFacts`: a twin's open alarms and health as a whole, not a transition (what a
  central instance derives from the replicated registers of its edges' twins,
  :mod:`twinflow.operators.replication.fleet`): they replace what the twin had.

For each asset whose subtree a fact touches (its ancestors, and itself when a twin has
components) the operator emits an :class:`~twinflow.core.records.AssetRollup` when the roll-up
differs from the one last emitted; a site's first fact emits every asset of the site once,
a baseline. A roll-up's ``time`` is the event time of the newest fact of its site so far (it
never goes backwards, although alerts and windows may interleave). State is one entry per
registered twin and asset (plus at most ``max_cleared`` recently cleared alarm ids per twin).

>>> from datetime import UTC, datetime
>>> from twinflow.core.records import Alert, AlertState, Severity
>>> from twinflow.operators.registry import RegistryEntry, TwinRegistry
>>> reg = TwinRegistry([
...     RegistryEntry.make("site1", "site"),
...     RegistryEntry.make("skid-1", "skid", part_of="site1"),
...     RegistryEntry.make("fan-002", "fan", protocol="opcua", part_of="skid-1"),
... ])
>>> t = datetime(2024, 1, 1, tzinfo=UTC)
>>> raise_ = Alert("a1", "fan-002", "fan", "blade_wear", AlertState.RAISED,
...                Severity.WARNING, t, t, "efficiency falls")
>>> state, out = RollupOperator(reg)(None, raise_)
>>> [(r.asset_id, r.twins_in_alarm, r.in_alarm_by_severity["warning"]) for r in out]
[('site1', 1, 1), ('skid-1', 1, 1)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from twinflow.core.records import Alert, AlertState, AssetRollup, Severity, WindowFeatures
from twinflow.operators.registry import TwinRegistry

#: Severities from least to most severe (index into the per-asset counters).
SEVERITIES = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True)
class TwinFacts:
    """A twin's current facts as a whole: ``alarms`` maps each open alarm id to its severity,
    ``health`` is its RUL health (``None``: no estimate); ``time`` is when they held."""

    twin_id: str
    time: datetime
    alarms: Mapping[str, Severity] = field(default_factory=dict)
    health: float | None = None


Fact = Alert | WindowFeatures | TwinFacts


@dataclass
class RollupState:
    """What the roll-ups remember; picklable, bounded by the registry (one site or several)."""

    #: site -> event time of its newest fact (roll-up times never go backwards)
    clock: dict[str, datetime] = field(default_factory=dict)
    #: twin -> open alarm id -> its severity rank
    open: dict[str, dict[str, int]] = field(default_factory=dict)
    #: twin -> ids of its recently cleared alarms (a late raise of one stays cleared)
    cleared: dict[str, deque[str]] = field(default_factory=dict)
    #: twin -> rounded health
    health: dict[str, float] = field(default_factory=dict)
    #: asset -> twins in alarm per severity rank
    counts: dict[str, list[int]] = field(default_factory=dict)
    #: asset -> (worst health, twin), absent until a part has a health
    worst: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: asset -> the roll-up last emitted, without its time
    emitted: dict[str, tuple[object, ...]] = field(default_factory=dict)


class RollupOperator:
    """Roll alerts and health up the registry's containment tree (one state per site).

    ``resolution`` is the health step a roll-up reports (0.01: changes below 1 % of the
    health scale emit nothing); ``max_cleared`` bounds the cleared alarm ids kept per twin.
    """

    def __init__(
        self, registry: TwinRegistry, resolution: float = 0.01, max_cleared: int = 64
    ) -> None:
        if not 0.0 < resolution <= 1.0:
            raise ValueError(f"resolution must be in (0, 1], got {resolution!r}")
        if max_cleared < 1:
            raise ValueError(f"max_cleared must be >= 1, got {max_cleared!r}")
        self.registry = registry
        self.resolution = resolution
        self.max_cleared = max_cleared
        #: assets that get a roll-up: every asset, and every twin with components
        self.rolled = tuple(e.id for e in registry if not e.is_twin or registry.children(e.id))
        self.members = {a: list(registry.twins_under(a)) for a in self.rolled}
        rolled = self._rolled = set(self.rolled)
        self.scopes = {
            t.id: tuple(a for a in (t.id, *registry.ancestors(t.id)) if a in rolled)
            for t in registry.twins()
        }
        self._site = {t: registry.site_of(t) for t in self.scopes}
        #: site -> the assets its first fact emits: its own, and those above it (a fleet)
        self.site_assets: dict[str, list[str]] = {}
        for a in self.rolled:
            self.site_assets.setdefault(registry.site_of(a), []).append(a)
        for site, assets in self.site_assets.items():
            if site in registry:
                assets.extend(a for a in registry.ancestors(site) if a in rolled)

    def key(self, twin_id: str) -> str | None:
        """The site a twin's facts are keyed by (``None``: not a registered twin)."""
        return self._site.get(twin_id)

    def join(self, twin_id: str, under: str) -> None:
        """Roll up a twin the registry does not hold as a part of ``under``, one of its rolled
        assets (a central instance learns its fleet's twins from their writes; rebuilding
        the registry for each would cost the fleet's size each time). Its assets'
        ``twins_total`` grows at their next roll-up."""
        if twin_id in self.scopes or twin_id in self.registry:
            raise ValueError(f"twin {twin_id!r} is already rolled up")
        if under not in self._rolled:
            raise ValueError(f"{under!r} is not an asset of the roll-ups")
        scope = (under, *(a for a in self.registry.ancestors(under) if a in self._rolled))
        self.scopes[twin_id] = scope
        for asset in scope:
            self.members[asset].append(twin_id)
        self._site[twin_id] = self.registry.site_of(under)

    def __call__(
        self, state: RollupState | None, item: Fact
    ) -> tuple[RollupState | None, list[AssetRollup]]:
        """Apply one fact; the roll-ups it changed (state stays ``None`` for unknown twins)."""
        if not isinstance(item, Alert | WindowFeatures | TwinFacts):
            raise TypeError(
                "roll-ups take Alert or WindowFeatures items (or TwinFacts), got "
                f"{type(item).__name__}"
            )
        site = self.key(item.twin_id)
        if site is None:
            return state, []
        state = RollupState() if state is None else state
        touched: list[str] = []
        if site not in state.clock:  # the site's first fact: a baseline of all its assets
            touched.extend(self.site_assets.get(site, ()))
        if isinstance(item, Alert):
            changed = self._alert(state, item)
            time = item.time
        elif isinstance(item, TwinFacts):
            changed = self._facts(state, item)
            time = item.time
        else:
            changed = self._health(state, item)
            time = item.end
        time = state.clock[site] = max(time, state.clock.get(site, time))
        if changed:
            touched.extend(a for a in self.scopes[item.twin_id] if a not in touched)
        return state, self._emit(state, touched, time)

    def _alert(self, state: RollupState, a: Alert) -> bool:
        """Apply one transition; True when the twin's alarm level changed."""
        twin = a.twin_id
        open_ = state.open.get(twin, {})
        before = max(open_.values(), default=None)
        cleared = state.cleared.setdefault(twin, deque(maxlen=self.max_cleared))
        if a.state is AlertState.CLEARED:
            open_.pop(a.alert_id, None)
            if a.alert_id not in cleared:
                cleared.append(a.alert_id)
        elif a.alert_id not in cleared:
            open_[a.alert_id] = _RANK[Severity(a.severity)]
        if open_:
            state.open[twin] = open_
        else:
            state.open.pop(twin, None)
        return self._level(state, twin, before, max(open_.values(), default=None))

    def _level(self, state: RollupState, twin: str, before: int | None, after: int | None) -> bool:
        """Move a twin between its assets' severity counters; True when its level changed."""
        if before == after:
            return False
        for asset in self.scopes[twin]:
            counts = state.counts.setdefault(asset, [0] * len(SEVERITIES))
            if before is not None:
                counts[before] -= 1
            if after is not None:
                counts[after] += 1
        return True

    def _facts(self, state: RollupState, f: TwinFacts) -> bool:
        """Replace a twin's open alarms and health; True when its level or health changed."""
        twin = f.twin_id
        before = max(state.open.get(twin, {}).values(), default=None)
        open_ = {a: _RANK[Severity(s)] for a, s in f.alarms.items()}
        if open_:
            state.open[twin] = open_
        else:
            state.open.pop(twin, None)
        changed = self._level(state, twin, before, max(open_.values(), default=None))
        if f.health is not None:
            return self._set_health(state, twin, f.health) or changed
        if state.health.pop(twin, None) is None:
            return changed
        for asset in self.scopes[twin]:  # its estimate is gone: the worst may be another
            if state.worst.get(asset, (0.0, ""))[1] == twin:
                self._rework(state, asset)
        return True

    def _health(self, state: RollupState, w: WindowFeatures) -> bool:
        """Record a window's health; True when the twin's rounded health changed."""
        if w.rul is None:
            return False
        return self._set_health(state, w.twin_id, w.rul.health)

    def _set_health(self, state: RollupState, twin: str, value: float) -> bool:
        steps = round(min(1.0, max(0.0, value)) / self.resolution)
        health = round(steps * self.resolution, 6)
        if state.health.get(twin) == health:
            return False
        state.health[twin] = health
        for asset in self.scopes[twin]:
            worst = state.worst.get(asset)
            if worst is None or (health, twin) < worst:
                state.worst[asset] = (health, twin)
            elif worst[1] == twin:  # the worst part got better: look for the new worst
                self._rework(state, asset)
        return True

    def _rework(self, state: RollupState, asset: str) -> None:
        """Find an asset's worst health again (none: no part has an estimate)."""
        known = [(state.health[t], t) for t in self.members[asset] if t in state.health]
        if known:
            state.worst[asset] = min(known)
        else:
            state.worst.pop(asset, None)

    def emit(self, state: RollupState, assets: Iterable[str], time: datetime) -> list[AssetRollup]:
        """The roll-ups of ``assets`` that differ from the ones last emitted (e.g. once the
        registry grew: a new twin changes its assets' ``twins_total``)."""
        return self._emit(state, list(assets), time)

    def _emit(self, state: RollupState, assets: list[str], time: datetime) -> list[AssetRollup]:
        out = []
        for asset in assets:
            counts = state.counts.get(asset, [0] * len(SEVERITIES))
            worst = state.worst.get(asset)
            sig = (tuple(counts), worst, len(self.members[asset]))
            if state.emitted.get(asset) == sig:
                continue
            state.emitted[asset] = sig
            entry = self.registry.get(asset)
            out.append(
                AssetRollup(
                    asset_id=asset,
                    asset_type=entry.type,
                    time=time,
                    twins_total=len(self.members[asset]),
                    twins_in_alarm=sum(counts),
                    in_alarm_by_severity={
                        s.value: n for s, n in zip(SEVERITIES, counts, strict=True)
                    },
                    worst_health=None if worst is None else worst[0],
                    worst_twin=None if worst is None else worst[1],
                )
            )
        return out
