"""MQTT telemetry spread over a cluster's workers: shared subscriptions, or partitions (mosquitto).

``services.mqtt.shared_subscriptions: N`` makes the MQTT source N sessions that subscribe to
``$share/<client_id>/<topic>``: the broker gives each message to one session of the group,
and Bytewax places the sessions (partitions) on the workers. Every reading must arrive once,
whichever worker's session it reached. ``services.mqtt.partitions: N`` makes N sessions that
each subscribe to the topics of their share of the twins: a twin is read by one session, in
order.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main

from tests.services.mosquitto import Mosquitto
from twinflow.connectors.bindings import MqttBinding, MqttSettings
from twinflow.connectors.mqtt import MqttSource
from twinflow.connectors.mqtt.source import twin_partition
from twinflow.connectors.simulator import Plant, PlantConfig
from twinflow.connectors.simulator.devices.mqtt import MqttDevices
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.flows.deploy import load_deployment

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]

T0 = 1_767_225_600.0
TWINS = ("p-1", "p-2", "p-3", "p-4")


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


def settings(broker: Mosquitto, client_id: str) -> MqttSettings:
    return MqttSettings(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
        keepalive_s=10,
    )


def bindings(base: str) -> list[MqttBinding]:
    return [
        MqttBinding(t, "pump", f"{base}/{t}/telemetry", f"{base}/{t}/cmd", f"{base}/{t}/resp")
        for t in TWINS
    ]


def frame(twin: str, start: int, n: int) -> TelemetryFrame:
    t = T0 + np.arange(start, start + n, dtype=np.float64)
    return TelemetryFrame(twin, "pump", t, {"flow_m3h": np.full(n, 100.0)})


def readings(items: list[Any]) -> Counter[tuple[str, float]]:
    return Counter(
        (i.twin_id, t) for i in items if isinstance(i, TelemetryFrame) for t in i.times.tolist()
    )


def test_two_workers_share_the_telemetry_and_every_reading_arrives_once(
    broker: Mosquitto,
) -> None:
    base, group = f"t{uuid.uuid4().hex[:6]}", f"flow-{uuid.uuid4().hex[:6]}"
    twins = bindings(base)
    cfg = settings(broker, group)
    # Create the group's two sessions first: a shared subscription with no session yet
    # receives nothing, as for any MQTT subscription.
    first = MqttSource(cfg, twins, shared=2)
    for part in [first.build_part("in", p, None) for p in first.list_parts()]:
        assert part.ready.wait(10)
        part.close()

    devices = MqttDevices(Plant(PlantConfig(n_twins=2, duration_s=60, seed=1)), cfg, twins)
    assert devices.start()
    try:
        for k in range(10):  # 10 rounds x 4 twins x 25 readings, one message per reading
            for twin in TWINS:
                devices.publish(frame(twin, 25 * k, 25))
        assert devices.flush()
    finally:
        devices.stop()

    out: list[Any] = []
    flow = Dataflow(f"mqtt_shared_{uuid.uuid4().hex[:6]}")
    source = MqttSource(cfg, twins, shared=2, idle_timeout_s=2.0)
    tagged = op.map("where", op.input("in", flow, source), _tag_worker)
    op.output("out", tagged, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)

    got = readings([item for _, item in out])
    assert set(got) == {(t, T0 + i) for t in TWINS for i in range(250)}
    assert max(got.values()) == 1, "a reading arrived twice"
    per_worker = Counter(worker for worker, item in out if isinstance(item, TelemetryFrame))
    assert len(per_worker) == 2, f"one worker read everything: {per_worker}"


def test_partitions_give_each_twin_to_one_worker_in_order(broker: Mosquitto) -> None:
    base, cid = f"t{uuid.uuid4().hex[:6]}", f"flow-{uuid.uuid4().hex[:6]}"
    twins = bindings(base)
    cfg = settings(broker, cid)
    first = MqttSource(cfg, twins, partitions=2)
    assert first.list_parts() == [f"mqtt:{cid}-p0", f"mqtt:{cid}-p1"]
    owners = {t: twin_partition(t, 2) for t in TWINS}
    assert set(owners.values()) == {0, 1}, "the test's twins should land in both partitions"
    for part in [first.build_part("in", p, None) for p in first.list_parts()]:
        assert part.ready.wait(10)
        part.close()

    devices = MqttDevices(Plant(PlantConfig(n_twins=2, duration_s=60, seed=1)), cfg, twins)
    assert devices.start()
    try:
        for k in range(10):
            for twin in TWINS:
                devices.publish(frame(twin, 25 * k, 25))
        assert devices.flush()
    finally:
        devices.stop()

    out: list[Any] = []
    flow = Dataflow(f"mqtt_parts_{uuid.uuid4().hex[:6]}")
    source = MqttSource(cfg, twins, partitions=2, idle_timeout_s=2.0, max_batch=30)
    tagged = op.map("where", op.input("in", flow, source), _tag_worker)
    op.output("out", tagged, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)

    frames = [(w, i) for w, i in out if isinstance(i, TelemetryFrame)]
    got = readings([i for _, i in frames])
    assert set(got) == {(t, T0 + i) for t in TWINS for i in range(250)}
    assert max(got.values()) == 1, "a reading arrived twice"
    for twin in TWINS:  # one worker, and its readings in the order they were published
        mine = [(w, i) for w, i in frames if i.twin_id == twin]
        assert len({w for w, _ in mine}) == 1, f"{twin} was read by several workers"
        times = [t for _, i in mine for t in i.times.tolist()]
        assert times == sorted(times), f"{twin}'s readings came out of order"
    by_part = {owners[i.twin_id] for _, i in frames}
    workers = {owners[i.twin_id]: w for w, i in frames}
    assert by_part == {0, 1} and workers[0] != workers[1], "both sessions on one worker"


def test_partitions_and_shared_sessions_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(
        "version: 1\nsite: s1\nservices:\n  mqtt:\n    url: mqtt://127.0.0.1:1883\n"
        "    client_id: flow\n    partitions: 2\n    shared_subscriptions: 2\n"
        "twins:\n  - {id: p-1, type: pump, protocol: mqtt}\n"
    )
    with pytest.raises(ConfigError, match="choose one"):
        load_deployment(path, {})
    path.write_text(path.read_text().replace("    shared_subscriptions: 2\n", ""))
    from twinflow.flows.run import sources_for

    (source,) = sources_for(load_deployment(path, {}))
    assert source.list_parts() == ["mqtt:flow-p0", "mqtt:flow-p1"]


def _tag_worker(item: Any) -> tuple[str, Any]:
    import threading

    return threading.current_thread().name, item


def test_the_deployment_file_sets_the_shared_sessions(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(
        "version: 1\nsite: s1\nservices:\n  mqtt:\n    url: mqtt://127.0.0.1:1883\n"
        "    client_id: flow\n    shared_subscriptions: 3\n"
        "twins:\n  - {id: p-1, type: pump, protocol: mqtt}\n"
    )
    from twinflow.flows.run import sources_for

    (source,) = sources_for(load_deployment(path, {}))
    assert source.list_parts() == ["mqtt:flow-0", "mqtt:flow-1", "mqtt:flow-2"]
    path.write_text(path.read_text().replace("shared_subscriptions: 3", "shared_subscriptions: -1"))
    with pytest.raises(ConfigError, match="shared_subscriptions"):
        load_deployment(path, {})


def test_a_client_id_that_cannot_name_a_group_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not contain"):
        MqttSource(MqttSettings(client_id="site/flow"), bindings("b"), shared=2)
