"""Spectrum features with cached bin layouts: each call gets the bands and fault frequencies it
asked for, whatever was asked before with the same burst length and rate."""

from __future__ import annotations

import numpy as np

from twinflow.operators.features import spectrum_features

RATE = 1024.0


def tone(hz: float, n: int = 1024) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(n) / RATE)


def test_layouts_follow_the_bands_and_faults_asked_for() -> None:
    x = tone(100.0)
    low = spectrum_features(x, RATE, [(0, 50)], {"a": 300.0})
    high = spectrum_features(x, RATE, [(50, 200), (200, 400)], {"b": 100.0})
    assert list(low) == ["dominant_hz", "band_0_50", "fault_a", "fault_ratio"]
    assert list(high) == ["dominant_hz", "band_50_200", "band_200_400", "fault_b", "fault_ratio"]
    assert low["band_0_50"] < 1e-3 < high["band_50_200"]
    assert low["fault_ratio"] < 1e-3 and high["fault_ratio"] > 0.9
    # the first layout again, and another length: unchanged answers
    assert spectrum_features(x, RATE, [(0, 50)], {"a": 300.0}) == low
    half = spectrum_features(tone(100.0, 512), RATE, [(0, 50)], {"a": 300.0})
    assert half["dominant_hz"] == 100.0 and half["band_0_50"] < 1e-3


def test_tolerance_is_part_of_the_layout() -> None:
    x = tone(103.0)
    narrow = spectrum_features(x, RATE, [], {"f": 100.0}, tolerance_hz=1.0)
    wide = spectrum_features(x, RATE, [], {"f": 100.0}, tolerance_hz=5.0)
    assert narrow["fault_f"] < wide["fault_f"]
    assert wide["fault_ratio"] > 0.9 > narrow["fault_ratio"]
