"""The command lifecycle at the protocol edges: the feedback hub, its Bytewax source, and
QUEUED commands over MQTT, OPC UA and Modbus against the simulator's real devices (a
mosquitto broker started by the tests; OPC UA and Modbus served by the simulator)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import paho.mqtt.client as mqtt
import pytest
from asyncua import Client
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from prometheus_client import REGISTRY

from tests.connectors.test_opcua import quiet_plant
from tests.services.mosquitto import Mosquitto, running_broker
from tests.services.ports import free_port
from twinflow.connectors.actuators import CommandRouter
from twinflow.connectors.bindings import MqttBinding, MqttSettings, OpcUaBinding
from twinflow.connectors.feedback import CommandFeedback, CommandFeedbackSource
from twinflow.connectors.modbus.loop import LoopThread
from twinflow.connectors.modbus.sink import ModbusCommandSink
from twinflow.connectors.mqtt import MqttCommandSink
from twinflow.connectors.opcua import OpcUaCommandSink
from twinflow.connectors.simulator import Plant
from twinflow.connectors.simulator.devices.mqtt import MqttDevices
from twinflow.connectors.simulator.devices.opcua import OpcUaDevices, default_binding
from twinflow.core.backoff import Backoff
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandOutcome, CommandStatus
from twinflow.core.times import utc

S = CommandStatus
FAST = Backoff(base_s=0.05, cap_s=0.2, max_attempts=3, jitter=0.0)


def queued(twin: str, kind: str, name: str, ttl_s: float = 600.0, **params: float) -> Command:
    """A QUEUED command with a fresh id, expiring ``ttl_s`` from now (wall time)."""
    now = datetime.now(UTC)
    return Command(
        command_id=f"cmd-{uuid.uuid4().hex[:10]}",
        twin_id=twin,
        twin_type=kind,
        name=name,
        params=params,
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        reason="test",
        status=S.QUEUED,
    )


def trail(feedback: CommandFeedback, cmd: Command) -> list[tuple[CommandStatus, int]]:
    return [(o.status, o.attempt) for o in feedback.history(cmd.command_id)]


def outcome(cid: str, status: CommandStatus = S.SENT, attempt: int = 1) -> CommandOutcome:
    return CommandOutcome(cid, "m1", status, utc(0), "", attempt)


# --------------------------------------------------------------------------- the hub


def test_feedback_is_bounded_and_drops_the_oldest() -> None:
    before = REGISTRY.get_sample_value("twinflow_command_feedback_dropped_total") or 0.0
    hub = CommandFeedback(capacity=3, history_commands=2, history_per_command=2)
    for i in range(5):
        hub.report(outcome(f"c{i}"))
    assert len(hub) == 3 and hub.dropped == 2
    assert REGISTRY.get_sample_value("twinflow_command_feedback_dropped_total") == before + 2
    assert [o.command_id for o in hub.drain(2)] == ["c2", "c3"]
    assert [o.command_id for o in hub.drain()] == ["c4"] and hub.drain() == []
    assert hub.history("c0") == [] and len(hub.history("c4")) == 1  # two ids remembered
    for attempt in (1, 2, 3):
        hub.report(outcome("c4", attempt=attempt))
    assert [o.attempt for o in hub.history("c4")] == [2, 3]  # two outcomes per id
    with pytest.raises(ConfigError, match="capacity must be an integer >= 1"):
        CommandFeedback(capacity=0)


def test_feedback_takes_reports_from_many_threads() -> None:
    hub = CommandFeedback(capacity=100_000)
    threads, per_thread = 8, 2_000
    drained: list[CommandOutcome] = []
    done = threading.Event()

    def reporter(k: int) -> None:
        for i in range(per_thread):
            hub.report(outcome(f"t{k}", attempt=i + 1))

    def drainer() -> None:
        while not done.is_set() or len(hub):
            drained.extend(hub.drain(100))

    workers = [threading.Thread(target=reporter, args=(k,)) for k in range(threads)]
    reader = threading.Thread(target=drainer)
    reader.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    reader.join(10)
    assert len(drained) == threads * per_thread and hub.dropped == 0
    for k in range(threads):  # each thread's outcomes arrive in the order it reported them
        attempts = [o.attempt for o in drained if o.command_id == f"t{k}"]
        assert attempts == list(range(1, per_thread + 1))


def test_wait_for_wakes_when_the_status_is_reported() -> None:
    hub = CommandFeedback()
    timer = threading.Timer(0.1, hub.report, [outcome("c", S.ACKNOWLEDGED)])
    timer.start()
    hub.report(outcome("c"))
    got = hub.wait_for("c", {S.ACKNOWLEDGED, S.FAILED}, 5)
    assert got is not None and got.status is S.ACKNOWLEDGED
    assert hub.wait_for("c", {S.SUCCEEDED}, 0.05) is None


def test_backoff_doubles_up_to_the_cap_with_reproducible_jitter() -> None:
    plain = Backoff(base_s=0.1, cap_s=0.5, max_attempts=9, jitter=0.0)
    assert [plain.delay("c", n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    jittered = Backoff(base_s=0.1, cap_s=0.5, max_attempts=9, jitter=0.5, seed=7)
    delays = [jittered.delay("c", n) for n in range(1, 6)]
    assert delays == [jittered.delay("c", n) for n in range(1, 6)]  # same seed, same pauses
    assert all(0.5 * p <= d <= p for d, p in zip(delays, [0.1, 0.2, 0.4, 0.5, 0.5], strict=True))
    with pytest.raises(ConfigError, match="max_attempts"):
        Backoff(max_attempts=0)


def test_the_source_emits_what_was_reported_and_ends_when_closed() -> None:
    hub = CommandFeedback()
    early = [outcome(f"e{i}") for i in range(5)]
    for o in early:
        hub.report(o)

    def later() -> None:  # a sink reporting while the flow runs, then the hub closing
        time.sleep(0.2)
        for i in range(3):
            hub.report(outcome(f"l{i}", S.ACKNOWLEDGED))
        time.sleep(0.2)
        hub.close()

    out: list[CommandOutcome] = []
    flow = Dataflow("feedback")
    op.output(
        "out", op.input("in", flow, CommandFeedbackSource(hub, idle_s=0.01)), TestingSink(out)
    )
    reporter = threading.Thread(target=later)
    reporter.start()
    run_main(flow)
    reporter.join(5)
    assert [o.command_id for o in out] == [*(o.command_id for o in early), "l0", "l1", "l2"]


def test_every_worker_drains_the_hub_and_each_outcome_is_taken_once() -> None:
    hub = CommandFeedback()
    for i in range(500):
        hub.report(outcome(f"c{i}"))
    hub.close()
    out: list[CommandOutcome] = []
    flow = Dataflow("feedback_two_workers")
    source = CommandFeedbackSource(hub, max_batch=7, idle_s=0.0)
    op.output("out", op.input("in", flow, source), TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert sorted(o.command_id for o in out) == sorted(f"c{i}" for i in range(500))


def test_the_router_rejects_unrouted_commands_and_wiring_mistakes() -> None:
    hub = CommandFeedback()
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    sink = OpcUaCommandSink([default_binding("motor-003", "motor", url)], feedback=hub)
    router = CommandRouter({"opcua": sink}, {"motor-003": "opcua"}, feedback=hub)
    part = router.build("act", 0, 1)
    lost = queued("ghost-1", "pump", "set_flow", m3h=100.0)
    part.write_batch([lost, replace(lost, command_id="done", status=S.SUCCEEDED)])
    part.close()
    [rejected] = hub.history(lost.command_id)
    assert rejected.status is S.REJECTED and "no actuator protocol" in rejected.detail
    assert hub.history("done") == []
    with pytest.raises(ConfigError, match="'opcua' command sink reports to another"):
        CommandRouter({"opcua": sink}, {}, feedback=CommandFeedback())


# --------------------------------------------------------------------------- MQTT


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


class Listener:
    """A bare paho client that records every message on the command topics."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.messages: list[bytes] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid("listen"))
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(m.payload)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def mqtt_twins(plant: Plant, base: str) -> list[MqttBinding]:
    return [
        MqttBinding(t, k, f"{base}/{t}/telemetry", f"{base}/{t}/cmd", f"{base}/{t}/resp")
        for t, k in plant.twins
    ]


