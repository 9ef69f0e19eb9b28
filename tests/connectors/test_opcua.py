"""The OPC UA source and command sink against the simulator's real asyncua server.

The simulated devices run on an asyncio loop in a background thread, serving on free
loopback ports; the source and sink run as they do in a flow (their own threads), driven
through their Bytewax partitions or through ``run_main``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import bytewax.operators as op
import numpy as np
import pytest
from asyncua import Client, ua
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tests.services.opcua_certs import make_cert
from twinflow.connectors.bindings import OpcUaBinding, OpcUaSecurity
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.opcua import OpcUaCommandSink, OpcUaSource, quality_of, status_code_for
from twinflow.connectors.opcua.frames import Target, build_frames
from twinflow.connectors.opcua.source import OpcUaPartition
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.devices.opcua import (
    OpcUaDevices,
    ServerSecurity,
    default_binding,
    node_id,
)
from twinflow.core.backoff import Backoff
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandStatus, DeadLetter, Quality, TelemetryFrame

T = TypeVar("T")

# --------------------------------------------------------------------------- helpers


class Loop:
    """An asyncio event loop in a daemon thread, where the simulated devices live."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Cancel what the servers left running (session timers), then end the loop."""

        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quiet_plant() -> Plant:
    """wt-001, pump-002, motor-003; no faults, no bad or raw messages."""
    cfg = PlantConfig(
        n_twins=3,
        duration_s=3600,
        seed=5,
        fault_fraction=0.0,
        bad_message_rate=0.0,
        raw_message_rate=0.0,
    )
    return Plant(cfg)


def fast_source(bindings: list[OpcUaBinding], **kwargs: Any) -> OpcUaSource:
    settings: dict[str, Any] = {
        "max_batch_s": 0.2,
        "poll_s": 0.02,
        "keepalive_s": 1.0,
        "request_timeout_s": 2.0,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
    }
    settings.update(kwargs)
    return OpcUaSource(bindings, **settings)


@contextmanager
def partition(source: OpcUaSource, connect: bool = True) -> Iterator[OpcUaPartition]:
    """The source's only partition, connected (unless told not to wait), closed afterwards."""
    [key] = source.list_parts()
    part = source.build_part("opcua", key, None)
    try:
        if connect:
            wait_for(lambda: part.connected, 10.0, "the source to subscribe")
        yield part
    finally:
        part.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def collect(part: OpcUaPartition, done: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
    """Call ``next_batch`` as Bytewax would until ``done(items so far)``."""
    out: list[Any] = []
    end = time.monotonic() + timeout
    while not done(out):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s; got {out!r}")
        out.extend(part.next_batch())
        time.sleep(0.02)
    return out


def frames(items: list[Any], twin_id: str | None = None) -> list[TelemetryFrame]:
    return [
        i
        for i in items
        if isinstance(i, TelemetryFrame) and (twin_id is None or i.twin_id == twin_id)
    ]


def row(twin_id: str, twin_type: str, t: float, quality: Any = None, **values: float) -> Any:
    """A one-row telemetry frame, as the devices publish it."""
    return TelemetryFrame(
        twin_id,
        twin_type,
        np.array([t]),
        {k: np.array([v]) for k, v in values.items()},
        quality=quality or {},
    )


def stamp(offset_s: float = 0.0) -> float:
    """Wall time plus ``offset_s``, in whole milliseconds (OPC UA keeps 100 ns, Python 1 µs)."""
    return round(time.time() + offset_s, 3)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def command(twin_id: str, name: str, seq: int, **params: float) -> Command:
    issued = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seq)
    return Command(
        command_id=Command.make_id(twin_id, name, issued),
        twin_id=twin_id,
        twin_type={"w": "wind_turbine", "p": "pump", "m": "motor"}[twin_id[0]],
        name=name,
        params=params,
        issued_at=issued,
        expires_at=max(issued, datetime.now(UTC)) + timedelta(minutes=10),  # wall time
        reason="test",
        status=CommandStatus.QUEUED,
    )


def outcomes(feedback: CommandFeedback, cmd: Command) -> list[tuple[CommandStatus, int]]:
    return [(o.status, o.attempt) for o in feedback.history(cmd.command_id)]


