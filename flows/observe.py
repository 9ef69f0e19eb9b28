"""What an operator watches, measured at the flow's edges: latency, lag, alarms, dead letters.

An :class:`Observer` sees the batches the sources emit (through the ``tap`` of
:func:`twinflow.flows.shutdown.stoppable`) and the alerts, commands and dead letters the
outputs write (through :meth:`Observer.outputs`, which wraps the first sink of each of those
streams without changing its step id or its recovery state). From them it keeps:

- the wall-clock latency from a reading's arrival to its alert, and to the command that
  answered the alert (``twinflow_reading_to_alert_seconds{rules}``,
  ``twinflow_reading_to_command_seconds``): the arrival is when the source emitted the first
  frame of the twin whose newest reading reached the alert's time; for the rules judged per
  reading (``rules="reading"``: stuck, spike, range and raw-value rules, and the raw-sample
  anomaly alarm) that is the reading that raised it; for the other rules (``rules="window"``),
  judged when a window closes, it is the frame that closed the window, the first whose
  newest reading reached the window's end plus ``lateness_s``, so the wait for late data is
  not counted as the flow's latency (:meth:`Observer.judge_by`);
- the twins in alarm per twin type (``twinflow_twins_in_alarm``);
- the dead letters by stage and reason kind (``twinflow_dead_letter_reasons_total``);
- the Kafka consumer lag per partition (``twinflow_kafka_consumer_lag``, by :class:`KafkaLag`).

Arrivals are taken where frames first exist: as sources emit them (MQTT, OPC UA, Modbus,
the simulator, recordings), and for Kafka telemetry, which arrives as raw payloads, as the
``decode_validate`` step decodes them (:attr:`RunStats.on_decoded`), just after they were
read.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    Sink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from prometheus_client import Counter, Gauge, Histogram

from twinflow.core.records import Alert, Command, DeadLetter, TelemetryFrame, WaveformFrame
from twinflow.flows.telemetry import FlowOutputs
from twinflow.operators.reading_rules_plan import reading_plan
from twinflow.operators.sample_alarm import RULE as SAMPLE_RULE
from twinflow.operators.twin_type import TwinType

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
    60, 120, 300, 600,
)  # fmt: skip
TO_ALERT = Histogram(
    "twinflow_reading_to_alert_seconds",
    "Wall-clock seconds from the arrival of the reading that raised an alert (rules judged per "
    "reading) or of the frame that closed its window (window rules) to the raised alert being "
    "written",
    ["rules"],
    buckets=_LATENCY_BUCKETS,
)
TO_COMMAND = Histogram(
    "twinflow_reading_to_command_seconds",
    "Wall-clock seconds from the arrival of the reading behind an alert to the command the "
    "policy queued in answer being written",
    buckets=_LATENCY_BUCKETS,
)
SINK_ITEMS = Counter(
    "twinflow_output_items",
    "Items written by each sink of each output stream (sink: the sink's class)",
    ["stream", "sink"],
)
SINK_WRITE = Histogram(
    "twinflow_output_write_seconds",
    "Wall-clock seconds a sink took to write one batch, by output stream and sink",
    ["stream", "sink"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
IN_ALARM = Gauge(
    "twinflow_twins_in_alarm", "Twins with at least one open alarm, by twin type", ["twin_type"]
)
DEAD_LETTER_REASONS = Counter(
    "twinflow_dead_letter_reasons",
    "Dead letters written, by stage and reason kind (the reason with quoted names and numbers "
    "masked; at most 64 kinds per stage, then 'other')",
    ["stage", "reason"],
)

#: Arrivals remembered per twin (frames); enough for a window plus its lateness.
ARRIVALS_PER_TWIN = 256
#: Distinct reason kinds per stage before the rest count as ``other``.
REASON_KINDS = 64

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"[-+]?\d[\d.,:eE+-]*")


def reason_kind(reason: str) -> str:
    """A dead letter's reason with its particulars masked, so that it can be a label.

    >>> reason_kind("twin 'P1' is bound to opcua: telemetry from 'kafka:t' refused")
    "twin '…' is bound to opcua: telemetry from '…' refused"
    >>> reason_kind("value 1e999 of 'speed' out of range at 12:00:01")
    "value N of '…' out of range at N"
    """
    text = _NUMBER.sub("N", _QUOTED.sub("'…'", reason))
    return text[:120]


class Observer:
    """The edge measurements of one run (thread-safe); the Prometheus metrics are process-wide."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._arrivals: dict[str, deque[tuple[float, float]]] = {}
        self._open: dict[tuple[str, str], str] = {}  # (twin, rule) -> twin type
        self._raised_arrival: dict[str, float] = {}
        self._kinds: dict[str, set[str]] = {}
        self._types_seen: set[str] = set()
        self._lateness_s = 0.0
        self._per_reading: Callable[[str, str], bool] = lambda _twin, _rule: False
        IN_ALARM.clear()  # a run starts with no twin in alarm (one run per process)
        self.dead_letter_reasons: dict[tuple[str, str], int] = {}

    def judge_by(self, lateness_s: float, per_reading: Callable[[str, str], bool]) -> None:
        """How alerts are timed: ``per_reading(twin_id, rule)`` says whether a rule is judged
        as readings arrive; any other is a window rule, whose window closes ``lateness_s`` of
        event time after its end. Until this is called every rule counts as a window rule with
        no lateness (the clock starts at the frame that reached the alert's time)."""
        self._lateness_s, self._per_reading = float(lateness_s), per_reading

    # -- sources ---------------------------------------------------------------------------

    def arrived(self, items: Sequence[Any]) -> None:
        """Remember when each frame's twin got readings up to the frame's newest time."""
        now = self.clock()
        with self._lock:
            for item in items:
                if isinstance(item, TelemetryFrame) and len(item.times):
                    newest = item.end
                elif isinstance(item, WaveformFrame):
                    newest = item.start + len(item.samples) / max(item.sample_rate, 1e-9)
                else:
                    continue
                ring = self._arrivals.get(item.twin_id)
                if ring is None:
                    ring = self._arrivals[item.twin_id] = deque(maxlen=ARRIVALS_PER_TWIN)
                ring.append((newest, now))

    def arrival_of(self, twin_id: str, event_time: float) -> float | None:
        """Wall time the twin's first frame reaching ``event_time`` arrived, if remembered."""
        with self._lock:
            for newest, wall in self._arrivals.get(twin_id, ()):
                if newest >= event_time:
                    return wall
        return None

    # -- outputs ---------------------------------------------------------------------------

    def alerts(self, items: Sequence[Any]) -> None:
        now = self.clock()
        for a in map(_value, items):
            if not isinstance(a, Alert):
                continue
            key = (a.twin_id, a.rule)
            if a.state.value == "raised":
                at = a.time.timestamp()
                arrival = self.arrival_of(a.twin_id, at)
                with self._lock:
                    self._open[key] = a.twin_type
                    if arrival is not None:
                        self._raised_arrival[a.twin_id] = arrival
                if self._per_reading(a.twin_id, a.rule):
                    if arrival is not None:
                        TO_ALERT.labels("reading").observe(max(now - arrival, 0.0))
                else:
                    closed = self.arrival_of(a.twin_id, at + self._lateness_s)
                    if closed is not None:
                        TO_ALERT.labels("window").observe(max(now - closed, 0.0))
            else:
                with self._lock:
                    self._open.pop(key, None)
        self._publish_alarms()

    def commands(self, items: Sequence[Any]) -> None:
        now = self.clock()
        for c in map(_value, items):
            if not isinstance(c, Command) or c.status.value != "queued" or c.origin != "policy":
                continue
            with self._lock:
                arrival = self._raised_arrival.get(c.twin_id)
            if arrival is not None:
                TO_COMMAND.observe(max(now - arrival, 0.0))

    def dead_letters(self, items: Sequence[Any]) -> None:
        for d in map(_value, items):
            if not isinstance(d, DeadLetter):
                continue
            kind = reason_kind(d.reason)
            with self._lock:
                kinds = self._kinds.setdefault(d.stage, set())
                if kind not in kinds:
                    kind = kind if len(kinds) < REASON_KINDS else "other"
                    kinds.add(kind)
                k = (d.stage, kind)
                self.dead_letter_reasons[k] = self.dead_letter_reasons.get(k, 0) + 1
            DEAD_LETTER_REASONS.labels(d.stage, kind).inc()

    def open_alarms(self) -> int:
        with self._lock:
            return len(self._open)

    def in_alarm(self) -> dict[str, int]:
        """Twins with an open alarm, by twin type."""
        with self._lock:
            twins: dict[str, set[str]] = {}
            for (twin, _rule), twin_type in self._open.items():
                twins.setdefault(twin_type, set()).add(twin)
        return {t: len(v) for t, v in sorted(twins.items())}

    def _publish_alarms(self) -> None:
        counts = self.in_alarm()
        with self._lock:
            self._types_seen |= set(counts)
            seen = sorted(self._types_seen)
        for twin_type in seen:
            IN_ALARM.labels(twin_type).set(counts.get(twin_type, 0))

    def outputs(self, outputs: FlowOutputs) -> FlowOutputs:
        """``outputs`` with every sink metered (items written, write time) and the first sink
        of alerts, commands and dead letters observed."""
        seen = {"alerts": self.alerts, "commands": self.commands, "dead_letters": self.dead_letters}
        changes = {}
        for f in fields(outputs):
            sinks = getattr(outputs, f.name)
            if sinks is None:
                continue
            many = list(sinks) if isinstance(sinks, Sequence) else [sinks]
            see = seen.get(f.name)
            wrapped = [metered(f.name, s, see if i == 0 else None) for i, s in enumerate(many)]
            changes[f.name] = wrapped if isinstance(sinks, Sequence) else wrapped[0]
        return replace(outputs, **changes)


