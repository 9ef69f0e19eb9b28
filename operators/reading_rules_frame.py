"""One frame as the per-reading rules see it: a quick check for the common frame, else the
per-rule values.

Most frames breach nothing: no reading is missing, every signal a stuck rule reads moved at
each reading, no jump is as large as a spike rule looks at, and no reading crosses a limit.
:func:`quiet` tells such a frame from four reductions over all signals at once and carries it
into the running state; a frame that fails it (or any frame of a twin with a rule pending or
open, or with readings refused for their range) takes :class:`View`, which works out each
rule's value reading by reading. Both leave the same state and alerts.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from twinflow.core.records import TelemetryFrame
from twinflow.operators.reading_rules_plan import (
    BLOCK_S,
    STUCK_QUIET_S,
    Plan,
    ReadingRule,
    screen,
)
from twinflow.operators.rulebook import Rule

if TYPE_CHECKING:
    from twinflow.operators.reading_rules import ReadingAlarms

_MIN, _MAX, _FMAX = np.minimum.reduce, np.maximum.reduce, np.fmax.reduce
#: What the screen puts where a step is not one into a reading of the frame: passes both
#: checks (above every movement bound; times a factor of 0 is 0)
_FAR = 1e300


def quiet(
    alarms: ReadingAlarms, plan: Plan, t: np.ndarray, x: np.ndarray, missing: tuple[int, ...]
) -> bool:
    """Whether the frame (times ``t``, readings ``x``, one row per plan signal; ``missing``:
    the rows of signals the frame does not carry, all NaN) can breach no rule of an idle
    twin; if so it is learnt here (last readings, changes, blocks). A row with no reading (a
    signal missing or a dead sensor) and a stuck rule's row that did not move and has no
    stuck history yet cannot breach a rule either; they keep their last change."""
    xc = np.concatenate((alarms.last, x), axis=1)
    far, per_jump = screen(plan, x.shape[1])
    flat = xc.ravel()  # every row's steps in one flat run (contiguous: cheaper to reduce)
    jumps = flat[1:] - flat[:-1]
    np.abs(jumps, out=jumps)
    jumps[far] = _FAR  # not a step into a reading of the frame
    # a NaN (a dropout) fails this too, so the rest needs no NaN handling (a row without
    # readings compares False below: it has no reading that could breach a rule)
    empty: list[int] = []
    still: list[int] = []
    # NaN if any reading is missing; above every signal's movement bound in the common case
    if not float(_MIN(jumps)) > plan.most_moves:
        inner = np.abs(xc[:, 2:] - xc[:, 1:-1])  # the steps into the frame's own readings
        least, moves = _MIN(inner, axis=1).tolist(), plan.moves_list
        bad = [i for i, (a, b) in enumerate(zip(least, moves, strict=True)) if not a > b]
        if missing and len(bad) == len(missing):  # only the signals the frame lacks
            empty = list(missing)
        else:
            gone = np.isnan(x).all(axis=1).tolist()  # the frame's missing signals too
            empty = [i for i in bad if gone[i]]
            still = [i for i in bad if not gone[i] and _unmoved(alarms, plan, inner, i)]
            if len(empty) + len(still) < len(bad):
                return False
    if (
        plan.any_spike
        # a jump of at least a spike rule's least, in units of it (a missing signal's NaN aside)
        and float(_FMAX(jumps * per_jump)) >= 1.0
        and _spiky(alarms, plan, xc)
    ):
        return False
    if plan.any_value:
        high, low = _MAX(x, axis=1).tolist(), _MIN(x, axis=1).tolist()
        for row in plan.value_rows:
            if high[row] > plan.above_list[row] or low[row] < plan.below_list[row]:
                return False
    alarms.last = xc[:, -2:].copy()  # not a view that keeps the frame's matrix alive
    if plan.any_stuck:
        _moved(alarms, plan, t, empty, still)
    return True


def _spiky(alarms: ReadingAlarms, plan: Plan, xc: np.ndarray) -> bool:
    """:func:`spikes` of any signal, from the matrix of last and new readings."""
    steps = xc[:, 1:] - xc[:, :-1]
    return bool(spikes(alarms, plan, steps, np.abs(steps)).any())


def _unmoved(alarms: ReadingAlarms, plan: Plan, inner: np.ndarray, row: int) -> bool:
    """Whether ``row`` is a stuck rule's signal without a stuck history (so its rule cannot
    be breached in this frame) none of whose readings moved (none missing either)."""
    return (
        bool(plan.stuck_rows[row])
        and not alarms.qualified[row]
        and float(_MAX(inner[row])) <= plan.moves_list[row]  # NaN: a dropout, False
    )


def learn_moved(alarms: ReadingAlarms, plan: Plan, t: np.ndarray) -> None:
    """Learn readings at times ``t`` at each of which every signal changed, as
    :func:`quiet` learns its common frame (also frames end to end, across blocks)."""
    _moved(alarms, plan, t, [], [])


def _moved(
    alarms: ReadingAlarms, plan: Plan, t: np.ndarray, empty: list[int], still: list[int]
) -> None:
    """Learn a frame in which every signal but ``empty`` (no readings) and ``still`` (no
    reading moved) changed at each reading, as :meth:`View.learn` (one block) and
    :meth:`ReadingAlarms.count_blocks` (a frame across blocks, or a still row) would."""
    end = float(t[-1])
    first, last = math.floor(float(t[0]) / BLOCK_S), math.floor(end / BLOCK_S)
    if first == last and not empty and not still:  # the common frame
        if first != alarms.block:
            alarms.close_block(plan)
            alarms.block = first
        alarms.block_moved.fill(True)
        alarms.block_count += len(t)
        alarms.changed_at.fill(end)  # an array of this twin's own (see View.learn)
        return
    if first == last:
        parts = [(first, len(t))]
    else:
        blocks = np.floor(t / BLOCK_S)
        cuts = [0, *(np.flatnonzero(np.diff(blocks)) + 1).tolist(), len(t)]
        parts = [(int(blocks[a]), b - a) for a, b in itertools.pairwise(cuts)]
    if not empty and not still:
        for block, count in parts:
            if block != alarms.block:
                alarms.close_block(plan)
                alarms.block = block
            alarms.block_moved.fill(True)
            alarms.block_count += count
        alarms.changed_at.fill(end)  # an array of this twin's own (see View.learn)
        return
    rows = empty + still
    before = alarms.changed_at[rows]  # they keep their last change
    # View.learn takes count_blocks (each part's last change) unless all others moved
    # within one block, when it keeps their block flags
    exact = len(parts) > 1 or bool(still)
    for block, count in parts:
        if block != alarms.block:
            alarms.close_block(plan)
            alarms.block = block
        kept = alarms.block_moved[rows]
        alarms.block_moved.fill(True)
        alarms.block_count += count
        alarms.block_moved[rows] = kept | (exact and before >= block * BLOCK_S)
        if empty:
            alarms.block_count[empty] -= count
    if still:  # count_blocks' last change: the latest of the frame's and the one before
        np.maximum(alarms.changed_at, end, out=alarms.changed_at)
    else:
        alarms.changed_at.fill(end)
    alarms.changed_at[rows] = before


def spikes(alarms: ReadingAlarms, plan: Plan, steps: np.ndarray, jumps: np.ndarray) -> np.ndarray:
    """Per signal, whether a reading of the frame may be a spike a rule looks at: one that
    jumped away from both neighbours and back by at least the rule's least jump and
    ``spike_crest`` spreads (``steps``: each reading minus the one before, from the last
    reading before the frame; ``jumps``: their sizes). A superset of the readings whose
    ``spike_pct`` breaches a rule (the least jump is taken a hair lower against rounding)."""
    size = np.minimum(jumps[:, 1:], jumps[:, :-1])
    floor = np.maximum(plan.spike_crest * alarms.spread, plan.near_jump)  # NaN: no spread yet
    hit: np.ndarray = ((size >= floor[:, None]) & (steps[:, 1:] * steps[:, :-1] < 0.0)).any(axis=1)
    return hit


def held(
    t: np.ndarray, cond: np.ndarray, since: float | None, count: int, dur: float, n: int
) -> tuple[int, float | None, int]:
    """The first reading at which ``cond`` has held for ``dur`` seconds and ``n`` readings
    (a run that began at ``since`` with ``count`` readings carried in): its index or -1, and
    the run carried out."""
    if cond.all():  # held throughout (a clear awaited, a fault that lasts): one run
        base = 0 if since is None else count
        start = t[0] if since is None else since
        ok = t - start >= dur
        ok[: max(0, n - 1 - base)] = False  # runs of fewer than n readings
        if ok.any():
            return int(np.argmax(ok)), None, 0
        return -1, float(start), base + len(t)
    idx = np.arange(len(t))
    last_break = np.maximum.accumulate(np.where(cond, -1, idx))
    fresh = last_break >= 0
    first = np.minimum(last_break + 1, len(t) - 1)
    start = np.where(fresh, t[first], t[0] if since is None else since)
    runs = np.where(fresh, idx - last_break, idx + 1 + (0 if since is None else count))
    ok = cond & (t - start >= dur) & (runs >= n)
    if ok.any():
        return int(np.argmax(ok)), None, 0
    if cond[-1]:
        return -1, float(start[-1]), int(runs[-1])
    return -1, None, 0


class View:
    """One frame as the rules see it: the cheap masks every frame needs, per-rule values on
    demand (a rule is looked at reading by reading only when it is pending, open or hit)."""

    def __init__(
        self, alarms: ReadingAlarms, plan: Plan, t: np.ndarray, x: np.ndarray, f: TelemetryFrame
    ) -> None:
        self.alarms, self.plan, self.t, self.x, self.frame = alarms, plan, t, x, f
        self.xc = np.concatenate([alarms.last, x], axis=1)
        steps = self.xc[:, 1:] - self.xc[:, :-1]
        self.valid = ~np.isnan(x)
        self.flat: np.ndarray | None = None  # None: no reading of the frame is flat
        self.flat_rows: list[bool] = [False] * len(x)
        self.big_rows: list[bool] = []
        self.moving = False
        all_jumps = np.abs(steps)
        jumps = all_jumps[:, 1:]
        if plan.any_stuck:
            changed = jumps > plan.still
            self.block = math.floor(t[0] / BLOCK_S)
            # the common case: every reading changed (or is missing), within one block
            self.moving = self.block == math.floor(t[-1] / BLOCK_S) and bool(
                (changed | ~self.valid).all()
            )
            if not self.moving:
                at = np.maximum.accumulate(np.where(changed, t, -np.inf), axis=1)
                self.at = np.maximum(at, alarms.changed_at[:, None])
                self.flat = (t - self.at) >= STUCK_QUIET_S
                hot = self.flat.any(axis=1)
                self.flat_rows = (hot & alarms.qualified & plan.stuck_rows).tolist()
        if plan.any_spike and (jumps > plan.jump[:, None]).any():
            self.big_rows = spikes(alarms, plan, steps, all_jumps).tolist()
        elif plan.any_spike:
            self.big_rows = [False] * len(x)

    def may_breach(self) -> bool:
        """Whether some rule may be breached in this frame (else idle rules stay idle)."""
        return (
            self.plan.any_value
            or bool(self.frame.out_of_range)
            or any(self.flat_rows)
            or any(self.big_rows)
        )

    def candidate(self, rr: ReadingRule) -> bool:
        """Whether a reading of the frame may breach ``rr`` (an idle rule is skipped if not)."""
        if rr.how == "stuck":
            return self.flat_rows[rr.row]
        if rr.how == "spike":
            return self.big_rows[rr.row]
        if rr.how == "range":
            return rr.signal in self.frame.out_of_range
        return bool(breached(rr.rule, self.x[rr.row]).any())

    def values(self, rr: ReadingRule) -> tuple[np.ndarray, np.ndarray]:
        """The rule's value at each reading, and which readings count."""
        row, valid = rr.row, self.valid[rr.row]
        if rr.how == "stuck":
            if self.flat is None:
                return np.zeros(len(self.t)), valid
            flat = self.flat[row] & bool(self.alarms.qualified[row])
            return flat.astype(np.float64), valid
        if rr.how == "spike":
            return self._spikes(row), valid
        if rr.how == "range":
            mask = self.frame.out_of_range.get(rr.signal)
            oor = np.zeros(len(self.t), dtype=bool) if mask is None else np.asarray(mask, bool)
            return oor.astype(np.float64), valid | oor
        return self.x[row], valid

    def _spikes(self, row: int) -> np.ndarray:
        return spike_pct(self.plan, float(self.alarms.spread[row]), self.xc[row], row)

    def learn(self) -> None:
        """Carry the frame into the running state: last readings, changes, blocks."""
        a, plan = self.alarms, self.plan
        a.last = self.xc[:, -2:].copy()
        count = self.valid.sum(axis=1)
        if self.moving:  # each signal last changed at its last reading
            if self.block != a.block:
                a.close_block(plan)
                a.block = self.block
            seen = count > 0
            last = len(self.t) - 1 - np.argmax(self.valid[:, ::-1], axis=1)
            a.changed_at = np.where(seen, self.t[last], a.changed_at)
            a.block_moved |= seen
            a.block_count += count
        elif plan.any_stuck:
            a.changed_at = self.at[:, -1].copy()  # not a view that keeps the frame's matrix
            a.count_blocks(plan, self.t, self.at, self.valid)


