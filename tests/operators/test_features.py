"""Moments and spectra against plain numpy on random data."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.operators.oracle import numpy_stats
from twinflow.connectors.simulator.types import MOTOR
from twinflow.operators.features import Moments, band_name, moments_rows, spectrum_features

T0 = 1_700_000_000.0


def random_series(seed: int, n: int, nan_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = T0 + np.sort(rng.integers(0, 2 * max(n, 1), n)) * 0.5
    values = rng.normal(rng.uniform(-500, 500), rng.uniform(0.01, 100), n)
    values[rng.random(n) < nan_fraction] = np.nan
    return times, values


def assert_stats(got: dict[str, float], want: dict[str, float], scale: float) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        tol = 1e-6 * scale * 3600 if key == "slope" else 1e-9 * scale
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=tol), (key, got[key], value)


@settings(max_examples=150)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    nan_fraction=st.sampled_from([0.0, 0.0, 0.1, 0.9, 1.0]),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_merged_batches_equal_numpy(
    seed: int, n: int, nan_fraction: float, cuts: list[int]
) -> None:
    times, values = random_series(seed, n, nan_fraction)
    acc = Moments()
    bounds = [0, *sorted(c for c in cuts if c <= n), n]
    for a, b in itertools.pairwise(bounds):
        acc.merge(Moments().add(times[a:b], values[a:b]))
    scale = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    assert_stats(acc.stats(), numpy_stats(times, values), scale)
    assert acc.count == int(np.isfinite(values).sum())
    assert acc.missing == n - acc.count


@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 8), n=st.integers(1, 80))
def test_rows_equal_one_signal_at_a_time(seed: int, k: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 100, n))
    block = rng.normal(size=(k, n))
    block[rng.random((k, n)) < 0.2] = np.nan
    for row, m in zip(block, moments_rows(times, block), strict=True):
        want = numpy_stats(times, row)
        assert_stats(m.stats(), want, 10.0)


def test_infinite_values_count_as_missing() -> None:
    m = Moments().add(np.arange(4.0), np.array([1.0, np.inf, -np.inf, 3.0]))
    assert (m.count, m.missing, m.mean, m.max) == (2, 2, 2.0, 3.0)


def test_undefined_statistics_are_left_out() -> None:
    empty = Moments()
    assert empty.stats() == {"missing": 1.0}
    assert math.isnan(empty.mean if empty.count else math.nan)
    assert math.isnan(empty.std) and math.isnan(empty.rms) and math.isnan(empty.slope_per_hour)
    nans = Moments().add(np.arange(3.0), np.full(3, np.nan))
    assert nans.stats() == {"missing": 1.0}
    single = Moments().add(np.array([5.0]), np.array([-2.0]))
    assert single.stats() == {
        "missing": 0.0,
        "mean": -2.0,
        "std": 0.0,
        "min": -2.0,
        "max": -2.0,
        "rms": 2.0,
        "peak": 2.0,
    }
    same_time = Moments().add(np.array([5.0, 5.0]), np.array([1.0, 3.0]))
    assert "slope" not in same_time.stats()


def test_merge_with_empty_either_way() -> None:
    m = Moments().add(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    before = m.stats()
    assert m.merge(Moments()).stats() == before
    assert Moments().merge(m).stats() == before


def test_moments_are_tiny_and_picklable() -> None:
    m = Moments().add(*random_series(1, 1000, 0.1))
    assert not hasattr(m, "__dict__")
    blob = pickle.dumps(m)
    assert len(blob) < 400
    assert pickle.loads(blob).stats() == m.stats()


# -- spectra -------------------------------------------------------------------------------

RATE = 8192.0
N = 4096
TIME = np.arange(N) / RATE


def reference_spectrum(x: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy: one-sided Hann power spectrum scaled so it sums to the mean square."""
    x = x - x.mean()
    w = np.hanning(x.size)
    p = np.abs(np.fft.rfft(x * w)) ** 2 / (x.size * np.sum(w**2))
    p[1:] *= 2
    if x.size % 2 == 0:
        p[-1] /= 2
    return np.fft.rfftfreq(x.size, 1 / rate), p


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.sampled_from([8, 255, 1024, 4096]),
    rate=st.sampled_from([1000.0, 8192.0, 25600.0]),
)
def test_spectrum_matches_numpy(seed: int, n: int, rate: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, n)
    bands = [(0.0, 50.0), (50.0, 200.0), (200.0, rate / 2 + 1)]
    faults = {"a": float(rng.uniform(0, rate / 2)), "b": 100.0}
    got = spectrum_features(x, rate, bands, faults, tolerance_hz=3.0)
    freqs, p = reference_spectrum(x, rate)
    assert got["dominant_hz"] == freqs[1 + np.argmax(p[1:])]
    for lo, hi in bands:
        assert got[band_name(lo, hi)] == pytest.approx(p[(freqs >= lo) & (freqs < hi)].sum())
    near = np.zeros(p.size, bool)
    for name, hz in faults.items():
        mask = np.abs(freqs - hz) <= 3.0
        near |= mask
        assert got[f"fault_{name}"] == pytest.approx(p[mask].sum(), abs=1e-12)
    assert got["fault_ratio"] == pytest.approx(p[near].sum() / p.sum())
    # Bin powers sum to the Hann-weighted mean square (Parseval).
    w = np.hanning(n)
    assert got[band_name(*bands[0])] + got[band_name(*bands[1])] + got[
        band_name(*bands[2])
    ] == pytest.approx(np.sum(((x - x.mean()) * w) ** 2) / np.sum(w**2))


