"""The per-reading rules' quick check for the common frame (``reading_rules_frame.quiet``)
against the full per-rule path: the same alerts and the same state of every signal a rule
reads, over frames with dropouts, repeats, spikes, freezes, limits crossed and readings
refused for their range, a signal missing from some frames, cut at random."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twinflow.operators.reading_rules as reading_rules
from tests.operators.compressor import load_compressor
from tests.operators.test_reading_rules import HOT, T0, frames, moves
from twinflow.core.records import Alert
from twinflow.operators.catalog import TwinType
from twinflow.operators.reading_rules import ReadingAlarms, reading_plan
from twinflow.operators.reading_rules_frame import held

LOW = """\
  cold_now:
    {feature: discharge_temp, below: 20, clear: 30, for: 20s, diagnosis: cooling}
"""
N = 2400


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> TwinType:
    return load_compressor(Path(tmp_path_factory.mktemp("compressor")), HOT + LOW)


def series(seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Readings of three signals with faults placed by ``seed``, and the refused mask."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(float(N))
    pressure, temp = moves(t), 60.0 + 5.0 * np.sin(t / 90.0)
    power = 150.0 + 0.1 * np.sin(t * 0.9) + 0.001 * np.arange(N)
    for _ in range(rng.integers(0, 4)):  # spikes, some of them too small
        pressure[rng.integers(1, N - 1)] += rng.choice([0.3, 6.0, -6.0])
    if rng.random() < 0.5:  # a freeze
        a = int(rng.integers(600, N - 100))
        pressure[a : a + int(rng.integers(10, 400))] = pressure[a]
    if rng.random() < 0.5:  # quantised stretch: repeats shorter than the quiet time
        a = int(rng.integers(0, N - 200))
        power[a : a + 200] = np.round(power[a : a + 200])
    for level in (130.0, 10.0):  # above and below limits
        if rng.random() < 0.5:
            a = int(rng.integers(0, N - 100))
            temp[a : a + int(rng.integers(5, 90))] = level
    for sig in (pressure, temp, power):  # dropouts
        sig[rng.integers(0, N, int(rng.integers(0, 6)))] = np.nan
    oor = np.zeros(N, dtype=bool)
    if rng.random() < 0.3:
        a = int(rng.integers(0, N - 10))
        oor[a : a + int(rng.integers(1, 6))] = True
        pressure[oor] = np.nan
    return t, {"discharge_pressure": pressure, "discharge_temp": temp, "motor_power": power}, oor


def judged(kind: TwinType, batch: list, spread: float) -> tuple[list[Alert], ReadingAlarms]:
    alarms = ReadingAlarms("c-1", "compressor")
    alarms.learn_window({"discharge_pressure.std": spread}, kind)
    return [a for f in batch for a in alarms.update(f, kind)], alarms


def judged_per_rule(
    kind: TwinType, batch: list, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Alert], ReadingAlarms]:
    """:func:`judged` with the quick check turned off: every frame takes the per-rule path."""
    with monkeypatch.context() as m:
        m.setattr(reading_rules, "quiet", lambda *_: False)
        return judged(kind, batch, 0.35)


def count_quick_checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The answers of every quick check from now on (True: the frame took it), in order."""
    taken: list[bool] = []
    real = reading_rules.quiet

    def counted(*args: object) -> bool:
        taken.append(real(*args))  # type: ignore[arg-type]
        return taken[-1]

    monkeypatch.setattr(reading_rules, "quiet", counted)
    return taken


