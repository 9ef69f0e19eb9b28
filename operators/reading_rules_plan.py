"""Which rules of a twin type are judged per reading, and the per-signal tables they need.

:func:`reading_plan` reads a type's rules once (cached by the type's identity) into a
:class:`Plan`: the per-reading rules (:class:`ReadingRule`), the scalar signals they read (one
row each) and, per row, what a frame must show for some rule to be looked at: the lowest
``above`` and highest ``below`` limit of the rules on its raw value, the least jump a spike
rule looks at, and the change that counts as movement for a stuck rule. Signals a rule kind
does not read get a bound no reading can cross, so a frame is checked with a few reductions
over all signals at once (:mod:`twinflow.operators.reading_rules_frame`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    #: looks at (inf: none); the change that counts as movement
    stuck_rows: np.ndarray
    spike_rows: np.ndarray
    jump: np.ndarray
    still: np.ndarray
    any_stuck: bool
    any_spike: bool
    any_value: bool
    #: per signal: the least jump that is movement for its stuck rule (-inf: none), and the
    #: lowest ``above`` / highest ``below`` limit of its raw-value rules (+inf / -inf: none)
    moves_list: list[float]
    jump_list: list[float]
    above_list: list[float]
    below_list: list[float]
    #: the signals a raw-value rule reads; each spike rule's least jump a hair lower (a
    #: screen that rounding cannot make miss a spike)
    value_rows: tuple[int, ...]
    near_jump: np.ndarray
    #: the largest movement bound of any signal; per signal (a column), 1 / the least jump
    #: of its spike rules, taken a hair lower (0: no spike rule)
    most_moves: float
    per_jump: np.ndarray
    #: rule name -> its index in ``rules``
    rule_of: dict[str, int]
    #: frame length -> its :func:`screen` (filled as frames come)
    screens: dict[int, tuple[np.ndarray, np.ndarray]]
    #: ``moves_list``, ``above_list`` and ``below_list`` as columns (frames end to end)
    moves_col: np.ndarray
    above_col: np.ndarray
    below_col: np.ndarray


def _per_jump(spiky: np.ndarray, jump: np.ndarray) -> np.ndarray:
    """1 / ``jump`` for the signals a spike rule reads (inf for a jump of 0), else 0; a column."""
    out = np.zeros(len(jump))
    with np.errstate(divide="ignore"):
        out[spiky] = 1.0 / jump[spiky]
    return out[:, None]


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


def screen(plan: Plan, length: int) -> tuple[np.ndarray, np.ndarray]:
    """For frames of ``length`` readings, seen as one flat row of steps over the matrix of
    each signal's last two readings and the frame's (``length + 2`` columns): the positions
    that are not a step into one of the frame's readings (from the reading before the last
    to the last, and across rows), and each step's factor for the spike screen (the row's
    ``per_jump``; 0 at those positions). Cached in the plan per length."""
    hit = plan.screens.get(length)
    if hit is not None:
        return hit
    width, n = length + 2, len(plan.signals)
    cols = np.arange(n * width - 1) % width
    inner = (cols >= 1) & (cols <= length)
    factor = np.zeros((n, width))
    factor[:, 1 : length + 1] = plan.per_jump
    got = np.flatnonzero(~inner), np.where(inner, factor.ravel()[:-1], 0.0)
    plan.screens[length] = got
    return got


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
    n = len(rows)
    spans = np.array([scalar[s] for s in rows], dtype=np.float64)
    stuck, spiky = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    jump, above, below = np.full(n, np.inf), np.full(n, np.inf), np.full(n, -np.inf)
    for r in chosen:
        if r.how == "stuck":
            stuck[r.row] = True
        elif r.how == "spike":
            spiky[r.row] = True
            jump[r.row] = min(jump[r.row], r.rule.threshold / 100.0 * spans[r.row])
        elif r.how == "value" and r.rule.comparison == "above":
            above[r.row] = min(above[r.row], r.rule.threshold)
        elif r.how == "value":
            below[r.row] = max(below[r.row], r.rule.threshold)
    moves = np.where(stuck, STILL * spans, -np.inf)
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
        moves.tolist(),
        jump.tolist(),
        above.tolist(),
        below.tolist(),
        tuple(sorted({r.row for r in chosen if r.how == "value"})),
        jump * (1.0 - 1e-9),
        max(moves.tolist(), default=-np.inf),
        _per_jump(spiky, jump * (1.0 - 1e-9)),
        {r.rule.name: i for i, r in enumerate(chosen)},
        {},
        moves[:, None],
        above[:, None],
        below[:, None],
    )
    _PLANS[id(kind)] = (kind, plan)
    return plan


__all__ = [
    "BLOCK_S",
    "STILL",
    "STUCK_QUIET_S",
    "Plan",
    "ReadingRule",
    "classify",
    "reading_plan",
    "screen",
]
