"""The simulated plant: determinism, faults, physics, commands, bad data, partitions, resume."""

from __future__ import annotations

import json
import math
import pickle
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.badmessages import BAD_KINDS, bad_message
from twinflow.connectors.simulator.dynamics import ar1, severity
from twinflow.connectors.simulator.faults import MACHINE_KINDS, SENSOR_KINDS
from twinflow.connectors.simulator.machines import Motor, Pump, Turbine
from twinflow.connectors.simulator.machines.physics import (
    pump_measured_efficiency,
    pump_nominal_efficiency,
    turbine_expected_power,
)
from twinflow.connectors.simulator.types import BPFO_HZ
from twinflow.connectors.simulator.wire import MAX_MESSAGE_BYTES
from twinflow.core.errors import ConfigError
from twinflow.core.records import (
    Command,
    CommandStatus,
    Incoming,
    RawMessage,
    TelemetryFrame,
    WaveformFrame,
)
from twinflow.core.times import utc
from twinflow.operators.catalog import CATALOG

T0 = PlantConfig(n_twins=1, duration_s=60, seed=0).start_epoch
ALL_KINDS = set(MACHINE_KINDS) | set(SENSOR_KINDS)


# --- helpers ---------------------------------------------------------------------------


def item_key(item: Incoming) -> tuple[Any, ...]:
    """A comparable fingerprint of an emitted item (exact, NaN-safe)."""
    if isinstance(item, TelemetryFrame):
        sig = tuple((k, v.tobytes()) for k, v in item.signals.items())
        return ("T", item.twin_id, item.times.tobytes(), sig)
    if isinstance(item, WaveformFrame):
        return ("W", item.twin_id, item.start, item.sample_rate, item.samples.tobytes())
    return ("R", item.source, item.payload, item.received)


def collect(items: list[Incoming]) -> dict[str, dict[str, Any]]:
    """Per twin: concatenated times and signals, and (start, samples) of every waveform."""
    parts: dict[str, dict[str, Any]] = {}
    for item in items:
        if isinstance(item, TelemetryFrame):
            d = parts.setdefault(item.twin_id, {"times": [], "signals": {}, "waves": []})
            d["times"].append(item.times)
            for k, v in item.signals.items():
                d["signals"].setdefault(k, []).append(v)
        elif isinstance(item, WaveformFrame):
            d = parts.setdefault(item.twin_id, {"times": [], "signals": {}, "waves": []})
            d["waves"].append((item.start, item.samples))
    for d in parts.values():
        d["times"] = np.concatenate(d["times"])
        d["signals"] = {k: np.concatenate(v) for k, v in d["signals"].items()}
    return parts


def bpfo_amplitude(samples: np.ndarray, rate: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples)) * 2.0 / len(samples)
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    return float(spectrum[np.abs(freqs - BPFO_HZ) < 3.0].max())


def command(twin_id: str, twin_type: str, name: str, **params: Any) -> Command:
    issued = utc(T0)
    return Command(
        command_id=Command.make_id(twin_id, name, issued),
        twin_id=twin_id,
        twin_type=twin_type,
        name=name,
        params=params,
        issued_at=issued,
        expires_at=issued + timedelta(minutes=10),
        reason="test",
    )


