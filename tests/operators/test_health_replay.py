"""Health index and RUL of a type with no health indicators, end to end through
``twinflow replay``: the anomaly-score index finds the onset, the windows (Parquet, and the
PostgreSQL row built from them) carry the RUL with its interval, and a failure level is
learned from a scored run-to-failure replay (``history``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.operators.compressor import write_compressor
from twinflow.connectors.files import read_parquet_dir
from twinflow.connectors.postgres.rows import window_row
from twinflow.connectors.recorded.spec import replay_spec
from twinflow.core.errors import ConfigError
from twinflow.core.records import RulEstimate, WindowFeatures
from twinflow.core.times import utc
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replay import run_replay
from twinflow.operators.health_profile import learned_failure

START = 1_709_251_200  # 2024-03-01T00:00:00Z
ONSET_H, FAILURE_H = 5.0, 10.0


def run_to_failure(folder: Path, twin: str, seed: int, stretch: float = 1.0) -> Path:
    """A compressor healthy for 5 h whose discharge temperature then climbs (quadratically)
    by 60 K to a failure at 10 h (times ``stretch``): 1 Hz, 1 % noise, a wide CSV."""
    n = int(FAILURE_H * stretch * 3600)
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    onset = ONSET_H * stretch * 3600
    life = (FAILURE_H - ONSET_H) * stretch * 3600
    rise = np.where(t >= onset, 60.0 * ((t - onset) / life) ** 2, 0.0)
    times = pl.from_epoch(pl.Series((START + t).astype(np.int64)), time_unit="s")
    df = pl.DataFrame(
        {
            "time": times.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "discharge_pressure": 8.0 + rng.normal(0, 0.08, n),
            "discharge_temp": 80.0 + rise + rng.normal(0, 0.8, n),
            "motor_power": 150.0 + rng.normal(0, 1.5, n),
        }
    )
    path = folder / f"{twin}.csv"
    df.write_csv(path)
    return path


def setup(tmp: Path, twins: list[str]) -> tuple[Path, Path]:
    write_compressor(tmp / "models")
    lines = ["version: 1", "site: rig", "models: [models]", "twins:"]
    lines += [f"  - {{id: {t}, type: compressor, protocol: replay}}" for t in twins]
    dep = tmp / "dep.yaml"
    dep.write_text("\n".join(lines) + "\n")
    faults = tmp / "faults.csv"
    rows = ["twin_id,kind,onset,failure"]
    for t in twins:
        on = utc(START + ONSET_H * 3600).isoformat()
        fail = utc(START + FAILURE_H * 3600).isoformat()
        rows.append(f"{t},degradation,{on},{fail}")
    faults.write_text("\n".join(rows) + "\n")
    return dep, faults


SPEC = replay_spec({"time": {"zone": "UTC"}}, Path("test.yaml"))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scored run-to-failure replay of two compressors."""
    tmp = tmp_path_factory.mktemp("history")
    dep, faults = setup(tmp, ["c1", "c2"])
    files = [run_to_failure(tmp, "c1", 1), run_to_failure(tmp, "c2", 2)]
    out = tmp / "out"
    run_replay(load_deployment(dep), files, SPEC, out, faults=faults, progress=None)
    return out


def test_windows_carry_the_rul_with_its_interval(history: Path) -> None:
    w = read_parquet_dir(history / "windows").sort("twin_id", "end")
    assert {"rul_hours", "rul_low_hours", "rul_high_hours", "health"} <= set(w.columns)
    c1 = w.filter(pl.col("twin_id") == "c1")
    end_h = (c1["end"].dt.epoch("s").to_numpy() - START) / 3600.0
    healthy = c1.filter(pl.Series(end_h < ONSET_H))
    # healthy: no finite life, health near 1 once the index has a baseline
    assert healthy["rul_hours"].drop_nulls().is_infinite().all()
    late = c1.filter(pl.Series(end_h > ONSET_H + 3.5))
    assert late.height > 0 and late["rul_hours"].is_finite().all()
    for row in late.iter_rows(named=True):
        assert row["rul_low_hours"] <= row["rul_hours"] <= row["rul_high_hours"]
    assert late["health"].min() < 0.5 * healthy["health"].drop_nulls().min()


def test_twin_states_carry_the_newest_estimate_of_their_windows(history: Path) -> None:
    states = read_parquet_dir(history / "twin_states").filter(pl.col("twin_id") == "c1")
    windows = read_parquet_dir(history / "windows").filter(pl.col("twin_id") == "c1")
    late = states.sort("time").tail(1).row(0, named=True)
    newest = windows.filter(pl.col("rul_hours").is_finite()).sort("end").tail(1)
    assert newest.height == 1 and late["rul_hours"] is not None
    assert late["rul_low_hours"] <= late["rul_hours"] <= late["rul_high_hours"]
    # the last state's estimate is one its windows gave (no later window is left out)
    assert (late["rul_low_hours"], late["rul_high_hours"]) in set(
        zip(windows["rul_low_hours"], windows["rul_high_hours"], strict=True)
    )
    first = states.sort("time").head(1).row(0, named=True)
    assert first["rul_hours"] is None  # before any window had an estimate


