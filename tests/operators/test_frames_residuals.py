"""Residuals of a batch of frames: the bundled element-wise models called once per batch give
every frame exactly what ``add_residuals`` gives it alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.operators.test_physics import PHYSICS, compressor, frame
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.core.records import Frame, TelemetryFrame
from twinflow.operators.catalog import CATALOG, TwinType
from twinflow.operators.frames_residuals import add_residuals_batch
from twinflow.operators.residuals import add_residuals


def bundled(twin_id: str, name: str) -> TwinType | None:
    return CATALOG.get(name)


def same(a: Frame, b: Frame) -> bool:
    """The same signals in the same order, bit for bit, and the same other fields."""
    if not (isinstance(a, TelemetryFrame) and isinstance(b, TelemetryFrame)):
        return a is b
    return (
        list(a.signals) == list(b.signals)
        and all(
            a.signals[k].dtype == b.signals[k].dtype
            and a.signals[k].tobytes() == b.signals[k].tobytes()
            for k in a.signals
        )
        and a.times is b.times
        and (a.twin_id, a.twin_type, a.source, a.quality, a.units, a.out_of_range)
        == (b.twin_id, b.twin_type, b.source, b.quality, b.units, b.out_of_range)
    )


@pytest.fixture(scope="module")
def plant_frames() -> list[Frame]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    plant = Plant(PlantConfig(n_twins=9, duration_s=1800, seed=5, start=start, chunk_s=10))
    return list(plant.items())  # turbines, pumps and motors, with dropouts and waveforms


@pytest.mark.parametrize("size", [1, 5, 64, 10_000])
def test_a_batch_gives_each_frame_what_it_gets_alone(plant_frames: list[Frame], size: int) -> None:
    alone = [
        add_residuals(f, CATALOG[f.twin_type]) if isinstance(f, TelemetryFrame) else f
        for f in plant_frames
    ]
    batched: list[Frame] = []
    for i in range(0, len(plant_frames), size):
        batched += add_residuals_batch(plant_frames[i : i + size], bundled)
    assert len(batched) == len(alone)
    assert all(same(a, b) for a, b in zip(alone, batched, strict=True))
    changed = sum(b is not f for b, f in zip(batched, plant_frames, strict=True))
    assert changed == sum(a is not f for a, f in zip(alone, plant_frames, strict=True)) > 0
    residual = next(b for b in batched if isinstance(b, TelemetryFrame) and
                    "power_residual_kw" in b.signals)  # fmt: skip
    assert np.isfinite(residual.signals["power_residual_kw"]).any()
    assert residual.signals["power_residual_kw"].base is not None  # a slice of the joined call


def test_other_models_and_missing_inputs_take_the_frame_by_frame_path(tmp_path: Path) -> None:
    kind = compressor(tmp_path, PHYSICS)  # a user's model: not known to be element-wise
    whole = frame("compressor", discharge_pressure=[8.0, 10.0], motor_power=[170.0, 200.0])
    partial = frame("compressor", discharge_pressure=[8.0])
    out = add_residuals_batch([whole, partial], lambda twin, name: kind)
    assert out[0].signals["power_residual_kw"].tolist() == [10.0, 0.0]  # type: ignore[union-attr]
    assert out[1] is partial
    turbine = frame("wind_turbine", wind_speed=[8.0, 9.0])  # no power: the curve adds nothing
    assert add_residuals_batch([turbine], bundled)[0] is turbine
