"""The step adapters of the telemetry flow: what each Bytewax step calls, in one place.

Bytewax's operators take plain callables: ``flat_map`` a function of one item,
``stateful_map``/``stateful_flat_map`` a ``(state, item) -> (state, output)`` mapper where
``state`` is ``None`` for a key's first item, ``stateful`` a builder of a
:class:`~bytewax.operators.StatefulLogic`, ``inspect`` a ``(step_id, item)`` callback. The
adapters below fit the operators and models to those shapes and take their settings from a
:class:`~twinflow.flows.config.FlowConfig`; the logic itself lives in ``operators/`` and
``models/``. Everything here but the two ``StatefulLogic`` classes runs without Bytewax.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeGuard

from bytewax.operators import StatefulLogic

from twinflow.core.records import (
    Alert,
    AssetRollup,
    Command,
    CommandOutcome,
    CommandStatus,
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
from twinflow.models.anomaly import WindowAnomalyDetector
from twinflow.models.spc import SpcDetector
from twinflow.operators.anomaly_profile import anomaly_of, operating_signals
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.command_book import CommandBook, CommandSettings
from twinflow.operators.health import HealthTracker
from twinflow.operators.pipeline import check_item, deployed_type
from twinflow.operators.policy import CommandPolicy, check_reactions
from twinflow.operators.residuals import add_residuals
from twinflow.operators.rollups import RollupOperator
from twinflow.operators.rules import DRIVER_PREFIX, SHARE_PREFIX, AlarmTracker
from twinflow.operators.sample_alarm import SampleAlarm
from twinflow.operators.sample_anomaly import (
    RESOLUTION,
    SAMPLE_PREFIX,
    SAMPLE_SIGNAL,
    SampleScorer,
    SampleSettings,
)
from twinflow.operators.twin_state import TwinStateTracker
from twinflow.operators.validate import Validator
from twinflow.operators.windows import WindowAggregator

#: Deployed twin types by twin id (``None``: every twin has its catalogue type).
TwinTypes = Mapping[str, TwinType] | None

#: Items the ``command_book`` step takes, all keyed by twin.
BookItem = Command | DesiredChange | CommandOutcome | TwinState

#: Facts that roll-ups take.
RollupFact = Alert | WindowFeatures

#: Wall-clock seconds between time-out checks while a twin has open commands.
TICK_S = 1.0


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
    """``residuals`` (map): the physics-derived signals of scalar telemetry (the type's
    ``physics:`` models)."""

    type_of: TypeOf = field(default_factory=TypeOf)

    def __call__(self, frame: Frame) -> Frame:
        if not isinstance(frame, TelemetryFrame):
            return frame
        kind = self.type_of(frame.twin_id, frame.twin_type)
        return add_residuals(frame, kind) if kind is not None else frame


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


class WindowLogic(StatefulLogic[Frame, WindowFeatures | DeadLetter, WindowAggregator | None]):
    """``windows`` (stateful): a twin's :class:`WindowAggregator`, built from its first frame.

    While a twin is silent, its watermark moves on with wall time (as Bytewax's event clock
    does): every ``config.idle_flush_s`` seconds the windows that would have closed by now
    are closed. At end of input every open window is closed.
    """

    def __init__(
        self, config: FlowConfig, agg: WindowAggregator | None = None, types: TwinTypes = None
    ) -> None:
        self.config = config
        self.agg = agg
        self.types = types
        self.last_seen: float | None = None

    def on_item(self, value: Frame) -> tuple[Iterable[WindowFeatures | DeadLetter], bool]:
        if self.agg is None:
            self.agg = new_window_aggregator(value, self.config, self.types)
        features, dead = self.agg.add(value)
        self.last_seen = time.monotonic()
        return [*features, *dead], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[WindowFeatures | DeadLetter], bool]:
        if self.agg is None or self.last_seen is None:
            return [], StatefulLogic.RETAIN
        idle = time.monotonic() - self.last_seen
        out = self.agg.advance(self.agg.watermark + idle)
        if not self.agg.open_windows:
            self.last_seen = None
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[WindowFeatures | DeadLetter], bool]:
        self.last_seen = None
        return (self.agg.flush() if self.agg is not None else []), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.last_seen is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.config.idle_flush_s)

    def snapshot(self) -> WindowAggregator | None:
        return copy.deepcopy(self.agg)


@dataclass(frozen=True)
class WindowStep:
    """The builder ``windows`` (stateful) calls with a twin's resumed state, if any."""

    config: FlowConfig
    types: TwinTypes = None

    def __call__(self, resume: WindowAggregator | None) -> WindowLogic:
        return WindowLogic(self.config, resume, self.types)


