"""A twin's frames of one Bytewax batch judged together by its per-reading rules.

Bytewax hands the ``windows`` step a twin's frames of a batch at once (from Kafka, up to the
source's ``batch_size`` messages a batch, so several frames of a twin), and a numpy call costs
about the same for one frame as for many. :func:`update_batch` lays the frames end to end
(one row per plan signal) and marks, reading by reading, what the quick check
(:func:`~twinflow.operators.reading_rules_frame.quiet`) looks at: the step into the reading of
each signal a stuck rule reads moved, no step into it is a spike rule's least jump or more,
no raw-value limit is crossed, no reading is missing. The step into a frame's first reading
comes from the frame before it (or the twin's last reading), however that frame was judged,
so one pass marks them all. A stretch of frames of an idle twin whose readings are all clean
raises and clears nothing and is learnt at once, as ``quiet`` would learn them one by one;
any other frame takes :meth:`~twinflow.operators.reading_rules.ReadingAlarms.update` alone.
The alerts and state are those of judging the frames one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from twinflow.core.records import Alert, TelemetryFrame
from twinflow.operators.reading_rules_frame import learn_moved
from twinflow.operators.reading_rules_plan import Plan, reading_plan
from twinflow.operators.twin_type import TwinType

if TYPE_CHECKING:
    from twinflow.operators.reading_rules import ReadingAlarms

#: Fewest frames of a twin in a batch worth marking together (the pass costs a few dozen
#: numpy calls whatever its length; fewer frames are judged one by one).
MIN_RUN = 8


def update_batch(
    alarms: ReadingAlarms,
    frames: list[TelemetryFrame],
    kind: TwinType,
    closed: list[list[Mapping[str, float]]],
) -> list[list[Alert]]:
    """Each frame's alerts, as ``learn_window`` of its ``closed`` windows' features and then
    ``update`` of the frame would give them one by one (see the module docstring)."""
    plan = reading_plan(kind)
    marks = None
    idle = not alarms.state  # a rule pending or open: the frames are judged one by one
    if idle and len(frames) >= MIN_RUN and plan.rules and plan.signals == alarms.signals:
        marks = _clean(alarms, plan, frames)
    out: list[list[Alert]] = []
    if marks is None:  # one by one
        for frame, features in zip(frames, closed, strict=True):
            for w in features:
                alarms.learn_window(w, kind)
            out.append(alarms.update(frame, kind))
        return out
    i, n = 0, len(frames)
    while i < n:
        if marks[2][i] and not alarms.state:
            j = i + 1
            while j < n and marks[2][j]:
                j += 1
            for features in closed[i:j]:  # the spike rule's scale: the check does not read it
                for w in features:
                    alarms.learn_window(w, kind)
            _learn(alarms, plan, marks[0], marks[1], int(marks[3][i]), int(marks[3][j]))
            out.extend([] for _ in range(i, j))
            i = j
            continue
        for w in closed[i]:
            alarms.learn_window(w, kind)
        out.append(alarms.update(frames[i], kind))
        i += 1
    return out


def _clean(
    alarms: ReadingAlarms, plan: Plan, frames: list[TelemetryFrame]
) -> tuple[np.ndarray, np.ndarray, list[bool], np.ndarray] | None:
    """The frames end to end after the twin's last two readings (a matrix, one row per plan
    signal), their times, whether each frame's readings are all clean (none refused for its
    range either), and where each frame starts among the readings (and where the last
    ends); ``None`` if a frame lacks a plan signal. (The window aggregator, which sees each
    frame first, refuses a frame whose arrays do not match its times.)"""
    t = np.concatenate([f.times for f in frames]).astype(np.float64, copy=False)
    try:  # each plan signal's readings of all the frames, one row each
        flat = np.concatenate([f.signals[s] for s in plan.signals for f in frames])
    except KeyError:
        return None
    if flat.size != len(plan.signals) * len(t):
        return None
    x = flat.astype(np.float64, copy=False).reshape(len(plan.signals), len(t))
    xc = np.concatenate((alarms.last, x), axis=1)
    steps = np.abs(xc[:, 2:] - xc[:, 1:-1])  # the step into each reading
    # NaN (a reading missing, here or just before) compares False throughout
    good = (
        (steps > plan.moves_col)
        & (steps * plan.per_jump < 1.0)
        & (x <= plan.above_col)
        & (x >= plan.below_col)
    ).all(axis=0)
    starts = np.concatenate(([0], np.cumsum([len(f.times) for f in frames])))
    bad = np.concatenate(([0], np.cumsum(~good)))
    clean = (bad[starts[1:]] == bad[starts[:-1]]).tolist()
    marks = [ok and not f.out_of_range for ok, f in zip(clean, frames, strict=True)]
    return xc, t, marks, starts


def _learn(
    alarms: ReadingAlarms, plan: Plan, xc: np.ndarray, t: np.ndarray, a: int, b: int
) -> None:
    """Learn readings ``a:b`` of the frames end to end (``xc`` has the twin's last two
    readings before them), every signal moving at each: as ``quiet`` learns a frame."""
    if a == b:  # frames without readings: nothing to learn
        return
    alarms.last = xc[:, b : b + 2].copy()  # not a view that keeps the batch's matrix alive
    if plan.any_stuck:
        learn_moved(alarms, plan, t[a:b])


__all__ = ["MIN_RUN", "update_batch"]
