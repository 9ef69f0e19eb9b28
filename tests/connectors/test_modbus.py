"""Modbus TCP: the register codec, read plans, and the source and command sink against the
simulator's real pymodbus server on a free loopback port (no mocks of pymodbus)."""

from __future__ import annotations

import math
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from twinflow.connectors.bindings import ModbusBinding, ModbusWrite, Register
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.modbus.codec import (
    TYPES,
    decode_raw,
    decode_value,
    encode_raw,
    encode_value,
)
from twinflow.connectors.modbus.loop import LoopThread
from twinflow.connectors.modbus.plan import ReadGroup, plan_reads
from twinflow.connectors.modbus.sink import ModbusCommandSink
from twinflow.connectors.modbus.source import ModbusPartition, ModbusSource
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.devices.modbus import (
    ModbusDevices,
    default_binding,
    default_bindings,
    default_register_map,
)
from twinflow.core.backoff import Backoff
from twinflow.core.errors import ConfigError, ValidationError
from twinflow.core.records import Command, CommandStatus, Quality, TelemetryFrame
from twinflow.operators.pipeline import check_item
from twinflow.operators.validate import Validator

HOST = "127.0.0.1"
ORDERS = ("big", "little")
INT_TYPES = ("int16", "uint16", "int32", "uint32")

# --------------------------------------------------------------------------- codec


KNOWN = [
    # (register, value, words as the device stores them)
    (Register(0, type="float32"), 1.0, [0x3F80, 0x0000]),
    (Register(0, type="float32", word_order="little"), 1.0, [0x0000, 0x3F80]),
    (Register(0, type="float32", byte_order="little"), 1.0, [0x803F, 0x0000]),
    (Register(0, type="float32", word_order="little", byte_order="little"), 1.0, [0, 0x803F]),
    (Register(0, type="float32"), -2.5, [0xC020, 0x0000]),
    (Register(0, type="int16"), -2.0, [0xFFFE]),
    (Register(0, type="int16", scale=0.1), -10.0, [0xFF9C]),
    (Register(0, type="uint16"), 65535.0, [0xFFFF]),
    (Register(0, type="uint16", byte_order="little"), 0x1234, [0x3412]),
    (Register(0, type="uint16", scale=0.01, offset=-40.0), 0.0, [4000]),
    (Register(0, type="int32"), -2.0, [0xFFFF, 0xFFFE]),
    (Register(0, type="int32", word_order="little"), 0x12345678, [0x5678, 0x1234]),
    (Register(0, type="uint32"), 0x12345678, [0x1234, 0x5678]),
    (Register(0, type="uint32", byte_order="little"), 0x12345678, [0x3412, 0x7856]),
    (
        Register(0, type="uint32", word_order="little", byte_order="little"),
        0x12345678,
        [0x7856, 0x3412],
    ),
    (Register(0, type="uint32", word_order="little", scale=0.001), 70000.0, [0x1D80, 0x042C]),
    (Register(0, kind="coil", type="bool"), 1.0, [1]),
    (Register(0, kind="discrete", type="bool", scale=2000.0), 0.0, [0]),
    (Register(0, type="bool"), 1.0, [1]),
]


@pytest.mark.parametrize(("reg", "value", "words"), KNOWN)
def test_known_vectors(reg: Register, value: float, words: list[int]) -> None:
    assert encode_value(value, reg) == words
    assert decode_value(words, reg) == pytest.approx(value)


@st.composite
def int_case(draw: st.DrawFn) -> tuple[Register, int]:
    kind = draw(st.sampled_from(INT_TYPES))
    reg = Register(
        0,
        type=kind,
        word_order=draw(st.sampled_from(ORDERS)),
        byte_order=draw(st.sampled_from(ORDERS)),
    )
    _, _, low, high = TYPES[kind]
    return reg, draw(st.integers(int(low), int(high)))


