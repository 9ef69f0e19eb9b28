"""The ``health:`` profile section: learned references, derived features and RUL indicators.

``references`` are signals judged against their learned healthy relation to a driver
(``<signal>.residual``); ``derived`` are declarative features of a window (the ratio or the
difference of two window features); ``models`` are window-level models referenced by import
path (a plain function of window features, as numbers, with its parameters); ``indicators``
are the health indicators whose trend to a failure level gives the remaining useful life.
Every error names the file and the field. :mod:`twinflow.operators.health` computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from twinflow.core.config import Choice, Duration, Number, Part, Schema, Section, Text, Whole
from twinflow.core.errors import ConfigError
from twinflow.models.learned_index import LearnedHealth
from twinflow.models.similarity import Trajectory
from twinflow.operators.physics import read_model
from twinflow.operators.rulebook import section_of
from twinflow.operators.twin_type import TwinType

HEALTH = Schema(
    "health",
    "Learned references, derived window features and the health indicators (RUL).",
    (
        Part("references", "Signal -> its learned healthy relation to a driver.",
             see="health.references.<signal>"),
        Part("derived", "Feature name -> `ratio` or `difference` of two window features.",
             see="health.derived.<name>"),
        Part("models", "Window-level models by import path.", see="health.models.<name>"),
        Part("indicators", "Indicator name -> a feature and its failure level.",
             see="health.indicators.<name>"),
        Part("index", "The health index from the anomaly score (used when no indicator is "
             "declared, or beside them when given).", see="health.index"),
    ),
)  # fmt: skip
REFERENCE = Schema(
    "health.references.<signal>",
    "A signal judged by `<signal>.residual`: its window mean minus its learned healthy value "
    "at the driver's current mean.",
    (
        Text("driver", "The signal it depends on (none: a level, one bin).", ""),
        Number("low", "Lowest driver value of the curve.", 0.0, finite=True),
        Number("high", "Highest driver value of the curve (above `low`).", 1.0, finite=True),
        Whole("bins", "Equal bins over `[low, high]`.", 1, low=1),
        Duration("lag", "The signal's time constant behind its driver (`0`: none); it is "
                 "judged by the level it is heading for, `mean + lag * slope`.", 0.0),
        Number("gate", "How far from the curve a value may be and still be learned.",
               math.inf, above=0),
        Whole("reach", "Bins beyond the visited ones the curve extrapolates to.", 1, low=1),
        Whole("span", "Visited bins the extrapolating line is fitted through.", 2, low=2),
    ),
)  # fmt: skip
DERIVED = Schema(
    "health.derived.<name>",
    "A feature computed from two window features: exactly one of `ratio`, `difference`.",
    (
        Part("ratio", "`[a, b]`: a / b (NaN unless b > 0).", kind="list"),
        Part("difference", "`[a, b]`: a - b.", kind="list"),
    ),
)  # fmt: skip
WINDOW_MODEL = Schema(
    "health.models.<name>",
    "A window-level model: a plain function of window features (numbers) returning derived "
    "features.",
    (
        Text("model", "Import path `package.module:function`.", "", required=True),
        Part("inputs", "Argument -> window feature (NaN when the window lacks it).",
             kind="mapping"),
        Part("outputs", "Result key -> derived feature name.", kind="mapping"),
        Part("params", "Keyword -> number, passed to the function.", kind="mapping"),
    ),
)  # fmt: skip
INDICATOR = Schema(
    "health.indicators.<name>",
    "A health indicator: a feature that moves from a healthy baseline to a failure level.",
    (
        Text("feature", "The window or derived feature followed.", "", required=True),
        Number("failure", "Excess over the baseline at failure.", 0.0, above=0, finite=True,
               required=True),
        Choice("direction", "Which way the feature moves as health falls.", "rising",
               choices=("rising", "falling")),
        Number("baseline", "The healthy level (of the feature, signed by `direction`).", 0.0,
               finite=True),
        Number("floor", "Smallest excess an exponential fit uses.", 0.0, above=0, finite=True),
        Choice("fit", "Trend model.", "exponential", choices=("exponential", "linear")),
        Whole("history", "Windows the fit looks back over.", 24, low=2),
    ),
)  # fmt: skip
INDEX = Schema(
    "health.index",
    "A health index from the anomaly model: each window's score over the detector's "
    "threshold, its degradation onset (CUSUM against the twin's own first values) and the "
    "remaining life from the trend since the onset to `failure`.",
    (
        Number("failure", "Index at failure, in multiples of the anomaly threshold (a guess "
               "unless given; `twinflow replay --history` learns it from run-to-failure "
               "data).", 3.0, above=0, finite=True),
        Whole("warmup", "Windows after the detector's warm-up that give the index's healthy "
              "mean and deviation.", 24, low=2),
        Number("drift", "CUSUM allowance, in healthy deviations.", 0.5, low=0, finite=True),
        Number("limit", "CUSUM level that declares an onset, in healthy deviations.", 8.0,
               above=0, finite=True),
        Number("coverage", "Probability of the RUL interval.", 0.9, above=0, below=1),
    ),
)  # fmt: skip

#: The key of a type's sections under which the failure levels learned from run-to-failure
#: history are kept: driving signal -> level, ``"*"`` for all failures (they override
#: ``health.index.failure``).
LEARNED_FAILURE = "health.learned_failure"
#: The key under which the run-to-failure trajectories of a history are kept (a tuple of
#: :class:`~twinflow.models.similarity.Trajectory`): with them the RUL is by similarity.
LEARNED_TRAJECTORIES = "health.learned_trajectories"
#: The key under which the health index learned from a history is kept (a
#: :class:`~twinflow.models.learned_index.LearnedHealth`): with it the RUL is by similarity
#: of that index, not of the anomaly score.
LEARNED_INDEX = "health.learned_index"
#: The key of the level learned over all failures, whatever drove them.
ANY_DRIVER = "*"


@dataclass(frozen=True, slots=True)
class Reference:
    """A signal judged against its learned healthy relation to a driver (``None``: a level)."""

    signal: str
    driver: str | None
    low: float = 0.0
    high: float = 1.0
    bins: int = 1
    lag_s: float = 0.0
    gate: float = math.inf
    reach: int = 1
    span: int = 2


@dataclass(frozen=True, slots=True)
class Derived:
    """``key = a / b`` (``ratio``, NaN unless ``b > 0``) or ``a - b`` (``difference``)."""

    key: str
    op: str
    a: str
    b: str

    def value(self, a: float, b: float) -> float:
        if self.op == "difference":
            return a - b
        return a / b if b > 0.0 else math.nan


def _finite(v: float | None) -> float:
    return float(v) if v is not None and math.isfinite(v) else math.nan


@dataclass(frozen=True, slots=True)
class WindowModel:
    """A window-level model: feature values in (NaN when absent), derived features out."""

    name: str
    function: Callable[..., Mapping[str, Any]]
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    params: Mapping[str, float]

    def apply(self, f: Mapping[str, float]) -> dict[str, float]:
        args = {arg: _finite(f.get(key)) for arg, key in self.inputs.items()}
        result = self.function(**args, **self.params)
        return {name: float(result[k]) for k, name in self.outputs.items() if k in result}


@dataclass(frozen=True, slots=True)
class Indicator:
    """A health indicator: ``sign * features[key]`` rises from ``baseline`` to ``failure``."""

    name: str
    key: str
    failure: float
    sign: float = 1.0
    baseline: float | None = 0.0
    floor: float | None = None
    fit: str = "exponential"
    history: int = 24


@dataclass(frozen=True, slots=True)
class ScoreIndex:
    """``health.index``: the anomaly-score health index and its RUL settings."""

    failure: float = 3.0
    warmup: int = 24
    drift: float = 0.5
    limit: float = 8.0
    coverage: float = 0.9


@dataclass(frozen=True, slots=True)
class Health:
    """A type's ``health:`` section (``index`` is ``None`` unless given)."""

    references: tuple[Reference, ...] = ()
    derived: tuple[Derived, ...] = ()
    models: tuple[WindowModel, ...] = ()
    indicators: tuple[Indicator, ...] = ()
    index: ScoreIndex | None = None

    def score_index(self) -> ScoreIndex | None:
        """The anomaly-score index in use: the given one, else the default when no
        indicator is declared."""
        if self.index is not None:
            return self.index
        return None if self.indicators else ScoreIndex()