def send(sink: OpcUaCommandSink, commands: list[Command]) -> None:
    """Run the sink in a Bytewax flow; its close() waits for the writes to end."""
    flow = Dataflow("opcua_commands")
    op.output("actuators", op.input("commands", flow, TestingSource(commands)), sink)
    run_main(flow)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def plant() -> Plant:
    return quiet_plant()


@pytest.fixture(scope="module")
def served(loop: Loop, plant: Plant) -> Iterator[tuple[OpcUaDevices, list[OpcUaBinding]]]:
    """The plant's three twins served at one endpoint; bindings sample every 50 ms."""
    url = f"opc.tcp://127.0.0.1:{free_port()}/twinflow/"
    bindings = [default_binding(t, k, url, sampling_interval_ms=50.0) for t, k in plant.twins]
    devices = OpcUaDevices(plant, url, bindings)
    loop.run(devices.start())
    yield devices, bindings
    loop.run(devices.stop())


# --------------------------------------------------------------------------- pure parts


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_quality_follows_the_severity_bits(code: int) -> None:
    expected = {0: Quality.GOOD, 1: Quality.UNCERTAIN}.get(code >> 30, Quality.BAD)
    assert quality_of(code) is expected
    assert ua.StatusCode(code).is_good() == (expected is Quality.GOOD)


def test_every_quality_survives_a_round_trip_through_a_status_code() -> None:
    for q in (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD):
        assert quality_of(status_code_for(q)) is q
    assert quality_of(status_code_for(Quality.STALE)) is Quality.UNCERTAIN


_TARGETS = (
    Target("a", "motor", "load_pct", "ns=2;s=a.load_pct"),
    Target("a", "motor", "speed_rpm", "ns=2;s=a.speed_rpm"),
    Target("b", "pump", "flow_m3h", "ns=2;s=b.flow_m3h"),
)
_CODES = st.sampled_from([0x0, 0x40900000, 0x808C0000])
_CHANGES = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.floats(-1e6, 1e6, allow_nan=False),
        _CODES,
        st.integers(0, 20).map(float),
    ),
    max_size=60,
)


@given(_CHANGES)
def test_changes_become_one_frame_per_twin_with_sorted_rows(
    changes: list[tuple[int, float, int, float]],
) -> None:
    out = build_frames(changes, _TARGETS, now=100.0)
    assert all(isinstance(f, TelemetryFrame) for f in out)
    by_twin = {f.twin_id: f for f in out}
    assert len(by_twin) == len(out) == len({_TARGETS[i].twin_id for i, *_ in changes})
    for f in out:
        assert f.times.tolist() == sorted(set(f.times.tolist()))
        assert all(len(v) == len(f.times) for v in f.signals.values())
    last: dict[tuple[int, float], tuple[float, int]] = {}
    for i, value, code, t in changes:
        last[(i, t)] = (value, code)
    for (i, t), (value, code) in last.items():
        target = _TARGETS[i]
        f = by_twin[target.twin_id]
        got = f.signals[target.signal][f.times.tolist().index(t)]
        if quality_of(code) is Quality.BAD:
            assert math.isnan(got)
        else:
            assert got == value
    for i in {i for i, *_ in changes}:
        target = _TARGETS[i]
        worst = max((c for j, _, c, _ in changes if j == i), key=lambda c: c >> 30)
        assert by_twin[target.twin_id].quality[target.signal] is quality_of(worst)