def test_the_database_row_carries_the_interval() -> None:
    w = WindowFeatures(
        "c1", "compressor", utc(0), utc(300), {}, rul=RulEstimate("anomaly_score", 0.4, 5, 3, 9)
    )
    row = window_row(1, w)
    assert row[-5:] == ("anomaly_score", 5.0, 3.0, 9.0, 0.4)


def test_a_failure_level_is_learned_from_history(history: Path, tmp_path: Path) -> None:
    dep, faults = setup(tmp_path, ["c3"])
    files = [run_to_failure(tmp_path, "c3", 3, stretch=1.2)]
    s = run_replay(
        load_deployment(dep), files, SPEC, tmp_path / "out", faults=faults, history=history,
        progress=None,
    )  # fmt: skip
    levels = s["learned_failure_levels"]["compressor"]
    assert math.isfinite(levels["*"]["level"]) and levels["*"]["level"] > 0.0
    assert levels["*"]["log_spread"] >= 0.1
    # the failures were driven by the discharge temperature, so it has a level of its own
    assert levels.get("discharge_temp") == levels["*"]
    assert s["scores"]["rul"]["estimates"] > 0
    # the two failed compressors' trajectories give the life by similarity, with its interval
    assert s["learned_trajectories"] == {"compressor": 2}
    late = read_parquet_dir(tmp_path / "out" / "windows").filter(pl.col("rul_hours").is_finite())
    assert late.height > 0
    assert (late["rul_low_hours"] <= late["rul_hours"]).all()
    assert (late["rul_hours"] <= late["rul_high_hours"]).all()


def test_history_needs_a_replay_scored_with_faults(tmp_path: Path) -> None:
    dep, _ = setup(tmp_path, ["c1"])
    files = [run_to_failure(tmp_path, "c1", 1, stretch=0.1)]
    plain = tmp_path / "plain"
    run_replay(load_deployment(dep), files, SPEC, plain, progress=None)
    with pytest.raises(ConfigError, match="not scored with --faults"):
        run_replay(load_deployment(dep), files, SPEC, tmp_path / "o", history=plain)
    with pytest.raises(ConfigError, match=r"no readable summary\.json"):
        run_replay(load_deployment(dep), files, SPEC, tmp_path / "o2", history=tmp_path / "x")


def test_learned_failure_is_empty_for_a_plain_type() -> None:
    assert learned_failure(None) == {}


def test_scoring_counts_alpha_lambda_and_interval_coverage() -> None:
    from twinflow.core.records import FaultTruth
    from twinflow.flows.scoring import rul_errors

    onset, failure = utc(START), utc(START + 10 * 3600)
    ends = [utc(START + h * 3600) for h in (2.5, 5.0, 7.5)]  # lambda 0.25, 0.5, 0.75
    windows = pl.DataFrame(
        {
            "twin_id": ["a"] * 3 + ["b"] * 3,
            "end": ends + ends,
            # a: right at 0.25 and 0.5 (truth 7.5, 5.0), 50 % off at 0.75 (truth 2.5)
            "rul_hours": [7.4, 5.5, 3.75, math.inf, math.inf, None],
            "rul_low_hours": [7.0, 4.8, 3.0, 1.0, math.inf, None],
            "rul_high_hours": [8.0, 6.0, 4.0, math.inf, math.inf, None],
        }
    )
    events = [FaultTruth("a", "wear", onset, failure), FaultTruth("b", "wear", onset, failure)]
    out = rul_errors(events, windows)
    # b never had a finite estimate: a miss at every lambda, covered only where its
    # interval [1, inf) held the truth
    assert out["alpha_lambda"] == {"0.25": 0.5, "0.5": 0.5, "0.75": 0.0}
    assert out["interval_coverage"] == {"0.25": 1.0, "0.5": 0.5, "0.75": 0.0}
    assert out["estimates"] == 3


def test_the_command_line_takes_history(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from twinflow.flows.cli import main

    dep, faults = setup(tmp_path, ["c3"])
    data = run_to_failure(tmp_path, "c3", 3)
    args = ["replay", str(dep), str(data), "--tz", "UTC", "--quiet", "--faults", str(faults)]
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--history", str(history)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["learned_failure_levels"], summary.keys()
    assert main([*args, "--out", str(tmp_path / "o2"), "--history", str(tmp_path / "x")]) == 2
    assert "no readable summary.json" in capsys.readouterr().err