@dataclass(frozen=True)
class SampleAnomalyStep:
    """``samples`` (stateful_map): score each raw sample of a frame with the twin's sample
    model, adding the ``anomaly_sample`` signal (see :mod:`twinflow.operators.sample_anomaly`)."""

    settings: SampleSettings = field(default_factory=SampleSettings)
    type_of: TypeOf = field(default_factory=TypeOf)

    @classmethod
    def from_config(cls, config: FlowConfig, type_of: TypeOf | None = None) -> SampleAnomalyStep:
        settings = SampleSettings(
            enabled=config.sample_anomaly,
            warmup=config.sample_warmup,
            warmup_s=config.sample_warmup_s,
            quantile=config.sample_quantile,
            margin=config.sample_margin,
            smooth=config.sample_smooth,
            hold=config.sample_hold,
            half_life=config.sample_half_life,
            adapt=config.anomaly_adapt,
            seed=config.seed,
        )
        return cls(settings, type_of or TypeOf())

    def __call__(
        self, scorer: SampleScorer | None, frame: Frame
    ) -> tuple[SampleScorer | None, Frame]:
        if not isinstance(frame, TelemetryFrame):
            return scorer, frame
        if scorer is None:
            kind = self.type_of(frame.twin_id, frame.twin_type)
            if kind is None:
                return None, frame
            scorer = SampleScorer(kind, frame, self.settings)
        return scorer, scorer.score(frame)


@dataclass(frozen=True)
class SampleAlarmStep:
    """``sample_alarms`` (stateful_flat_map): each twin's raw-sample anomaly alarm, raised
    and cleared in seconds from its ``anomaly_sample`` scores (see
    :mod:`twinflow.operators.sample_alarm`)."""

    raise_s: float = 10.0
    clear_s: float = 120.0
    settle_s: float = 60.0

    def __call__(
        self, alarm: SampleAlarm | None, frame: Frame
    ) -> tuple[SampleAlarm | None, list[Alert]]:
        if not isinstance(frame, TelemetryFrame) or SAMPLE_SIGNAL not in frame.signals:
            return alarm, []
        if alarm is None:
            alarm = SampleAlarm(self.raise_s, self.clear_s, self.settle_s)
        return alarm, alarm.update(frame)


class WindowModel(Protocol):
    """One twin's window-level model: a :class:`WindowAnomalyDetector` or an
    :class:`SpcDetector` (one named type, so Bytewax's ``stateful_map`` types check)."""

    @property
    def warm(self) -> bool: ...

    def explain(self, x: Mapping[str, float], top: int = 3) -> dict[str, float]: ...


#: A window's mean sample score above this is an anomalous window.
SAMPLE_MEAN = SAMPLE_SIGNAL + ".mean"


def _floor(kind: TwinType | None, signal: str) -> float:
    """The least spread of a signal's window mean: a share of its declared range (0 for a
    derived signal)."""
    if kind is None or signal not in kind.signal_names:
        return 0.0
    spec = kind.signal(signal)
    return RESOLUTION * (spec.high - spec.low)


def _window_inputs(features: Mapping[str, float]) -> dict[str, float]:
    """The features a window model learns from: all but the sample model's."""
    return {k: v for k, v in features.items() if not k.startswith(SAMPLE_PREFIX)}