@given(int_case())
def test_integer_raw_round_trip(case: tuple[Register, int]) -> None:
    reg, raw = case
    words = encode_raw(raw, reg)
    assert len(words) == reg.count and all(0 <= w <= 0xFFFF for w in words)
    assert decode_raw(words, reg) == raw


@given(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from(ORDERS),
    st.sampled_from(ORDERS),
)
def test_float32_round_trip_is_exact(x: float, word: str, byte: str) -> None:
    reg = Register(0, type="float32", word_order=word, byte_order=byte)  # type: ignore[arg-type]
    assert decode_value(encode_value(x, reg), reg) == x


@st.composite
def scaled_case(draw: st.DrawFn) -> tuple[Register, float]:
    kind = draw(st.sampled_from((*INT_TYPES, "float32")))
    scale = draw(st.sampled_from((1.0, 0.1, 0.01, -0.5, 10.0)))
    offset = draw(st.sampled_from((0.0, -40.0, 273.15)))
    reg = Register(
        0,
        type=kind,
        word_order=draw(st.sampled_from(ORDERS)),
        byte_order=draw(st.sampled_from(ORDERS)),
        scale=scale,
        offset=offset,
    )
    _, _, low, high = TYPES[kind]
    low, high = max(low, -1e6), min(high, 1e6)
    raw = draw(st.floats(low, high, allow_nan=False))
    return reg, raw * scale + offset


@given(scaled_case())
def test_value_round_trip_with_scale_and_offset(case: tuple[Register, float]) -> None:
    reg, value = case
    back = decode_value(encode_value(value, reg), reg)
    if reg.type == "float32":
        assert back == pytest.approx(value, rel=1e-6, abs=1e-6 * abs(reg.scale) + 1e-9)
    else:  # integers round to the nearest step
        assert abs(back - value) <= abs(reg.scale) / 2 + 1e-9 * max(1.0, abs(value))


@pytest.mark.parametrize(
    ("reg", "value", "needle"),
    [
        (Register(0, type="uint16"), -1.0, "uint16 range"),
        (Register(0, type="int16"), 40000.0, "int16 range"),
        (Register(0, type="uint16", scale=0.01), 700.0, "raw 70000"),
        (Register(0, type="float32"), math.nan, "finite"),
        (Register(0, type="int32"), math.inf, "finite"),
        (Register(0, type="float32"), 1e39, "float32 range"),
        (Register(0, kind="coil", type="bool"), 0.5, "need 0 or 1"),
    ],
)
def test_values_a_register_cannot_hold_are_refused(
    reg: Register, value: float, needle: str
) -> None:
    with pytest.raises(ValidationError, match=needle):
        encode_value(value, reg)


def test_clamp_clips_instead_of_refusing() -> None:
    assert encode_value(-5.0, Register(0, type="uint16"), clamp=True) == [0]
    assert encode_value(1e9, Register(0, type="int16"), clamp=True) == [0x7FFF]
    assert encode_value(7.0, Register(0, kind="coil", type="bool"), clamp=True) == [1]


# --------------------------------------------------------------------------- read plans


def test_plan_groups_contiguous_addresses_of_one_kind() -> None:
    regs = {
        "a": Register(0, type="float32"),
        "b": Register(2, type="uint16"),
        "c": Register(3, type="int32"),
        "d": Register(9),  # gap: new request
        "e": Register(0, kind="input"),  # other kind: new request
        "f": Register(5, kind="coil", type="bool"),
        "g": Register(6, kind="coil", type="bool"),
    }
    names, groups = plan_reads(regs)
    assert names == tuple(regs)
    assert [(g.kind, g.address, g.count) for g in groups] == [
        ("holding", 0, 5),
        ("holding", 9, 1),
        ("input", 0, 1),
        ("coil", 5, 2),
    ]


