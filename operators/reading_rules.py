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
reading's. Work per frame is a few numpy operations over all signals at once; a rule is looked
at reading by reading only while it is pending or open, or when a reading breaches it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinflow.core.records import Alert, AlertState, TelemetryFrame
from twinflow.core.times import utc
from twinflow.operators.physics import ResidualModel
from twinflow.operators.rulebook import Rule, generic_of, section_of
from twinflow.operators.twin_type import TwinType

#: Seconds without any change before a reading counts as flat (a quantised signal that
#: repeats a value for a few readings is not stuck; a healthy one changes within this).
STUCK_QUIET_S = 30.0
#: Event-time blocks whose movement makes the stuck rule's history (the window length).
BLOCK_S = 300.0
#: Smallest change, as a share of the declared range, that counts as movement.
STILL = 1e-9

_KINDS = {"out_of_range": "range", "flat": "stuck", "spike_pct": "spike"}


@dataclass(frozen=True, slots=True)
class ReadingRule:
    """A rule judged per reading: ``how`` is ``value``, ``range``, ``stuck`` or ``spike``;
    ``row`` indexes the plan's signals."""

    rule: Rule
    signal: str
    how: str
    row: int


@dataclass(frozen=True, slots=True)
class Plan:
    """A type's per-reading rules and the scalar signals they read (``spans``: each signal's
    declared range width)."""

    rules: tuple[ReadingRule, ...]
    signals: tuple[str, ...]
    spans: np.ndarray
    names: frozenset[str]
    range_readings: int
    spike_crest: float
    min_readings: int
    #: per signal: whether a stuck rule / a spike rule reads it; the least jump a spike rule
    #: looks at (NaN: none); the change that counts as movement
    stuck_rows: np.ndarray
    spike_rows: np.ndarray
    jump: np.ndarray
    still: np.ndarray
    any_stuck: bool
    any_spike: bool
    any_value: bool


def _scalar_signals(kind: TwinType) -> dict[str, float]:
    """Signal name -> declared range width: scalar signals, ``generic.spikes_on`` and the
    physics models' derived signals (width 0 when undeclared)."""
    out = {s.name: s.high - s.low for s in kind.signals if not s.waveform}
    models: tuple[ResidualModel, ...] = section_of(kind, "physics", ())
    for model in models:
        for name in model.outputs.values():
            out.setdefault(name, 0.0)
    for name, (low, high) in generic_of(kind).spikes_on.items():
        out[name] = high - low
    return out


def classify(rule: Rule, signals: dict[str, float]) -> tuple[str, str] | None:
    """``(signal, how)`` when ``rule`` is judged per reading, else ``None`` (window rule)."""
    if rule.explain:
        return None
    if rule.feature in signals:
        return rule.feature, "value"
    signal, _, stat = rule.feature.rpartition(".")
    how = _KINDS.get(stat)
    if how is None or signals.get(signal, 0.0) <= 0.0:
        return None
    return signal, how


_PLANS: dict[int, tuple[TwinType, Plan]] = {}


def reading_plan(kind: TwinType) -> Plan:
    """The per-reading rules of a type (cached by the type's identity)."""
    hit = _PLANS.get(id(kind))
    if hit is not None and hit[0] is kind:
        return hit[1]
    from twinflow.operators.rules import rules_for  # rules imports this module

    scalar = _scalar_signals(kind)
    rows: dict[str, int] = {}
    chosen: list[ReadingRule] = []
    for rule in rules_for(kind):
        found = classify(rule, scalar)
        if found is not None:
            row = rows.setdefault(found[0], len(rows))
            chosen.append(ReadingRule(rule, found[0], found[1], row))
    g = generic_of(kind)
    spans = np.array([scalar[s] for s in rows], dtype=np.float64)
    stuck, spiky = np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)
    jump = np.full(len(rows), np.inf)
    for r in chosen:
        if r.how == "stuck":
            stuck[r.row] = True
        elif r.how == "spike":
            spiky[r.row] = True
            jump[r.row] = min(jump[r.row], r.rule.threshold / 100.0 * spans[r.row])
    plan = Plan(
        tuple(chosen),
        tuple(rows),
        spans,
        frozenset(r.rule.name for r in chosen),
        g.range_readings,
        g.spike_crest,
        g.min_readings,
        stuck,
        spiky,
        jump,
        STILL * spans[:, None],
        bool(stuck.any()),
        bool(spiky.any()),
        any(r.how == "value" for r in chosen),
    )
    _PLANS[id(kind)] = (kind, plan)
    return plan


