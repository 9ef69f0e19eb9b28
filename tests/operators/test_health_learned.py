"""The learned health index through ``twinflow replay --history``: three compressors run to
failure at different speeds give the history; a held-out fourth is replayed with it, and its
windows' RUL comes from the learned index (by similarity), within a hand-checked band."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.operators.compressor import write_compressor
from tests.operators.test_health_replay import SPEC, START, run_to_failure
from twinflow.connectors.files import read_parquet_dir
from twinflow.core.records import WindowFeatures
from twinflow.core.times import utc
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replay import learn_index, run_replay
from twinflow.operators.catalog import load_catalogue
from twinflow.operators.health import HealthTracker
from twinflow.operators.health_profile import with_learned_index

#: twin -> (seed, stretch): onset at 5 h x stretch, failure at 10 h x stretch
HISTORY = {"h1": (11, 0.8), "h2": (12, 1.0), "h3": (13, 1.2)}
HELD_OUT = {"c9": (19, 1.0)}
SIGNALS = {"compressor": {"discharge_pressure", "discharge_temp", "motor_power", "oil_level"}}


def setup(tmp: Path, twins: dict[str, tuple[int, float]]) -> tuple[Path, Path, list[Path]]:
    """A deployment, its faults file and one recording per twin, each with its own life."""
    write_compressor(tmp / "models")
    lines = ["version: 1", "site: rig", "models: [models]", "twins:"]
    lines += [f"  - {{id: {t}, type: compressor, protocol: replay}}" for t in twins]
    dep = tmp / "dep.yaml"
    dep.write_text("\n".join(lines) + "\n")
    rows = ["twin_id,kind,onset,failure"]
    for t, (_, stretch) in twins.items():
        on, fail = (utc(START + h * stretch * 3600).isoformat() for h in (5.0, 10.0))
        rows.append(f"{t},degradation,{on},{fail}")
    faults = tmp / "faults.csv"
    faults.write_text("\n".join(rows) + "\n")
    files = [run_to_failure(tmp, t, seed, stretch) for t, (seed, stretch) in twins.items()]
    return dep, faults, files


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("learned_history")
    dep, faults, files = setup(tmp, HISTORY)
    out = tmp / "out"
    run_replay(load_deployment(dep), files, SPEC, out, faults=faults, progress=None)
    return out


def test_the_index_is_learned_on_the_history_units(history: Path) -> None:
    learned = learn_index(history, SIGNALS)["compressor"]
    # the signals' means only (the per-sample anomaly score is no signal of the type)
    assert learned.index.names == (
        "discharge_pressure.mean",
        "discharge_temp.mean",
        "motor_power.mean",
    )
    assert len(learned.library) == 3
    # the index (first of each course's vectors) rises from about 0 to about 1 at failure
    for traj in learned.library:
        assert traj.values[0][0] < 0.2 and traj.values[-1][0] > 0.8
    # three units: the interval is calibrated leave-one-out; one failure mode, one index
    assert learned.calibration is not None and learned.modes == ()


def test_a_held_out_unit_gets_its_rul_from_the_learned_index(history: Path, tmp_path: Path) -> None:
    dep, faults, files = setup(tmp_path, HELD_OUT)
    out = tmp_path / "out"
    s = run_replay(
        load_deployment(dep), files, SPEC, out, faults=faults, history=history, progress=None
    )
    assert s["learned_index"]["compressor"]["units"] == 3
    w = read_parquet_dir(out / "windows").sort("end")
    end_h = (w["end"].dt.epoch("s").to_numpy() - START) / 3600.0
    w = w.with_columns(pl.Series("age_h", end_h))
    # the health is the learned index's (1 - index, clipped), not the anomaly score's
    index = learn_index(history, SIGNALS)["compressor"].index
    values = index.values(w.select(index.names).fill_null(float("nan")).to_numpy())
    assert s["learned_index"]["compressor"]["interval"] is not None
    rated = w["health"].is_not_null().to_numpy() & np.isfinite(values)
    assert rated.sum() > 100
    expected = 1.0 - np.clip(np.round(values[rated], 6), 0.0, 1.0)
    assert np.allclose(w["health"].to_numpy()[rated], expected, atol=1e-6)
    # hand check: failure at 10 h; at 7.5 h and 9 h 2.5 h and 1 h remain; the history's
    # lives (8, 10, 12 h) bound what similarity can answer, so +-40 % of the degradation
    # period (5 h) would already be a poor match, and the interval holds the estimate
    for age, truth in ((7.5, 2.5), (9.0, 1.0)):
        row = w.filter((pl.col("age_h") - age).abs() < 0.05).row(0, named=True)
        assert abs(row["rul_hours"] - truth) <= 1.0, (age, row["rul_hours"])
        assert row["rul_low_hours"] <= row["rul_hours"] <= row["rul_high_hours"]
        assert 0.0 <= row["health"] <= 1.0
    healthy = w.filter(pl.col("age_h") < 4.0)["health"].drop_nulls()
    late = w.filter(pl.col("age_h") > 9.0)["health"].drop_nulls()
    assert healthy.min() > 0.7 and late.max() < 0.4


def test_tracker_state_stays_small_and_old_snapshots_load(history: Path) -> None:
    learned = learn_index(history, SIGNALS)["compressor"]
    compressor = load_catalogue([history.parent / "models"]).get("compressor")
    assert compressor is not None
    kind = with_learned_index(compressor, learned)
    tracker = HealthTracker("c9", "compressor")
    old = pickle.dumps(tracker)  # no learned points: as a snapshot from before them
    rng = np.random.default_rng(0)
    for k in range(500):
        f = {n: float(rng.normal()) for n in learned.index.names}
        w = WindowFeatures("c9", "compressor", utc(k * 60), utc(k * 60 + 60), f)
        tracker.update(w, kind)
    points = tracker.index_points
    assert points is not None and len(points.times) <= learned.recent
    assert points.times[0] < 60 * 60 / 3600.0  # the whole course, older points thinned
    assert len(pickle.dumps(tracker)) <= 64 * 1024
    restored = pickle.loads(old)
    assert restored.index_points is None and restored.score is None