def mqtt_settings(host: str, port: int) -> MqttSettings:
    return MqttSettings(
        host=host,
        port=port,
        client_id=uid("cmds"),
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
        keepalive_s=10,
    )


@pytest.mark.services
@pytest.mark.timeout(60)
def test_mqtt_lifecycle_against_the_simulated_devices(broker: Mosquitto) -> None:
    plant, base = quiet_plant(), uid("plant")
    twins = mqtt_twins(plant, base)
    settings = mqtt_settings(broker.host, broker.port)
    devices = MqttDevices(plant, settings, twins)
    assert devices.start()
    listener = Listener(broker, f"{base}/+/cmd")
    hub = CommandFeedback()
    sink = MqttCommandSink(settings, twins, feedback=hub, backoff=FAST)
    part = sink.build("act", 0, 1)
    good = queued("motor-003", "motor", "derate", fraction=0.5)
    stale = queued("pump-002", "pump", "set_flow", ttl_s=-1.0, m3h=100.0)
    wild = queued("pump-002", "pump", "set_flow", m3h=1e6)
    try:
        part.write_batch([good, stale, wild, good])
        done = hub.wait_for(good.command_id, {S.SUCCEEDED, S.FAILED}, 20)
        part.write_batch([good])  # a replay after recovery
        time.sleep(0.5)
    finally:
        part.close()
        devices.stop()
        listener.close()
    assert done is not None and done.status is S.SUCCEEDED, hub.history(good.command_id)
    assert trail(hub, good) == [(S.SENT, 1), (S.ACKNOWLEDGED, 1), (S.SUCCEEDED, 1)]
    assert [o.status for o in hub.history(stale.command_id)] == [S.EXPIRED]
    [rejected] = hub.history(wild.command_id)
    assert rejected.status is S.REJECTED and "outside" in rejected.detail
    assert len(listener.messages) == 1 and good.command_id.encode() in listener.messages[0]
    plant.partition(0, 1).next_chunk()  # the plant applies what it accepted
    assert [(r.command_id, r.accepted) for r in plant.command_log] == [(good.command_id, True)]


