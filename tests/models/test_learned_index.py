"""The health index learned by regression from run-to-failure history, on synthetic units
whose wear and operating point are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinflow.core.records import RulEstimate
from twinflow.models.learned_index import LinearIndex, elapsed, learn_health, scaled

NAMES = ("load", "temp", "flow", "noise")


def unit(seed: int, life: float = 100.0, onset: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows and targets of one unit: the temperature follows the load as a curve (its
    healthy level) and rises with wear, the flow falls with it, one sensor is pure noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(life)
    wear = elapsed(t, onset, life)
    load = rng.choice([0.2, 0.5, 0.9], t.size)
    temp = 50.0 + 30.0 * load**2 + 8.0 * wear + rng.normal(0.0, 0.3, t.size)
    flow = 3.0 - 0.5 * wear + rng.normal(0.0, 0.02, t.size)
    return np.c_[load, temp, flow, rng.normal(0.0, 1.0, t.size)], wear


def test_elapsed_is_zero_while_healthy_and_one_at_failure() -> None:
    e = elapsed([0.0, 10.0, 15.0, 20.0, 30.0], 10.0, 20.0)
    assert e.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_the_index_follows_wear_on_held_out_units_whatever_the_load() -> None:
    index = LinearIndex.fit([unit(s) for s in range(8)], NAMES)
    rows, wear = unit(100)
    got = index.values(rows)
    assert np.abs(got - wear).mean() < 0.05
    # without the squares the load's curve leaks into the index
    linear = LinearIndex.fit([unit(s) for s in range(8)], NAMES, squares=False)
    assert np.abs(linear.values(rows) - wear).mean() > np.abs(got - wear).mean()


def test_one_window_missing_a_feature_has_no_index() -> None:
    index = LinearIndex.fit([unit(s) for s in range(3)], NAMES)
    row = dict(zip(NAMES, unit(5)[0][-1], strict=True))
    assert index.value(row) == pytest.approx(float(index.values(unit(5)[0][-1:])[0]))
    del row["flow"]
    assert math.isnan(index.value(row))
    assert set(index.to_json()) >= {"names", "weights", "bias"}


def test_a_constant_feature_is_left_out_and_bad_input_refused() -> None:
    rows, wear = unit(1)
    rows[:, 3] = 7.0
    index = LinearIndex.fit([(rows, wear)], NAMES)
    assert index.weights[3] == 0.0 and index.weights[7] == 0.0
    with pytest.raises(ValueError):
        LinearIndex.fit([], NAMES)
    with pytest.raises(ValueError):
        LinearIndex.fit([(rows[:, :2], wear)], NAMES)


def fleet_unit(seed: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A unit of a fleet whose lives vary (log-normal), as ``learn_health`` takes it:
    times, rows, onset and failure."""
    life = float(np.round(100.0 * np.random.default_rng(seed + 1000).lognormal(0.0, 0.25)))
    rows, _ = unit(seed, life=life, onset=0.2 * life)
    return np.arange(life), rows, 0.2 * life, life - 1.0


def test_scaled_widens_or_narrows_each_side_around_the_estimate() -> None:
    r = RulEstimate("learned_index", 0.5, 10.0, 8.0, 14.0)
    wide, narrow = scaled(r, 2.0), scaled(r, 0.5)
    assert (wide.low_hours, wide.hours, wide.high_hours) == (6.0, 10.0, 18.0)
    assert (narrow.low_hours, narrow.high_hours) == (9.0, 12.0)
    assert scaled(r, 10.0).low_hours == 0.0  # never below no life left
    inf = RulEstimate("learned_index", 1.0, math.inf, math.inf, math.inf)
    assert scaled(inf, 2.0) == inf


def test_learn_health_learns_the_index_library_and_an_interval_calibration() -> None:
    units = [fleet_unit(s) for s in range(10)]
    learned = learn_health(units, NAMES)
    assert learned is not None and len(learned.library) == 10
    assert learned.modes == () and learned.calibration is not None  # one failure mode
    cal = learned.calibration
    assert all(lo < hi for lo, hi in zip(cal.low, cal.high, strict=True))
    # two units: no leave-one-out, the interval stays the neighbours' own spread
    two = learn_health(units[:2], NAMES)
    assert two is not None and two.calibration is None


