"""A replication link cut for over a minute while faults develop, over a real mosquitto.

Edge-a is the flow of a deployment with ``replication: {role: edge}``: the simulated plant
serves a wind turbine and a motor over MQTT, both with an overheating fault that develops
during the run (seed 3, 3 h of plant time at 60x). Edge-b and the central instance are
:class:`ReplicationNode` s in the test (what their flows' nodes do). Edge-a's replication
link is cut for :data:`CUT_S` seconds of wall clock (its devices' MQTT is not: the site goes
on). Meanwhile:

- edge-a's flow keeps raising alerts and issuing and completing its own commands (the derate
  policy), and its local desired changes wait in its outbox (sync status ``link_down``);
- the central instance and edge-a change the same desired properties: the turbine's
  ``power_limit`` centrally first, then at the edge (the edge's wins), and the motor's
  ``load_setpoint`` at the edge first, then centrally (central's wins);
- edge-b, whose link is up, goes on writing and receives central's change for its twin.

After the link returns, every replica holds the registers of a reference replica that
received every write once (what an uncut link would have delivered), the same two conflicts
are reported everywhere with the earlier write as the loser, the central instance received
each of edge-a's writes once, and edge-a's command loop issued one command for the central
change that won (none for the one that lost), which the device carried out.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.testing import run_main

from tests.flows.test_run_deployment import SimulatorThread
from tests.services.mosquitto import Mosquitto, free_port, running_broker
from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.files import read_jsonl
from twinflow.connectors.replication import DiskOutbox
from twinflow.connectors.replication.mqtt_link import MqttLink, central_topics, edge_topics
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.core.records import DesiredChange
from twinflow.core.times import utc
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replication import running, stop_nodes
from twinflow.flows.run import deployment_flow
from twinflow.operators.replication import Applied, TwinReplica, Write
from twinflow.operators.replication.replica import converge
from twinflow.operators.replication.update import update_id

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

#: How long edge-a's link stays cut (wall clock seconds).
CUT_S = 62.0


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Mosquitto]:
    yield from running_broker()


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``check`` came true within ``timeout_s`` (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def plain_node(
    mqtt: Mosquitto, folder: Path, name: str, base: str, role: str, owned: dict[str, str]
) -> ReplicationNode:
    """A replication node over the broker (what a flow's node is, without the flow)."""
    settings = MqttSettings(
        host=mqtt.host, port=mqtt.port, client_id=f"{base}-{name}",
        reconnect_min_s=0.05, reconnect_max_s=0.5,
    )  # fmt: skip
    central = role == "central"
    topics = central_topics(base) if central else edge_topics(base, name)
    link = MqttLink(TwinReplica(name), DiskOutbox(folder / name), settings, *topics, relay=central)
    return ReplicationNode(link, role, owned=owned)


class Recorder:
    """Every write a node makes (its link's ``write``), with the wall time it was made."""

    def __init__(self, node: ReplicationNode) -> None:
        self.made: list[tuple[float, Write]] = []
        self._lock = threading.Lock()
        inner = node.link.write

        def write(twin_id: str, kind: str, name: str, value: object) -> Write:
            w = inner(twin_id, kind, name, value)
            with self._lock:
                self.made.append((time.monotonic(), w))
            return w

        node.link.write = write  # type: ignore[method-assign]

    def writes(self, since: float = 0.0, until: float = float("inf")) -> list[Write]:
        with self._lock:
            return [w for t, w in self.made if since <= t < until]


def arrivals(node: ReplicationNode) -> list[Write]:
    """The writes new to ``node`` as they arrive (won or lost)."""
    got: list[Write] = []
    inner = node.link.on_applied

    def arrived(w: Write, outcome: Applied) -> None:
        if inner is not None:
            inner(w, outcome)
        if outcome in (Applied.WON, Applied.LOST):
            got.append(w)

    node.link.on_applied = arrived
    return got


def change(twin: str, kind: str, prop: str, value: float, request: str) -> DesiredChange:
    at = utc(time.time())
    return DesiredChange(twin, kind, prop, value, at, request, at + timedelta(minutes=10))


def test_a_link_cut_for_a_minute_loses_nothing_and_resolves_conflicts_as_specified(
    tmp_path: Path, mqtt: Mosquitto
) -> None:
    base = f"cut-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "edge.yaml"
    path.write_text(f"""
version: 1
site: north
services:
  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "edge-{free_port()}"}}
simulator: {{twins: 12, seed: 3, speed: 120, duration: 4h}}
flow: {{max_future_s: 864000, command_timeout_s: 30}}
twins:
  - {{id: wt-010, type: wind_turbine, protocol: mqtt}}
  - {{id: motor-012, type: motor, protocol: mqtt}}
replication: {{role: edge, replica: edge-a, topic: {base}, status_interval_s: 0.5}}
""")
    dep = load_deployment(path, env={})
    central = plain_node(mqtt, tmp_path, "central", base, "central", {}).start()
    edge_b = plain_node(mqtt, tmp_path, "edge-b", base, "edge", {"pump-b": "pump"}).start()
    assert wait_until(lambda: central.link.connected and edge_b.link.connected, 30)
    sim = SimulatorThread(dep)
    stop = threading.Event()
    out = tmp_path / "out"
    flow = deployment_flow(
        dep,
        out,
        limits={
            "mqtt": {"idle_timeout_s": 8.0},
            "feedback": {"until": stop.is_set},
            "replication": {"until": stop.is_set},
        },
    )
    (edge_a,) = running()
    edge_a.drain_s = 30.0
    rec_a, rec_b, rec_c = Recorder(edge_a), Recorder(edge_b), Recorder(central)
    at_central = arrivals(central)

    def from_a() -> list[Write]:
        return [w for w in list(at_central) if w.stamp.replica == "edge-a"]

    result: dict[str, object] = {}
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error

    def drive() -> None:
        try:
            state = ("wt-010", "metadata", "state")
            result["forwarded"] = wait_until(lambda: central.replica.get(*state) is not None, 60)
            cut_at = time.monotonic()
            result["cut_at"] = cut_at
            edge_a.link.cut()  # type: ignore[attr-defined]
            # Both sides change the same desired properties while the link is cut.
            result["motor_edge"] = edge_a.desire(
                change("motor-012", "motor", "load_setpoint", 60.0, "edge-1")
            )
            time.sleep(2)
            result["turbine_central"] = central.desire(
                change("wt-010", "wind_turbine", "power_limit", 1500.0, "central-1")
            )
            result["pump_central"] = central.desire(
                change("pump-b", "pump", "flow_setpoint", 120.0, "central-2")
            )
            time.sleep(2)
            result["turbine_edge"] = edge_a.desire(
                change("wt-010", "wind_turbine", "power_limit", 1300.0, "edge-2")
            )
            time.sleep(2)
            result["motor_central"] = central.desire(
                change("motor-012", "motor", "load_setpoint", 80.0, "central-3")
            )
            value = 0.0
            while time.monotonic() - cut_at < CUT_S:  # edge-b's link is up: it goes on
                edge_b.link.write("pump-b", "reported", "flow_setpoint", 100.0 + value)
                value += 1
                time.sleep(1.0)
            result["edge_b_got"] = [c.request_id for c in edge_b.take_desired()]
            result["restored_at"] = time.monotonic()
            edge_a.link.restore()  # type: ignore[attr-defined]
            result["reconnected"] = wait_until(lambda: edge_a.link.connected, 30)
            # Edge-a carries out central's winning motor change once it arrives.
            uid = update_id(result["motor_central"])  # type: ignore[arg-type]

            def done() -> bool:
                rows = list(read_jsonl(out / "commands.jsonl"))
                return any(uid in c["reason"] and c["status"] == "succeeded" for c in rows)

            result["motor_done"] = wait_until(done, 60)
        finally:
            sim.stop_flag.set()
            sim.join(timeout=30)
            stop.set()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        run_main(flow)
        driver.join(timeout=150)
        made_a = rec_a.writes()
        # Every replica settles: edge-a's outbox drained, central has each of its writes.
        assert wait_until(lambda: len(from_a()) >= len(made_a), 60), (len(from_a()), len(made_a))
        everyone = [central.replica, edge_a.replica, edge_b.replica]
        assert wait_until(lambda: _locked(converge, everyone, [central, edge_a, edge_b]), 60)
    finally:
        stop_nodes()
        central.stop()
        edge_b.stop()
    assert sim.error is None, sim.error
    assert result.get("forwarded") and result.get("reconnected"), result
    cut_at, restored_at = float(result["cut_at"]), float(result["restored_at"])  # type: ignore[arg-type]
    assert restored_at - cut_at >= 60.0

    # While cut, the site went on: alerts raised and its own commands carried out.
    during = rec_a.writes(cut_at, restored_at)
    alerts = [w for w in during if w.key.name.startswith("alert:")]
    commands = [w for w in during if w.key.name.startswith("command:")]
    assert {w.key.twin_id for w in alerts} >= {"wt-010", "motor-012"}, [w.key for w in during]
    assert any(w.value.get("status") == "succeeded" for w in commands), commands
    statuses = list(read_jsonl(out / "sync_status.jsonl"))
    assert any(s["state"] == "link_down" and s["property"] == "power_limit" for s in statuses), (
        "edge-a's own change was not link_down during the cut"
    )
    # Edge-b's link was up: it received central's change for its pump during the cut.
    assert result["edge_b_got"] == [update_id(result["pump_central"])]  # type: ignore[arg-type]

    # After: every replica equals a reference that got every write once (an uncut link).
    made = [*made_a, *rec_b.writes(), *rec_c.writes()]
    reference = TwinReplica("reference", now_ms=lambda: int(time.time() * 1000) + 60_000)
    reference.apply_many(sorted(made, key=Write.order))
    assert converge([reference, central.replica, edge_a.replica, edge_b.replica])
    # Nothing lost or duplicated: central received each of edge-a's writes exactly once.
    key = lambda w: (w.key, w.stamp)  # noqa: E731
    assert sorted(map(key, from_a())) == sorted(map(key, made_a))
    # Conflicts as specified: the later write wins, the earlier is the loser everywhere.
    losers = {
        (c.key.twin_id, c.key.name): c.loser
        for c in central.replica.conflicts()
        if c.key.kind == "desired"
    }
    assert losers[("wt-010", "power_limit")] == result["turbine_central"]
    assert losers[("motor-012", "load_setpoint")] == result["motor_edge"]
    for r in (edge_a.replica, edge_b.replica):
        assert r.conflicts() == central.replica.conflicts()
    # Only the winning central change became a command at the edge, once, and succeeded.
    rows = list(read_jsonl(out / "commands.jsonl"))
    lost_uid = update_id(result["turbine_central"])  # type: ignore[arg-type]
    won_uid = update_id(result["motor_central"])  # type: ignore[arg-type]
    assert not [c for c in rows if lost_uid in c["reason"]]
    won = [c for c in rows if won_uid in c["reason"]]
    assert len({c["command_id"] for c in won}) == 1 and won[-1]["status"] == "succeeded", won
    assert result.get("motor_done")


def _locked(
    check: Callable[[list[TwinReplica]], bool],
    replicas: list[TwinReplica],
    nodes: list[ReplicationNode],
) -> bool:
    """``check`` with every node's replica lock held (the links receive on their threads)."""
    for n in nodes:
        n.link.lock.acquire()
    try:
        return check(replicas)
    finally:
        for n in reversed(nodes):
            n.link.lock.release()