@pytest.mark.services
@pytest.mark.timeout(60)
def test_mqtt_device_that_never_answers_stays_sent(broker: Mosquitto) -> None:
    plant, base = quiet_plant(), uid("plant")
    twins = mqtt_twins(plant, base)
    hub = CommandFeedback()
    sink = MqttCommandSink(mqtt_settings(broker.host, broker.port), twins, feedback=hub)
    part = sink.build("act", 0, 1)
    cmd = queued("pump-002", "pump", "set_flow", m3h=120.0)
    try:
        part.write_batch([cmd])  # no device listens: the broker takes it, nobody answers
        assert hub.wait_for(cmd.command_id, {S.SENT}, 10) is not None
        time.sleep(1.0)
    finally:
        part.close()
    assert trail(hub, cmd) == [(S.SENT, 1)]  # the command book times it out


@pytest.mark.timeout(60)
def test_mqtt_unreachable_broker_retries_then_gives_up_or_expires() -> None:
    plant = quiet_plant()
    twins = mqtt_twins(plant, "nowhere")
    hub = CommandFeedback()
    settings = mqtt_settings("127.0.0.1", free_port())  # nothing listens there
    sink = MqttCommandSink(settings, twins, feedback=hub, backoff=FAST, connect_wait_s=0.1)
    patient = MqttCommandSink(
        settings,
        twins,
        feedback=hub,
        backoff=Backoff(base_s=0.05, cap_s=0.1, max_attempts=1000),
        connect_wait_s=0.1,
    )
    part, other = sink.build("act", 0, 1), patient.build("act2", 1, 2)
    gives_up = queued("pump-002", "pump", "set_flow", m3h=120.0)
    expires = queued("motor-003", "motor", "derate", ttl_s=0.6, fraction=0.5)
    try:
        part.write_batch([gives_up])
        other.write_batch([expires])
        failed = hub.wait_for(gives_up.command_id, {S.FAILED}, 10)
        expired = hub.wait_for(expires.command_id, {S.EXPIRED}, 10)
    finally:
        part.close()
        other.close()
    assert failed is not None and failed.attempt == 3
    assert failed.detail.startswith("gave up after 3 attempts: not connected to the broker")
    assert trail(hub, gives_up) == [(S.FAILED, 3)]  # no attempt reached the wire
    assert expired is not None and expired.attempt >= 2 and "expired at" in expired.detail
    assert [o.status for o in hub.history(expires.command_id)] == [S.EXPIRED]


# --------------------------------------------------------------------------- OPC UA


@pytest.fixture(scope="module")
def opcua() -> Iterator[tuple[OpcUaDevices, list[OpcUaBinding], LoopThread]]:
    plant = quiet_plant()
    loop = LoopThread("test-opcua-devices").start()
    url = f"opc.tcp://127.0.0.1:{free_port()}/twinflow/"
    bindings = [default_binding(t, k, url) for t, k in plant.twins]
    devices = OpcUaDevices(plant, url, bindings)
    loop.run(devices.start(), timeout=30)
    yield devices, bindings, loop
    loop.run(devices.stop(), timeout=30)
    loop.stop()


def run_sink(sink: Any, commands: list[Command]) -> None:
    """Run ``sink`` in a Bytewax flow; closing it waits for its writes."""
    flow = Dataflow("commands")
    op.output("act", op.input("in", flow, TestingSource(commands)), sink)
    run_main(flow)


