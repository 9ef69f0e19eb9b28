"""Rules judged as readings arrive: limits on a raw signal, declared range, stuck and spikes.

A rule whose feature is a reading rather than a window statistic needs no window to close, so
:class:`ReadingAlarms` judges it on every frame, in event time, and its alert does not wait a
window plus ``lateness_s``. Which rules qualify is read off the rule itself
(:func:`reading_plan`): a profile rule on a scalar signal's value (``feature: winding_temp``,
not ``winding_temp.mean``) and the generic ``<s>.out_of_range``, ``<s>.flat`` and
``<s>.spike_pct`` of a scalar signal. Each turns a reading into a value that the rule's
threshold, duration and clear hysteresis judge exactly as the window rules do
(:class:`~twinflow.operators.rulebook.Rule`), reading by reading:

- ``<s>``: the reading itself;
- ``<s>.out_of_range``: 1.0 when validation refused the reading for the declared range (else
  0.0); it must hold for ``generic.range_readings`` readings in a row;
- ``<s>.flat``: 1.0 when the signal has not changed for :data:`STUCK_QUIET_S` although it moved
  in >= 90 % of (>= 3) earlier blocks of :data:`BLOCK_S` of event time (the window rule's
  history, kept per block);
- ``<s>.spike_pct``: at the reading after a reading that jumped away from both neighbours and
  back, the smaller jump in % of the declared range, when it is at least
  ``generic.spike_crest`` standard deviations of the signal in its last closed window
  (:meth:`ReadingAlarms.learn_window`; no spike is judged before one closed), else 0.0.

A NaN reading changes nothing. The lifecycle (pending, raised, clearing; one open alarm per
(twin, rule)) and the alert are those of :class:`~twinflow.operators.rules.AlarmTracker`,
which leaves these rules to this evaluator (no double alarms); the alert's time is the
reading's. Which rules qualify and their per-signal tables are in
:mod:`~twinflow.operators.reading_rules_plan`; how a frame is looked at, in
:mod:`~twinflow.operators.reading_rules_frame`: most frames take a check of a few numpy
reductions over all signals at once, and a rule is looked at reading by reading only while it
is pending or open, or when a reading may breach it. A twin's frames of one Bytewax batch are
checked together (:meth:`ReadingAlarms.update_batch`,
:mod:`~twinflow.operators.reading_rules_run`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from twinflow.core.records import Alert, AlertState, TelemetryFrame
from twinflow.core.times import utc
from twinflow.operators.reading_rules_frame import (
    View,
    breached,
    cleared,
    held,
    quiet,
    spike_pct,
)
from twinflow.operators.reading_rules_plan import (
    BLOCK_S,
    STUCK_QUIET_S,
    Plan,
    ReadingRule,
    reading_plan,
)
from twinflow.operators.reading_rules_run import update_batch
from twinflow.operators.rulebook import Rule
from twinflow.operators.twin_type import TwinType


class ReadingAlarms:
    """One twin's per-reading rules: running per-signal state and each rule's lifecycle."""

    def __init__(self, twin_id: str, twin_type: str) -> None:
        self.twin_id = twin_id
        self.twin_type = twin_type
        self.signals: tuple[str, ...] = ()
        self.last = np.empty((0, 2))  # the last two readings of each signal
        self.changed_at = np.empty(0)  # event time of each signal's last change
        #: each signal's standard deviation in the last closed window (NaN: none yet)
        self.spread = np.empty(0)
        self.block = -1
        self.block_moved = np.empty(0, dtype=bool)
        self.block_count = np.empty(0, dtype=np.int64)
        self.moved = np.empty((2, 0), dtype=np.int64)  # blocks moved in, blocks seen
        #: signals with a stuck history: moved in >= 3 blocks and >= 90 % of those seen
        self.qualified = np.empty(0, dtype=bool)
        #: rule name -> [run since (event time), run readings, raised at (or None)]
        self.state: dict[str, list[Any]] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> ReadingAlarms:
        """A copy without the generic machinery (the windows step's snapshots copy each
        touched twin's state at every epoch): its arrays and rule states copied, the rest
        immutable."""
        new = ReadingAlarms.__new__(ReadingAlarms)
        for key, value in self.__dict__.items():
            new.__dict__[key] = value.copy() if isinstance(value, np.ndarray) else value
        new.state = {name: list(st) for name, st in self.state.items()}
        return new

    def _reset(self, signals: tuple[str, ...]) -> None:
        n = len(signals)
        self.signals = signals
        self.last = np.full((n, 2), np.nan)
        self.changed_at = np.full(n, -np.inf)  # no change seen yet
        self.spread = np.full(n, np.nan)
        self.block_moved = np.zeros(n, dtype=bool)
        self.block_count = np.zeros(n, dtype=np.int64)
        self.moved = np.zeros((2, n), dtype=np.int64)
        self.qualified = np.zeros(n, dtype=bool)

    def learn_window(self, features: Mapping[str, float], kind: TwinType) -> None:
        """Take each signal's spread (``<s>.std``) from a closed window: the spike rule's
        scale, so that a signal that swings a lot does not count its swings as spikes."""
        plan = reading_plan(kind)
        if plan.signals != self.signals:
            self._reset(plan.signals)
        for row, name in enumerate(plan.signals):
            std = features.get(f"{name}.std")
            if std is not None and math.isfinite(std):
                self.spread[row] = std

    def update(self, frame: TelemetryFrame, kind: TwinType) -> list[Alert]:
        """The raise and clear transitions this frame's readings cause, in time order."""
        plan = reading_plan(kind)
        if not plan.rules or not len(frame.times):
            return []
        t = np.asarray(frame.times, dtype=np.float64)
        if plan.signals != self.signals:
            self._reset(plan.signals)
        got = frame.signals
        missing: tuple[int, ...] = ()
        try:
            x = np.array([got[s] for s in plan.signals], dtype=np.float64)
        except KeyError:  # a signal not in the frame: a row of NaN
            nan = np.full(len(t), np.nan)
            x = np.array([got.get(s, nan) for s in plan.signals], dtype=np.float64)
            missing = tuple(i for i, s in enumerate(plan.signals) if s not in got)
        if not frame.out_of_range:
            if not self.state or self._dormant(plan, x):
                if quiet(self, plan, t, x, missing):
                    return []
            elif (spiky := self._open_spikes(plan)) is not None:
                got_alerts = self._spikes_only(spiky, plan, t, x, missing, frame)
                if got_alerts is not None:
                    return got_alerts
        view = View(self, plan, t, x, frame)
        out: list[tuple[float, bool, Alert]] = []
        if view.may_breach():
            judged: Iterable[ReadingRule] = plan.rules
        else:  # only the rules pending or open can change (in the plan's order, as above)
            mine = sorted(plan.rule_of[n] for n in self.state if n in plan.rule_of)
            judged = [plan.rules[i] for i in mine]
        for rr in judged:
            st = self.state.get(rr.rule.name)
            if st is None and not view.candidate(rr):
                continue
            v, valid = view.values(rr)
            out.extend(self._judge(rr, plan, np.flatnonzero(valid), t, v, st, frame))
        view.learn()
        out.sort(key=lambda e: (e[0], e[1]))
        return [a for _, _, a in out]

    def update_batch(
        self,
        frames: list[TelemetryFrame],
        kind: TwinType,
        closed: list[list[Mapping[str, float]]],
    ) -> list[list[Alert]]:
        """:meth:`learn_window` of each frame's ``closed`` windows' features, then
        :meth:`update` of the frame, for consecutive frames of the twin (a Bytewax batch
        hands the windows step several): each frame's alerts, the same as one by one, with
        the frames that pass the quick check judged a stretch at a time
        (:mod:`~twinflow.operators.reading_rules_run`)."""
        return update_batch(self, frames, kind, closed)

    def _dormant(self, plan: Plan, x: np.ndarray) -> bool:
        """Whether every rule pending or open reads a signal without readings in this frame
        (a dead sensor's open alarm): such a frame changes none of them, so the quick check
        may take it as for an idle twin (a name no rule of the plan has is never judged)."""
        rows = [plan.rules[plan.rule_of[n]].row for n in self.state if n in plan.rule_of]
        if not all(math.isnan(x[row, 0]) for row in rows):  # the first reading tells most
            return False
        return bool(np.isnan(x[rows]).all())

    def _open_spikes(self, plan: Plan) -> list[ReadingRule] | None:
        """The rules pending or open, in the plan's order, when all are spike rules."""
        mine = sorted(plan.rule_of[n] for n in self.state if n in plan.rule_of)
        rules = [plan.rules[i] for i in mine]
        return rules if all(rr.how == "spike" for rr in rules) else None

    def _spikes_only(
        self,
        spiky: list[ReadingRule],
        plan: Plan,
        t: np.ndarray,
        x: np.ndarray,
        missing: tuple[int, ...],
        frame: TelemetryFrame,
    ) -> list[Alert] | None:
        """A frame that can breach no idle rule (the quick check, which learns it), judged
        for the open spike rules alone (a spiky sensor's alarm awaiting its clear): their
        values from the readings before it was learnt. ``None`` if the check fails."""
        xc = np.concatenate((self.last, x), axis=1)
        values = [spike_pct(plan, float(self.spread[rr.row]), xc[rr.row], rr.row) for rr in spiky]
        if not quiet(self, plan, t, x, missing):
            return None
        out: list[tuple[float, bool, Alert]] = []
        for rr, v in zip(spiky, values, strict=True):
            rows = np.flatnonzero(~np.isnan(x[rr.row]))
            out.extend(self._judge(rr, plan, rows, t, v, self.state.get(rr.rule.name), frame))
        out.sort(key=lambda e: (e[0], e[1]))
        return [a for _, _, a in out]

    def count_blocks(self, plan: Plan, t: np.ndarray, at: np.ndarray, valid: np.ndarray) -> None:
        """Fold the frame into the per-block movement history (``at``: last change times)."""
        first, last = math.floor(t[0] / BLOCK_S), math.floor(t[-1] / BLOCK_S)
        if first == last == self.block:  # the common case: the frame stays in its block
            self.block_moved |= at[:, -1] >= first * BLOCK_S
            self.block_count += valid.sum(axis=1)
            return
        blocks = np.floor(t / BLOCK_S)
        cuts = [0, *(np.flatnonzero(np.diff(blocks)) + 1).tolist(), len(t)]
        for a, b in itertools.pairwise(cuts):
            if blocks[a] != self.block:
                self.close_block(plan)
                self.block = int(blocks[a])
            self.block_moved |= at[:, b - 1] >= blocks[a] * BLOCK_S
            self.block_count += valid[:, a:b].sum(axis=1)

    def close_block(self, plan: Plan) -> None:
        """Count the finished block in each signal's history (a stuck stretch does not)."""
        if self.block >= 0:
            still = ~self.block_moved
            counted = (self.block_count >= plan.min_readings) & ~(still & self.qualified)
            self.moved[0] += counted & ~still
            self.moved[1] += counted
            moved, seen = self.moved
            self.qualified = (moved >= 3) & (moved >= 0.9 * seen)
        self.block_moved[:] = False
        self.block_count[:] = 0

    def _judge(
        self,
        rr: ReadingRule,
        plan: Plan,
        rows: np.ndarray,
        times: np.ndarray,
        values: np.ndarray,
        st: list[Any] | None,
        frame: TelemetryFrame,
    ) -> list[tuple[float, bool, Alert]]:
        """Walk one rule's lifecycle over its valid readings (``rows`` of the frame),
        vectorised between transitions."""
        rule, out = rr.rule, []
        t, v = times[rows], values[rows]
        since, count, raised = st if st is not None else (None, 0, None)
        n = plan.range_readings if rr.how == "range" else 1
        later = rule.diagnosis != "sensor_fault"  # sensor faults first at one time
        pos = 0
        while pos < len(t):
            tt, vv = t[pos:], v[pos:]
            if raised is None:
                i, since, count = held(tt, breached(rule, vv), since, count, rule.duration_s, n)
                if i < 0:
                    break
                raised, value = float(tt[i]), float(vv[i])
                evidence = {rule.feature: value, "threshold": rule.threshold}
                evidence |= _context(rule, frame, int(rows[pos + i]))
                alert = self._alert(rule, AlertState.RAISED, raised, raised, value, evidence)
            else:
                i, since, count = held(tt, cleared(rule, vv), since, count,
                                        rule.clear_duration_s, 1)  # fmt: skip
                if i < 0:
                    break
                at, value = float(tt[i]), float(vv[i])
                evidence = {rule.feature: value, "clear_threshold": rule.clear_threshold}
                alert = self._alert(rule, AlertState.CLEARED, raised, at, value, evidence)
                raised = None
            out.append((float(tt[i]), later, alert))
            pos += i + 1
        if since is None and raised is None:
            self.state.pop(rule.name, None)
        else:
            self.state[rule.name] = [since, count, raised]
        return out

    def _alert(
        self,
        rule: Rule,
        state: AlertState,
        raised_at: float,
        at: float,
        v: float,
        evidence: dict[str, float],
    ) -> Alert:
        verb = "raised" if state is AlertState.RAISED else "cleared"
        return Alert(
            alert_id=Alert.make_id(self.twin_id, rule.name, utc(raised_at)),
            twin_id=self.twin_id,
            twin_type=self.twin_type,
            rule=rule.name,
            state=state,
            severity=rule.severity,
            time=utc(at),
            raised_at=utc(raised_at),
            message=f"{self.twin_id}: {rule.description or rule.name} ({rule.feature} = "
            f"{v:.4g}, {rule.comparison} {rule.threshold:g}) - {verb}",
            diagnosis=rule.diagnosis,
            evidence=evidence,
        )


def _context(rule: Rule, frame: TelemetryFrame, i: int) -> dict[str, float]:
    """The rule's ``context`` features that are signals of the frame: their ``i``-th reading."""
    out: dict[str, float] = {}
    for key in rule.context:
        arr = frame.signals.get(key)
        if arr is not None and math.isfinite(float(arr[i])):
            out[key] = float(arr[i])
    return out


__all__ = ["BLOCK_S", "STUCK_QUIET_S", "Plan", "ReadingAlarms", "ReadingRule", "reading_plan"]
