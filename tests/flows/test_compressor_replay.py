"""A machine type defined only by files raises a diagnosed alert on a fault in recorded data.

Three screw compressors of the example type (``infra/examples/compressor/``: DTDL + profile,
no Python) are recorded at 1 Hz for six hours with load swings and sensor noise; the cooler of
``comp-3`` fouls from 08:00 and its discharge temperature creeps up until it trips at
110 degC. ``twinflow replay`` with a faults file must raise the profile's overheating rules on
``comp-3`` before the trip, nothing on the healthy two, and score the fault as detected.
No services needed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from twinflow.connectors.files import read_jsonl
from twinflow.flows.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infra" / "examples" / "compressor"

START = datetime(2026, 3, 2, 6, tzinfo=UTC)
HOURS = 6.0
ONSET = datetime(2026, 3, 2, 8, tzinfo=UTC)
TRIP_C = 110.0
#: Degrees Celsius per hour the fouled cooler adds.
CREEP = 14.0


def compressor(seed: int, n: int, fault_at: int | None = None) -> dict[str, np.ndarray]:
    """One compressor's 1 Hz readings: a slow load swing (two-hour period, a random walk on
    top), pressure, power and temperature following it, Gaussian sensor noise; from
    ``fault_at`` (seconds) the discharge temperature creeps up by :data:`CREEP` per hour."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    walk = np.cumsum(rng.normal(0.0, 0.0005, n))
    load = 0.7 + 0.08 * np.sin(2 * np.pi * t / 7200 + rng.uniform(0, 2 * np.pi)) + walk
    load = np.clip(load, 0.4, 1.0)
    temp = 72.0 + 14.0 * load + rng.normal(0.0, 0.3, n)
    if fault_at is not None:
        temp += np.where(t >= fault_at, (t - fault_at) * CREEP / 3600.0, 0.0)
    return {
        "discharge_pressure": 7.2 + 0.6 * load + rng.normal(0.0, 0.03, n),
        "discharge_temp": temp,
        "motor_power": 165.0 * load + rng.normal(0.0, 1.5, n),
    }


