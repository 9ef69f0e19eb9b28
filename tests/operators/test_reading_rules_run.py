"""A twin's frames of one batch judged together (``ReadingAlarms.update_batch``) against the
same frames one by one: the same alerts and state, over frames with dropouts, repeats, spikes,
freezes, limits crossed, readings refused, dead and still sensors and windows closing between
them, cut and batched at random; and which frames take the stretch path."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twinflow.operators.reading_rules_run as reading_rules_run
from tests.operators.compressor import load_compressor
from tests.operators.test_reading_rules import HOT, T0, frames, moves
from tests.operators.test_reading_rules_paths import LOW, N, dead_and_still, series
from twinflow.core.records import Alert, TelemetryFrame
from twinflow.operators.catalog import TwinType
from twinflow.operators.reading_rules import ReadingAlarms, reading_plan

Closed = list[list[dict[str, float]]]


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> TwinType:
    return load_compressor(Path(tmp_path_factory.mktemp("compressor")), HOT + LOW)


def fresh(kind: TwinType) -> ReadingAlarms:
    alarms = ReadingAlarms("c-1", "compressor")
    alarms.learn_window({"discharge_pressure.std": 0.35}, kind)
    return alarms


def one_by_one(
    kind: TwinType, batch: list[TelemetryFrame], closed: Closed
) -> tuple[list[Alert], ReadingAlarms]:
    alarms, out = fresh(kind), []
    for frame, windows in zip(batch, closed, strict=True):
        for w in windows:
            alarms.learn_window(w, kind)
        out.extend(alarms.update(frame, kind))
    return out, alarms


def together(
    kind: TwinType, batch: list[TelemetryFrame], closed: Closed, edges: list[int]
) -> tuple[list[Alert], ReadingAlarms]:
    """The frames in batches cut at ``edges`` (frame indices), each given to update_batch."""
    alarms, out = fresh(kind), []
    for a, b in itertools.pairwise([0, *edges, len(batch)]):
        if a < b:
            got = alarms.update_batch(batch[a:b], kind, closed[a:b])
            assert len(got) == b - a
            out.extend(x for alerts in got for x in alerts)
    return out, alarms


def assert_same(a: ReadingAlarms, b: ReadingAlarms) -> None:
    assert a.state == b.state and a.block == b.block
    for name in ("last", "changed_at", "spread", "block_moved", "block_count", "moved"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.qualified, b.qualified)


def windows_at(seed: int, count: int) -> Closed:
    """Windows closing before some frames, with the pressure's spread they report."""
    rng = np.random.default_rng(seed)
    return [
        [{"discharge_pressure.std": float(rng.uniform(0.05, 2.0))}] if rng.random() < 0.1 else []
        for _ in range(count)
    ]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    which=st.sampled_from(["faults", "dead"]),
    cuts=st.lists(st.integers(1, N - 1), max_size=300),
    batches=st.lists(st.integers(1, 400), max_size=20),
)
def test_batches_judge_as_one_by_one(
    kind: TwinType,
    seed: int,
    which: str,
    cuts: list[int],
    batches: list[int],
) -> None:
    if which == "faults":
        t, signals, oor = series(seed)
        signals["oil_level"] = oil(t)
        batch = frames(t, sorted(set(cuts)), {"discharge_pressure": oor}, **signals)
    else:
        t, signals = dead_and_still(seed)
        signals["oil_level"] = oil(t)
        batch = frames(t, sorted(set(cuts)), **signals)
    closed = windows_at(seed, len(batch))
    full, a = one_by_one(kind, batch, closed)
    edges = sorted({e for e in batches if e < len(batch)})
    quick, b = together(kind, batch, closed, edges)
    assert pickle.dumps(quick) == pickle.dumps(full)
    assert_same(a, b)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_faulty_ten_second_frames_in_batches_take_stretches_and_agree(
    kind: TwinType, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The property above where it matters most (the flow's 10 s frames in batches of 40):
    stretches are taken, and the alerts and state are those of one by one."""
    t, signals, oor = series(seed)
    signals["oil_level"] = oil(t)
    batch = frames(t, list(range(10, N, 10)), {"discharge_pressure": oor}, **signals)
    closed = windows_at(seed, len(batch))
    stretches: list[object] = []
    real = reading_rules_run._learn
    monkeypatch.setattr(reading_rules_run, "_learn",
                        lambda *args: stretches.append(args) or real(*args))  # fmt: skip
    quick, b = together(kind, batch, closed, list(range(40, len(batch), 40)))
    full, a = one_by_one(kind, batch, closed)
    assert pickle.dumps(quick) == pickle.dumps(full)
    assert_same(a, b)
    assert len(stretches) >= 6


def oil(t: np.ndarray) -> np.ndarray:
    """The compressor's fourth signal, moving at every reading."""
    return 3.0 + 0.01 * np.sin(t)


def healthy(n: int = N) -> dict[str, np.ndarray]:
    t = T0 + np.arange(float(n))
    return {"discharge_pressure": moves(t), "discharge_temp": 60.0 + np.sin(t / 90.0),
            "motor_power": 150.0 + 0.1 * np.sin(t * 0.9), "oil_level": oil(t)}  # fmt: skip


def test_healthy_frames_are_learnt_a_stretch_at_a_time(
    kind: TwinType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known answer: 240 frames of 10 s in batches of 40; the first batch's first frame is
    judged alone (no reading before it), then each batch is one stretch (8 blocks of 300 s
    crossed on the way); the same alerts (none) and state as one by one."""
    t = T0 + np.arange(float(N))
    batch = frames(t, list(range(10, N, 10)), **healthy())
    closed: Closed = [[] for _ in batch]
    stretches: list[tuple[int, int]] = []
    real = reading_rules_run._learn

    def counted(*args: object) -> None:
        stretches.append((int(args[4]), int(args[5])))  # type: ignore[call-overload]
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(reading_rules_run, "_learn", counted)
    quick, b = together(kind, batch, closed, list(range(40, len(batch), 40)))
    full, a = one_by_one(kind, batch, closed)
    assert quick == full == []
    assert_same(a, b)
    assert stretches == [(10, 400)] + [(0, 400)] * 5
    assert b.block == int((T0 + N - 1) // 300) and b.block_count.tolist() == [300] * 4


def test_a_frame_that_may_breach_is_judged_alone_between_stretches(kind: TwinType) -> None:
    """A spike in the fifth frame of a batch: frames 0-3 a stretch, 4 alone (its alarm
    raised; the twin no longer idle), the rest one by one, as without batches."""
    signals = healthy(200)
    signals["discharge_pressure"][45] += 6.0
    t = T0 + np.arange(200.0)
    batch = frames(t, list(range(10, 200, 10)), **signals)
    closed: Closed = [[] for _ in batch]
    alarms = fresh(kind)
    assert alarms.update(batch[0], kind) == []
    got = alarms.update_batch(batch[1:], kind, closed[1:])
    full, a = one_by_one(kind, batch, closed)
    assert [x for alerts in got for x in alerts] == full
    assert [len(x) for x in got][:6] == [0, 0, 0, 1, 0, 0]  # raised by the reading after it
    assert full[0].rule == "discharge_pressure_spikes"
    assert_same(a, alarms)


def test_a_frame_without_a_plan_signal_leaves_the_batch_to_one_by_one(kind: TwinType) -> None:
    signals = healthy(100)
    t = T0 + np.arange(100.0)
    batch = frames(t, list(range(10, 100, 10)), **signals)
    lacking = {k: v for k, v in batch[5].signals.items() if k != "oil_level"}
    batch[5] = TelemetryFrame("c-1", "compressor", batch[5].times, lacking)
    closed: Closed = [[] for _ in batch]
    alarms = fresh(kind)
    alarms.update(batch[0], kind)
    assert reading_rules_run._clean(alarms, reading_plan(kind), batch[1:]) is None
    got = alarms.update_batch(batch[1:], kind, closed[1:])
    full, a = one_by_one(kind, batch, closed)
    assert [x for alerts in got for x in alerts] == full
    assert_same(a, alarms)