def per_reading_rules(twins: Mapping[str, TwinType]) -> Callable[[str, str], bool]:
    """``(twin_id, rule) -> bool``: whether the twin's rule is judged as readings arrive (its
    type's per-reading plan, and the raw-sample anomaly alarm) rather than per window."""
    plans: dict[int, frozenset[str]] = {}
    names: dict[str, frozenset[str]] = {}
    for twin_id, kind in twins.items():
        plan = plans.get(id(kind))
        if plan is None:
            plan = plans[id(kind)] = reading_plan(kind).names | {SAMPLE_RULE}
        names[twin_id] = plan
    empty = frozenset({SAMPLE_RULE})
    return lambda twin_id, rule: rule in names.get(twin_id, empty)


def _value(item: Any) -> Any:
    """The record of a ``(key, record)`` pair, or the item itself."""
    return item[1] if isinstance(item, tuple) and len(item) == 2 else item


#: ``meter(items, seconds)``: told the size of each batch a sink wrote and how long it took.
Meter = Callable[[int, float], None]


def _write(inner: Any, values: list[Any], see: Any, meter: Meter | None) -> None:
    start = time.perf_counter()
    inner.write_batch(values)
    if meter is not None:
        meter(len(values), time.perf_counter() - start)
    if see is not None:
        see(values)