def test_plan_respects_the_125_register_limit_without_splitting_a_value() -> None:
    regs = {f"s{i}": Register(2 * i, type="float32") for i in range(100)}  # 200 registers
    _, groups = plan_reads(regs)
    assert [g.count for g in groups] == [124, 76]
    assert sum(len(g.fields) for g in groups) == 100
    bits = {f"b{i}": Register(i, kind="coil", type="bool") for i in range(2500)}
    assert [g.count for g in plan_reads(bits)[1]] == [2000, 500]


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, Register]:
    n = draw(st.integers(1, 8))
    regs = {}
    for i in range(n):
        kind = draw(st.sampled_from(("int16", "uint16", "int32", "uint32", "float32", "bool")))
        regs[f"s{i}"] = Register(
            draw(st.integers(0, 12)),
            type=kind,
            word_order=draw(st.sampled_from(ORDERS)),
            byte_order=draw(st.sampled_from(ORDERS)),
            scale=draw(st.sampled_from((1.0, 0.1, -2.0))),
            offset=draw(st.sampled_from((0.0, 5.0))),
        )
    return regs


@given(layouts(), st.lists(st.integers(0, 0xFFFF), min_size=14, max_size=14))
def test_plan_decodes_like_each_register_alone(
    regs: dict[str, Register], memory: list[int]
) -> None:
    """Any layout (gaps, overlaps, mixed orders): one decode per group == decode per field."""
    names, groups = plan_reads(regs)
    row = [math.nan] * len(names)
    for g in groups:
        g.decode(memory[g.address : g.address + g.count], row)
    for i, (name, reg) in enumerate(regs.items()):
        want = decode_value(memory[reg.address : reg.address + reg.count], reg)
        got = row[names.index(name)]
        assert got == want or (math.isnan(got) and math.isnan(want)), (i, reg)


def test_a_short_answer_raises_for_the_poller_to_count() -> None:
    group = ReadGroup("holding", 0, 2, [(0, 0, Register(0, type="float32"))])
    with pytest.raises(struct.error):
        group.decode([1], [math.nan])


# --------------------------------------------------------------------------- configuration


def binding(**fields: object) -> ModbusBinding:
    base = default_binding("motor-003", "motor", HOST, 5020, 3)
    return replace(base, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"registers": {"torque": Register(0)}}, "registers['torque'] is not a scalar signal"),
        ({"registers": {"vibration": Register(0)}}, "not a scalar signal"),
        ({"registers": {"load_pct": Register(0, kind="coil", type="float32")}}, "set type: bool"),
        ({"registers": {"load_pct": Register(65535, type="float32")}}, "address must be"),
        ({"registers": {"load_pct": Register(0, scale=0.0)}}, "scale must be"),
        ({"unit": 300}, "unit must be an integer in"),
        ({"twin_type": "boiler"}, "unknown twin_type 'boiler'"),
        ({"timeout_s": 0}, "timeout_s must be"),
    ],
)
def test_bad_bindings_are_refused_with_the_field_named(bad: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match="twin 'motor-003'") as err:
        ModbusSource([binding(**bad)])
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("commands", "needle"),
    [
        ({"explode": ModbusWrite(Register(100), "x")}, "has no command 'explode'"),
        ({"derate": ModbusWrite(Register(100), "percent")}, "param 'percent' is not"),
        ({"derate": ModbusWrite(Register(100, kind="input"), "fraction")}, "read-only"),
    ],
)
def test_bad_command_maps_are_refused(commands: dict[str, ModbusWrite], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ModbusCommandSink([binding(commands=commands)])


def test_a_twin_bound_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="bound twice"):
        ModbusSource([binding(), binding()])


def test_default_map_uses_float32_pairs_and_commands_from_100() -> None:
    regs, cmds = default_register_map("wind_turbine")
    assert [r.address for r in regs.values()] == list(range(0, 16, 2))
    assert {r.type for r in regs.values()} == {"float32"}
    assert {n: (w.register.address, w.param) for n, w in cmds.items()} == {
        "derate": (100, "fraction"),
        "set_pitch": (102, "degrees"),
    }


