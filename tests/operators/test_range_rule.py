"""Declared-range violations: validation marks the refused readings, windows count them apart
from dropouts (``<signal>.out_of_range``), and the generic range rule judges that share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.operators.compressor import PROFILE, write_compressor
from twinflow.core.errors import ConfigError
from twinflow.core.records import AlertState, TelemetryFrame, WaveformFrame, WindowFeatures
from twinflow.core.times import utc
from twinflow.operators.catalog import TwinType, load_catalogue
from twinflow.operators.rules import AlarmTracker, rules_for
from twinflow.operators.twin_type import SignalSpec
from twinflow.operators.validate import Validator
from twinflow.operators.windows import WindowAggregator

T0 = 1_767_225_600.0
STEP = 300.0


def compressor(tmp_path: Path, extra: str = "") -> TwinType:
    write_compressor(tmp_path / "models", PROFILE + extra)
    return load_catalogue([tmp_path / "models"])["compressor"]


def frame(times: np.ndarray, **signals: np.ndarray) -> TelemetryFrame:
    return TelemetryFrame("c-1", "compressor", times, signals)


def test_validation_marks_the_readings_refused_for_range(tmp_path: Path) -> None:
    kind = compressor(tmp_path)
    v = Validator({"compressor": kind}, twins={"c-1": "compressor"})
    times = T0 + np.arange(5.0)
    pressure = np.array([7.0, 20.0, -1.0, np.nan, 8.0])
    ok, dead = v.validate(frame(times, discharge_pressure=pressure, motor_power=times * 0), T0)
    assert isinstance(ok, TelemetryFrame)
    assert list(ok.out_of_range) == ["discharge_pressure"]  # the dropout is not a violation
    assert ok.out_of_range["discharge_pressure"].tolist() == [False, True, True, False, False]
    assert np.isnan(ok.signals["discharge_pressure"][1:4]).all() and dead[0].readings == 2
    clean = frame(times, discharge_pressure=np.full(5, 7.0))
    assert v.validate(clean, T0)[0] is clean and not clean.out_of_range


def test_validation_counts_waveform_samples_out_of_range() -> None:
    rig = TwinType("rig", (SignalSpec("vib", "g", -5.0, 5.0, rate_hz=100.0, waveform=True),))
    v = Validator({"rig": rig})
    burst = WaveformFrame("r-1", "rig", "vib", T0, 100.0, np.array([0.1, 9.0, -0.2, -7.0]))
    ok, dead = v.validate(burst, T0)
    assert isinstance(ok, WaveformFrame) and ok.out_of_range == 2 and dead[0].readings == 2
    agg = WindowAggregator("r-1", rig, length_s=60.0, lateness_s=0.0)
    agg.add(ok)
    (w,) = agg.flush()
    assert w.features["vib.out_of_range"] == 0.5 and w.features["vib.missing"] == 0.0


def test_windows_count_refused_readings_apart_from_dropouts(tmp_path: Path) -> None:
    kind = compressor(tmp_path)
    agg = WindowAggregator("c-1", kind, length_s=STEP, lateness_s=0.0)
    times = T0 + np.arange(0.0, 600.0, 1.0)  # two windows of 300 readings
    pressure = np.full(600, 7.0)
    refused = np.zeros(600, dtype=bool)
    refused[[10, 20, 30, 310]] = True  # three in the first window, one in the second
    pressure[refused] = np.nan
    pressure[[40, 41, 42, 43, 44, 45]] = np.nan  # six real dropouts in the first window
    temp = np.full(600, 80.0)
    f = TelemetryFrame(
        "c-1",
        "compressor",
        times,
        {"discharge_pressure": pressure, "discharge_temp": temp},
        out_of_range={"discharge_pressure": refused},
    )
    windows, _ = agg.add(f)
    windows += agg.flush()
    first, second = (w.features for w in windows)
    assert first["discharge_pressure.out_of_range"] == pytest.approx(3 / 300)
    assert first["discharge_pressure.missing"] == pytest.approx(6 / 300)
    assert second["discharge_pressure.out_of_range"] == pytest.approx(1 / 300)
    assert second["discharge_pressure.missing"] == 0.0
    assert first["discharge_temp.out_of_range"] == 0.0  # every signal with readings has it
    assert "motor_power.out_of_range" not in first  # no readings at all: only missing
    assert first["motor_power.missing"] == 1.0


def win(k: int, features: dict[str, float]) -> WindowFeatures:
    return WindowFeatures("c-1", "compressor", utc(T0 + k * STEP), utc(T0 + (k + 1) * STEP),
                          features)  # fmt: skip


def test_the_generic_range_rule_raises_and_clears(tmp_path: Path) -> None:
    kind = compressor(tmp_path)
    names = {r.name for r in rules_for(kind)}
    assert {f"{s}_out_of_range" for s in kind.signal_names} <= names  # optional ones too
    shares = [0.005, 0.05, 0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    t = AlarmTracker("c-1", "compressor")
    alerts = [
        a
        for k, x in enumerate(shares)
        for a in t.evaluate(win(k, {"discharge_pressure.out_of_range": x}), kind)
    ]
    assert [(a.rule, a.state, a.time) for a in alerts] == [
        ("discharge_pressure_out_of_range", AlertState.RAISED, utc(T0 + 2 * STEP)),
        ("discharge_pressure_out_of_range", AlertState.CLEARED, utc(T0 + 9 * STEP)),
    ]
    assert alerts[0].diagnosis == "sensor_fault"
    assert "discharge_pressure reads outside its declared range [0, 16]" in alerts[0].message


def test_the_range_rule_is_tuned_or_switched_off_in_generic(tmp_path: Path) -> None:
    loose = compressor(tmp_path, "generic: {out_of_range: 0.1, commanded: [motor_power]}\n")
    t = AlarmTracker("c-1", "compressor")
    assert t.evaluate(win(0, {"discharge_pressure.out_of_range": 0.05}), loose) == []
    assert [a.rule for a in t.evaluate(win(1, {"discharge_pressure.out_of_range": 0.2}), loose)]
    assert "motor_power_out_of_range" not in {r.name for r in rules_for(loose)}
    off = compressor(tmp_path, "generic: {disable: [range]}\n")
    assert not any(r.name.endswith("_out_of_range") for r in rules_for(off))
    assert any(r.name.endswith("_dropout") for r in rules_for(off))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("generic: {out_of_range: 0}", "generic.out_of_range must be in (0, 1], got 0"),
        ("generic: {out_of_range: 1.5}", "generic.out_of_range must be"),
        ("generic: {out_of_range: lots}", "generic.out_of_range"),
        ("generic: {disable: [ranges]}", "generic.disable: unknown generic rule 'ranges'"),
    ],
)
def test_range_settings_errors_name_file_and_field(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        compressor(tmp_path, extra + "\n")
    assert "compressor.yaml: " in str(info.value) and message in str(info.value), info.value
