"""The long link cut scenario of ``test_replication_long_cut.py``, for any transport.

:func:`run_long_cut` runs edge-a's flow (a deployment with ``replication: {role: edge}``
beside the simulated plant), edge-b and the central instance as :class:`ReplicationNode` s,
cuts edge-a's replication link for the transport's ``cut_s`` while both sides change desired
properties, and checks everything the test module's docstring lists. A :class:`Transport`
says how the replicas are linked and how edge-a's link is cut and restored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from bytewax.testing import run_main

from tests.flows.test_run_deployment import SimulatorThread
from tests.services.mosquitto import Mosquitto, free_port
from tests.services.waiting import came_true
from twinflow.connectors.files import read_jsonl
from twinflow.connectors.replication.node import ReplicationNode
from twinflow.core.records import DesiredChange
from twinflow.core.times import utc
from twinflow.flows.deploy import load_deployment
from twinflow.flows.replication import running, stop_nodes
from twinflow.flows.run import deployment_flow
from twinflow.operators.replication import Applied, TwinReplica, Write
from twinflow.operators.replication.hlc import Stamp
from twinflow.operators.replication.register import PropertyKey
from twinflow.operators.replication.replica import converge
from twinflow.operators.replication.update import update_id


class Transport(Protocol):
    """How the three replicas are linked, and how edge-a's link is cut."""

    #: How long edge-a's link stays cut (wall clock seconds).
    cut_s: float
    #: The simulated plant's run (plant time at 120x): longer than the cut and the catch-up.
    duration: str

    #: ``replication.link`` of the edge's deployment.
    link: str

    def services(self, base: str) -> str:
        """The edge's ``services:`` entries beside ``mqtt`` (YAML lines, indented by two)."""
        ...

    def node(
        self, folder: Path, name: str, base: str, role: str, owned: dict[str, str]
    ) -> ReplicationNode:
        """A replication node (what a flow's node is, without the flow)."""
        ...

    def cut(self, base: str, edge_a: ReplicationNode) -> None: ...

    def restore(self, base: str, edge_a: ReplicationNode) -> None: ...


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


def arrivals(node: ReplicationNode) -> list[tuple[float, Write]]:
    """The writes new to ``node`` (won or lost) with the wall time each arrived."""
    got: list[tuple[float, Write]] = []
    inner = node.link.on_applied

    def arrived(w: Write, outcome: Applied) -> None:
        if inner is not None:
            inner(w, outcome)
        if outcome in (Applied.WON, Applied.LOST):
            got.append((time.monotonic(), w))

    node.link.on_applied = arrived
    return got


def change(twin: str, kind: str, prop: str, value: float, request: str) -> DesiredChange:
    at = utc(time.time())
    return DesiredChange(twin, kind, prop, value, at, request, at + timedelta(minutes=10))


def edge_yaml(mqtt: Mosquitto, transport: Transport, base: str) -> str:
    """Edge-a's deployment: a wind turbine and a motor served over MQTT by the plant."""
    services = transport.services(base)
    services += f'  mqtt: {{url: "mqtt://127.0.0.1:{mqtt.port}", client_id: "edge-{free_port()}"}}'
    return f"""
version: 1
site: north
services:
{services}
simulator: {{twins: 12, seed: 3, speed: 120, duration: {transport.duration}}}
flow: {{max_future_s: 864000, command_timeout_s: 30}}
twins:
  - {{id: wt-010, type: wind_turbine, protocol: mqtt}}
  - {{id: motor-012, type: motor, protocol: mqtt}}
replication: {{role: edge, replica: edge-a, topic: {base}, link: {transport.link},
              status_interval_s: 0.5}}
"""


def run_long_cut(tmp_path: Path, mqtt: Mosquitto, transport: Transport) -> None:
    """Run the scenario over ``transport`` and check it (``mqtt`` serves the plant's devices)."""
    base = f"cut-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "edge.yaml"
    path.write_text(edge_yaml(mqtt, transport, base))
    dep = load_deployment(path, env={})
    central = transport.node(tmp_path, "central", base, "central", {}).start()
    edge_b = transport.node(tmp_path, "edge-b", base, "edge", {"pump-b": "pump"}).start()
    assert came_true(lambda: central.link.connected and edge_b.link.connected, 30)
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

    def from_a(until: float = float("inf")) -> list[Write]:
        return [w for t, w in list(at_central) if w.stamp.replica == "edge-a" and t < until]

    result: dict[str, object] = {}
    sim.start()
    assert sim.up.wait(30) and sim.plant is not None, sim.error

    def drive() -> None:
        try:
            state = ("wt-010", "metadata", "state")
            result["forwarded"] = came_true(lambda: central.replica.get(*state) is not None, 60)
            cut_at = time.monotonic()
            result["cut_at"] = cut_at
            transport.cut(base, edge_a)
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
            while time.monotonic() - cut_at < transport.cut_s:  # edge-b's link is up
                edge_b.link.write("pump-b", "reported", "flow_setpoint", 100.0 + value)
                value += 1
                time.sleep(1.0)
            result["edge_b_got"] = [c.request_id for c in edge_b.take_desired()]
            result["restored_at"] = time.monotonic()
            transport.restore(base, edge_a)
            result["reconnected"] = came_true(lambda: edge_a.link.connected, 60)
            result["reconnect_s"] = time.monotonic() - result["restored_at"]  # type: ignore[operator]
            # Edge-a carries out central's winning motor change once it arrives.
            uid = update_id(result["motor_central"])  # type: ignore[arg-type]

            def done() -> bool:
                rows = list(read_jsonl(out / "commands.jsonl"))
                return any(uid in c["reason"] and c["status"] == "succeeded" for c in rows)

            result["motor_done"] = came_true(done, 60)
        finally:
            sim.stop_flag.set()
            sim.join(timeout=30)
            stop.set()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        run_main(flow)
        driver.join(timeout=transport.cut_s + 150)
        made_a = rec_a.writes()
        # Every replica settles: edge-a's outbox drained, central has each of its writes.
        assert came_true(lambda: len(from_a()) >= len(made_a), 60), (len(from_a()), len(made_a))
        everyone = [central.replica, edge_a.replica, edge_b.replica]
        assert came_true(lambda: _locked(converge, everyone, [central, edge_a, edge_b]), 60)
    finally:
        stop_nodes()
        central.stop()
        edge_b.stop()
    span = float(result.get("cut_at", 0)), float(result.get("restored_at", 0))  # type: ignore[arg-type]
    print(  # what the cut did, for the record (pytest -s)
        f"{transport.link}: cut {span[1] - span[0]:.0f} s, {len(rec_a.writes(*span))} edge-a "
        f"writes during it, link back {float(result.get('reconnect_s', -1)):.1f} s after, "  # type: ignore[arg-type]
        f"central's counts {dict(central.link.counts)}"
    )
    assert sim.error is None, sim.error
    assert result.get("forwarded") and result.get("reconnected"), result
    cut_at, restored_at = float(result["cut_at"]), float(result["restored_at"])  # type: ignore[arg-type]
    assert restored_at - cut_at >= transport.cut_s

    # While cut, the site went on: alerts raised and its own commands carried out.
    during = rec_a.writes(cut_at, restored_at)
    # The cut was real: nothing edge-a wrote during it reached central before the link returned.
    assert not {key(w) for w in during} & {key(w) for w in from_a(restored_at)}
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


def key(w: Write) -> tuple[PropertyKey, Stamp]:
    """A write's identity: its register and stamp."""
    return (w.key, w.stamp)


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