def test_the_calibrated_interval_covers_held_out_units_about_as_often_as_asked() -> None:
    learned = learn_health([fleet_unit(s) for s in range(12)], NAMES)
    assert learned is not None
    hits: dict[str, list[bool]] = {"calibrated": [], "raw": []}
    widths: list[float] = []
    for seed in range(200, 215):  # held out: never seen by learn_health
        t, rows, onset, failure = fleet_unit(seed)
        values = learned.rows(rows)
        for j in np.linspace(onset + 1, failure - 1, 6).astype(int):
            truth = failure - t[j]
            for name in hits:
                r = learned.estimate(t[: j + 1], values[: j + 1], raw=name == "raw")
                hits[name].append(r.low_hours <= truth <= r.high_hours)
                if name == "calibrated":
                    widths.append((r.high_hours - r.low_hours) / truth)
    coverage = {k: float(np.mean(v)) for k, v in hits.items()}
    # asked 90 %: calibrated on the history alone, it holds the truth about as often as
    # asked (not always: it is not merely wide) and more often than the raw spread; 90
    # checks of 15 units, and the weighting was chosen on the same leave-one-out errors,
    # so a few points under 90 % are expected (measured: 79 %)
    assert 0.75 <= coverage["calibrated"] <= 0.99, coverage
    assert coverage["calibrated"] > coverage["raw"], coverage
    assert float(np.median(widths)) < 1.5


def mode_unit(seed: int, mode: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A unit that fails by one of two modes: ``heat`` (the temperature rises, slowly at
    first) or ``flow`` (the flow falls, linearly), over lives that vary log-normally."""
    rng = np.random.default_rng(seed)
    life = float(np.round(100.0 * rng.lognormal(0.0, 0.25)))
    t = np.arange(life)
    wear = elapsed(t, 0.2 * life, life - 1.0)
    load = rng.choice([0.2, 0.5, 0.9], t.size)
    heat, flow = (wear**3, 0.0 * wear) if mode == "heat" else (0.0 * wear, wear)
    temp = 50.0 + 30.0 * load**2 + 8.0 * heat + rng.normal(0.0, 0.3, t.size)
    rows = np.c_[load, temp, 3.0 - 0.5 * flow + rng.normal(0.0, 0.02, t.size),
                 rng.normal(0.0, 1.0, t.size)]  # fmt: skip
    return t, rows, 0.2 * life, life - 1.0


def test_an_index_per_failure_mode_gets_each_mode_its_own_life() -> None:
    modes = ["heat", "flow"] * 8
    history = [mode_unit(s, m) for s, m in enumerate(modes)]
    # one weighting and spread, few checks: the interval and the choice are not judged here
    per_mode = learn_health(history, NAMES, modes, checks=3, recency=(None,), spreads=(2.5,))
    one = learn_health(history, NAMES, checks=3, recency=(None,), spreads=(2.5,))
    assert per_mode is not None and one is not None
    assert per_mode.mode_names == ("flow", "heat") and len(per_mode.library[0].values[0]) == 3
    within: dict[str, list[bool]] = {"per mode": [], "one index": []}
    for seed in range(300, 316):  # held out, half of each mode
        t, rows, onset, failure = mode_unit(seed, modes[seed % 2])
        j = int(onset + 0.5 * (failure - onset))
        truth = failure - t[j]
        for name, learned in (("per mode", per_mode), ("one index", one)):
            r = learned.estimate(t[: j + 1], learned.rows(rows)[: j + 1])
            within[name].append(abs(r.hours - truth) <= 0.2 * truth)
    share = {k: float(np.mean(v)) for k, v in within.items()}
    assert share["per mode"] >= 0.8 and share["per mode"] > share["one index"], share