class _SeenStateful(StatefulSinkPartition[Any, Any]):
    def __init__(self, inner: Any, see: Any, meter: Meter | None = None) -> None:
        self.inner, self.see, self.meter = inner, see, meter

    def write_batch(self, values: list[Any]) -> None:
        _write(self.inner, values, self.see, self.meter)

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class _SeenStateless(StatelessSinkPartition[Any]):
    def __init__(self, inner: Any, see: Any, meter: Meter | None = None) -> None:
        self.inner, self.see, self.meter = inner, see, meter

    def write_batch(self, items: list[Any]) -> None:
        _write(self.inner, items, self.see, self.meter)

    def close(self) -> None:
        self.inner.close()


class _TappedFixed(FixedPartitionedSink[Any, Any]):
    def __init__(
        self, inner: FixedPartitionedSink[Any, Any], see: Any, meter: Meter | None = None
    ) -> None:
        self.inner, self.see, self.meter = inner, see, meter

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def part_fn(self, item_key: str) -> int:
        return self.inner.part_fn(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _SeenStateful:
        part = self.inner.build_part(step_id, for_part, resume_state)
        return _SeenStateful(part, self.see, self.meter)


class _TappedDynamic(DynamicSink[Any]):
    def __init__(self, inner: DynamicSink[Any], see: Any, meter: Meter | None = None) -> None:
        self.inner, self.see, self.meter = inner, see, meter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SeenStateless:
        part = self.inner.build(step_id, worker_index, worker_count)
        return _SeenStateless(part, self.see, self.meter)


def tapped(sink: Sink[Any], see: Any, meter: Meter | None = None) -> Sink[Any]:
    """``sink`` unchanged, and ``see(batch)`` (if given) after each batch it wrote, and
    ``meter(items, seconds)`` (if given) with the batch's size and write time."""
    if isinstance(sink, FixedPartitionedSink):
        return _TappedFixed(sink, see, meter)
    if isinstance(sink, DynamicSink):
        return _TappedDynamic(sink, see, meter)
    raise TypeError(f"not a Bytewax sink: {sink!r}")


def metered(stream: str, sink: Sink[Any], see: Any = None) -> Sink[Any]:
    """``sink`` counted in ``twinflow_output_items_total{stream,sink}`` and timed in
    ``twinflow_output_write_seconds{stream,sink}`` (``sink``: its class name), and seen."""
    labels = (stream, type(sink).__name__)
    items, write = SINK_ITEMS.labels(*labels), SINK_WRITE.labels(*labels)

    def meter(n: int, seconds: float) -> None:
        items.inc(n)
        write.observe(seconds)

    return tapped(sink, see, meter)
