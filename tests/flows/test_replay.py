"""``twinflow replay``: formats, mapping, time zones, bad input, scoring, and equivalence with
the flow fed directly (all without services)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import polars as pl
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.connectors.files import read_jsonl, read_parquet_dir
from twinflow.connectors.recorded.spec import ReplaySpec, load_spec, replay_spec
from twinflow.connectors.recorded.times import ReplayError
from twinflow.connectors.simulator import Plant, PlantConfig, SimulatedPlantSource
from twinflow.core.errors import ConfigError, DecodeError
from twinflow.core.records import RawMessage, TelemetryFrame
from twinflow.flows.cli import main
from twinflow.flows.config import FlowConfig
from twinflow.flows.deploy import load_deployment
from twinflow.flows.metrics import RunStats
from twinflow.flows.outputs import file_outputs
from twinflow.flows.replay import run_replay
from twinflow.flows.telemetry import build_flow
from twinflow.operators.catalog import CATALOG
from twinflow.operators.decode import decode
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

PUMP = ("flow_m3h", "suction_bar", "discharge_bar", "motor_current_a", "motor_voltage_v")


def deployment(tmp: Path, twins: dict[str, str], flow: str = "") -> Path:
    lines = ["version: 1", "site: rig", "twins:"]
    lines += [f"  - {{id: {t}, type: {k}, protocol: replay}}" for t, k in twins.items()]
    path = tmp / "dep.yaml"
    path.write_text("\n".join(lines) + "\n" + flow)
    return path


def pump_rows(n: int, start: str = "2024-03-01T00:00:00", seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start)
    times = [str(t0 + np.timedelta64(i, "s")) for i in range(n)]
    return pl.DataFrame(
        {
            "time": times,
            "flow_m3h": 250 + rng.normal(0, 1, n),
            "suction_bar": 1.0 + rng.normal(0, 0.01, n),
            "discharge_bar": 8.0 + rng.normal(0, 0.05, n),
            "motor_current_a": 80 + rng.normal(0, 0.5, n),
            "motor_voltage_v": 400 + rng.normal(0, 0.5, n),
        }
    )


def replay(dep: Path, files: list[Path], out: Path, **spec: Any) -> dict[str, Any]:
    s = replay_spec(spec, Path("test.yaml")) if spec else ReplaySpec()
    return run_replay(load_deployment(dep), files, s, out, progress=None)


def telemetry(out: Path) -> pl.DataFrame:
    return read_parquet_dir(out / "telemetry").sort("twin_id", "time")


def dead(out: Path) -> list[dict[str, Any]]:
    return read_jsonl(out / "deadletter.jsonl")


# -- formats ---------------------------------------------------------------------------------


def test_wide_csv_with_twin_column(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump", "p2": "pump"})
    df = pl.concat([pump_rows(600).with_columns(twin_id=pl.lit(t)) for t in ("p1", "p2")]).sort(
        "time"
    )
    df.write_csv(tmp_path / "rig.csv")
    s = replay(dep, [tmp_path / "rig.csv"], tmp_path / "out", time={"zone": "UTC"})
    assert s["rows"] == 1200 and s["readings"] == 1200 * 5 and s["dead_letters"] == 0
    t = telemetry(tmp_path / "out")
    assert t.height == 1200 and set(t["twin_id"]) == {"p1", "p2"}
    got = t.filter(pl.col("twin_id") == "p1")["flow_m3h"].to_numpy()
    assert np.allclose(got, df.filter(pl.col("twin_id") == "p1")["flow_m3h"].to_numpy())
    assert (tmp_path / "out" / "windows").exists() and (tmp_path / "out" / "summary.json").exists()


def test_long_csv(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    wide = pump_rows(300)
    long = wide.unpivot(index="time", variable_name="signal", value_name="value").with_columns(
        twin_id=pl.lit("p1")
    )
    long.write_csv(tmp_path / "long.csv")
    s = replay(dep, [tmp_path / "long.csv"], tmp_path / "out", format="long", time={"zone": "UTC"})
    assert s["readings"] == 300 * 5 and s["dead_letters"] == 0
    t = telemetry(tmp_path / "out")
    assert t.height == 300
    assert np.allclose(t["discharge_bar"].to_numpy(), wide["discharge_bar"].to_numpy())


def test_parquet_with_native_times_and_one_twin_per_file(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump", "p2": "pump"})
    for twin, seed in (("p1", 1), ("p2", 2)):
        df = pump_rows(240, seed=seed).with_columns(
            pl.col("time").str.to_datetime().dt.replace_time_zone("UTC")
        )
        df.write_parquet(tmp_path / f"{twin}.parquet")
    files = [tmp_path / "p1.parquet", tmp_path / "p2.parquet"]
    s = replay(dep, files, tmp_path / "out")
    assert s["readings"] == 2 * 240 * 5 and s["dead_letters"] == 0
    assert set(telemetry(tmp_path / "out")["twin_id"]) == {"p1", "p2"}


def test_one_file_named_twin(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(60).write_csv(tmp_path / "rig-run-3.csv")
    s = replay(dep, [tmp_path / "rig-run-3.csv"], tmp_path / "out", twin="p1", time={"zone": "UTC"})
    assert s["readings"] == 300
    with pytest.raises(ReplayError, match=r"rig-run-3\.csv.*not a twin of the deployment"):
        replay(dep, [tmp_path / "rig-run-3.csv"], tmp_path / "o2", time={"zone": "UTC"})


def test_scale_and_offset_mapping(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    df = pump_rows(60).rename({"discharge_bar": "p_out_kpa", "flow_m3h": "flow_ls"})
    df.write_csv(tmp_path / "p1.csv")
    columns = {
        "p_out_kpa": {"signal": "discharge_bar", "scale": 0.01},
        "flow_ls": {"signal": "flow_m3h", "scale": 0.5, "offset": 1.0},
    }
    replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", columns=columns, time={"zone": "UTC"})
    t = telemetry(tmp_path / "out")
    assert np.allclose(t["discharge_bar"].to_numpy(), df["p_out_kpa"].to_numpy() * 0.01)
    assert np.allclose(t["flow_m3h"].to_numpy(), df["flow_ls"].to_numpy() * 0.5 + 1.0)


def test_twin_type_limited_to_recorded_signals(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(60).select("time", "flow_m3h").write_csv(tmp_path / "p1.csv")
    s = replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})
    assert s["readings"] == 60 and s["dead_letters"] == 0


# -- time zones ------------------------------------------------------------------------------


def test_naive_times_in_declared_zone(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(10, start="2024-07-01T12:00:00").write_csv(tmp_path / "p1.csv")
    replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "Europe/Berlin"})
    first = telemetry(tmp_path / "out")["time"][0]
    assert first.isoformat() == "2024-07-01T10:00:00+00:00"  # CEST is UTC+2


def test_offsets_and_epoch_units(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    df = pump_rows(10).with_columns(time=pl.col("time") + "+01:00")
    df.write_csv(tmp_path / "p1.csv")
    replay(dep, [tmp_path / "p1.csv"], tmp_path / "out")  # offsets need no zone
    assert telemetry(tmp_path / "out")["time"][0].isoformat() == "2024-02-29T23:00:00+00:00"
    ms = pump_rows(10).with_columns(
        time=pl.Series([1_709_251_200_000 + 1000 * i for i in range(10)])
    )
    ms.write_csv(tmp_path / "p1.csv")
    replay(dep, [tmp_path / "p1.csv"], tmp_path / "o2", time={"unit": "ms"})
    assert telemetry(tmp_path / "o2")["time"][0].isoformat() == "2024-03-01T00:00:00+00:00"


def test_naive_times_without_zone_are_one_error(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(10).write_csv(tmp_path / "p1.csv")
    with pytest.raises(ReplayError, match=r"p1.csv: row 1, column 'time': .*replay.time.zone"):
        replay(dep, [tmp_path / "p1.csv"], tmp_path / "out")


def test_mixed_zones_are_one_error(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    df = pump_rows(10)
    times = df["time"].to_list()
    times[4] += "Z"
    df.with_columns(time=pl.Series(times)).write_csv(tmp_path / "p1.csv")
    with pytest.raises(ReplayError, match=r"p1.csv: row 5, column 'time': .* must not mix zones"):
        replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})


def test_bad_zone_names_file_and_field(tmp_path: Path) -> None:
    spec = tmp_path / "replay.yaml"
    spec.write_text("replay:\n  time:\n    zone: Europe/Atlantis\n")
    with pytest.raises(ConfigError, match=r"replay.yaml: replay.time.zone = 'Europe/Atlantis'"):
        load_spec(spec)
    spec.write_text("replay:\n  colums: {}\n")
    with pytest.raises(ConfigError, match=r"unknown field 'replay.colums'; did you mean 'columns'"):
        load_spec(spec)


# -- bad input -------------------------------------------------------------------------------


def test_missing_column_is_one_error(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(10).rename({"time": "ts"}).write_csv(tmp_path / "p1.csv")
    with pytest.raises(ReplayError, match=r"p1.csv: row 0 \(header\), column 'time' is missing"):
        replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})


def test_mapped_column_missing_is_a_dead_letter(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(10).drop("discharge_bar").write_csv(tmp_path / "p1.csv")
    cols = {"p_out": "discharge_bar"}
    s = replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", columns=cols, time={"zone": "UTC"})
    (d,) = dead(tmp_path / "out")
    assert "column 'p_out'" in d["reason"] and "missing" in d["reason"]
    assert s["readings"] == 40


def test_unknown_column_is_a_dead_letter_and_the_rest_flows(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(10).with_columns(oil_temp=pl.lit(60.0)).write_csv(tmp_path / "p1.csv")
    s = replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})
    (d,) = dead(tmp_path / "out")
    assert d["stage"] == "decode" and d["readings"] == 10 and d["twin_id"] == "p1"
    assert "p1.csv: rows 1, 2, 3, 4, 5 and 5 more, column 'oil_temp'" in d["reason"]
    assert s["readings"] == 50


def test_unparseable_values_are_dead_letters(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    df = pump_rows(10).with_columns(pl.col("flow_m3h").cast(pl.String))
    flows = df["flow_m3h"].to_list()
    flows[2] = "12,5"
    df.with_columns(flow_m3h=pl.Series(flows)).write_csv(tmp_path / "p1.csv")
    s = replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})
    (d,) = dead(tmp_path / "out")
    assert "row 3, column 'flow_m3h': not a number ('12,5')" in d["reason"]
    assert d["readings"] == 1
    t = telemetry(tmp_path / "out")
    assert t.height == 10 and np.isnan(t["flow_m3h"][2]) and s["readings"] == 50


def test_unreadable_time_is_a_dead_letter(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    df = pump_rows(10)
    times = df["time"].to_list()
    times[3] = "yesterday"
    df.with_columns(time=pl.Series(times)).write_csv(tmp_path / "p1.csv")
    replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})
    (d,) = dead(tmp_path / "out")
    assert "row 4, column 'time': unreadable time ('yesterday')" in d["reason"]
    assert d["readings"] == 5 and telemetry(tmp_path / "out").height == 9


def test_time_going_backwards_and_duplicates(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    df = pump_rows(10)
    times = df["time"].to_list()
    times[5] = times[1]  # backwards
    times[8] = times[7]  # duplicate
    df.with_columns(time=pl.Series(times)).write_csv(tmp_path / "p1.csv")
    replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})
    reasons = sorted(d["reason"] for d in dead(tmp_path / "out"))
    assert any("row 6, column 'time': time goes backwards" in r for r in reasons)
    assert any("row 9, column 'time': duplicate timestamp" in r for r in reasons)
    assert telemetry(tmp_path / "out").height == 8


@pytest.mark.parametrize(
    ("rows", "step_s", "flow"),
    [(30 * 144, 600, ""), (24 * 60, 60, "flow: {max_past_s: 7200}\n")],
    ids=["30 days, default max_past_s", "1 day, max_past_s 2 h"],
)
def test_one_file_longer_than_max_past_is_replayed_whole(
    tmp_path: Path, rows: int, step_s: int, flow: str
) -> None:
    # One chunk longer than max_past_s: the replay's clock (the latest time read) must not
    # run ahead of the rows it judges, or all but the last max_past_s are refused.
    dep = deployment(tmp_path, {"p1": "pump"}, flow)
    t0 = np.datetime64("2024-03-01T00:00:00")
    times = [str(t0 + np.timedelta64(step_s * i, "s")) for i in range(rows)]
    pump_rows(rows).with_columns(time=pl.Series(times)).write_csv(tmp_path / "p1.csv")
    s = replay(dep, [tmp_path / "p1.csv"], tmp_path / "out", time={"zone": "UTC"})
    assert dead(tmp_path / "out") == []
    assert telemetry(tmp_path / "out").height == rows and s["readings"] == rows * 5


def test_unknown_twin_rows_are_dead_letters(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    df = pump_rows(6).with_columns(twin_id=pl.Series(["p1", "p9"] * 3))
    df.write_csv(tmp_path / "rig.csv")
    replay(dep, [tmp_path / "rig.csv"], tmp_path / "out", time={"zone": "UTC"})
    (d,) = dead(tmp_path / "out")
    assert "rows 2, 4, 6, column 'twin_id': twin 'p9' is not deployed" in d["reason"]
    assert d["readings"] == 15


def test_cli_prints_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(10).write_csv(tmp_path / "p1.csv")
    code = main(["replay", str(dep), str(tmp_path / "p1.csv"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "p1.csv: row 1, column 'time'" in capsys.readouterr().err


def test_the_deployment_file_may_describe_the_recording(tmp_path: Path) -> None:
    """A ``replay:`` section in the deployment file is used when no ``--spec`` is given."""
    section = "replay:\n  time: {column: ts, unit: s}\n  columns: {flow: flow_m3h}\n"
    dep = deployment(tmp_path, {"p1": "pump"}, section)
    df = pump_rows(600).rename({"flow_m3h": "flow"})
    df = df.with_columns(ts=pl.int_range(0, df.height) + 1_709_251_200).drop("time")
    df.write_csv(tmp_path / "p1.csv")
    out = tmp_path / "o"
    assert main(["replay", str(dep), str(tmp_path / "p1.csv"), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["readings"] == 600 * 5


def test_a_bad_replay_section_names_the_deployment_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dep = deployment(tmp_path, {"p1": "pump"}, "replay:\n  time: {unit: hours}\n")
    pump_rows(10).write_csv(tmp_path / "p1.csv")
    assert main(["replay", str(dep), str(tmp_path / "p1.csv"), "--out", str(tmp_path / "o")]) == 2
    assert f"{dep}: replay.time.unit" in capsys.readouterr().err


# -- scoring ---------------------------------------------------------------------------------


def test_scoring_a_labelled_recording(tmp_path: Path) -> None:
    """A sensor stuck for the second hour, labelled: an alert within the span, none before."""
    dep = deployment(tmp_path, {"p1": "pump"}, "flow:\n  anomaly_warmup: 4\n")
    df = pump_rows(3 * 3600)
    stuck = pl.int_range(0, df.height).is_between(3600, 7199)
    df = df.with_columns(
        discharge_bar=pl.when(stuck).then(8.0).otherwise(pl.col("discharge_bar")),
        anomaly=stuck.cast(pl.Int8),
    )
    df.write_csv(tmp_path / "p1.csv")
    code = main(
        [
            "replay",
            str(dep),
            str(tmp_path / "p1.csv"),
            "--out",
            str(tmp_path / "out"),
            "--tz",
            "UTC",
            "--labels",
            "anomaly",
            "--quiet",
        ]
    )
    assert code == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())["scores"]
    assert s["truth"] == "labels" and s["eventwise"]["events"] == 1
    assert set(s["pointwise"]) >= {"precision", "recall", "f1", "tp", "fp", "fn", "tn"}
    assert s["eventwise"]["detected"] == 1 and s["eventwise"]["recall"] == 1.0
    assert s["false_alarms_per_day"] == round(s["false_alarms"] / s["days"], 3)
    assert s["pointwise"]["tp"] >= 1


def test_scoring_with_a_faults_file(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"p1": "pump"}, "flow:\n  anomaly_warmup: 4\n")
    df = pump_rows(3 * 3600)
    stuck = pl.int_range(0, df.height) >= 3600
    df.with_columns(
        discharge_bar=pl.when(stuck).then(8.0).otherwise(pl.col("discharge_bar"))
    ).write_csv(tmp_path / "p1.csv")
    (tmp_path / "faults.csv").write_text(
        "twin_id,kind,onset,failure\np1,sensor_stuck,2024-03-01T01:00:00Z,2024-03-01T03:00:00Z\n"
    )
    code = main(
        [
            "replay",
            str(dep),
            str(tmp_path / "p1.csv"),
            "--out",
            str(tmp_path / "out"),
            "--tz",
            "UTC",
            "--faults",
            str(tmp_path / "faults.csv"),
            "--quiet",
        ]
    )
    assert code == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())["scores"]
    assert s["truth"] == "faults" and s["eventwise"]["detected"] == 1
    assert s["lead_time_hours"]["max"] > 0 and s["events"][0]["diagnosed"]
    assert set(s["rul"]) == {
        "estimates", "rmse_hours", "alpha", "alpha_lambda", "interval_coverage"
    }  # fmt: skip


# -- the same alerts as the flow fed directly -----------------------------------------------


def simulated_frames(twins: int, hours: float) -> tuple[Plant, list[TelemetryFrame]]:
    plant = Plant(
        PlantConfig(n_twins=twins, duration_s=hours * 3600, seed=7, burst_interval_s=3600.0)
    )
    items: list[Any] = []
    flow = Dataflow("gen")
    op.output(
        "out", op.input("in", flow, SimulatedPlantSource(plant, partitions=1)), TestingSink(items)
    )
    run_main(flow)
    frames = []
    for item in items:
        if isinstance(item, RawMessage):
            try:
                item = decode(item)
            except DecodeError:
                continue
        # what a recording holds: the frames the flow accepts as they are (the simulator's
        # deliberately broken ones are dead-lettered differently by each path)
        ok = check_item(item, Validator(twins=dict(plant.twins)), plant.now())
        if isinstance(item, TelemetryFrame) and ok == [item]:
            frames.append(item)
    return plant, frames


def write_recording(frames: list[TelemetryFrame], folder: Path) -> list[Path]:
    """One wide CSV per twin type, with a twin_id column and epoch-second times."""
    parts: dict[str, list[pl.DataFrame]] = {}
    for f in frames:
        cols = {"time": f.times, "twin_id": [f.twin_id] * len(f.times), **f.signals}
        parts.setdefault(f.twin_type, []).append(pl.DataFrame(cols))
    paths = []
    for kind, dfs in parts.items():
        path = folder / f"{kind}.csv"
        pl.concat(dfs, how="diagonal_relaxed").write_csv(path, float_precision=17)
        paths.append(path)
    return paths


def alert_keys(out: Path) -> list[tuple[str, str, str, str]]:
    return sorted(
        (a["twin_id"], a["rule"], a["state"], a["time"]) for a in read_jsonl(out / "alerts.jsonl")
    )


def test_replay_of_a_simulated_recording_raises_the_same_alerts(tmp_path: Path) -> None:
    plant, frames = simulated_frames(6, 6.0)
    files = write_recording(frames, tmp_path)
    twins = dict(plant.twins)
    dep = deployment(tmp_path, twins)
    cfg = FlowConfig(out_dir=tmp_path / "direct")
    # Like for like: the recording holds no waveform bursts, and a replayed twin's type is
    # limited to the signals its recording carries; the direct run gets the same types.
    recorded = {
        tid: replace(CATALOG[kind], signals=CATALOG[kind].scalar_signals)
        for tid, kind in twins.items()
    }
    direct = build_flow(
        TestingSource(frames),
        file_outputs(cfg),
        cfg,
        clock=plant.now,
        twins=twins,
        stats=RunStats(),
        twin_types=recorded,
    )
    run_main(direct)
    s = replay(dep, files, tmp_path / "replayed", time={"unit": "s"}, frame_rows=60)
    expected = alert_keys(tmp_path / "direct")
    assert expected, "the simulated plant should raise alerts in 6 h"
    assert alert_keys(tmp_path / "replayed") == expected
    assert s["readings"] == sum(f.readings for f in frames)


def test_a_stop_event_ends_the_replay_early(tmp_path: Path) -> None:
    import threading

    dep = deployment(tmp_path, {"p1": "pump"})
    pump_rows(3600).write_csv(tmp_path / "p1.csv")
    stop = threading.Event()
    stop.set()  # a signal before the first batch: nothing is read, the summary is written
    s = run_replay(
        load_deployment(dep), [tmp_path / "p1.csv"], replay_spec({"time": {"zone": "UTC"}},
        Path("t.yaml")), tmp_path / "out", progress=None, stop=stop,
    )  # fmt: skip
    assert s["readings"] < 3600 * 5
    assert (tmp_path / "out" / "summary.json").exists()