def test_values_that_are_not_numbers_become_dead_letters() -> None:
    out = build_frames(
        [(0, "hello", 0, 5.0), (0, [1, 2], 0, 6.0), (2, True, 0, 5.0)], _TARGETS, 9.0
    )
    [frame] = frames(out)
    assert frame.twin_id == "b" and frame.signals["flow_m3h"].tolist() == [1.0]
    [dead] = [d for d in out if isinstance(d, DeadLetter)]
    assert dead.twin_id == "a" and dead.readings == 2 and dead.stage == "decode"
    assert "'load_pct'" in dead.reason and "not a number" in dead.reason


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"twin_type": "boiler"}, "unknown twin_type 'boiler'"),
        ({"endpoint": "http://plc:4840"}, "is not an OPC UA URL"),
        ({"nodes": {"load_pct": "not a node"}}, "nodes['load_pct'] 'not a node' is not a node id"),
        ({"nodes": {"vibration": "ns=2;s=m.v"}}, "'vibration', which is not a scalar signal"),
        ({"nodes": {"torque": "ns=2;s=m.t"}}, "'torque', which is not a scalar signal"),
        ({"sampling_interval_ms": 0}, "sampling_interval_ms must be a positive number"),
        ({"deadband": -1.0}, "deadband must be a number >= 0"),
        ({"security": OpcUaSecurity(certificate="", private_key="")}, "certificate is empty"),
        (
            {"security": OpcUaSecurity(certificate="/nope.der", private_key="/nope.pem")},
            "'/nope.der' is not a readable file",
        ),
    ],
)
def test_bad_bindings_are_refused_with_the_field_named(
    change: dict[str, Any], message: str
) -> None:
    good = default_binding("m", "motor", "opc.tcp://127.0.0.1:4840")
    with pytest.raises(ConfigError, match="twin 'm'") as err:
        OpcUaSource([replace(good, **change)])
    assert message in str(err.value)


def test_other_bad_settings_are_refused() -> None:
    good = default_binding("m", "motor", "opc.tcp://127.0.0.1:4840")
    bad = replace(good, commands={"explode": good.commands["derate"]})
    with pytest.raises(ConfigError, match="'explode', which 'motor' does not accept"):
        OpcUaCommandSink([bad])
    with pytest.raises(ConfigError, match="bound twice"):
        OpcUaSource([good, good])
    with pytest.raises(ConfigError, match="no binding names any node"):
        OpcUaSource([replace(good, nodes={})])
    with pytest.raises(ConfigError, match="max_batch_s must be a number >= 0"):
        OpcUaSource([good], max_batch_s=-1)
    with pytest.raises(ConfigError, match="no OPC UA bindings"):
        OpcUaCommandSink([])
    other = replace(good, twin_id="m2", username="op", password="a")
    parts = OpcUaSource([replace(good, username="op", password="b"), other]).list_parts()
    assert parts == ["opc.tcp://127.0.0.1:4840 [user op]", "opc.tcp://127.0.0.1:4840 [user op] #2"]


# --------------------------------------------------------------------------- the source


@pytest.mark.services
@pytest.mark.timeout(30)
def test_frames_carry_status_code_as_quality_and_source_timestamp_as_time(
    loop: Loop, served: tuple[OpcUaDevices, list[OpcUaBinding]]
) -> None:
    devices, bindings = served
    motor = bindings[2]
    label = motor.endpoint
    before = metric("twinflow_opcua_datachanges_total", endpoint=label)
    with partition(fast_source([motor])) as part:
        collect(part, lambda out: bool(frames(out)), 5.0)  # the current values come first
        t0 = stamp(-3600.0)
        quality = {"speed_rpm": Quality.UNCERTAIN, "current_a": Quality.BAD}
        loop.run(
            devices.update(
                row(
                    "motor-003",
                    "motor",
                    t0,
                    quality,
                    load_pct=55.0,
                    speed_rpm=1490.0,
                    current_a=1.0,
                )
            )
        )
        [f] = frames(collect(part, lambda out: bool(frames(out)), 5.0))
        assert f.times.tolist() == [t0]
        assert f.signals["load_pct"].tolist() == [55.0]
        assert f.signals["speed_rpm"].tolist() == [1490.0]
        assert math.isnan(f.signals["current_a"][0])  # a Bad value carries no number
        assert dict(f.quality) == {
            "load_pct": Quality.GOOD,
            "speed_rpm": Quality.UNCERTAIN,
            "current_a": Quality.BAD,
        }
        assert f.source == "opcua"

        # The same value stamped again is reported again (a constant is not a silent signal).
        loop.run(devices.update(row("motor-003", "motor", t0 + 1.0, load_pct=55.0)))
        [same] = frames(collect(part, lambda out: bool(frames(out)), 5.0))
        assert (same.times.tolist(), same.signals["load_pct"].tolist()) == ([t0 + 1.0], [55.0])

        # Without a source timestamp the server's timestamp is the time.
        t1 = datetime.now(UTC) - timedelta(minutes=5)
        dv = ua.DataValue(
            Value=ua.Variant(60.0, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.StatusCodes.UncertainSensorNotAccurate),
            ServerTimestamp=t1,
        )
        nid = ua.NodeId.from_string(node_id("motor-003", "load_pct"))
        loop.run(devices.server.write_attribute_value(nid, dv))
        [g] = frames(collect(part, lambda out: bool(frames(out)), 5.0))
        assert g.times.tolist() == [t1.timestamp()]
        assert g.signals["load_pct"].tolist() == [60.0]
        assert g.quality["load_pct"] is Quality.UNCERTAIN
    assert metric("twinflow_opcua_datachanges_total", endpoint=label) >= before + 5