NO_HEALTH = Health()


def health_of(kind: TwinType | None) -> Health:
    """The type's ``health:`` section (empty when its profile has none)."""
    return NO_HEALTH if kind is None else section_of(kind, "health", NO_HEALTH)


def learned_failure(kind: TwinType | None) -> Mapping[str, tuple[float, float]]:
    """The failure levels learned from history for the type, by the signal that drove the
    anomaly score at failure (:data:`ANY_DRIVER`: over all failures), each with the spread
    of its logarithm; empty when none."""
    v = None if kind is None else kind.sections.get(LEARNED_FAILURE)
    if not isinstance(v, Mapping):
        return {}
    return {str(k): (float(x[0]), float(x[1])) for k, x in v.items()}


def with_learned_failure(kind: TwinType, levels: Mapping[str, tuple[float, float]]) -> TwinType:
    """``kind`` with failure levels learned from run-to-failure history."""
    return replace(kind, sections={**kind.sections, LEARNED_FAILURE: dict(levels)})


def learned_trajectories(kind: TwinType | None) -> tuple[Trajectory, ...]:
    """The run-to-failure trajectories learned from history for the type (empty: none)."""
    v = None if kind is None else kind.sections.get(LEARNED_TRAJECTORIES)
    return v if isinstance(v, tuple) else ()


