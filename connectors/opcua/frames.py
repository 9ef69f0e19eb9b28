"""Turn OPC UA data changes into telemetry frames: one frame per twin per batch.

The source hands over the data changes it drained in one ``next_batch`` as plain tuples
``(target, value, status code, time)``; :func:`build_frames` groups them by twin. A frame's
rows are the distinct source timestamps, sorted; a signal without a change at a row's time
is NaN there. The frame-level quality of a signal is the worst quality of its changes in
the batch. A Bad value carries no number (OPC UA says to ignore it), so it becomes NaN; an
Uncertain value is kept. A value that is not a number (a string, an array...) becomes one
dead letter per signal and batch, counted in ``readings``.

>>> t = (Target("m1", "motor", "load_pct", "ns=2;s=m1.load_pct"),
...      Target("m1", "motor", "speed_rpm", "ns=2;s=m1.speed_rpm"))
>>> [f] = build_frames([(0, 80.0, 0, 10.0), (1, 1480.0, 0x40000000, 11.0)], t, now=12.0)
>>> f.times.tolist(), f.signals["load_pct"].tolist(), f.quality["speed_rpm"].name
([10.0, 11.0], [80.0, nan], 'UNCERTAIN')
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twinflow.connectors.opcua.quality import RANK, quality_of
from twinflow.core.records import DeadLetter, Quality, TelemetryFrame
from twinflow.core.times import utc

#: One data change: (index of its target, raw value, StatusCode value, epoch seconds).
Change = tuple[int, object, int, float]

#: ``TelemetryFrame.source`` of every frame this connector emits.
SOURCE = "opcua"


@dataclass(frozen=True, slots=True)
class Target:
    """What one monitored item feeds: one signal of one twin, read from ``node``."""

    twin_id: str
    twin_type: str
    signal: str
    node: str


class _TwinBatch:
    """The changes of one twin in one batch, in arrival order."""

    __slots__ = ("quality", "targets", "times", "values")

    def __init__(self) -> None:
        self.targets: list[int] = []
        self.times: list[float] = []
        self.values: list[float] = []
        self.quality: dict[int, Quality] = {}


def build_frames(
    changes: Iterable[Change], targets: Sequence[Target], now: float, source: str = SOURCE
) -> list[TelemetryFrame | DeadLetter]:
    """One frame per twin seen in ``changes`` (in order of first appearance), then dead letters.

    ``now`` (epoch seconds) stamps the dead letters; ``source`` names the connector in them.
    """
    twins: dict[str, _TwinBatch] = {}
    rejected: dict[int, list[object]] = {}
    qualities: dict[int, Quality] = {}
    for index, raw, code, time in changes:
        value = _number(raw)
        if value is None:
            rejected.setdefault(index, []).append(raw)
            continue
        q = qualities.get(code)
        if q is None:
            q = qualities[code] = quality_of(code)
        if q is Quality.BAD:
            value = math.nan
        twin_id = targets[index].twin_id
        batch = twins.get(twin_id)
        if batch is None:
            batch = twins[twin_id] = _TwinBatch()
        batch.targets.append(index)
        batch.times.append(time)
        batch.values.append(value)
        seen = batch.quality.get(index)
        if seen is None or RANK[q] > RANK[seen]:
            batch.quality[index] = q
    out: list[TelemetryFrame | DeadLetter] = [
        _frame(batch, targets, source) for batch in twins.values()
    ]
    out.extend(_dead_letter(targets[i], raws, now, source) for i, raws in rejected.items())
    return out


def stale_frames(
    targets: Sequence[Target], newest: Mapping[str, float], source: str = SOURCE
) -> list[TelemetryFrame]:
    """For every twin in ``newest``: one row at its newest time, bound signals NaN and STALE.

    Emitted when the connection to a server is lost, so each twin's state turns stale at
    once instead of waiting for event time to move on (it does not, while nothing arrives).
    The row repeats the twin's newest source time rather than the wall clock, so a marker
    never moves a twin's event time ahead of its device's clock. Twins never heard from
    get no marker.
    """
    names: dict[str, tuple[str, list[str]]] = {}
    for t in targets:
        if t.twin_id in newest:
            names.setdefault(t.twin_id, (t.twin_type, []))[1].append(t.signal)
    return [
        TelemetryFrame(
            twin_id=twin_id,
            twin_type=twin_type,
            times=np.array([newest[twin_id]], dtype=np.float64),
            signals={s: np.full(1, np.nan) for s in signals},
            quality=dict.fromkeys(signals, Quality.STALE),
            source=source,
        )
        for twin_id, (twin_type, signals) in names.items()
    ]


def _frame(batch: _TwinBatch, targets: Sequence[Target], source: str) -> TelemetryFrame:
    first = targets[batch.targets[0]]
    times = np.asarray(batch.times, dtype=np.float64)
    index = np.asarray(batch.targets)
    values = np.asarray(batch.values, dtype=np.float64)
    rows, row_of = np.unique(times, return_inverse=True)
    signals: dict[str, np.ndarray] = {}
    quality: dict[str, Quality] = {}
    for i in sorted(batch.quality):
        mask = index == i
        column = np.full(rows.size, np.nan)
        column[row_of[mask]] = values[mask]  # same time twice: the later change wins
        name = targets[i].signal
        signals[name] = column
        quality[name] = batch.quality[i]
    return TelemetryFrame(
        twin_id=first.twin_id,
        twin_type=first.twin_type,
        times=rows,
        signals=signals,
        quality=quality,
        source=source,
    )


def _dead_letter(target: Target, raws: list[object], now: float, source: str) -> DeadLetter:
    example = raws[-1]
    return DeadLetter(
        stage="decode",
        reason=(
            f"twin {target.twin_id!r} signal {target.signal!r}: OPC UA node {target.node} "
            f"sent {len(raws)} value(s) like {example!r} of type {type(example).__name__}, "
            "not a number; bind the signal to a numeric (or boolean) variable"
        ),
        source=source,
        time=utc(now),
        twin_id=target.twin_id,
        payload=repr(example)[: DeadLetter.MAX_PAYLOAD],
        readings=len(raws),
    )


def _number(raw: object) -> float | None:
    """A float for numeric and boolean values, NaN for no value, ``None`` for anything else."""
    kind = type(raw)
    if kind is float:
        return raw  # type: ignore[return-value]
    if raw is None:
        return math.nan
    if kind is int or kind is bool:
        return float(raw)  # type: ignore[arg-type]
    if isinstance(raw, numbers.Real):
        return float(raw)
    return None