@pytest.mark.services
@pytest.mark.timeout(30)
def test_changes_drained_together_make_one_frame_per_twin(
    loop: Loop, served: tuple[OpcUaDevices, list[OpcUaBinding]]
) -> None:
    devices, bindings = served
    with partition(fast_source(bindings, max_batch_s=1.5)) as part:
        collect(part, lambda out: len({f.twin_id for f in frames(out)}) == 3, 5.0)
        t0 = stamp(-600.0)
        writes = [
            row("motor-003", "motor", t0, load_pct=50.0, speed_rpm=1490.0),
            row("wt-001", "wind_turbine", t0, wind_speed=7.0),
            row("motor-003", "motor", t0 + 1, load_pct=51.0),
            row("pump-002", "pump", t0 + 1, flow_m3h=250.0),
            row("motor-003", "motor", t0 + 2, speed_rpm=1491.0),
            row("wt-001", "wind_turbine", t0 + 2, wind_speed=7.5),
        ]
        for w in writes:  # each lands in its own publish response
            loop.run(devices.update(w))
            time.sleep(0.07)
        batch: list[Any] = []
        while not batch:
            batch = collect(part, bool, 5.0)
        by_twin = {f.twin_id: f for f in frames(batch)}
        assert len(frames(batch)) == len(by_twin) == 3
        m = by_twin["motor-003"]
        assert m.times.tolist() == [t0, t0 + 1, t0 + 2]
        np.testing.assert_array_equal(m.signals["load_pct"], [50.0, 51.0, np.nan])
        np.testing.assert_array_equal(m.signals["speed_rpm"], [1490.0, np.nan, 1491.0])
        assert by_twin["wt-001"].signals["wind_speed"].tolist() == [7.0, 7.5]
        assert by_twin["pump-002"].times.tolist() == [t0 + 1]


@pytest.mark.services
@pytest.mark.timeout(30)
def test_every_row_of_a_chunk_can_be_published(
    loop: Loop, served: tuple[OpcUaDevices, list[OpcUaBinding]]
) -> None:
    devices, bindings = served
    with partition(fast_source([bindings[1]])) as part:
        collect(part, lambda out: bool(frames(out)), 5.0)
        t0 = stamp(-900.0)
        chunk = TelemetryFrame(
            "pump-002",
            "pump",
            np.array([t0, t0 + 1, t0 + 2]),
            {"flow_m3h": np.array([1.0, 2.0, 3.0]), "suction_bar": np.array([0.5, np.nan, 0.7])},
        )
        assert loop.run(devices.update(chunk, all_rows=True)) == 5
        got: dict[float, dict[str, float]] = {}

        def complete(out: list[Any]) -> bool:
            for f in frames(out[len(seen) :]):
                for i, t in enumerate(f.times.tolist()):
                    got.setdefault(t, {}).update({k: v[i] for k, v in f.signals.items()})
            seen[:] = out
            return t0 + 2 in got

        seen: list[Any] = []
        collect(part, complete, 5.0)
        assert [got[t0 + k]["flow_m3h"] for k in range(3)] == [1.0, 2.0, 3.0]
        assert got[t0]["suction_bar"] == 0.5 and got[t0 + 2]["suction_bar"] == 0.7
        assert math.isnan(got[t0 + 1].get("suction_bar", math.nan))