def spike_pct(plan: Plan, spread: float, xc: np.ndarray, row: int) -> np.ndarray:
    """``spike_pct`` of each reading of signal ``row`` (``xc``: its last two readings before
    the frame, then the frame's): the reading before it jumped away from its own neighbours
    and back, by at least ``spike_crest`` standard deviations of the signal in its last
    closed window (``spread``)."""
    if math.isnan(spread):  # no closed window yet
        return np.zeros(len(xc) - 2)
    step = xc[2:] - xc[1:-1]  # each reading minus the one before
    back = xc[1:-1] - xc[:-2]
    size = np.minimum(np.abs(back), np.abs(step))
    floor = plan.spike_crest * spread
    hit = (back * step < 0.0) & (size >= floor) & (size > 0.0)
    out: np.ndarray = np.where(hit, 100.0 * size / plan.spans[row], 0.0)
    return out


def breached(rule: Rule, v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v > rule.threshold if rule.comparison == "above" else v < rule.threshold
    return out


def cleared(rule: Rule, v: np.ndarray) -> np.ndarray:
    if rule.comparison == "above":
        below: np.ndarray = v < rule.clear_threshold
        return below
    above: np.ndarray = v > rule.clear_threshold
    return above


__all__ = [
    "View",
    "breached",
    "cleared",
    "held",
    "learn_moved",
    "quiet",
    "spike_pct",
    "spikes",
]
