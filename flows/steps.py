"""The step adapters of the telemetry flow: what each Bytewax step calls, in one place.

Bytewax's operators take plain callables: ``flat_map`` a function of one item,
``stateful_map``/``stateful_flat_map`` a ``(state, item) -> (state, output)`` mapper where
``state`` is ``None`` for a key's first item, ``stateful_batch`` a builder of a
:class:`~bytewax.operators.StatefulBatchLogic` (given a key's items of one batch at once),
``inspect`` a ``(step_id, item)`` callback. The
adapters below fit the operators and models to those shapes and take their settings from a
:class:`~twinflow.flows.config.FlowConfig`; the logic itself lives in ``operators/`` and
``models/``. The anomaly models' adapters are in :mod:`twinflow.flows.anomaly_steps`, the
command loop's in :mod:`twinflow.flows.command_steps`. Everything here but ``WindowLogic``
runs without Bytewax.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from bytewax.operators import StatefulBatchLogic

from twinflow.core.records import (
    Alert,
    AssetRollup,
    Command,
    DeadLetter,
    DesiredChange,
    Frame,
    RawMessage,
    RulEstimate,
    TelemetryFrame,
    TwinState,
    WindowFeatures,
)
from twinflow.core.times import epoch
from twinflow.flows.config import FlowConfig
from twinflow.flows.metrics import RunStats
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.frames_residuals import add_residuals_batch
from twinflow.operators.health import HealthTracker
from twinflow.operators.pipeline import check_item, deployed_type
from twinflow.operators.reading_rules import ReadingAlarms
from twinflow.operators.reading_rules_run import MIN_RUN
from twinflow.operators.residuals import add_residuals
from twinflow.operators.rollups import RollupOperator
from twinflow.operators.rules import AlarmTracker
from twinflow.operators.twin_state import TwinStateTracker
from twinflow.operators.validate import Validator
from twinflow.operators.windows import WindowAggregator

#: Deployed twin types by twin id (``None``: every twin has its catalogue type).
TwinTypes = Mapping[str, TwinType] | None

#: Facts that roll-ups take.
RollupFact = Alert | WindowFeatures


def key_of(item: object) -> str:
    """An item's key: its twin id, else its source (a dead letter of an unknown twin)."""
    twin = getattr(item, "twin_id", None)
    return twin if twin is not None else getattr(item, "source", "unknown")


def unkey(item: tuple[str, RollupFact] | RollupFact) -> RollupFact:
    """``unkey_*`` (roll-ups): ``(key, value)`` -> ``value``; a bare item passes as is."""
    return item[1] if isinstance(item, tuple) else item


def is_dead_letter(item: object) -> TypeGuard[DeadLetter]:
    return isinstance(item, DeadLetter)


def is_desired(kv: tuple[str, Command | DesiredChange]) -> bool:
    """``desired_only``: the requests that change a desired property."""
    return isinstance(kv[1], DesiredChange)


def asset_of(rollup: AssetRollup) -> str:
    """``key_rollups``: roll-ups are keyed by their asset."""
    return rollup.asset_id


@dataclass(frozen=True)
class TypeOf:
    """A twin's type as deployed: ``types[twin_id]``, else ``catalog[type name]``."""

    types: TwinTypes = None
    catalog: Mapping[str, TwinType] = field(default_factory=lambda: CATALOG)

    def __call__(self, twin_id: str, name: str) -> TwinType | None:
        if self.types is not None and twin_id in self.types:
            return self.types[twin_id]
        return self.catalog.get(name)


@dataclass(frozen=True)
class ResidualStep:
    """``residuals`` (flat_map_batch): the physics-derived signals of scalar telemetry (the
    type's ``physics:`` models); :meth:`batch` calls each element-wise model once per batch
    (:mod:`twinflow.operators.frames_residuals`), ``__call__`` scores one frame."""

    type_of: TypeOf = field(default_factory=TypeOf)

    def __call__(self, frame: Frame) -> Frame:
        if not isinstance(frame, TelemetryFrame):
            return frame
        kind = self.type_of(frame.twin_id, frame.twin_type)
        return add_residuals(frame, kind) if kind is not None else frame

    def batch(self, frames: list[Frame]) -> list[Frame]:
        return add_residuals_batch(frames, self.type_of)


#: The residual step for bundled types (tests and benchmarks).
residuals = ResidualStep()