def with_learned_trajectories(kind: TwinType, library: Sequence[Trajectory]) -> TwinType:
    """``kind`` with the run-to-failure trajectories of a history."""
    return replace(kind, sections={**kind.sections, LEARNED_TRAJECTORIES: tuple(library)})


def learned_index(kind: TwinType | None) -> LearnedHealth | None:
    """The health index learned from history for the type (``None``: none)."""
    v = None if kind is None else kind.sections.get(LEARNED_INDEX)
    return v if isinstance(v, LearnedHealth) else None


def with_learned_index(kind: TwinType, learned: LearnedHealth) -> TwinType:
    """``kind`` with the health index learned from a history."""
    return replace(kind, sections={**kind.sections, LEARNED_INDEX: learned})


def _entries(s: Section, key: str) -> list[tuple[str, Section]]:
    part = s.section(key)
    out = []
    for name, raw in part.data.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{s.file}: {part.where}: names must be strings, got {name!r}")
        out.append((name, Section(raw, part.path(name), s.file)))
    return out


def _reference(signal: str, e: Section) -> Reference:
    e.check_keys(REFERENCE)
    driver = e.get(REFERENCE["driver"]) or None
    low, high = e.get(REFERENCE["low"]), e.get(REFERENCE["high"])
    if driver is None and any(k in e.data for k in ("low", "high", "bins", "reach", "span")):
        raise e.error("driver", " is required with low, high, bins, reach or span")
    if not low < high:
        raise e.error("high", f" must be above low ({low:g}), got {high:g}")
    raw_lag = e.data.get("lag")
    lag = 0.0 if raw_lag == 0 and not isinstance(raw_lag, bool) else e.get(REFERENCE["lag"])
    return Reference(
        signal, driver, low, high, e.get(REFERENCE["bins"]), lag, e.get(REFERENCE["gate"]),
        e.get(REFERENCE["reach"]), e.get(REFERENCE["span"]),
    )  # fmt: skip


def _derived(key: str, e: Section) -> Derived:
    e.check_keys(DERIVED)
    given = [k for k in ("ratio", "difference") if k in e.data]
    if len(given) != 1:
        raise e.error("ratio", ": give exactly one of ratio or difference, got "
                      f"{', '.join(given) or 'none'}")  # fmt: skip
    pair = e.data[given[0]]
    if not (isinstance(pair, list) and len(pair) == 2
            and all(isinstance(v, str) and v for v in pair)):  # fmt: skip
        raise e.fail(given[0], "[a, b], two feature names")
    return Derived(key, given[0], pair[0], pair[1])


def _indicator(name: str, e: Section, references: tuple[Reference, ...]) -> Indicator:
    e.check_keys(INDICATOR)
    feature = e.get(INDICATOR["feature"])
    learned = {r.signal for r in references}
    if feature.endswith(".residual") and feature.removesuffix(".residual") not in learned:
        raise e.error("feature", f" = {feature!r}: no health.references entry "
                      f"{feature.removesuffix('.residual')!r} learns it")  # fmt: skip
    return Indicator(
        name,
        feature,
        e.get(INDICATOR["failure"]),
        -1.0 if e.get(INDICATOR["direction"]) == "falling" else 1.0,
        e.get(INDICATOR["baseline"]),
        e.get(INDICATOR["floor"]) if "floor" in e.data else None,
        e.get(INDICATOR["fit"]),
        e.get(INDICATOR["history"]),
    )


def read_health(s: Section) -> Health:
    """``health:``: references, derived features, window models and indicators."""
    s.check_keys(HEALTH)
    refs = tuple(_reference(k, e) for k, e in _entries(s, "references"))
    derived = tuple(_derived(k, e) for k, e in _entries(s, "derived"))
    models = []
    for name, e in _entries(s, "models"):
        function, inputs, outputs, params = read_model(e, WINDOW_MODEL)
        models.append(WindowModel(name, function, inputs, outputs, params))
    indicators = tuple(_indicator(k, e, refs) for k, e in _entries(s, "indicators"))
    return Health(refs, derived, tuple(models), indicators, _index(s))


def _index(s: Section) -> ScoreIndex | None:
    if "index" not in s.data:
        return None
    e = s.section("index")
    e.check_keys(INDEX)
    return ScoreIndex(*(e.get(INDEX[k]) for k in ("failure", "warmup", "drift", "limit",
                                                   "coverage")))  # fmt: skip


__all__ = [
    "ANY_DRIVER",
    "DERIVED",
    "HEALTH",
    "INDEX",
    "INDICATOR",
    "LEARNED_FAILURE",
    "LEARNED_INDEX",
    "LEARNED_TRAJECTORIES",
    "REFERENCE",
    "WINDOW_MODEL",
    "Derived",
    "Health",
    "Indicator",
    "Reference",
    "ScoreIndex",
    "WindowModel",
    "health_of",
    "learned_failure",
    "learned_index",
    "learned_trajectories",
    "read_health",
    "with_learned_failure",
    "with_learned_index",
    "with_learned_trajectories",
]
