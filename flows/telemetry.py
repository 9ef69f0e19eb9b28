"""The telemetry flow: frames in; twin state, window features, alerts and commands out.

:func:`build_flow` composes named sub-flows, each a Bytewax operator made of steps, so that
a step id reads ``<flow id>.<sub-flow>.<step>`` (``twinflow-run.analytics.anomaly``) in
Bytewax's metrics and in its dataflow diagram (``bytewax.visualize.to_mermaid(flow)``)::

    ingest        [input*] sources -> [decode_validate] -> [residuals] -> [key_by_twin]
                        | frames, keyed by twin                 (refused inputs: dead letters)
    requests      [requests_*] command requests and desired-property changes from outside
                        | desired changes, requests             (refused ones: dead letters)
    twin_state    [update] reported and desired state, per twin
    analytics     [samples] raw-sample T²/SPE score per twin (the ``anomaly_sample`` signal)
                  [sample_alarms] alarm ``anomaly_sample``: the score above its limit for seconds
                  [windows] event-time windows: statistics + FFT    (late: dead letters);
                            and per reading: limits on raw signals, range, stuck, spikes
                  [anomaly] window model per twin (warm-up, calibrated threshold)
                  [rul] remaining useful life from the health indicator's trend
                  [alarms] rules, hysteresis, diagnosis
    health        [stamp] twin states carry the twin's newest RUL estimate (from its windows)
    rollups       per asset: twins in alarm, worst health (with a registry and its sink)
    commands      [policy] derate on overheating, rate-limited per twin
                  [command_book] <- policy commands, requests, twin states and the actuators'
                  outcomes [command_feedback]: checks, lifecycle, time-outs, and
                  after a resume the open commands to send again
                  [transitions_only] the lifecycle rows, without what is sent again
                  [queued_only] queued and sent-again commands of twins with an actuator route
    dead_letters  refused inputs and late readings, merged
    outputs       each stream to its sinks: [telemetry_out] (with the sample scores)
                  [twin_states_out] [windows_out] [alerts_out] [rollups_out] [commands_out]
                  [actuators_out] [dead_letters_out]

``requests`` and ``rollups`` are there only when configured. This module only wires: the
steps' adapters are in :mod:`twinflow.flows.steps` (and ``anomaly_steps``,
``command_steps``), their logic in ``operators/`` and ``models/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from bytewax.operators import KeyedStream
from bytewax.outputs import Sink

from twinflow.core.records import (
    Alert,
    AssetRollup,
    Command,
    DeadLetter,
    DesiredChange,
    Frame,
    TwinState,
    WindowFeatures,
)
from twinflow.flows.anomaly_steps import AnomalyStep, SampleAlarmStep, SampleAnomalyStep
from twinflow.flows.command_steps import (
    CommandBookStep,
    PolicyStep,
    everyone,
    send_commands,
    to_actuators,
    transition_of,
)
from twinflow.flows.config import FlowConfig
from twinflow.flows.decide_steps import Decide, decide_flow
from twinflow.flows.metrics import RunStats
from twinflow.flows.replication import Replication, replicate, replicated_telemetry
from twinflow.flows.rollups import fleet_rollups, rollup_stream
from twinflow.flows.steps import (
    AlarmStep,
    CheckStep,
    ResidualStep,
    RulStep,
    Tally,
    TwinStateStep,
    TwinTypes,
    TypeOf,
    Windowed,
    WindowStep,
    asset_of,
    is_alert,
    is_dead_letter,
    is_desired,
    key_of,
    residuals,
    stamp_health,
)
from twinflow.operators.anomaly_profile import anomaly_of
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.registry import TwinRegistry

Sinks = Sink[Any] | Sequence[Sink[Any]] | None
Sources = Sequence[Source[Any]]


@dataclass(frozen=True)
class FlowOutputs:
    """Where each stream of the flow goes: a sink, several, or ``None`` to leave it unwritten.

    Every sink but ``actuators`` receives ``(twin_id, item)`` pairs (dead letters are keyed by
    twin id, or by their source when the twin is unknown; roll-ups by asset id);
    ``actuators`` receives bare :class:`Command` items (a fixed-partitioned actuator sink:
    ``(twin_id, command)`` pairs, see :func:`~twinflow.flows.command_steps.send_commands`).
    """

    dead_letters: Sinks
    alerts: Sinks
    commands: Sinks
    windows: Sinks = None
    twin_states: Sinks = None
    telemetry: Sinks = None
    actuators: Sinks = None
    rollups: Sinks = None


@dataclass(frozen=True)
class Ingested:
    """Out of ``ingest``: accepted frames keyed by twin, and the refused inputs."""

    frames: KeyedStream[Frame]
    refused: Stream[DeadLetter]


@operator
def ingest(
    step_id: str,
    flow: Dataflow,
    sources: Sources,
    check: CheckStep,
    residuals: ResidualStep = residuals,
) -> Ingested:
    """Read the sources; decode, validate and count each input; add the physics residuals."""
    inputs = [
        op.input("input" if len(sources) == 1 else f"input_{i}", flow, src)
        for i, src in enumerate(sources)
    ]
    raw = inputs[0] if len(inputs) == 1 else op.merge("merge_inputs", *inputs)
    split = op.branch(
        "split_dead_letters", op.flat_map("decode_validate", raw, check), is_dead_letter
    )
    frames = op.flat_map_batch("residuals", cast(Stream[Frame], split.falses), residuals.batch)
    return Ingested(op.key_on("key_by_twin", frames, key_of), split.trues)


@dataclass(frozen=True)
class Requests:
    """Out of ``requests``: every request and its desired changes keyed by twin; refusals."""

    incoming: KeyedStream[Command | DesiredChange]
    desired: KeyedStream[DesiredChange]
    refused: Stream[DeadLetter]


@operator
def command_requests(step_id: str, flow: Dataflow, sources: Sources) -> Requests:
    """Read command requests and desired-property changes (or connectors' dead letters)."""
    inputs = [op.input(f"requests_{i}", flow, src) for i, src in enumerate(sources)]
    raw = inputs[0] if len(inputs) == 1 else op.merge("merge_requests", *inputs)
    split = op.branch("split_request_dead_letters", raw, is_dead_letter)
    incoming = op.key_on(
        "key_requests", cast(Stream[Command | DesiredChange], split.falses), key_of
    )
    desired = op.filter("desired_only", incoming, is_desired)
    return Requests(incoming, cast(KeyedStream[DesiredChange], desired), split.trues)


@operator
def twin_state(
    step_id: str,
    frames: KeyedStream[Frame],
    *desired: KeyedStream[DesiredChange],
    update: TwinStateStep,
) -> KeyedStream[TwinState]:
    """Each twin's reported and desired state, from its frames and desired changes."""
    state_in = op.merge("frames_and_desired", frames, *desired) if desired else frames
    return op.stateful_flat_map("update", state_in, update)


@dataclass(frozen=True)
class Analysed:
    """Out of ``analytics``: scored frames, windows and alerts keyed by twin; late readings."""

    scored: KeyedStream[Frame]
    windows: KeyedStream[WindowFeatures]
    alerts: KeyedStream[Alert]
    late: Stream[DeadLetter]


@operator
def analytics(
    step_id: str,
    frames: KeyedStream[Frame],
    config: FlowConfig,
    types: TwinTypes,
    tally: Tally,
    type_of: TypeOf | None = None,
) -> Analysed:
    """Raw-sample scores; windows and their features; anomaly score, RUL and alarm rules."""
    type_of = type_of or TypeOf(types)
    sample_alerts: list[KeyedStream[Alert]] = []
    if config.sample_anomaly or _types_score_samples(type_of):
        frames = op.stateful_map("samples", frames, SampleAnomalyStep.from_config(config, type_of))
        alarm = SampleAlarmStep.from_config(config)
        sample_alerts.append(op.stateful_flat_map("sample_alarms", frames, alarm))
    windowed = windows_by_batch("windows", frames, WindowStep(config, types, type_of))
    judged = op.branch("split_reading_alerts", op.key_rm("unkey_windows", windowed), is_alert)
    per_reading = op.key_on("key_reading_alerts", judged.trues, key_of)
    split = op.branch("split_late", judged.falses, is_dead_letter)
    late = op.map("count_late", split.trues, tally.late)
    windows = op.key_on("key_windows", cast(Stream[WindowFeatures], split.falses), key_of)
    scored = op.stateful_map("anomaly", windows, AnomalyStep.from_config(config, type_of))
    with_rul = op.stateful_map("rul", scored, RulStep(type_of))
    op.inspect("count_windows", with_rul, tally.window)
    alerts = op.stateful_flat_map("alarms", with_rul, AlarmStep(type_of, per_reading=True))
    alerts = op.merge("window_and_reading_alerts", alerts, per_reading, *sample_alerts)
    op.inspect("count_alerts", alerts, tally.alert)
    return Analysed(frames, with_rul, alerts, late)


@operator
def windows_by_batch(
    step_id: str, frames: KeyedStream[Frame], builder: WindowStep
) -> KeyedStream[Windowed]:
    """``windows``: each twin's frames of a batch given to its logic at once, under the step
    ids ``op.stateful`` gave it (its inner ``stateful_batch``), so that recovery snapshots
    taken before resume."""
    return op.stateful_batch("stateful_batch", frames, builder)


@operator
def twin_health(
    step_id: str, states: KeyedStream[TwinState], windows: KeyedStream[WindowFeatures]
) -> KeyedStream[TwinState]:
    """Twin states as written out: each with the twin's newest RUL estimate and interval."""
    both = op.merge("states_and_windows", states, windows)
    return op.stateful_flat_map("stamp", both, stamp_health)


def _types_score_samples(type_of: TypeOf) -> bool:
    """Whether some type turns raw-sample scoring on in its ``anomaly:`` section."""
    kinds = (*type_of.catalog.values(), *(type_of.types or {}).values())
    return any(anomaly_of(k).samples for k in kinds)


@dataclass(frozen=True)
class Commanded:
    """Out of ``commands``: every lifecycle transition keyed by twin; those to send."""

    transitions: KeyedStream[Command]
    queued: Stream[Command]


@operator
def command_loop(
    step_id: str,
    flow: Dataflow,
    alerts: KeyedStream[Alert],
    states: KeyedStream[TwinState],
    *requests: KeyedStream[Command | DesiredChange],
    feedback: Source[Any] | None,
    book: CommandBookStep,
    policy: PolicyStep,
    tally: Tally,
) -> Commanded:
    """Alerts to commands, and every command's lifecycle (see :class:`CommandBookStep`)."""
    book_in: list[Stream[Any]] = [op.stateful_flat_map("policy", alerts, policy), states]
    book_in.extend(requests)
    if feedback is not None:
        outcomes = op.input("command_feedback", flow, feedback)
        book_in.append(op.key_on("key_outcomes", outcomes, key_of))
    booked = op.stateful("command_book", op.merge("command_book_in", *book_in), book)
    commands = op.filter_map_value("transitions_only", booked, transition_of)
    op.inspect("count_commands", commands, tally.command)
    queued = op.filter_map(
        "queued_only", op.key_rm("unkey_commands", booked), to_actuators(book.routed)
    )
    return Commanded(commands, queued)


@operator
def write_outputs(
    step_id: str,
    telemetry: KeyedStream[Frame],
    states: KeyedStream[TwinState],
    windows: KeyedStream[WindowFeatures],
    alerts: KeyedStream[Alert],
    commands: KeyedStream[Command],
    queued: Stream[Command],
    dead_letters: Stream[DeadLetter],
    *rollups: Stream[AssetRollup],
    sinks: FlowOutputs,
    write_telemetry: bool,
) -> None:
    """Each stream to its sinks (``rollups``: none, or the streams of roll-ups, merged)."""
    if write_telemetry:
        _output("telemetry_out", telemetry, sinks.telemetry)
    _output("twin_states_out", states, sinks.twin_states)
    _output("windows_out", windows, sinks.windows)
    _output("alerts_out", alerts, sinks.alerts)
    if rollups:  # a central instance's roll-ups across sites join the site's own
        rolled = rollups[0] if len(rollups) == 1 else op.merge("merge_rollups", *rollups)
        _output("rollups_out", op.key_on("key_rollups", rolled, asset_of), sinks.rollups)
    _output("commands_out", commands, sinks.commands)
    send_commands("actuators_out", queued, sinks.actuators)
    _output(
        "dead_letters_out", op.key_on("key_dead_letters", dead_letters, key_of), sinks.dead_letters
    )


def build_flow(
    source: Source[Any] | Sources,
    outputs: FlowOutputs,
    config: FlowConfig,
    *,
    clock: Callable[[], float] = time.time,
    twins: Mapping[str, str] | None = None,
    stats: RunStats | None = None,
    twin_types: Mapping[str, TwinType] | None = None,
    flow_id: str = "twinflow-telemetry",
    requests: Sources = (),
    feedback: Source[Any] | None = None,
    routed: Callable[[str], bool] | None = None,
    registry: TwinRegistry | None = None,
    catalog: Mapping[str, TwinType] | None = None,
    bindings: Mapping[str, str] | None = None,
    decide: Decide | None = None,
    replication: Replication | None = None,
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
    With a ``registry`` and an ``outputs.rollups`` sink, assets get roll-ups. ``catalog``
    holds the twin types by name (default: the bundled ones; a deployment's
    :attr:`~twinflow.flows.deployment.Deployment.types` adds its own). ``bindings`` maps a
    twin id to the protocol of its binding: its telemetry from any other source is a dead
    letter ("twin bound to opcua"); twins it does not name, and every twin without it (the
    demo, replays), are accepted from any source. ``decide`` answers what-if requests from
    the twins' live state and re-plans maintenance (:mod:`twinflow.flows.decide_steps`).
    With ``replication``, the flow is also an edge or a central instance of replicated twins
    (:mod:`twinflow.flows.replication`).
    """
    catalog = CATALOG if catalog is None else catalog
    stats = stats if stats is not None else RunStats()
    stats.declare_commands(a.name for t in catalog.values() for a in t.actuators)
    tally = Tally(stats, clock)
    flow = Dataflow(flow_id)
    sources = list(source) if isinstance(source, Sequence) else [source]
    check = CheckStep.create(config, twins, clock, stats, catalog, bindings)
    type_of = TypeOf(twin_types, catalog)
    ingested = ingest("ingest", flow, sources, check, ResidualStep(type_of))
    asked = [command_requests("requests", flow, list(requests))] if requests else []
    states = twin_state(
        "twin_state",
        ingested.frames,
        *(r.desired for r in asked),
        update=TwinStateStep(config, twin_types),
    )
    analysed = analytics("analytics", ingested.frames, config, twin_types, tally, type_of)
    rollups: list[Stream[AssetRollup]] = []
    if registry is not None and outputs.rollups is not None:
        rollups.append(rollup_stream(analysed.alerts, analysed.windows, registry, "rollups"))
    asked = decide_flow(
        asked, ingested.frames, analysed.windows, decide,
        config=config, catalog=catalog, twin_types=twin_types, clock=clock,
    )  # fmt: skip
    routed = routed if routed is not None else everyone
    book = CommandBookStep(config, clock, twin_types, routed, catalog)
    commands = command_loop(
        "commands",
        flow,
        analysed.alerts,
        states,
        *(r.incoming for r in asked),
        feedback=feedback,
        book=book,
        policy=PolicyStep.from_config(config, type_of),
        tally=tally,
    )
    scored: KeyedStream[Frame] = analysed.scored
    if replication is not None:  # states written out carry their sync status
        states = replicate(
            "replication",
            flow,
            states,
            analysed.windows,
            analysed.alerts,
            commands.transitions,
            *(r.desired for r in asked),
            replication=replication,
            telemetry=ingested.frames,
        )
        if replication.node.role == "central":
            rollups.append(fleet_rollups("fleet", flow, replication))
            received = replicated_telemetry("replicated_telemetry", flow, replication)
            scored = op.merge("merge_telemetry", scored, received)
    dead = op.merge("dead_letters", ingested.refused, *(r.refused for r in asked), analysed.late)
    write_outputs(
        "outputs",
        scored,
        twin_health("health", states, analysed.windows),
        analysed.windows,
        analysed.alerts,
        commands.transitions,
        commands.queued,
        dead,
        *rollups,
        sinks=outputs,
        write_telemetry=config.write_telemetry,
    )
    return flow


def _output(step_id: str, stream: Stream[Any], sinks: Sinks) -> None:
    """Write a stream to each of its sinks (step ids get a suffix when there are several)."""
    if sinks is None:
        return
    many = list(sinks) if isinstance(sinks, Sequence) else [sinks]
    for i, sink in enumerate(many):
        op.output(step_id if len(many) == 1 else f"{step_id}_{i}", stream, sink)