def test_pure_tone_at_a_fault_frequency() -> None:
    hz = 100.0  # on a bin (2 Hz resolution)
    x = 5.0 + 3.0 * np.sin(2 * np.pi * hz * TIME)
    f = spectrum_features(x, RATE, MOTOR.bands, {"tone": hz, "other": 300.0})
    assert f["dominant_hz"] == hz
    assert f["fault_tone"] == pytest.approx(4.5)  # mean square of a 3.0-amplitude sine
    assert f["fault_other"] == pytest.approx(0.0, abs=1e-9)
    assert f["fault_ratio"] == pytest.approx(1.0)
    assert f["band_50_200"] == pytest.approx(4.5)
    assert set(f) == {
        "dominant_hz",
        "band_0_50",
        "band_50_200",
        "band_200_1000",
        "band_1000_4096",
        "fault_tone",
        "fault_other",
        "fault_ratio",
    }


def test_bearing_fault_raises_its_energy() -> None:
    rng = np.random.default_rng(0)
    healthy = np.sin(2 * np.pi * MOTOR.fault_frequencies["shaft"] * TIME) + rng.normal(0, 0.3, N)
    faulty = healthy + 0.8 * np.sin(2 * np.pi * MOTOR.fault_frequencies["bpfo"] * TIME)
    args = (RATE, MOTOR.bands, MOTOR.fault_frequencies)
    h, f = spectrum_features(healthy, *args), spectrum_features(faulty, *args)
    assert f["fault_bpfo"] > 10 * h["fault_bpfo"]
    assert f["fault_ratio"] > h["fault_ratio"]


def test_nan_samples_empty_and_flat_bursts() -> None:
    x = np.sin(2 * np.pi * 200.0 * TIME)
    x[::50] = np.nan
    f = spectrum_features(x, RATE, [(0, 4096)], {})
    assert f["dominant_hz"] == 200.0 and math.isfinite(f["band_0_4096"])
    assert spectrum_features(np.full(16, np.nan), RATE, [], {}) == {}
    assert spectrum_features(np.array([]), RATE, [], {}) == {}
    flat = spectrum_features(np.full(64, 2.0), RATE, [(0, 100)], {"x": 10.0})
    assert flat["fault_ratio"] == 0.0 and flat["band_0_100"] == 0.0


def test_spectrum_is_deterministic() -> None:
    x = np.random.default_rng(3).normal(size=N)
    args = (RATE, MOTOR.bands, MOTOR.fault_frequencies)
    assert spectrum_features(x, *args) == spectrum_features(x.copy(), *args)


def test_band_names_have_no_dots() -> None:
    assert band_name(0.0, 50.0) == "band_0_50"
    assert band_name(12.5, 1000.0) == "band_12p5_1000"
