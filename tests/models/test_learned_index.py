"""The health index learned by regression from run-to-failure history, on synthetic units
whose wear and operating point are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinflow.models.learned_index import LinearIndex, elapsed

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