def _held(
    t: np.ndarray, cond: np.ndarray, since: float | None, count: int, dur: float, n: int
) -> tuple[int, float | None, int]:
    """The first reading at which ``cond`` has held for ``dur`` seconds and ``n`` readings
    (a run that began at ``since`` with ``count`` readings carried in): its index or -1, and
    the run carried out."""
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


class _View:
    """One frame as the rules see it: the cheap masks every frame needs, per-rule values on
    demand (a rule is looked at reading by reading only when it is pending, open or hit)."""

    def __init__(
        self, alarms: ReadingAlarms, plan: Plan, t: np.ndarray, x: np.ndarray, f: TelemetryFrame
    ) -> None:
        self.alarms, self.plan, self.t, self.x, self.frame = alarms, plan, t, x, f
        self.xc = np.concatenate([alarms.last, x], axis=1)
        self.step = self.xc[:, 2:] - self.xc[:, 1:-1]  # each reading minus the one before
        self.valid = ~np.isnan(x)
        self.flat: np.ndarray | None = None  # None: no reading of the frame is flat
        self.flat_rows: list[bool] = [False] * len(x)
        self.big_rows: list[bool] = []
        self.moving = False
        jumps = np.abs(self.step)
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
        if plan.any_spike:
            self.big_rows = (jumps > plan.jump[:, None]).any(axis=1).tolist()

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
        return bool(_breached(rr.rule, self.x[rr.row]).any())

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
        """``spike_pct`` of each reading: the reading before it jumped away from its own
        neighbours and back, by at least ``spike_crest`` standard deviations of the signal in
        its last closed window."""
        xc, step = self.xc[row], self.step[row]
        back = xc[1:-1] - xc[:-2]
        size = np.minimum(np.abs(back), np.abs(step))
        spread = float(self.alarms.spread[row])
        if math.isnan(spread):  # no closed window yet
            return np.zeros(len(step))
        floor = self.plan.spike_crest * spread
        hit = (back * step < 0.0) & (size >= floor) & (size > 0.0)
        out: np.ndarray = np.where(hit, 100.0 * size / self.plan.spans[row], 0.0)
        return out

    def learn(self) -> None:
        """Carry the frame into the running state: last readings, changes, blocks."""
        a, plan = self.alarms, self.plan
        a.last = self.xc[:, -2:]
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
            a.changed_at = self.at[:, -1]
            a.count_blocks(plan, self.t, self.at, self.valid)


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
        if all(s in got for s in plan.signals):
            x = np.array([got[s] for s in plan.signals], dtype=np.float64)
        else:
            nan = np.full(len(t), np.nan)
            x = np.array([got.get(s, nan) for s in plan.signals], dtype=np.float64)
        view = _View(self, plan, t, x, frame)
        out: list[tuple[float, bool, Alert]] = []
        if self.state or view.may_breach():
            for rr in plan.rules:
                st = self.state.get(rr.rule.name)
                if st is None and not view.candidate(rr):
                    continue
                v, valid = view.values(rr)
                out.extend(self._judge(rr, plan, np.flatnonzero(valid), t, v, st, frame))
        view.learn()
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
                i, since, count = _held(tt, _breached(rule, vv), since, count, rule.duration_s, n)
                if i < 0:
                    break
                raised, value = float(tt[i]), float(vv[i])
                evidence = {rule.feature: value, "threshold": rule.threshold}
                evidence |= _context(rule, frame, int(rows[pos + i]))
                alert = self._alert(rule, AlertState.RAISED, raised, raised, value, evidence)
            else:
                i, since, count = _held(tt, _cleared(rule, vv), since, count,
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


def _breached(rule: Rule, v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v > rule.threshold if rule.comparison == "above" else v < rule.threshold
    return out


def _cleared(rule: Rule, v: np.ndarray) -> np.ndarray:
    if rule.comparison == "above":
        below: np.ndarray = v < rule.clear_threshold
        return below
    above: np.ndarray = v > rule.clear_threshold
    return above


__all__ = ["BLOCK_S", "STUCK_QUIET_S", "Plan", "ReadingAlarms", "ReadingRule", "reading_plan"]