def v1_problem(payload: bytes, plant: Plant) -> str | None:
    """What breaks telemetry wire format v1 in ``payload`` (None if it is valid)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        return "oversized"
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "not JSON"
    types = dict(plant.twins)
    if doc.get("twin_id") not in types:
        return "unknown twin"
    twin_type = types[doc["twin_id"]]
    if doc.get("twin_type") != twin_type:
        return "wrong type"
    times = doc["times"]
    if not all(type(t) is float for t in times):
        return "bad time"
    if not (plant.config.start_epoch <= min(times) and max(times) < plant.end):
        return "time outside the run"
    known = {s.name for s in CATALOG[twin_type].scalar_signals}
    for name, values in doc["signals"].items():
        if name not in known:
            return "unknown signal"
        if len(values) != len(times):
            return "length mismatch"
        if not all(v is None or type(v) is float for v in values):
            return "not a number"
    return None


def run_machine(
    cls: type[Turbine] | type[Pump] | type[Motor],
    fault: str | None,
    sev: float,
    minutes: int,
    commands: tuple[tuple[str, dict[str, float]], ...] = (),
    seed: int = 0,
    **state: float,
) -> dict[str, np.ndarray]:
    """Run one machine model alone for ``minutes`` with a constant fault severity.

    ``state`` overrides fields of the fresh machine (e.g. ``mean_wind``).
    """
    rng = np.random.default_rng(seed)
    machine = cls.create(rng, T0)
    for name, value in state.items():
        setattr(machine, name, value)
    for name, params in commands:
        machine.command(name, params)
    chunks = []
    for k in range(minutes):
        times = T0 + 60.0 * k + np.arange(60.0)
        chunks.append(machine.signals(times, rng, fault, np.full(60, sev)))
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


@pytest.fixture(scope="module")
def faulty() -> tuple[Plant, list[Incoming]]:
    """12 twins, 1 h, every twin faulty: four of each type covers all eight kinds."""
    plant = Plant(PlantConfig(n_twins=12, duration_s=3600, seed=3, fault_fraction=1.0))
    return plant, list(plant.items())


@pytest.fixture(scope="module")
def healthy() -> tuple[Plant, list[Incoming]]:
    cfg = PlantConfig(
        n_twins=9,
        duration_s=1800,
        seed=5,
        fault_fraction=0.0,
        bad_message_rate=0.0,
        raw_message_rate=0.0,
    )
    plant = Plant(cfg)
    return plant, list(plant.items())


# --- configuration and layout ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_twins", 0),
        ("n_twins", 2.5),
        ("duration_s", 0.0),
        ("duration_s", math.inf),
        ("seed", -1),
        ("chunk_s", 0.5),
        ("chunk_s", 1.5),
        ("waveform_rate", 100.0),
        ("burst_interval_s", 0.1),
        ("fault_fraction", 1.5),
        ("bad_message_rate", -0.1),
        ("raw_message_rate", float("nan")),
    ],
)
def test_config_errors_name_the_field(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"n_twins": 3, "duration_s": 600.0, "seed": 1, field: value}
    with pytest.raises(ConfigError, match=rf"PlantConfig\.{field}"):
        PlantConfig(**kwargs)


def test_config_refuses_naive_start() -> None:
    from datetime import datetime

    with pytest.raises(ConfigError, match="start"):
        PlantConfig(n_twins=1, duration_s=60, seed=0, start=datetime(2026, 1, 1))


def test_twins_are_round_robin_with_indexed_ids() -> None:
    plant = Plant(PlantConfig(n_twins=5, duration_s=60, seed=0))
    assert plant.twins == [
        ("wt-001", "wind_turbine"),
        ("pump-002", "pump"),
        ("motor-003", "motor"),
        ("wt-004", "wind_turbine"),
        ("pump-005", "pump"),
    ]


def test_frames_carry_exactly_the_catalog_signals(healthy: tuple[Plant, list[Incoming]]) -> None:
    plant, items = healthy
    for item in items:
        if isinstance(item, TelemetryFrame):
            assert list(item.signals) == [s.name for s in CATALOG[item.twin_type].scalar_signals]
            assert all(len(v) == len(item.times) for v in item.signals.values())
            assert np.all(np.diff(item.times) == 1.0)
        elif isinstance(item, WaveformFrame):
            assert (item.twin_type, item.signal) == ("motor", "vibration")
            assert len(item.samples) == plant.config.waveform_samples
            assert item.sample_rate == plant.config.waveform_rate
    per_twin = collect(items)
    for twin_id, _ in plant.twins:
        t = per_twin[twin_id]["times"]
        assert t[0] == plant.config.start_epoch
        assert len(t) == plant.config.n_samples
    waves = per_twin["motor-003"]["waves"]
    assert [s for s, _ in waves] == [T0 + 60.0 * j for j in range(30)]


# --- determinism -----------------------------------------------------------------------


def test_same_seed_same_frames_and_faults() -> None:
    cfg = PlantConfig(
        n_twins=6, duration_s=900, seed=11, raw_message_rate=0.2, bad_message_rate=0.1
    )
    a, b = Plant(cfg), Plant(cfg)
    assert a.faults == b.faults
    assert [item_key(i) for i in a.items()] == [item_key(i) for i in b.items()]
    other = Plant(PlantConfig(n_twins=6, duration_s=900, seed=12))
    assert [item_key(i) for i in other.items()] != [item_key(i) for i in a.items()]


# --- faults ----------------------------------------------------------------------------


def test_every_fault_kind_appears_for_50_twins_6_hours() -> None:
    plant = Plant(PlantConfig(n_twins=50, duration_s=6 * 3600, seed=7))
    faults = plant.faults
    assert {f.kind for f in faults} == ALL_KINDS
    assert 0.5 * 50 <= len(faults) <= 0.7 * 50
    assert len({f.twin_id for f in faults}) == len(faults)
    start, end = plant.config.start, utc(plant.end)
    types = dict(plant.twins)
    compatible = {
        "bearing": {"motor"},
        "overheating": {"motor", "wind_turbine"},
        "impeller_wear": {"pump"},
        "underperformance": {"wind_turbine"},
    }
    for f in faults:
        assert start < f.onset < f.failure < end
        assert f.onset - start <= 0.4 * timedelta(hours=6)
        if f.kind in SENSOR_KINDS:
            assert f.failure - f.onset == timedelta(hours=1)
        else:
            assert types[f.twin_id] in compatible[f.kind]
            assert timedelta(hours=1.5) <= f.failure - f.onset <= timedelta(hours=4)


def test_fault_fraction_zero_means_no_faults() -> None:
    assert Plant(PlantConfig(n_twins=30, duration_s=600, seed=1, fault_fraction=0)).faults == []


def test_values_stay_inside_catalog_ranges(faulty: tuple[Plant, list[Incoming]]) -> None:
    plant, items = faulty
    assert {f.kind for f in plant.faults} == ALL_KINDS
    vib = CATALOG["motor"].signal("vibration")
    for item in items:
        if isinstance(item, TelemetryFrame):
            for spec in CATALOG[item.twin_type].scalar_signals:
                v = item.signals[spec.name]
                v = v[~np.isnan(v)]
                assert np.all((v >= spec.low) & (v <= spec.high)), (item.twin_id, spec.name)
        elif isinstance(item, WaveformFrame):
            assert np.all((item.samples >= vib.low) & (item.samples <= vib.high))


def test_bearing_fault_raises_bpfo_energy(faulty: tuple[Plant, list[Incoming]]) -> None:
    plant, items = faulty
    per_twin = collect(items)
    rate = plant.config.waveform_rate
    bearing = next(s for s in plant.fault_specs if s.kind == "bearing")
    waves = per_twin[bearing.twin_id]["waves"]
    before = [bpfo_amplitude(w, rate) for t, w in waves if t < bearing.onset]
    late = [bpfo_amplitude(w, rate) for t, w in waves if t >= bearing.failure - 120]
    assert before and late
    assert min(late) > 20 * max(before)
    # the motors without a bearing fault keep a flat BPFO line
    others = [s.twin_id for s in plant.fault_specs if s.kind != "bearing" and "motor" in s.twin_id]
    for twin_id in others:
        amps = [bpfo_amplitude(w, rate) for _, w in per_twin[twin_id]["waves"]]
        assert max(amps) < 3 * max(before)


def test_motor_overheating_raises_winding_temp(faulty: tuple[Plant, list[Incoming]]) -> None:
    plant, items = faulty
    spec = next(s for s in plant.fault_specs if s.kind == "overheating" and "motor" in s.twin_id)
    d = collect(items)[spec.twin_id]
    temp, t = d["signals"]["winding_temp"], d["times"]
    assert temp[t >= spec.failure - 60].mean() > temp[t < spec.onset].mean() + 20


def test_sensor_faults_change_only_their_reading(faulty: tuple[Plant, list[Incoming]]) -> None:
    plant, items = faulty
    per_twin = collect(items)
    types = dict(plant.twins)
    seen = set()
    for spec in plant.fault_specs:
        if not spec.is_sensor:
            continue
        assert spec.signal is not None
        d = per_twin[spec.twin_id]
        t, v = d["times"], d["signals"][spec.signal]
        span = CATALOG[types[spec.twin_id]].signal(spec.signal)
        width = span.high - span.low
        before, after = v[t < spec.onset], v[t >= spec.onset]
        assert not np.isnan(before).any()
        if spec.kind == "sensor_stuck":
            assert np.unique(after).size == 1
        elif spec.kind == "sensor_dropout":
            assert 0.1 < np.isnan(after).mean() < 1.0
        elif spec.kind == "sensor_drift":
            assert v[t >= spec.failure].mean() - before.mean() > 0.1 * width
        elif spec.kind == "sensor_spikes":
            assert (np.abs(np.diff(after)) > 0.2 * width).sum() >= 4
        # the other signals of the twin stay complete
        others = [k for k in d["signals"] if k != spec.signal]
        assert not any(np.isnan(d["signals"][k]).any() for k in others)
        seen.add(spec.kind)
    assert seen == set(SENSOR_KINDS)


# --- physics of the machine models -----------------------------------------------------


def test_healthy_plant_follows_the_physics(healthy: tuple[Plant, list[Incoming]]) -> None:
    plant, items = healthy
    for twin_id, twin_type in plant.twins:
        s = collect(items)[twin_id]["signals"]
        if twin_type == "wind_turbine":
            expected = turbine_expected_power(s["wind_speed"], s["power_limit_kw"])
            residual = s["power_kw"] - expected
            assert abs(residual.mean()) < 3.0
            assert residual.std() < 0.02 * expected.mean() + 5.0
            assert 4.0 < s["wind_speed"].mean() < 14.0
            assert np.all(s["power_limit_kw"] == 2000.0)
        elif twin_type == "pump":
            eff = pump_measured_efficiency(
                s["flow_m3h"],
                s["suction_bar"],
                s["discharge_bar"],
                s["motor_current_a"],
                s["motor_voltage_v"],
            )
            ratio = eff / pump_nominal_efficiency(s["flow_m3h"])
            assert abs(np.nanmean(ratio) - 1.0) < 0.01
            assert 180 < s["flow_m3h"].mean() < 320
            assert abs(s["suction_bar"].mean() - 1.5) < 0.25
            assert abs(s["motor_voltage_v"].mean() - 400) < 15
        else:
            assert 75 < s["winding_temp"].mean() < 100
            assert 70 < s["load_pct"].mean() < 90
            assert 1480 < s["speed_rpm"].mean() < 1495


def test_turbine_pitch_rises_above_rated_wind() -> None:
    s = run_machine(Turbine, None, 0.0, 120, seed=4)
    strong = s["wind_speed"] > 15
    weak = s["wind_speed"] < 10
    assert strong.any() and weak.any()
    assert s["pitch_deg"][strong].mean() > 5 > s["pitch_deg"][weak].mean()


def test_turbine_underperformance_lowers_power_below_curve() -> None:
    sick = run_machine(Turbine, "underperformance", 1.0, 30)
    ratio = sick["power_kw"].sum() / turbine_expected_power(sick["wind_speed"], 2000.0).sum()
    assert 0.75 < ratio < 0.85


def test_turbine_overheating_and_a_derate_cools_it() -> None:
    # a derate acts only when its limit is below what the wind offers: take a windy site
    windy = {"mean_wind": 11.0, "wind_dev": 0.0}
    derate = (("derate", {"fraction": 0.2}),)
    ok = run_machine(Turbine, None, 0.0, 60, **windy)
    hot = run_machine(Turbine, "overheating", 1.0, 60, **windy)
    cooled = run_machine(Turbine, "overheating", 1.0, 60, derate, **windy)
    last = slice(-600, None)
    assert hot["generator_temp"][last].mean() > ok["generator_temp"][last].mean() + 30
    assert cooled["generator_temp"][last].mean() < hot["generator_temp"][last].mean() - 20
    assert cooled["power_kw"].max() < 400 + 30
    assert np.all(cooled["power_limit_kw"] == 400)


def test_motor_overheating_and_a_derate_cools_it() -> None:
    ok = run_machine(Motor, None, 0.0, 60)
    hot = run_machine(Motor, "overheating", 1.0, 60)
    cooled = run_machine(Motor, "overheating", 1.0, 60, (("derate", {"fraction": 0.5}),))
    last = slice(-600, None)
    assert hot["winding_temp"][last].mean() > ok["winding_temp"][last].mean() + 40
    assert cooled["winding_temp"][last].mean() < hot["winding_temp"][last].mean() - 40
    assert cooled["load_pct"][last].mean() == pytest.approx(50, abs=3)


def test_pump_impeller_wear_lowers_efficiency_and_head() -> None:
    new = run_machine(Pump, None, 0.0, 10)
    worn = run_machine(Pump, "impeller_wear", 1.0, 10)

    def efficiency(s: dict[str, np.ndarray]) -> float:
        eff = pump_measured_efficiency(
            s["flow_m3h"],
            s["suction_bar"],
            s["discharge_bar"],
            s["motor_current_a"],
            s["motor_voltage_v"],
        )
        return float(np.nanmean(eff / pump_nominal_efficiency(s["flow_m3h"])))

    assert efficiency(new) == pytest.approx(1.0, abs=0.01)
    assert efficiency(worn) == pytest.approx(0.75, abs=0.01)
    dp = (worn["discharge_bar"] - worn["suction_bar"]).mean()
    dp_new = (new["discharge_bar"] - new["suction_bar"]).mean()
    assert dp / dp_new == pytest.approx(0.85, abs=0.01)


# --- commands --------------------------------------------------------------------------


def small_plant() -> Plant:
    return Plant(PlantConfig(n_twins=3, duration_s=600, seed=2, fault_fraction=0.0))


def run_with(plant: Plant, commands: list[Command], after_chunk: int) -> list[list[Incoming]]:
    part = plant.partition(0, 1)
    chunks = []
    while not part.done:
        if part.chunk == after_chunk:
            for c in commands:
                plant.apply(c)
        chunks.append(part.next_chunk())
    return chunks


def test_commands_change_output_from_the_next_chunk() -> None:
    base = run_with(small_plant(), [], 0)
    plant = small_plant()
    cmds = [
        command("wt-001", "wind_turbine", "derate", fraction=0.5),
        command("wt-001", "wind_turbine", "set_pitch", degrees=10.0),
        command("pump-002", "pump", "set_flow", m3h=100.0),
        command("motor-003", "motor", "set_load", percent=40.0),
    ]
    chunks = run_with(plant, cmds, after_chunk=3)
    keys = [[item_key(i) for i in c] for c in chunks]
    assert keys[:3] == [[item_key(i) for i in c] for c in base[:3]]
    after = collect([i for c in chunks[3:] for i in c])
    assert np.all(after["wt-001"]["signals"]["power_limit_kw"] == 1000.0)
    assert after["wt-001"]["signals"]["pitch_deg"].min() > 9.0
    assert np.all(after["pump-002"]["signals"]["flow_setpoint_m3h"] == 100.0)
    assert after["pump-002"]["signals"]["flow_m3h"][-60:].mean() == pytest.approx(100, abs=2)
    assert after["motor-003"]["signals"]["load_pct"][-60:].mean() == pytest.approx(40, abs=4)
    log = plant.command_log
    assert [(r.command_id, r.accepted) for r in log] == [(c.command_id, True) for c in cmds]
    assert all(r.applied_at == T0 + 180 for r in log)


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (command("wt-001", "wind_turbine", "derate", fraction=0.1), "outside"),
        (command("wt-001", "wind_turbine", "derate", fraction=float("nan")), "must be finite"),
        (command("wt-001", "wind_turbine", "set_flow", m3h=100.0), "no command"),
        (command("wt-001", "wind_turbine", "derate"), "missing"),
        (command("wt-001", "wind_turbine", "derate", fraction=0.5, extra=1.0), "unknown param"),
        (command("wt-001", "pump", "set_flow", m3h=100.0), "is a wind_turbine"),
        (command("wt-999", "wind_turbine", "derate", fraction=0.5), "unknown twin"),
        (command("pump-002", "pump", "set_flow", m3h="100"), "must be a number"),
    ],
)
def test_invalid_commands_are_refused_and_change_nothing(cmd: Command, reason: str) -> None:
    base = run_with(small_plant(), [], 0)
    plant = small_plant()
    assert plant.apply(cmd) is False
    chunks = run_with(plant, [], 0)
    assert [[item_key(i) for i in c] for c in chunks] == [[item_key(i) for i in c] for c in base]
    (record,) = plant.command_log
    assert (record.command_id, record.twin_id, record.accepted) == (
        cmd.command_id,
        cmd.twin_id,
        False,
    )
    assert reason in record.detail


def test_bookkeeping_states_are_not_requests() -> None:
    plant = small_plant()
    from dataclasses import replace

    done = replace(
        command("wt-001", "wind_turbine", "derate", fraction=0.5), status=CommandStatus.SUCCEEDED
    )
    assert plant.apply(done) is False
    assert plant.command_log == []


def test_commands_from_another_thread() -> None:
    plant = Plant(PlantConfig(n_twins=6, duration_s=1200, seed=2))
    part = plant.partition(0, 1)
    cmds = [command("motor-003", "motor", "set_load", percent=10.0 + i) for i in range(50)]
    sender = threading.Thread(target=lambda: [plant.apply(c) for c in cmds])
    sender.start()
    while not part.done:
        part.next_chunk()
    sender.join()
    part2 = plant.partition(0, 1)  # a fresh partition drains what was left
    part2.next_chunk()
    assert len(plant.command_log) == 50
    assert all(r.accepted for r in plant.command_log)
    assert plant.now() == plant.end - 1


# --- raw and bad messages --------------------------------------------------------------


def test_raw_json_frames_decode_to_the_same_frame() -> None:
    cfg = dict(n_twins=6, duration_s=600, seed=8, bad_message_rate=0.0)
    objects = list(Plant(PlantConfig(**cfg, raw_message_rate=0.0)).items())
    plant = Plant(PlantConfig(**cfg, raw_message_rate=1.0))
    raws = list(plant.items())
    frames = [i for i in objects if isinstance(i, TelemetryFrame)]
    messages = [i for i in raws if isinstance(i, RawMessage)]
    assert len(frames) == len(messages) > 0
    assert not any(isinstance(i, TelemetryFrame) for i in raws)
    for frame, msg in zip(frames, messages, strict=True):
        assert msg.source == "sim:json"
        assert msg.received == frame.end
        assert v1_problem(msg.payload, plant) is None
        doc = json.loads(msg.payload)
        assert (doc["twin_id"], doc["twin_type"]) == (frame.twin_id, frame.twin_type)
        assert np.array_equal(np.array(doc["times"]), frame.times)
        for name, values in frame.signals.items():
            decoded = np.array([math.nan if v is None else v for v in doc["signals"][name]])
            assert np.array_equal(decoded, values, equal_nan=True)


def test_bad_messages_appear_at_the_configured_rate() -> None:
    plant = Plant(
        PlantConfig(n_twins=6, duration_s=7200, seed=4, bad_message_rate=0.05, raw_message_rate=0.1)
    )
    part = plant.partition(0, 1)
    items: list[Incoming] = []
    while not part.done:
        items.extend(part.next_chunk())
    raws = [i for i in items if isinstance(i, RawMessage)]
    problems = [v1_problem(r.payload, plant) for r in raws]
    n_bad = sum(p is not None for p in problems)
    stats = part.stats
    assert n_bad == stats["bad"]
    assert len(raws) - n_bad == stats["raw"]
    assert 0.035 < n_bad / len(items) < 0.065
    assert {k.removeprefix("bad:") for k in stats if k.startswith("bad:")} == set(BAD_KINDS)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_breaks_the_wire_format(kind: str) -> None:
    plant = small_plant()
    frame = next(i for i in plant.items() if isinstance(i, TelemetryFrame))
    msg = bad_message(kind, frame, frame.end, np.random.default_rng(0))
    expected = {
        "truncated_json": "not JSON",
        "not_json": "not JSON",
        "unknown_twin": "unknown twin",
        "unknown_signal": "unknown signal",
        "string_value": "not a number",
        "future_time": "time outside the run",
        "length_mismatch": "length mismatch",
        "oversized": "oversized",
    }
    assert v1_problem(msg.payload, plant) == expected[kind]
    assert msg.received == frame.end


# --- partitions, snapshots, Bytewax ----------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8])
def test_partitions_cover_every_twin_once_and_match(count: int) -> None:
    cfg = PlantConfig(n_twins=7, duration_s=180, seed=6, raw_message_rate=0.3, bad_message_rate=0.1)
    whole = Counter(item_key(i) for i in Plant(cfg).items())
    plant = Plant(cfg)
    parts = [plant.partition(i, count) for i in range(count)]
    owned = [t for p in parts for t in p.twin_ids]
    assert sorted(owned) == sorted(t for t, _ in plant.twins)
    split: Counter[tuple[Any, ...]] = Counter()
    for p in parts:
        while not p.done:
            split.update(item_key(i) for i in p.next_chunk())
    assert split == whole


def test_snapshot_resume_continues_identically() -> None:
    plant = Plant(
        PlantConfig(
            n_twins=9,
            duration_s=900,
            seed=9,
            fault_fraction=1.0,
            bad_message_rate=0.1,
            raw_message_rate=0.2,
        )
    )
    part = plant.partition(1, 2)
    for _ in range(5):
        part.next_chunk()
    state = pickle.loads(pickle.dumps(part.snapshot()))
    rest = [item_key(i) for _ in range(10) for i in part.next_chunk()]
    assert part.done
    resumed = plant.partition(1, 2, state)
    assert resumed.chunk == 5
    assert [item_key(i) for _ in range(10) for i in resumed.next_chunk()] == rest
    assert resumed.done and resumed.stats == part.stats
    with pytest.raises(ConfigError, match="partitions"):
        plant.partition(0, 3, state)


def test_snapshot_is_small() -> None:
    plant = Plant(PlantConfig(n_twins=50, duration_s=600, seed=7))
    part = plant.partition(0, 4)
    part.next_chunk()
    assert len(pickle.dumps(part.snapshot())) < 20_000


# --- building blocks -------------------------------------------------------------------


@given(
    y0=st.floats(-100, 100),
    tau=st.floats(0.5, 5000),
    drive=st.lists(st.floats(-10, 10), min_size=1, max_size=400),
)
def test_ar1_matches_the_recursion(y0: float, tau: float, drive: list[float]) -> None:
    a = math.exp(-1.0 / tau)
    expected, y = [], y0
    for d in drive:
        y = a * y + d
        expected.append(y)
    got = ar1(y0, a, np.array(drive))
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-9 * (1 + len(drive)))


@given(st.lists(st.floats(0, 1e4), min_size=2, max_size=50))
def test_severity_grows_from_zero_to_one(ts: list[float]) -> None:
    t = np.sort(np.array(ts))
    s = severity(t, 2000.0, 6000.0)
    assert np.all(np.diff(s) >= 0)
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(s[t <= 2000.0] == 0) and np.all(s[t >= 6000.0] == 1)