# --------------------------------------------------------------------------- live devices


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def patient(bindings: list[ModbusBinding]) -> list[ModbusBinding]:
    """The bindings with a generous timeout: tests that expect answers must not fail on a
    busy machine because one answer took longer than the fixture's short 0.2 s."""
    return [replace(b, timeout_s=2.0) for b in bindings]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Served:
    """A plant, its devices on a free port (on a loop thread) and the default bindings."""

    plant: Plant
    devices: ModbusDevices
    loop: LoopThread
    bindings: list[ModbusBinding]
    part: object  # the plant partition that generates chunks

    def push_chunk(self) -> list[TelemetryFrame]:
        """Generate the next chunk and store its newest rows in the devices."""
        frames = [i for i in self.part.next_chunk() if isinstance(i, TelemetryFrame)]  # type: ignore[attr-defined]
        for f in frames:
            self.loop.run(self.devices.update(f), timeout=5)
        return frames

    def start(self) -> None:
        self.loop.run(self.devices.start(), timeout=5)

    def stop(self) -> None:
        self.loop.run(self.devices.stop(), timeout=5)


def make_plant() -> Plant:
    return Plant(
        PlantConfig(
            n_twins=3,
            duration_s=3600,
            seed=3,
            fault_fraction=0.0,
            raw_message_rate=0.0,
            bad_message_rate=0.0,
        )
    )


def serve(plant: Plant, bindings: list[ModbusBinding], port: int) -> Served:
    loop = LoopThread("test-modbus-devices").start()
    devices = ModbusDevices(plant, HOST, port, bindings)
    served = Served(plant, devices, loop, bindings, plant.partition(0, 1))
    served.start()
    return served


@pytest.fixture
def served() -> Iterator[Served]:
    plant = make_plant()
    port = free_port()
    s = serve(plant, default_bindings(plant, HOST, port, poll_interval_s=0.05, timeout_s=0.2), port)
    s.push_chunk()
    yield s
    s.stop()
    s.loop.stop()