def write_recording(folder: Path) -> tuple[Path, Path, datetime]:
    """``compressors.csv`` (a twin_id column, naive UTC times, 0.1 s resolution values) and
    ``faults.csv``; returns both and the trip time of ``comp-3``."""
    n = int(HOURS * 3600)
    onset_s = int((ONSET - START).total_seconds())
    times = np.datetime64(START.replace(tzinfo=None), "ms") + np.arange(n) * np.timedelta64(1, "s")
    parts = []
    for i, twin in enumerate(("comp-1", "comp-2", "comp-3")):
        values = compressor(seed=11 + i, n=n, fault_at=onset_s if twin == "comp-3" else None)
        frame = pl.DataFrame({"time": times, "twin_id": [twin] * n, **values})
        if twin == "comp-3":  # the recording stops when the unit trips
            trip = int(np.argmax(values["discharge_temp"] > TRIP_C + 1.0))
            frame = frame.head(trip)
            tripped = START.timestamp() + trip
        parts.append(frame)
    data = pl.concat(parts).sort("time", "twin_id")
    csv = folder / "compressors.csv"
    data.with_columns(pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(
        csv, float_precision=2
    )
    failure = datetime.fromtimestamp(tripped, UTC)
    faults = folder / "faults.csv"
    faults.write_text(
        "twin_id,kind,onset,failure\n"
        f"comp-3,overheating,{ONSET.isoformat()},{failure.isoformat()}\n"
    )
    return csv, faults, failure


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime, str]:
    folder = tmp_path_factory.mktemp("compressors")
    csv, faults, failure = write_recording(folder)
    out = folder / "replayed"
    argv = ["replay", str(EXAMPLE / "recorded.yaml"), str(csv), "--out", str(out)]
    argv += ["--tz", "UTC", "--faults", str(faults), "--quiet"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return out, failure, printed.getvalue()


def test_the_faulty_compressor_is_diagnosed_before_it_trips(
    replayed: tuple[Path, datetime, str],
) -> None:
    out, failure, _ = replayed
    raised = [a for a in read_jsonl(out / "alerts.jsonl") if a["state"] == "raised"]
    faulty = [a for a in raised if a["twin_id"] == "comp-3"]
    assert faulty, "no alert on comp-3"
    first = min(faulty, key=lambda a: a["time"])
    # the raw-sample alarm comes first, minutes after the onset, naming the temperature
    assert first["rule"] == "anomaly_sample" and "driven by discharge_temp" in first["message"]
    assert ONSET < datetime.fromisoformat(first["time"]) < ONSET + timedelta(minutes=10)
    # then the sustained window anomaly, explained by the rising temperature's rule
    diagnosed = min((a for a in faulty if a["diagnosis"]), key=lambda a: a["time"])
    assert diagnosed["diagnosis"] == "overheating"
    assert diagnosed["rule"] in {"anomaly", "heating_up", "overheat"}
    assert ONSET < datetime.fromisoformat(diagnosed["time"]) < failure
    rules = {a["rule"] for a in faulty if datetime.fromisoformat(a["time"]) < failure}
    assert {"heating_up", "overheat"} <= rules
    assert [a for a in raised if a["twin_id"] != "comp-3"] == []


def test_the_summary_scores_the_fault_as_detected(replayed: tuple[Path, datetime, str]) -> None:
    out, _, printed = replayed
    scores = json.loads((out / "summary.json").read_text())["scores"]
    assert scores["truth"] == "faults"
    assert scores["eventwise"]["detected"] == scores["eventwise"]["events"] == 1
    assert scores["false_alarms"] == 0
    assert scores["lead_time_hours"]["min"] > 0.5
    (event,) = scores["events"]
    assert event["diagnosed"] and event["first_alert_diagnosis"] is None  # anomaly_sample
    assert "events 1/1 detected" in printed


def test_the_guide_shows_this_replay(replayed: tuple[Path, datetime, str]) -> None:
    """docs/guide/bring-your-own-machine.md quotes this run: its faults file and its alerts."""
    out, _, printed = replayed
    guide = (ROOT / "docs" / "guide" / "bring-your-own-machine.md").read_text()
    faults = (out.parent / "faults.csv").read_text()
    assert f"```\n{faults}```" in guide
    shown = re.findall(r"^\| (\d\d:\d\d) \| `(\w+)` \| (.*?) \|$", guide, flags=re.M)
    raised = [a for a in read_jsonl(out / "alerts.jsonl") if a["state"] == "raised"]
    assert [(t, rule) for t, rule, _ in shown] == [
        (a["time"][11:16], a["rule"]) for a in sorted(raised, key=lambda a: a["time"])
    ]
    for (_, _, message), alert in zip(shown, sorted(raised, key=lambda a: a["time"]), strict=True):
        assert message.split(";")[0] in alert["message"]
    summary_line = next(line for line in printed.splitlines() if "events" in line)
    assert summary_line in guide


def test_a_sensor_reading_past_its_declared_range_is_a_range_alert_not_a_dropout(
    tmp_path: Path,
) -> None:
    """Through the flow: comp-1's pressure transmitter saturates at 19.9 bar (its declared
    range is [0, 16]) for 20 minutes; the generic range rule raises, dropout does not."""
    n = 3 * 3600
    times = np.datetime64(START.replace(tzinfo=None), "ms") + np.arange(n) * np.timedelta64(1, "s")
    values = compressor(seed=5, n=n)
    broken = (np.arange(n) >= 3600) & (np.arange(n) < 4800)
    values["discharge_pressure"] = np.where(broken, 19.9, values["discharge_pressure"])
    pl.DataFrame({"time": times, **values}).with_columns(
        pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S")
    ).write_csv(tmp_path / "comp-1.csv", float_precision=2)
    out = tmp_path / "out"
    argv = ["replay", str(EXAMPLE / "recorded.yaml"), str(tmp_path / "comp-1.csv")]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--out", str(out), "--tz", "UTC", "--quiet"]) == 0
    alerts = read_jsonl(out / "alerts.jsonl")
    raised = sorted(
        ((a["rule"], a["diagnosis"], a["time"]) for a in alerts if a["state"] == "raised"),
        key=lambda r: r[2],
    )
    # judged per reading: raised at the third reading in a row out of range, not at the
    # window's end
    assert raised[0] == ("discharge_pressure_out_of_range", "sensor_fault", "2026-03-02T07:00:02Z")
    assert not any("dropout" in rule for rule, _, _ in raised)
    cleared = {a["rule"]: a["time"] for a in alerts if a["state"] == "cleared"}
    # the anomaly models see the saturated sensor too; every alarm clears once it recovers,
    # the range alarm after 30 min of readings in range (the last refused one was 07:19:59)
    assert cleared["discharge_pressure_out_of_range"] == "2026-03-02T07:50:00Z"
    assert sorted(cleared) == sorted(rule for rule, _, _ in raised)