@pytest.mark.services
@pytest.mark.timeout(30)
def test_deadband_and_unknown_nodes(
    loop: Loop, served: tuple[OpcUaDevices, list[OpcUaBinding]]
) -> None:
    devices, bindings = served
    pump = replace(
        bindings[1],
        deadband=5.0,
        nodes={"flow_m3h": bindings[1].nodes["flow_m3h"], "suction_bar": "ns=2;s=no.such.node"},
    )
    t0 = stamp(-300.0)
    loop.run(devices.update(row("pump-002", "pump", t0, flow_m3h=100.0)))
    with partition(fast_source([pump])) as part:
        first = collect(part, lambda out: bool(frames(out)), 5.0)
        [dead] = [d for d in first if isinstance(d, DeadLetter)]
        assert "refused to monitor node ns=2;s=no.such.node" in dead.reason
        assert dead.twin_id == "pump-002" and "BadNodeIdUnknown" in dead.reason
        for k, flow in enumerate([102.0, 110.0, 111.0, 120.0], start=1):
            loop.run(devices.update(row("pump-002", "pump", t0 + k, flow_m3h=flow)))
            time.sleep(0.07)
        seen: list[float] = []
        deadline = time.monotonic() + 5.0
        while 120.0 not in seen and time.monotonic() < deadline:
            for f in frames(part.next_batch()):
                seen += f.signals["flow_m3h"][f.times > t0].tolist()
            time.sleep(0.02)
        assert seen == [110.0, 120.0]  # changes within 5 m3/h of the last one are filtered


@pytest.mark.services
@pytest.mark.timeout(120)
def test_server_restart_mid_stream(loop: Loop, plant: Plant) -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    binding = default_binding("motor-003", "motor", url, sampling_interval_ms=50.0)
    devices = OpcUaDevices(plant, url, [binding])
    loop.run(devices.start())
    stop = threading.Event()
    out: list[Any] = []
    flow = Dataflow("opcua_restart")
    op.output("out", op.input("in", flow, fast_source([binding], stop=stop)), TestingSink(out))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_main(flow)
        except BaseException as exc:
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    reconnects = metric("twinflow_opcua_reconnects_total", endpoint=url)
    k = 0

    def feed(seconds: float) -> None:
        nonlocal k
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            k += 1
            loop.run(devices.update(row("motor-003", "motor", stamp(), load_pct=float(k))))
            time.sleep(0.05)

    def good_times() -> list[float]:
        return [
            t
            for f in frames(list(out))
            for t, v in zip(f.times, f.signals["load_pct"], strict=True)
            if not math.isnan(v)
        ]

    try:
        runner.start()
        end = time.monotonic() + 10.0
        while len(good_times()) < 5 and time.monotonic() < end:
            feed(0.2)
        assert len(good_times()) >= 5, "no values before the restart"

        loop.run(devices.stop())
        down_at = time.time()
        wait_for(
            lambda: any(Quality.STALE in f.quality.values() for f in frames(list(out))),
            10.0,
            "the STALE marker",
        )
        time.sleep(1.0)
        feed(0.2)  # the devices are down: nothing is published
        up_at = time.time()
        loop.run(devices.start())
        end = time.monotonic() + 15.0
        while not [t for t in good_times() if t > up_at] and time.monotonic() < end:
            feed(0.2)
    finally:
        stop.set()
        runner.join(15.0)
        loop.run(devices.stop())
    assert not runner.is_alive() and not errors, errors
    times = good_times()
    before = [t for t in times if t < down_at]
    after = [t for t in times if t > up_at]
    assert before and after, "values must flow before the stop and after the restart"
    assert min(after) - max(before) >= up_at - down_at >= 1.0  # the gap is visible
    assert not [t for t in times if down_at < t < up_at]
    fs = frames(out)
    first_stale = next(i for i, f in enumerate(fs) if Quality.STALE in f.quality.values())
    assert all(f.end < down_at for f in fs[:first_stale])  # the marker follows the last values
    assert all(i > first_stale for i, f in enumerate(fs) if f.end > up_at)
    stale = fs[first_stale]
    assert math.isnan(stale.signals["load_pct"][0]) and stale.end <= max(before)
    assert metric("twinflow_opcua_reconnects_total", endpoint=url) >= reconnects + 1