# -- ingest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckStep:
    """``decode_validate`` (flat_map): decode and validate one input, counting what passes."""

    validator: Validator
    clock: Callable[[], float]
    stats: RunStats

    @classmethod
    def create(
        cls,
        config: FlowConfig,
        twins: Mapping[str, str] | None,
        clock: Callable[[], float],
        stats: RunStats,
        catalog: Mapping[str, TwinType] = CATALOG,
        bindings: Mapping[str, str] | None = None,
    ) -> CheckStep:
        """``catalog``: the twin types frames are checked against, by name; ``bindings``:
        the protocol each twin's telemetry must come from, by twin id."""
        validator = Validator(
            catalog=catalog,
            twins=twins,
            max_future_s=config.max_future_s,
            max_past_s=config.max_past_s,
            bindings=bindings,
        )
        return cls(validator, clock, stats)

    def __call__(self, item: object) -> list[Frame | DeadLetter]:
        out = check_item(item, self.validator, self.clock())
        if self.stats.on_decoded is not None and isinstance(item, RawMessage):
            self.stats.on_decoded(out)
        for x in out:
            if isinstance(x, DeadLetter):
                self.stats.add_dead_letter(x.stage, x.readings)
            else:
                self.stats.add_readings(x.twin_type, x.readings)
        return out


# -- twin state -----------------------------------------------------------------------------


def new_state_tracker(
    item: Frame | DesiredChange, config: FlowConfig, types: TwinTypes = None
) -> TwinStateTracker:
    """The state tracker of the twin of ``item``: its first frame, or a desired change that
    arrived before any telemetry (the twin's type comes from the change alike)."""
    return TwinStateTracker(
        item.twin_id,
        deployed_type(item, types),
        stale_factor=config.stale_factor,
        snapshot_interval_s=config.state_snapshot_s,
    )


@dataclass(frozen=True)
class TwinStateStep:
    """``update`` (stateful_flat_map): fold frames and desired changes into the twin state."""

    config: FlowConfig
    types: TwinTypes = None

    def __call__(
        self, tracker: TwinStateTracker | None, item: Frame | DesiredChange
    ) -> tuple[TwinStateTracker, list[TwinState]]:
        if tracker is None:
            tracker = new_state_tracker(item, self.config, self.types)
        return tracker, tracker.update(item)


# -- analytics ------------------------------------------------------------------------------


def judge_readings(
    alarms: ReadingAlarms | None,
    frame: TelemetryFrame,
    type_of: TypeOf,
    closed: Iterable[WindowFeatures] = (),
) -> tuple[ReadingAlarms | None, list[Alert]]:
    """The alerts of a twin's per-reading rules on one frame (sensor faults first at one
    time; :mod:`twinflow.operators.reading_rules`), and its state; the windows the frame
    closed set the spike rule's scale first."""
    kind = type_of(frame.twin_id, frame.twin_type)
    if kind is None:
        return alarms, []
    if alarms is None:
        alarms = ReadingAlarms(frame.twin_id, frame.twin_type)
    for w in closed:
        alarms.learn_window(w.features, kind)
    return alarms, alarms.update(frame, kind)


def judge_batch(
    alarms: ReadingAlarms | None,
    frames: list[tuple[TelemetryFrame, list[WindowFeatures]]],
    type_of: TypeOf,
) -> tuple[ReadingAlarms | None, list[list[Alert]]]:
    """:func:`judge_readings` of a twin's frames of one batch (each with the windows it
    closed), in order: each frame's alerts, with stretches of frames that pass the quick
    check judged at once (:meth:`ReadingAlarms.update_batch`)."""
    out: list[list[Alert]] = []
    if alarms is None and frames:  # the twin's first frame sets its state up
        alarms, alerts = judge_readings(alarms, frames[0][0], type_of, frames[0][1])
        out.append(alerts)
        frames = frames[1:]
    kind = None
    if len(frames) >= MIN_RUN and alarms is not None:
        first = frames[0][0]
        if all(f.twin_type == first.twin_type for f, _ in frames):
            kind = type_of(first.twin_id, first.twin_type)
    if alarms is None or kind is None:  # a few frames, no type: one by one
        for frame, closed in frames:
            alarms, alerts = judge_readings(alarms, frame, type_of, closed)
            out.append(alerts)
        return alarms, out
    windows = [[w.features for w in closed] for _, closed in frames]
    return alarms, out + alarms.update_batch([f for f, _ in frames], kind, windows)