def collect(
    part: ModbusPartition,
    until: Callable[[list[TelemetryFrame]], bool] | None = None,
    timeout: float = 10.0,
) -> list[TelemetryFrame]:
    """next_batch until ``until(frames so far)`` holds, the source ends, or ``timeout``."""
    frames: list[TelemetryFrame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frames += part.next_batch()
        except StopIteration:
            return frames
        if until is not None and until(frames):
            return frames
        time.sleep(0.005)
    rows = sum(len(f.times) for f in frames)
    stats = part._source.stats.snapshot()
    raise AssertionError(f"not met within {timeout} s: {len(frames)} frames, {rows} rows; {stats}")


def whole(source: ModbusSource) -> ModbusPartition:
    """One partition polling every endpoint of ``source`` (a flow has one per endpoint)."""
    return ModbusPartition(source, list(source.groups.values()), "in")


def of(frames: list[TelemetryFrame], twin: str) -> list[TelemetryFrame]:
    return [f for f in frames if f.twin_id == twin]


def good(f: TelemetryFrame) -> bool:
    return not f.quality and all(np.isfinite(v[-1]) for v in f.signals.values())


def bad(f: TelemetryFrame) -> bool:
    return (
        set(f.quality) == set(f.signals)
        and set(f.quality.values()) == {Quality.BAD}
        and all(math.isnan(v[-1]) for v in f.signals.values())
    )


def finish(source: ModbusSource, part: ModbusPartition) -> None:
    source.stop()
    collect(part, timeout=10)


@pytest.mark.services
@pytest.mark.timeout(45)
def test_polling_decodes_every_type_and_order() -> None:
    plant = make_plant()
    port = free_port()
    custom = {
        "wind_speed": Register(0, type="float32"),
        "power_kw": Register(2, type="int32", word_order="little", byte_order="little", scale=0.1),
        "rotor_rpm": Register(0, kind="input", type="uint16", scale=0.01),
        "gearbox_temp": Register(1, kind="input", type="int16", scale=0.1, offset=-10.0),
        "generator_temp": Register(4, type="float32", word_order="little"),
        "vibration_rms": Register(2, kind="input", type="uint32", word_order="little", scale=0.001),
        "pitch_deg": Register(6, type="float32", byte_order="little"),
        "power_limit_kw": Register(7, kind="coil", type="bool", scale=2000.0),
    }
    bindings = default_bindings(plant, HOST, port, poll_interval_s=0.02, timeout_s=2.0)
    bindings[0] = replace(bindings[0], registers=custom)
    pump = dict(bindings[1].registers)
    pump["flow_setpoint_m3h"] = Register(3, kind="discrete", type="bool", scale=100.0)
    bindings[1] = replace(bindings[1], registers=pump)
    s = serve(plant, bindings, port)
    try:
        truth = {f.twin_id: f for f in s.push_chunk()}
        source = ModbusSource(bindings, max_polls=3)
        frames = collect(whole(source))
    finally:
        s.stop()
        s.loop.stop()
    assert source.stats["poll:ok"] == 9
    for twin in ("wt-001", "pump-002", "motor-003"):
        got = of(frames, twin)
        assert sum(len(f.times) for f in got) == 3
        b = next(x for x in bindings if x.twin_id == twin)
        for name, reg in b.registers.items():
            want = float(truth[twin].signals[name][-1])
            value = float(got[-1].signals[name][-1])
            if reg.type == "bool":
                assert value == (reg.scale if want != 0 else 0.0), name
            elif reg.type == "float32":
                assert value == pytest.approx(want, rel=1e-6), name
            else:
                assert abs(value - want) <= abs(reg.scale) / 2 + 1e-9, name
        assert got[-1].source == f"modbus://{HOST}:{port}/{b.unit}"


@pytest.mark.services
@pytest.mark.timeout(45)
def test_an_exception_response_marks_only_its_signals_bad(served: Served) -> None:
    wt = served.bindings[0]
    regs = dict(wt.registers)
    regs["pitch_deg"] = Register(500, type="float32")  # the device has nothing there
    bindings = patient([replace(wt, registers=regs), *served.bindings[1:]])
    before = counter("twinflow_modbus_polls_total", result="exception")
    source = ModbusSource(bindings, max_polls=2)
    frames = of(collect(whole(source)), "wt-001")
    last = frames[-1]
    assert dict(last.quality) == {"pitch_deg": Quality.BAD}
    assert math.isnan(last.signals["pitch_deg"][-1])
    assert np.isfinite(last.signals["wind_speed"][-1])
    assert source.stats["poll:exception"] == 2
    assert counter("twinflow_modbus_polls_total", result="exception") - before == 2


@pytest.mark.services
@pytest.mark.timeout(45)
def test_a_device_that_stops_answering_and_comes_back(served: Served) -> None:
    before = counter("twinflow_modbus_polls_total", result="timeout")
    source = ModbusSource(served.bindings, reconnect_min_s=0.05, reconnect_max_s=0.4)
    part = whole(source)
    try:
        collect(
            part, lambda fs: all(any(good(f) for f in of(fs, t)) for t, _ in served.plant.twins)
        )
        served.devices.set_silent("motor-003", True)
        silent = collect(part, lambda fs: any(bad(f) for f in of(fs, "motor-003")))
        # the others keep answering on the same connection meanwhile
        during = collect(part, lambda fs: sum(len(f.times) for f in of(fs, "wt-001")) >= 3)
        served.devices.set_silent("motor-003", False)
        back = collect(part, lambda fs: any(good(f) for f in of(fs, "motor-003")))
    finally:
        finish(source, part)
    assert any(bad(f) for f in of(silent, "motor-003"))
    assert any(good(f) for f in of(back, "motor-003"))
    wind = np.concatenate([f.signals["wind_speed"] for f in of(during, "wt-001")])
    assert np.isfinite(wind).mean() >= 0.5  # the others keep answering on the shared link
    assert source.stats["poll:timeout"] >= 1
    assert counter("twinflow_modbus_polls_total", result="timeout") - before >= 1


@pytest.mark.services
@pytest.mark.timeout(45)
def test_a_stopped_and_restarted_server_is_reconnected(served: Served) -> None:
    reconnects = counter("twinflow_modbus_reconnects_total")
    source = ModbusSource(served.bindings, reconnect_min_s=0.05, reconnect_max_s=0.4)
    part = whole(source)
    twins = [t for t, _ in served.plant.twins]
    try:
        collect(part, lambda fs: all(any(good(f) for f in of(fs, t)) for t in twins))
        served.stop()
        down = collect(part, lambda fs: all(any(bad(f) for f in of(fs, t)) for t in twins))
        served.start()
        up = collect(part, lambda fs: all(any(good(f) for f in of(fs, t)) for t in twins))
    finally:
        finish(source, part)
    assert all(bad(f) for f in down[-3:])  # no server: every twin BAD, nothing invented
    assert all(any(good(f) for f in of(up, t)) for t in twins)
    stats = source.stats.snapshot()
    assert stats["poll:disconnected"] >= 3
    assert stats["reconnects"] >= 1
    assert counter("twinflow_modbus_reconnects_total") - reconnects >= 1


def command(twin: str, kind: str, name: str, **params: float) -> Command:
    now = datetime.now(UTC)
    return Command(
        command_id=Command.make_id(twin, name, now),
        twin_id=twin,
        twin_type=kind,
        name=name,
        params=params,
        issued_at=now,
        expires_at=now + timedelta(minutes=10),
        reason="test",
        status=CommandStatus.QUEUED,
    )


def statuses(feedback: CommandFeedback, cmd: Command) -> list[CommandStatus]:
    return [o.status for o in feedback.history(cmd.command_id)]


def last(feedback: CommandFeedback, cmd: Command) -> tuple[CommandStatus, str]:
    o = feedback.history(cmd.command_id)[-1]
    return o.status, o.detail


def mean_tail(frames: list[TelemetryFrame], twin: str, signal: str) -> float:
    return float(np.mean(next(f for f in frames if f.twin_id == twin).signals[signal][-10:]))


@pytest.mark.services
@pytest.mark.timeout(45)
def test_command_round_trip_changes_what_the_plant_produces(served: Served) -> None:
    before = mean_tail([f for f in served.push_chunk()], "motor-003", "load_pct")
    assert before > 70
    feedback = CommandFeedback()
    sink = ModbusCommandSink(served.bindings, feedback=feedback)
    cmd = command("motor-003", "motor", "derate", fraction=0.5)
    succeeded = counter("twinflow_modbus_command_results_total", status="succeeded")
    flow = Dataflow("modbus_commands")
    op.output("actuators", op.input("cmds", flow, TestingSource([cmd])), sink)
    run_main(flow)  # closing the sink partition waits for the write
    assert statuses(feedback, cmd) == [CommandStatus.SENT, CommandStatus.ACKNOWLEDGED]
    assert "wrote 0.5 to holding" in last(feedback, cmd)[1]
    assert counter("twinflow_modbus_command_results_total", status="succeeded") - succeeded == 1
    [issued] = served.devices.commands
    assert (issued.twin_id, issued.name, dict(issued.params)) == (
        "motor-003",
        "derate",
        {"fraction": 0.5},
    )
    after = served.push_chunk()  # the plant obeys in its next chunk
    assert mean_tail(after, "motor-003", "load_pct") < 55
    source = ModbusSource(patient(served.bindings), max_polls=2)  # ... the devices show it
    polled = of(collect(whole(source)), "motor-003")
    load = np.concatenate([f.signals["load_pct"] for f in polled])
    assert np.isfinite(load).all() and load.max() < 55


@pytest.mark.services
@pytest.mark.timeout(45)
def test_out_of_range_commands_are_rejected_before_sending(served: Served) -> None:
    motor = served.bindings[2]
    tight = ModbusWrite(Register(100, type="uint16", scale=0.001), "percent")
    feedback = CommandFeedback()
    sink = ModbusCommandSink(
        [replace(motor, commands={**motor.commands, "set_load": tight})], feedback=feedback
    )
    too_far = command("motor-003", "motor", "derate", fraction=1.5)  # outside the catalog range
    too_big = command("motor-003", "motor", "set_load", percent=100.0)  # raw 100000 > uint16
    wrong = command("motor-003", "motor", "derate", percent=0.5)  # wrong parameter
    unbound = command("pump-002", "pump", "derate", fraction=0.5)  # no binding in this sink
    old = replace(command("motor-003", "motor", "derate", fraction=0.5), command_id="old")
    old = replace(old, expires_at=old.issued_at - timedelta(seconds=1))
    sink.send([too_far, too_big, wrong, unbound, old])
    assert sink.flush(5)
    results = {c.command_id: last(feedback, c) for c in (too_far, too_big, wrong, unbound, old)}
    assert {s for s, _ in results.values()} == {CommandStatus.REJECTED, CommandStatus.EXPIRED}
    assert "outside [0.2, 1]" in results[too_far.command_id][1]
    assert "uint16" in results[too_big.command_id][1]
    assert "missing parameter 'fraction'" in results[wrong.command_id][1]
    assert "no Modbus binding" in results[unbound.command_id][1]
    assert results["old"][0] is CommandStatus.EXPIRED and "expired at" in results["old"][1]
    assert all(len(feedback.history(c)) == 1 for c in results)  # nothing was sent
    sink.close()
    assert served.devices.commands == [] and served.plant.command_log == []


@pytest.mark.services
@pytest.mark.timeout(45)
def test_the_device_refuses_bad_writes_itself(served: Served) -> None:
    """A client that skips the checks gets Modbus exceptions, and the plant is untouched."""
    from pymodbus.client import AsyncModbusTcpClient

    async def writes() -> list[int]:
        client = AsyncModbusTcpClient(HOST, port=served.devices.port, timeout=1, retries=0)
        await client.connect()
        try:
            out = []
            for address, values, unit in [
                (102, encode_value(5.0, Register(0, type="float32")), 3),  # derate 5: range
                (6, [0, 0], 3),  # load_pct is telemetry: read-only
                (102, [0x3F00], 3),  # half a float32 command value
                (102, [0x3F00, 0], 9),  # no such unit
            ]:
                rr = await client.write_registers(address, values, device_id=unit)
                out.append(rr.exception_code if rr.isError() else 0)
            return out
        finally:
            client.close()

    assert served.loop.run(writes(), timeout=10) == [3, 2, 2, 10]
    assert served.devices.commands == [] and served.plant.command_log == []


@pytest.mark.services
@pytest.mark.timeout(45)
def test_unreachable_and_silent_devices_fail_in_bounded_time(served: Served) -> None:
    motor = served.bindings[2]
    nowhere = replace(served.bindings[1], port=free_port())  # nothing listens there
    feedback = CommandFeedback()
    backoff = Backoff(base_s=0.05, cap_s=0.1, max_attempts=3, jitter=0.0)
    sink = ModbusCommandSink([motor, nowhere], feedback=feedback, backoff=backoff)
    served.devices.set_silent("motor-003", True)
    refused = command("pump-002", "pump", "set_flow", m3h=100.0)
    unanswered = command("motor-003", "motor", "derate", fraction=0.5)
    t0 = time.monotonic()
    sink.send([refused, unanswered])
    assert feedback.wait_for(refused.command_id, {CommandStatus.FAILED}, 15)
    assert feedback.wait_for(unanswered.command_id, {CommandStatus.FAILED}, 15)
    elapsed = time.monotonic() - t0
    sink.close()
    assert statuses(feedback, refused) == [CommandStatus.FAILED]  # never on the wire
    assert "gave up after 3 attempts" in last(feedback, refused)[1]
    assert "cannot connect" in last(feedback, refused)[1]
    tries = feedback.history(unanswered.command_id)
    assert [(o.status, o.attempt) for o in tries] == [
        (CommandStatus.SENT, 1),
        (CommandStatus.SENT, 2),
        (CommandStatus.SENT, 3),
        (CommandStatus.FAILED, 3),
    ]
    assert "no answer within 0.2 s" in tries[-1].detail
    # attempts x (connect + answer) + pauses, plus slack for a busy machine
    assert elapsed < 3 * (2 * 0.2) + 0.15 + 5.0
    served.devices.set_silent("motor-003", False)
    assert served.devices.commands == []  # the silent unit never acted on it


@pytest.mark.services
@pytest.mark.timeout(45)
def test_commands_not_issued_and_replays_are_not_written(served: Served) -> None:
    feedback = CommandFeedback()
    sink = ModbusCommandSink(served.bindings, feedback=feedback)
    cmd = command("motor-003", "motor", "set_load", percent=60.0)
    done = replace(cmd, command_id="x", status=CommandStatus.SUCCEEDED)
    sink.send([cmd, done])
    acked = feedback.wait_for(cmd.command_id, {CommandStatus.ACKNOWLEDGED}, 5)
    assert acked is not None
    assert acked.detail == f"wrote 60 to holding 100 of unit 3 at {HOST}:{served.devices.port}"
    sink.send([cmd])  # a replay after recovery
    sink.close()
    assert len(served.devices.commands) == 1 and feedback.history("x") == []
    assert statuses(feedback, cmd) == [CommandStatus.SENT, CommandStatus.ACKNOWLEDGED]
    assert sink.stats.snapshot()["duplicates"] == 1
    with pytest.raises(TypeError, match=r"takes twinflow\.core\.records\.Command items"):
        sink.send(["derate"])  # type: ignore[list-item]


@pytest.mark.services
@pytest.mark.timeout(45)
def test_a_flow_run_through_bytewax(served: Served) -> None:
    twins = dict(served.plant.twins)
    validator = Validator(twins=twins)
    out: list[object] = []
    flow = Dataflow("modbus_flow")
    frames = op.input("modbus", flow, ModbusSource(patient(served.bindings), max_polls=4))
    checked = op.flat_map("check", frames, lambda x: check_item(x, validator, time.time()))
    op.output("out", checked, TestingSink(out))
    run_main(flow)
    assert all(isinstance(x, TelemetryFrame) for x in out)  # no dead letters
    for twin, kind in twins.items():
        mine = [f for f in out if isinstance(f, TelemetryFrame) and f.twin_id == twin]
        assert sum(len(f.times) for f in mine) == 4
        times = np.concatenate([f.times for f in mine])
        assert (np.diff(times) >= 0).all() and abs(times[-1] - time.time()) < 30
        assert all(f.twin_type == kind and good(f) for f in mine)


@pytest.mark.services
@pytest.mark.timeout(45)
def test_stop_ends_an_endless_source_and_each_endpoint_is_a_partition(served: Served) -> None:
    other = free_port()
    extra = replace(served.bindings[0], twin_id="wt-004", port=other)  # a second endpoint
    source = ModbusSource([*served.bindings, extra], reconnect_min_s=0.05, reconnect_max_s=0.2)
    host = served.bindings[0].host
    assert source.list_parts() == [f"{host}:{served.bindings[0].port}", f"{host}:{other}"]
    first, second = (source.build_part("in", key, None) for key in source.list_parts())
    try:
        got = [collect(p, lambda fs: len(fs) >= 6) for p in (first, second)]
    finally:
        finish(source, first)
        finish(source, second)
    twins = [{f.twin_id for f in g} for g in got]
    assert twins[0].isdisjoint(twins[1])
    assert sorted(map(sorted, twins)) == [["motor-003", "pump-002", "wt-001"], ["wt-004"]]