@pytest.mark.services
@pytest.mark.timeout(40)
def test_a_server_that_hangs_is_noticed_and_the_source_reconnects(
    loop: Loop, served: tuple[OpcUaDevices, list[OpcUaBinding]]
) -> None:
    devices, bindings = served
    turbine = bindings[0]
    reconnects = metric("twinflow_opcua_reconnects_total", endpoint=turbine.endpoint)
    source = fast_source([turbine], keepalive_s=0.5, request_timeout_s=1.0)
    with partition(source) as part:
        collect(part, lambda out: bool(frames(out)), 5.0)
        loop.loop.call_soon_threadsafe(time.sleep, 4.0)  # socket open, nothing answers
        wait_for(lambda: not part.connected, 10.0, "the hang to be noticed")
        wait_for(lambda: part.connected, 20.0, "the source to reconnect")
        t0 = stamp(-120.0)
        loop.run(devices.update(row("wt-001", "wind_turbine", t0, wind_speed=9.0)))
        out = collect(part, lambda out: any(t0 in f.times for f in frames(out)), 5.0)
    assert any(Quality.STALE in f.quality.values() for f in frames(out))
    assert metric("twinflow_opcua_reconnects_total", endpoint=turbine.endpoint) == reconnects + 1


# --------------------------------------------------------------------------- the sink


@pytest.mark.services
@pytest.mark.timeout(30)
def test_command_round_trip_changes_what_the_plant_produces(
    served: tuple[OpcUaDevices, list[OpcUaBinding]], plant: Plant
) -> None:
    devices, bindings = served
    sim = plant.partition(0, 1)

    def load_tail(items: list[Any]) -> float:
        [m] = frames(items, "motor-003")
        return float(np.nanmean(m.signals["load_pct"][-20:]))

    before = load_tail(sim.next_chunk())
    assert before > 70.0
    derate = command("motor-003", "derate", 1, fraction=0.3)
    acknowledged = metric("twinflow_opcua_command_results_total", status="acknowledged")
    feedback = CommandFeedback()
    sink = OpcUaCommandSink(bindings, timeout_s=2.0, feedback=feedback)
    send(sink, [derate])
    assert outcomes(feedback, derate) == [
        (CommandStatus.SENT, 1),
        (CommandStatus.ACKNOWLEDGED, 1),
    ], feedback.history(derate.command_id)
    assert "Good" in feedback.history(derate.command_id)[-1].detail
    assert devices.commands[-1].params == {"fraction": 0.3}
    assert load_tail(sim.next_chunk()) < 35.0  # the motor obeyed in the next chunk
    assert metric("twinflow_opcua_command_results_total", status="acknowledged") == acknowledged + 1


@pytest.mark.services
@pytest.mark.timeout(30)
def test_out_of_range_command_is_refused_before_it_is_sent(
    loop: Loop, served: tuple[OpcUaDevices, list[OpcUaBinding]]
) -> None:
    devices, bindings = served
    issued = len(devices.commands)
    too_much = command("motor-003", "derate", 2, fraction=1.5)
    not_issued = replace(command("motor-003", "derate", 3, fraction=0.5), status=CommandStatus.SENT)
    unbound = command("motor-003", "set_pitch", 4, degrees=3.0)
    feedback = CommandFeedback()
    sink = OpcUaCommandSink(bindings, timeout_s=2.0, feedback=feedback)
    send(sink, [too_much, too_much, not_issued, unbound])
    [refused] = feedback.history(too_much.command_id)  # once, though handed over twice
    assert (refused.status, refused.detail) == (
        CommandStatus.REJECTED,
        "not sent: derate: fraction=1.5 is outside [0.2, 1]",
    )
    [unsent] = feedback.history(unbound.command_id)
    assert unsent.status is CommandStatus.REJECTED
    assert "binds no OPC UA write for command 'set_pitch'" in unsent.detail
    assert feedback.history(not_issued.command_id) == []
    assert len(devices.commands) == issued  # nothing reached the device

    async def raw_write() -> None:  # past the sink's check, the device refuses it too
        async with Client(devices.endpoint, timeout=2.0) as client:
            node = client.get_node(bindings[2].commands["derate"].node)
            await node.write_value(ua.DataValue(ua.Variant(5.0, ua.VariantType.Double)))

    with pytest.raises(ua.UaStatusCodeError, match="BadOutOfRange"):
        loop.run(raw_write())
    assert len(devices.commands) == issued