def new_window_aggregator(
    frame: Frame, config: FlowConfig, types: TwinTypes = None
) -> WindowAggregator:
    """The window aggregator of the twin of ``frame``, for its deployed type."""
    return WindowAggregator(
        frame.twin_id,
        deployed_type(frame, types),
        length_s=config.window_s,
        lateness_s=config.lateness_s,
    )


#: What ``windows`` emits: closed windows, late readings, and the per-reading rules' alerts.
Windowed = WindowFeatures | DeadLetter | Alert
#: What ``windows`` keeps per twin: its aggregator and its per-reading rules' state.
WindowState = tuple[WindowAggregator | None, ReadingAlarms | None]


def is_alert(item: object) -> TypeGuard[Alert]:
    return isinstance(item, Alert)


class WindowLogic(StatefulBatchLogic[Frame, Windowed, WindowState]):
    """``windows`` (stateful_batch): a twin's :class:`WindowAggregator`, built from its first
    frame, and its rules that need no window (:class:`ReadingAlarms`: limits on a raw signal,
    range, stuck, spikes), judged on each frame here so that they cost no step of their own.
    The twin's frames of one Bytewax batch are judged together (:func:`judge_batch`): the
    stretches of them that pass the quick check at once, the others one by one.

    While a twin is silent, its watermark moves on with wall time (as Bytewax's event clock
    does): every ``config.idle_flush_s`` seconds the windows that would have closed by now
    are closed. At end of input every open window is closed.
    """

    def __init__(
        self,
        config: FlowConfig,
        agg: WindowAggregator | None = None,
        types: TwinTypes = None,
        alarms: ReadingAlarms | None = None,
        type_of: TypeOf | None = None,
    ) -> None:
        self.config = config
        self.agg = agg
        self.types = types
        self.alarms = alarms
        self.type_of = type_of if type_of is not None else TypeOf(types)
        self.last_seen: float | None = None

    def on_batch(self, values: list[Frame]) -> tuple[Iterable[Windowed], bool]:
        if len(values) == 1:
            return self.on_item(values[0])
        if self.agg is None:
            self.agg = new_window_aggregator(values[0], self.config, self.types)
        added = [(v, *self.agg.add(v)) for v in values]
        self.last_seen = time.monotonic()
        frames = [(v, w) for v, w, _ in added if isinstance(v, TelemetryFrame)]
        self.alarms, alerts = judge_batch(self.alarms, frames, self.type_of)
        out: list[Windowed] = []
        for value, features, dead in added:
            if isinstance(value, TelemetryFrame):
                out.extend(alerts.pop(0))
            out.extend(features)
            out.extend(dead)
        return out, StatefulBatchLogic.RETAIN

    def on_item(self, value: Frame) -> tuple[Iterable[Windowed], bool]:
        """One frame: folded into its windows, then judged."""
        if self.agg is None:
            self.agg = new_window_aggregator(value, self.config, self.types)
        features, dead = self.agg.add(value)
        self.last_seen = time.monotonic()
        if isinstance(value, TelemetryFrame):
            self.alarms, alerts = judge_readings(self.alarms, value, self.type_of, features)
            if alerts:
                return [*alerts, *features, *dead], StatefulBatchLogic.RETAIN
        return [*features, *dead], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Windowed], bool]:
        if self.agg is None or self.last_seen is None:
            return [], StatefulBatchLogic.RETAIN
        idle = time.monotonic() - self.last_seen
        out = self.agg.advance(self.agg.watermark + idle)
        if not self.agg.open_windows:
            self.last_seen = None
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Windowed], bool]:
        self.last_seen = None
        return (self.agg.flush() if self.agg is not None else []), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.last_seen is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.config.idle_flush_s)

    def snapshot(self) -> WindowState:
        return copy.deepcopy((self.agg, self.alarms))


@dataclass(frozen=True)
class WindowStep:
    """The builder ``windows`` (stateful_batch) calls with a twin's resumed state, if any."""

    config: FlowConfig
    types: TwinTypes = None
    type_of: TypeOf | None = None

    def __call__(self, resume: WindowState | WindowAggregator | None) -> WindowLogic:
        agg, alarms = resume if isinstance(resume, tuple) else (resume, None)
        return WindowLogic(self.config, agg, self.types, alarms, self.type_of)