@pytest.mark.services
@pytest.mark.timeout(60)
def test_opcua_lifecycle_against_the_simulated_devices(
    opcua: tuple[OpcUaDevices, list[OpcUaBinding], LoopThread],
) -> None:
    devices, bindings, loop = opcua
    hub = CommandFeedback()
    sink = OpcUaCommandSink(bindings, feedback=hub, backoff=FAST)
    good = queued("motor-003", "motor", "derate", fraction=0.4)
    stale = queued("motor-003", "motor", "derate", ttl_s=-1.0, fraction=0.3)
    wild = queued("motor-003", "motor", "derate", fraction=7.0)
    issued = len(devices.commands)
    run_sink(sink, [good, stale, wild, good])
    run_sink(sink, [good])  # a replay after recovery: the same sink, a new run
    assert trail(hub, good) == [(S.SENT, 1), (S.ACKNOWLEDGED, 1)]
    assert [o.status for o in hub.history(stale.command_id)] == [S.EXPIRED]
    assert [o.status for o in hub.history(wild.command_id)] == [S.REJECTED]
    assert [c.params for c in devices.commands[issued:]] == [{"fraction": 0.4}]  # once

    async def setpoint() -> float:
        async with Client(devices.endpoint, timeout=5) as client:
            node = client.get_node(bindings[2].commands["derate"].node)
            return float(await node.read_value())

    assert loop.run(setpoint(), timeout=15) == pytest.approx(0.4)


@pytest.mark.services
@pytest.mark.timeout(60)
def test_opcua_stopped_server_is_retried_until_expiry() -> None:
    plant = quiet_plant()
    loop = LoopThread("test-opcua-stopped").start()
    url = f"opc.tcp://127.0.0.1:{free_port()}/twinflow/"
    binding = default_binding("motor-003", "motor", url)
    devices = OpcUaDevices(plant, url, [binding])
    loop.run(devices.start(), timeout=30)
    loop.run(devices.stop(), timeout=30)  # it was there; now nobody answers
    hub = CommandFeedback()
    patient = Backoff(base_s=0.05, cap_s=0.2, max_attempts=1000)
    sink = OpcUaCommandSink([binding], feedback=hub, backoff=patient, timeout_s=0.5)
    cmd = queued("motor-003", "motor", "derate", ttl_s=1.0, fraction=0.5)
    try:
        run_sink(sink, [cmd])
    finally:
        loop.stop()
    [expired] = hub.history(cmd.command_id)
    assert expired.status is S.EXPIRED and expired.attempt >= 2, expired
    assert "expired at" in expired.detail and devices.commands == []


# --------------------------------------------------------------------------- Modbus


@pytest.mark.services
@pytest.mark.timeout(60)
def test_modbus_lifecycle_against_the_simulated_devices() -> None:
    from twinflow.connectors.simulator.devices.modbus import ModbusDevices, default_bindings

    plant = quiet_plant()
    port = free_port()
    bindings = default_bindings(plant, "127.0.0.1", port, timeout_s=0.5)
    loop = LoopThread("test-modbus-devices").start()
    devices = ModbusDevices(plant, "127.0.0.1", port, bindings)
    loop.run(devices.start(), timeout=10)
    hub = CommandFeedback()
    sink = ModbusCommandSink(bindings, feedback=hub, backoff=FAST)
    good = queued("motor-003", "motor", "derate", fraction=0.75)
    stale = queued("motor-003", "motor", "derate", ttl_s=-1.0, fraction=0.3)
    wild = queued("motor-003", "motor", "derate", fraction=-2.0)
    try:
        run_sink(sink, [good, stale, wild, good])
        sink.send([good])  # a replay after recovery
        sink.close()
        assert trail(hub, good) == [(S.SENT, 1), (S.ACKNOWLEDGED, 1)]
        assert [o.status for o in hub.history(stale.command_id)] == [S.EXPIRED]
        assert [o.status for o in hub.history(wild.command_id)] == [S.REJECTED]
        assert [c.params for c in devices.commands] == [{"fraction": 0.75}]  # once
        # the device is stopped: attempts fail (never on the wire) until the command expires
        loop.run(devices.stop(), timeout=10)
        patient = Backoff(base_s=0.05, cap_s=0.2, max_attempts=1000)
        late = ModbusCommandSink(bindings, feedback=hub, backoff=patient)
        cmd = queued("motor-003", "motor", "derate", ttl_s=1.0, fraction=0.5)
        run_sink(late, [cmd])
    finally:
        loop.stop()
    [expired] = hub.history(cmd.command_id)
    assert expired.status is S.EXPIRED and expired.attempt >= 2, expired
    assert "cannot connect" in expired.detail