@pytest.mark.timeout(30)
def test_write_to_an_unreachable_server_fails_in_bounded_time() -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}"  # nothing listens there
    feedback = CommandFeedback()
    sink = OpcUaCommandSink(
        [default_binding("motor-003", "motor", url)],
        timeout_s=0.5,
        backoff=Backoff(base_s=0.05, cap_s=0.1, max_attempts=3),
        feedback=feedback,
    )
    derate = command("motor-003", "derate", 5, fraction=0.5)
    started = time.monotonic()
    send(sink, [derate])
    assert time.monotonic() - started < 10.0
    [gave_up] = feedback.history(derate.command_id)  # never on the wire: no SENT
    assert (gave_up.status, gave_up.attempt) == (CommandStatus.FAILED, 3)
    assert f"gave up after 3 attempts: {url}" in gave_up.detail


# --------------------------------------------------------------------------- security


@pytest.mark.services
@pytest.mark.timeout(45)
def test_secured_connection_with_basic256sha256(loop: Loop, plant: Plant, tmp_path: Path) -> None:
    server_cert = make_cert(tmp_path, "server", "urn:twinflow:test:server", server=True)
    client_cert = make_cert(tmp_path, "client", "urn:twinflow:test:client", server=False)
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    served = default_binding("motor-003", "motor", url, sampling_interval_ms=50.0)
    devices = OpcUaDevices(
        plant,
        url,
        [served],
        security=ServerSecurity(server_cert.certificate, server_cert.private_key),
        users={"operator": "s3cret"},
    )
    loop.run(devices.start())
    try:
        secured = replace(
            served,
            security=OpcUaSecurity(
                mode="SignAndEncrypt",
                certificate=client_cert.certificate,
                private_key=client_cert.private_key,
                server_certificate=server_cert.certificate,
            ),
            username="operator",
            password="s3cret",
        )
        with partition(fast_source([secured])) as part:
            collect(part, lambda out: bool(frames(out)), 5.0)
            t0 = stamp(-60.0)
            loop.run(devices.update(row("motor-003", "motor", t0, load_pct=42.0)))
            [f] = frames(collect(part, lambda out: bool(frames(out)), 5.0))
            assert (f.times.tolist(), f.signals["load_pct"].tolist()) == ([t0], [42.0])

        # Commands over a signed channel (the server certificate fetched from its endpoints
        # and checked against the trust list).
        signed = replace(
            secured,
            security=replace(
                secured.security,  # type: ignore[type-var]
                mode="Sign",
                server_certificate=None,
                trust=server_cert.certificate,
            ),
        )
        feedback = CommandFeedback()
        sink = OpcUaCommandSink([signed], timeout_s=2.0, feedback=feedback)
        derate = command("motor-003", "derate", 6, fraction=0.6)
        send(sink, [derate])
        acked = feedback.wait_for(derate.command_id, {CommandStatus.ACKNOWLEDGED}, 0)
        assert acked is not None, feedback.history(derate.command_id)

        # Without security (or with a wrong password) no session opens, and nothing breaks.
        for bad in (served, replace(secured, password="wrong")):
            with partition(fast_source([bad]), connect=False) as part:
                deadline = time.monotonic() + 1.5
                while time.monotonic() < deadline:
                    assert frames(part.next_batch()) == []
                    time.sleep(0.05)
                assert not part.connected
    finally:
        loop.run(devices.stop())


def test_stop_ends_the_source_after_emitting_what_arrived() -> None:
    stop = threading.Event()
    stop.set()
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    source = fast_source([default_binding("motor-003", "motor", url)], stop=stop)
    with partition(source, connect=False) as part:
        assert part.next_batch() == []
        with pytest.raises(StopIteration):
            part.next_batch()