@dataclass(frozen=True)
class RulStep:
    """``rul`` (stateful_map): attach the twin's remaining-useful-life estimate."""

    type_of: TypeOf = field(default_factory=TypeOf)

    def __call__(
        self, tracker: HealthTracker | None, w: WindowFeatures
    ) -> tuple[HealthTracker, WindowFeatures]:
        if tracker is None:
            tracker = HealthTracker(w.twin_id, w.twin_type)
        est = tracker.update(w, self.type_of(w.twin_id, w.twin_type))
        return tracker, (replace(w, rul=est) if est is not None else w)


#: What ``stamp`` keeps per twin: its newest RUL estimate and its newest state.
Stamped = tuple[RulEstimate | None, TwinState | None]


def stamp_health(kept: Stamped | None, item: object) -> tuple[Stamped | None, list[TwinState]]:
    """``stamp`` (stateful_flat_map): a twin's states carry its newest RUL estimate.

    Twin state is computed before the windows are analysed, so the estimate comes from the
    windows downstream. A state is emitted with the newest estimate so far (none until a
    window had one); a window with a new estimate emits the twin's newest state again with
    it (same ``time``, the estimate as of that window), so the last state of a run always
    carries the last estimate, however Bytewax interleaves the two streams.
    """
    latest, state = kept if kept is not None else (None, None)
    if not isinstance(item, TwinState | WindowFeatures):
        return kept, []
    if isinstance(item, WindowFeatures):
        if item.rul is None or item.rul == latest:
            return (latest, state), []
        latest = item.rul
        return (latest, state), ([] if state is None else [replace(state, rul=latest)])
    state = item if item.rul is None else replace(item, rul=None)
    return (latest, state), [item if latest is None else replace(item, rul=latest)]


@dataclass(frozen=True)
class AlarmStep:
    """``alarms`` (stateful_flat_map): evaluate the twin's alarm rules on one window.

    Sensor-fault alerts come first, so the command policy knows a sensor is suspect before
    it weighs an alert of the same window that rests on that sensor.
    """

    type_of: TypeOf = field(default_factory=TypeOf)
    #: Leave the rules that ``reading_rules`` judges to it (the flow does; tests may not).
    per_reading: bool = False

    def __call__(
        self, tracker: AlarmTracker | None, w: WindowFeatures
    ) -> tuple[AlarmTracker, list[Alert]]:
        if tracker is None:
            tracker = AlarmTracker(w.twin_id, w.twin_type, per_reading=self.per_reading)
        alerts = tracker.evaluate(w, self.type_of(w.twin_id, w.twin_type))
        alerts.sort(key=lambda a: a.diagnosis != "sensor_fault")
        return tracker, alerts


#: The RUL and alarm steps for bundled types (tests and benchmarks).
rul_step = RulStep()
alarm_step = AlarmStep()


def has_health(item: RollupFact) -> bool:
    """``with_health`` (roll-ups): a window carrying a RUL estimate."""
    return isinstance(item, WindowFeatures) and item.rul is not None


@dataclass(frozen=True)
class SiteOf:
    """``registered`` and ``key_by_site`` (roll-ups): the site of a fact's twin."""

    rollups: RollupOperator

    def known(self, fact: RollupFact) -> bool:
        return self.rollups.key(fact.twin_id) is not None

    def __call__(self, fact: RollupFact) -> str:
        return self.rollups.key(fact.twin_id) or ""


@dataclass(frozen=True)
class Tally:
    """The counting steps (``count_*``): run statistics and Prometheus metrics."""

    stats: RunStats
    clock: Callable[[], float]

    def late(self, d: DeadLetter) -> DeadLetter:
        self.stats.add_dead_letter(d.stage, d.readings)
        self.stats.add_late(d.readings)
        return d

    def window(self, _step: str, _kv: tuple[str, WindowFeatures]) -> None:
        self.stats.add_window()

    def alert(self, _step: str, kv: tuple[str, Alert]) -> None:
        a = kv[1]
        self.stats.add_alert(a.rule, a.state.value, self.clock() - epoch(a.time))

    def command(self, _step: str, kv: tuple[str, Command]) -> None:
        self.stats.add_command(kv[1].name, kv[1].status.value)


# -- commands -------------------------------------------------------------------------------