def assert_paths_agree(kind: TwinType, batch: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """With and without the quick check: the same alerts, and the same state where it is read
    (other signals' change history is never read)."""
    quick, a = judged(kind, batch, 0.35)
    full, b = judged_per_rule(kind, batch, monkeypatch)
    assert pickle.dumps(quick) == pickle.dumps(full)
    assert a.state == b.state and a.block == b.block
    np.testing.assert_array_equal(a.last, b.last)
    rows = reading_plan(kind).stuck_rows
    for name in ("changed_at", "block_moved", "block_count", "qualified"):
        np.testing.assert_array_equal(getattr(a, name)[rows], getattr(b, name)[rows])
    np.testing.assert_array_equal(a.moved[:, rows], b.moved[:, rows])


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, N - 1), max_size=80))
def test_the_quick_check_and_the_full_path_agree(
    kind: TwinType, seed: int, cuts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, signals, oor = series(seed)
    batch = frames(t, sorted(set(cuts)), {"discharge_pressure": oor}, **signals)
    gone = np.random.default_rng(seed).random(len(batch)) < 0.2  # frames without the power
    batch = [
        replace(f, signals={k: v for k, v in f.signals.items() if k != "motor_power"}) if out else f
        for f, out in zip(batch, gone.tolist(), strict=True)
    ]
    assert_paths_agree(kind, batch, monkeypatch)


def test_most_frames_of_a_healthy_signal_take_the_quick_check(
    kind: TwinType, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = T0 + np.arange(float(N))
    signals = {"discharge_pressure": moves(t), "discharge_temp": 60.0 + np.sin(t / 90.0),
               "motor_power": 150.0 + 0.1 * np.sin(t * 0.9)}  # fmt: skip
    taken = count_quick_checks(monkeypatch)
    alerts, _ = judged(kind, frames(t, list(range(60, N, 60)), **signals), 0.35)
    assert alerts == []
    assert taken.count(True) >= len(taken) - 1  # the first frame has no reading before it


def test_a_snapshot_copy_is_equal_and_does_not_move_with_the_twin(kind: TwinType) -> None:
    t, signals, oor = series(3)
    batch = frames(t, list(range(60, N, 60)), {"discharge_pressure": oor}, **signals)
    alarms = ReadingAlarms("c-1", "compressor")
    for f in batch[:20]:
        alarms.update(f, kind)
    alarms.state["x"] = [T0, 3, None]  # a rule pending
    taken = pickle.dumps(alarms)
    copied = copy.deepcopy(alarms)
    assert pickle.dumps(copied) == taken
    for f in batch[20:]:
        alarms.update(f, kind)
    alarms.state["x"][1] = 4
    assert pickle.dumps(copied) == taken


def dead_and_still(seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Readings where a spike opens an alarm and the signal then dies (no readings) for a
    while, and where the power does not move at all for stretches (from the start, or later)."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(float(N))
    pressure, temp = moves(t), 60.0 + 5.0 * np.sin(t / 90.0)
    power = 150.0 + 0.1 * np.sin(t * 0.9) + 0.001 * np.arange(N)
    a = int(rng.integers(300, N - 600))
    pressure[a] += 6.0  # a spike: its alarm stays open while the sensor is dead
    dead = int(rng.integers(a + 2, a + 60))
    pressure[dead : dead + int(rng.integers(30, 500))] = np.nan
    for _ in range(rng.integers(1, 4)):  # power still, sometimes from the first reading
        b = 0 if rng.random() < 0.3 else int(rng.integers(0, N - 100))
        power[b : b + int(rng.integers(20, 900))] = power[b]
    if rng.random() < 0.5:  # the temperature dead too, for a stretch
        b = int(rng.integers(0, N - 100))
        temp[b : b + int(rng.integers(10, 400))] = np.nan
    return t, {"discharge_pressure": pressure, "discharge_temp": temp, "motor_power": power}


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, N - 1), max_size=80))
def test_dead_sensors_and_unmoved_signals_in_the_quick_check_agree_with_the_full_path(
    kind: TwinType, seed: int, cuts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows without readings (also under an open alarm) and stuck-rule rows that did not move
    and have no stuck history take the quick check: the same alerts and state as without it."""
    t, signals = dead_and_still(seed)
    batch = frames(t, sorted(set(cuts)), **signals)
    assert_paths_agree(kind, batch, monkeypatch)


def test_a_dead_sensor_under_an_open_alarm_and_a_still_signal_take_the_quick_check(
    kind: TwinType, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = T0 + np.arange(float(N))
    pressure, power = moves(t), np.full(N, 150.0)  # the power never moves
    pressure[600] += 6.0
    pressure[700:] = np.nan  # dead after the spike's alarm opened
    signals = {"discharge_pressure": pressure, "discharge_temp": 60.0 + np.sin(t / 90.0),
               "motor_power": power}  # fmt: skip
    taken = count_quick_checks(monkeypatch)
    alarms = ReadingAlarms("c-1", "compressor")
    alarms.learn_window({"discharge_pressure.std": 0.35}, kind)
    alerts = [
        a for f in frames(t, list(range(60, N, 60)), **signals) for a in alarms.update(f, kind)
    ]
    assert [a.rule for a in alerts] == ["discharge_pressure_spikes"]  # raised, never cleared
    assert "discharge_pressure_spikes" in alarms.state
    # every frame after the first; the spike's own and the sensor's last frames excepted
    assert taken.count(True) >= N // 60 - 4


def held_by_hand(
    t: list[float], cond: list[bool], since: float | None, count: int, dur: float, n: int
) -> tuple[int, float | None, int]:
    """``held`` reading by reading: the run's start and length carried along."""
    for i, (ti, ok) in enumerate(zip(t, cond, strict=True)):
        if not ok:
            since, count = None, 0
            continue
        since, count = (ti if since is None else since), count + 1
        if ti - since >= dur and count >= n:
            return i, None, 0
    return -1, since, count


@settings(max_examples=300)
@given(
    gaps=st.lists(st.sampled_from([0.0, 1.0, 1.0, 2.0, 7.5]), min_size=1, max_size=40),
    cond=st.lists(st.booleans(), min_size=40, max_size=40),
    all_true=st.booleans(),
    since=st.one_of(st.none(), st.floats(-50.0, 0.0)),
    count=st.integers(1, 5),
    dur=st.sampled_from([0.0, 1.0, 5.0, 30.0]),
    n=st.integers(1, 8),
)
def test_held_agrees_with_walking_the_readings(
    gaps: list[float],
    cond: list[bool],
    all_true: bool,
    since: float | None,
    count: int,
    dur: float,
    n: int,
) -> None:
    """Both of ``held``'s ways (a condition held throughout, and the general one)."""
    t = np.cumsum(gaps)
    c = np.ones(len(t), dtype=bool) if all_true else np.array(cond[: len(t)])
    carried = 0 if since is None else count
    assert held(t, c, since, carried, dur, n) == held_by_hand(
        t.tolist(), c.tolist(), since, carried, dur, n
    )


def test_an_open_spike_alarm_awaiting_its_clear_takes_the_quick_check(
    kind: TwinType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a spike alarm waits for its clear, the quick check takes the twin's frames and
    the open rule alone is judged: the same raise and clear as the per-rule path."""
    t = T0 + np.arange(float(N))
    pressure = moves(t)
    pressure[300] += 6.0  # its clear comes 30 minutes later
    signals = {"discharge_pressure": pressure, "discharge_temp": 60.0 + np.sin(t / 90.0),
               "motor_power": 150.0 + 0.1 * np.sin(t * 0.9)}  # fmt: skip
    batch = frames(t, list(range(60, N, 60)), **signals)
    taken = count_quick_checks(monkeypatch)
    quick, a = judged(kind, batch, 0.35)
    full, b = judged_per_rule(kind, batch, monkeypatch)
    assert [(x.rule, x.state.value) for x in quick] == [
        ("discharge_pressure_spikes", "raised"),
        ("discharge_pressure_spikes", "cleared"),
    ]
    assert pickle.dumps(quick) == pickle.dumps(full) and a.state == b.state == {}
    assert taken.count(True) >= N // 60 - 3  # the first frame, and the spike's own
