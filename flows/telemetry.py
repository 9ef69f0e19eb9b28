"""The telemetry flow: frames in; twin state, window features, alerts and commands out.

Steps (Bytewax step ids in brackets)::

    [input] -> [decode_validate] --dead letters--------------------------------> [dead_letters]
                  | frames
               [residuals] physics: derived signals (power residual, pump efficiency)
                  | keyed by twin
    [requests_*] --desired changes--+  (command requests, desired-property changes, from Kafka)
               [twin_state] reported and desired state -------------------------> [twin_states]
               [windows] event-time windows: statistics + FFT ---late readings--> [dead_letters]
               [anomaly] River model per twin (warm-up, calibrated threshold)
               [rul] remaining useful life from the health indicator's trend --> [windows_out]
               [alarms] rules, hysteresis, diagnosis --------------------------> [alerts]
               [rollups] per asset: twins in alarm, worst health (registry) ----> [rollups]
               [policy] derate on overheating, rate-limited per twin
               [command_book] <- policy commands, requests, twin states, and the actuators'
                  outcomes [command_feedback]: checks, lifecycle, time-outs -----> [commands]
                  | queued, for twins with an actuator route                     [actuators]

The flow only wires steps; their logic lives in ``operators/`` and ``models/``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import Sink

from twinflow.core.records import (
    Alert,
    AssetRollup,
    Command,
    DeadLetter,
    DesiredChange,
    Frame,
    TelemetryFrame,
    TwinState,
    WindowFeatures,
    epoch,
)
from twinflow.flows.commands import CommandBookLogic, to_actuators
from twinflow.flows.config import FlowConfig
from twinflow.flows.metrics import RunStats
from twinflow.flows.rollups import rollup_stream
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.pipeline import (
    AnomalyStep,
    PolicyStep,
    RulStep,
    check_item,
    new_alarm_tracker,
    new_state_tracker,
    new_window_aggregator,
)
from twinflow.operators.registry import TwinRegistry
from twinflow.operators.residuals import add_residuals
from twinflow.operators.validate import Validator
from twinflow.operators.windows import WindowAggregator

Sinks = Sink | Sequence[Sink] | None


@dataclass(frozen=True)
class FlowOutputs:
    """Where each stream of the flow goes: a sink, several, or ``None`` to leave it unwritten.

    Every sink but ``actuators`` receives ``(twin_id, item)`` pairs (dead letters are keyed by
    twin id, or by their source when the twin is unknown); ``actuators`` receives bare
    :class:`Command` items.
    """

    dead_letters: Sinks
    alerts: Sinks
    commands: Sinks
    windows: Sinks = None
    twin_states: Sinks = None
    telemetry: Sinks = None
    actuators: Sinks = None
    rollups: Sinks = None


def _output(step_id: str, stream: Stream[Any], sinks: Sinks) -> None:
    """Write a stream to each of its sinks (step ids get a suffix when there are several)."""
    if sinks is None:
        return
    many = list(sinks) if isinstance(sinks, Sequence) else [sinks]
    for i, sink in enumerate(many):
        op.output(step_id if len(many) == 1 else f"{step_id}_{i}", stream, sink)


class _WindowLogic(StatefulLogic):
    """Bytewax wrapper of a twin's :class:`WindowAggregator`, built from its first frame.

    While a twin is silent, its watermark moves on with wall time (as Bytewax's event clock
    does): every ``config.idle_flush_s`` seconds the windows that would have closed by now
    are closed. At end of input every open window is closed.
    """

    def __init__(
        self,
        config: FlowConfig,
        agg: WindowAggregator | None = None,
        types: Mapping[str, TwinType] | None = None,
    ):
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


def _key(item: Frame | DeadLetter | Alert | Command) -> str:
    twin = getattr(item, "twin_id", None)
    return twin if twin is not None else getattr(item, "source", "unknown")


def build_flow(
    source: Source | Sequence[Source],
    outputs: FlowOutputs,
    config: FlowConfig,
    *,
    clock: Callable[[], float] = time.time,
    twins: Mapping[str, str] | None = None,
    stats: RunStats | None = None,
    twin_types: Mapping[str, TwinType] | None = None,
    flow_id: str = "twinflow-telemetry",
    requests: Sequence[Source] = (),
    feedback: Source | None = None,
    routed: Callable[[str], bool] | None = None,
    registry: TwinRegistry | None = None,
) -> Dataflow:
    """Wire the telemetry flow.

    ``clock`` is the reference clock in epoch seconds that judges "far future/past"
    timestamps, alert lag and command time-outs: wall time for live sources, the
    simulator's clock for the simulated plant. ``twins`` maps known twin ids to their type
    (``None`` accepts any twin of a known type). ``twin_types`` gives a twin's type as
    deployed, e.g. limited to the signals its protocol binding carries, so that state and
    windows expect only those.

    The command loop: ``requests`` are sources of command requests and desired-property
    changes from outside (:class:`Command`, :class:`DesiredChange` or :class:`DeadLetter`
    items), ``feedback`` the source of the actuators' :class:`CommandOutcome` reports, and
    ``routed(twin_id)`` tells whether a twin has an actuator route (default: all do).
    With a ``registry`` and an ``outputs.rollups`` sink, assets get roll-ups.
    """
    routed = routed if routed is not None else _everyone
    stats = stats if stats is not None else RunStats()
    validator = Validator(
        catalog=CATALOG,
        twins=twins,
        max_future_s=config.max_future_s,
        max_past_s=config.max_past_s,
    )
    flow = Dataflow(flow_id)
    sources = list(source) if isinstance(source, Sequence) else [source]
    inputs = [
        op.input("input" if len(sources) == 1 else f"input_{i}", flow, src)
        for i, src in enumerate(sources)
    ]
    raw = inputs[0] if len(inputs) == 1 else op.merge("merge_inputs", *inputs)

    def checked(item: object) -> list[Frame | DeadLetter]:
        out = check_item(item, validator, clock())
        for x in out:
            if isinstance(x, DeadLetter):
                stats.add_dead_letter(x.stage, x.readings)
            else:
                stats.add_readings(x.twin_type, x.readings)
        return out

    split = op.branch(
        "split_dead_letters",
        op.flat_map("decode_validate", raw, checked),
        lambda x: isinstance(x, DeadLetter),
    )
    dead: Stream[DeadLetter] = split.trues
    frames = op.map("residuals", split.falses, _residuals)
    keyed = op.key_on("key_by_twin", frames, _key)

    if config.write_telemetry:
        _output("telemetry_out", keyed, outputs.telemetry)

    incoming: Stream[Any] | None = None
    if requests:
        req_inputs = [op.input(f"requests_{i}", flow, src) for i, src in enumerate(requests)]
        req_all = req_inputs[0] if len(req_inputs) == 1 else op.merge("merge_requests", *req_inputs)
        rsplit = op.branch(
            "split_request_dead_letters", req_all, lambda x: isinstance(x, DeadLetter)
        )
        dead = op.merge("request_dead_letters", dead, rsplit.trues)
        incoming = op.key_on("key_requests", rsplit.falses, _key)
        desired = op.filter("desired_only", incoming, lambda kv: isinstance(kv[1], DesiredChange))
        state_in = op.merge("frames_and_desired", keyed, desired)
    else:
        state_in = keyed

    states = op.stateful_flat_map(
        "twin_state", state_in, lambda s, f: _twin_state(s, f, config, twin_types)
    )
    _output("twin_states_out", states, outputs.twin_states)

    windowed = op.stateful(
        "windows", keyed, lambda resume: _WindowLogic(config, resume, twin_types)
    )
    wsplit = op.branch(
        "split_late", op.key_rm("unkey_windows", windowed), lambda x: isinstance(x, DeadLetter)
    )

    def late(d: DeadLetter) -> DeadLetter:
        stats.add_dead_letter(d.stage, d.readings)
        stats.add_late(d.readings)
        return d

    dead = op.merge("all_dead_letters", dead, op.map("count_late", wsplit.trues, late))

    windows = op.key_on("key_windows", wsplit.falses, _key)
    scored = op.stateful_map("anomaly", windows, AnomalyStep.mapper(config))
    with_rul = op.stateful_map("rul", scored, RulStep.mapper())

    def count_window(kv: tuple[str, WindowFeatures]) -> None:
        stats.add_window()

    op.inspect("count_windows", with_rul, lambda _s, kv: count_window(kv))
    _output("windows_out", with_rul, outputs.windows)

    alerts = op.stateful_flat_map("alarms", with_rul, new_alarm_tracker)

    def count_alert(_step: str, kv: tuple[str, Alert]) -> None:
        a = kv[1]
        stats.add_alert(a.rule, a.state.value, clock() - epoch(a.time))

    op.inspect("count_alerts", alerts, count_alert)
    _output("alerts_out", alerts, outputs.alerts)

    if registry is not None and outputs.rollups is not None:
        rollups = rollup_stream(alerts, with_rul, registry, "rollups")
        _output("rollups_out", op.key_on("key_rollups", rollups, _asset), outputs.rollups)

    decided = op.stateful_flat_map("policy", alerts, PolicyStep.mapper(config))
    book_in = [decided, states]
    if incoming is not None:
        book_in.append(incoming)
    if feedback is not None:
        outcomes = op.input("command_feedback", flow, feedback)
        book_in.append(op.key_on("key_outcomes", outcomes, _key))
    commands = op.stateful(
        "command_book",
        op.merge("command_book_in", *book_in),
        lambda resume: CommandBookLogic(resume, config, clock, twin_types, routed),
    )

    def count_command(_step: str, kv: tuple[str, Command]) -> None:
        stats.add_command(kv[1].name, kv[1].status.value)

    op.inspect("count_commands", commands, count_command)
    _output("commands_out", commands, outputs.commands)
    if outputs.actuators is not None:
        to_send = op.filter(
            "queued_only", op.key_rm("unkey_commands", commands), to_actuators(routed)
        )
        _output("actuators_out", to_send, outputs.actuators)
    _output("dead_letters_out", op.key_on("key_dead_letters", dead, _key), outputs.dead_letters)
    return flow


def _everyone(_twin_id: str) -> bool:
    return True


def _asset(rollup: AssetRollup) -> str:
    return rollup.asset_id


def _residuals(frame: Frame) -> Frame:
    return add_residuals(frame) if isinstance(frame, TelemetryFrame) else frame


def _twin_state(state, frame: Frame, config: FlowConfig, types):  # type: ignore[no-untyped-def]
    tracker = state if state is not None else new_state_tracker(frame, config, types)
    out: list[TwinState] = tracker.update(frame)
    return tracker, out