@dataclass(frozen=True)
class AnomalyStep:
    """``anomaly`` (stateful_map): score each window with the twin's window model, then
    learn; a window whose mean raw-sample score passes 1 is anomalous too. An anomalous
    window names what drives it: the window model's deviating features
    (``anomaly.z.<feature>``) and the sample model's signals (``anomaly.share.<signal>``)."""

    warmup: int
    quantile: float
    margin: float
    seed: int
    learn_below: float = 0.9
    min_std: float = 0.01
    rel_std: float = 0.01
    max_features: int = 128
    type_of: TypeOf = field(default_factory=TypeOf)
    detector: str = "spc"
    adapt: bool = True

    @classmethod
    def from_config(cls, config: FlowConfig, type_of: TypeOf | None = None) -> AnomalyStep:
        return cls(
            config.anomaly_warmup,
            config.anomaly_quantile,
            config.anomaly_margin,
            config.seed,
            config.anomaly_learn_below,
            config.anomaly_min_std,
            config.anomaly_rel_std,
            config.anomaly_max_features,
            type_of or TypeOf(),
            config.anomaly_detector,
            config.anomaly_adapt,
        )

    def new_model(self, w: WindowFeatures, x: Mapping[str, float]) -> WindowModel:
        """The twin's window model: the type's ``anomaly.detector``, else the flow's."""
        kind = self.type_of(w.twin_id, w.twin_type)
        a = anomaly_of(kind) if kind is not None else None
        adapt = self.adapt if a is None or a.adapt is None else a.adapt
        choice = (a.detector if a is not None else None) or self.detector
        if choice == "spc":
            settings = operating_signals(kind) if kind is not None else ()
            means = sorted(k for k in x if k.endswith(".mean"))
            operating = [k for k in means if k.removesuffix(".mean") in settings]
            if len(means) > len(operating):
                cols = [*operating, *(k for k in means if k not in operating)]
                return SpcDetector(
                    means,
                    operating=operating,
                    warmup=max(self.warmup, 8),
                    quantile=self.quantile,
                    margin=self.margin,
                    adapt=adapt,
                    hold=1,
                    refit_every=6,
                    relearn=1,
                    floors=[_floor(kind, k.removesuffix(".mean")) for k in cols],
                    seed=self.seed,
                )
        return WindowAnomalyDetector(
            warmup=self.warmup,
            quantile=self.quantile,
            margin=self.margin,
            seed=self.seed,
            learn_below=self.learn_below if adapt else 0.0,
            min_std=self.min_std,
            rel_std=self.rel_std,
            max_features=self.max_features,
        )

    def __call__(
        self, model: WindowModel | None, w: WindowFeatures
    ) -> tuple[WindowModel, WindowFeatures]:
        x = _window_inputs(w.features)
        if model is None:
            model = self.new_model(w, x)
        if isinstance(model, SpcDetector):
            judged = model.learn_one(x, w.end.timestamp())  # NaN: warm-up, new point
            score: float | None = judged if math.isfinite(judged) else None
            threshold: float | None = 1.0 if model.warm else None
        elif isinstance(model, WindowAnomalyDetector):
            score, threshold = model.score_one(x), model.threshold
        else:
            raise TypeError(f"anomaly: unknown window model {type(model).__name__}")
        sampled = w.features.get(SAMPLE_MEAN)
        if sampled is not None and math.isfinite(sampled):
            if threshold is None or score is None or not math.isfinite(score):
                score, threshold = sampled, 1.0
            else:
                score = max(score, sampled * threshold)
        out = replace(w, anomaly_score=score, anomaly_threshold=threshold)
        if out.is_anomalous:  # name what drives it
            drivers = {DRIVER_PREFIX + k: v for k, v in model.explain(x).items()}
            drivers.update(_sample_drivers(w.features))
            out = replace(out, features={**w.features, **drivers})
        if isinstance(model, WindowAnomalyDetector):
            model.learn_one(x)
        return model, out


def _sample_drivers(features: Mapping[str, float], top: int = 3) -> dict[str, float]:
    """The signals with the largest mean share of the sample model's score in a window."""
    shares = {
        k.removeprefix(SAMPLE_PREFIX).removesuffix(".mean"): v
        for k, v in features.items()
        if k.startswith(SAMPLE_PREFIX)
        and k.endswith(".mean")
        and k != SAMPLE_MEAN
        and math.isfinite(v)
    }
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])[:top]
    return {SHARE_PREFIX + k: round(v, 3) for k, v in ranked}


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

    def __call__(
        self, tracker: AlarmTracker | None, w: WindowFeatures
    ) -> tuple[AlarmTracker, list[Alert]]:
        if tracker is None:
            tracker = AlarmTracker(w.twin_id, w.twin_type)
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


@dataclass(frozen=True)
class PolicyStep:
    """``policy`` (stateful_flat_map): turn alerts into rate-limited commands."""

    min_interval_s: float
    derate_fraction: float
    ttl_s: float
    type_of: TypeOf = field(default_factory=TypeOf)

    @classmethod
    def from_config(cls, config: FlowConfig, type_of: TypeOf | None = None) -> PolicyStep:
        """The step with the flow's settings; every type's reactions are checked here, so a
        bad profile reaction fails at start-up."""
        type_of = type_of or TypeOf()
        for kind in (*type_of.catalog.values(), *(type_of.types or {}).values()):
            check_reactions(kind, config.derate_fraction)
        return cls(config.command_interval_s, config.derate_fraction, config.command_ttl_s, type_of)

    def __call__(
        self, policy: CommandPolicy | None, alert: Alert
    ) -> tuple[CommandPolicy, list[Command]]:
        if policy is None:
            policy = CommandPolicy(
                min_interval_s=self.min_interval_s,
                derate_fraction=self.derate_fraction,
                ttl_s=self.ttl_s,
            )
        return policy, policy.decide(alert, self.type_of(alert.twin_id, alert.twin_type))


def command_settings(config: FlowConfig, routed: bool = True) -> CommandSettings:
    """The command book's settings from the flow config."""
    return CommandSettings(
        timeout_s=config.command_timeout_s,
        rate_limit=config.command_rate_limit,
        rate_window_s=config.command_rate_window_s,
        routed=routed,
    )


class CommandBookLogic(StatefulLogic[BookItem, Command, CommandBook | None]):
    """``command_book`` (stateful): one twin's :class:`CommandBook`, built from its first
    typed item, with state snapshots for recovery and a wake-up so time-outs fire while a
    twin is quiet."""

    def __init__(
        self,
        book: CommandBook | None,
        config: FlowConfig,
        clock: Callable[[], float],
        twin_types: TwinTypes,
        routed: Callable[[str], bool],
        catalog: Mapping[str, TwinType] = CATALOG,
    ) -> None:
        self.book = book
        self.config = config
        self.clock = clock
        self.twin_types = twin_types
        self.routed = routed
        self.catalog = catalog

    def _book_for(self, item: BookItem) -> CommandBook | None:
        if self.book is None:
            kind = getattr(item, "twin_type", None)
            twin = item.twin_id
            ttype = (self.twin_types or {}).get(twin) or self.catalog.get(kind or "")
            if ttype is None:
                return None
            self.book = CommandBook(ttype, command_settings(self.config, self.routed(twin)))
        return self.book

    def on_item(self, value: BookItem) -> tuple[Iterable[Command], bool]:
        book = self._book_for(value)
        if book is None:  # an outcome before anything else of this twin: nothing to follow
            return [], StatefulLogic.RETAIN
        now = self.clock()
        if isinstance(value, Command):
            out = book.submit(value, now)
        elif isinstance(value, DesiredChange):
            out = book.desire(value, now)
        elif isinstance(value, CommandOutcome):
            out = book.outcome(value, now)
        elif isinstance(value, TwinState):
            out = book.observe(value, now)
        else:
            raise TypeError(f"command_book got a {type(value).__name__}")
        deadline = book.next_deadline()
        if deadline is not None and deadline <= now:
            out = [*out, *book.tick(now)]
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Command], bool]:
        return (self.book.tick(self.clock()) if self.book else []), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.book is None or self.book.next_deadline() is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=TICK_S)

    def snapshot(self) -> CommandBook | None:
        return copy.deepcopy(self.book)


@dataclass(frozen=True)
class CommandBookStep:
    """The builder ``command_book`` (stateful) calls with a twin's resumed book, if any."""

    config: FlowConfig
    clock: Callable[[], float]
    twin_types: TwinTypes
    routed: Callable[[str], bool]
    catalog: Mapping[str, TwinType] = field(default_factory=lambda: CATALOG)

    def __call__(self, resume: CommandBook | None) -> CommandBookLogic:
        return CommandBookLogic(
            resume, self.config, self.clock, self.twin_types, self.routed, self.catalog
        )


def to_actuators(routed: Callable[[str], bool]) -> Callable[[Command], bool]:
    """Which commands the actuators receive: queued ones of twins with an actuator route."""

    def wanted(command: Command) -> bool:
        return command.status is CommandStatus.QUEUED and routed(command.twin_id)

    return wanted


def everyone(_twin_id: str) -> bool:
    """The default actuator route: every twin has one."""
    return True
