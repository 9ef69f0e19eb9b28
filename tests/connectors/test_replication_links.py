"""Replication links without a broker: topics, settings refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.replication import DiskOutbox, KafkaLink, MqttLink
from twinflow.connectors.replication.kafka_link import kafka_topics
from twinflow.connectors.replication.mqtt_link import central_topics, edge_topics
from twinflow.core.errors import TwinflowError
from twinflow.operators.replication import TwinReplica


def test_edges_and_central_meet_on_each_others_topics() -> None:
    up, down = edge_topics("plant/rep", "edge-a")
    central_pub, central_sub = central_topics("plant/rep")
    assert (up, down) == ("plant/rep/up/edge-a", "plant/rep/down")
    assert central_pub == down and central_sub == "plant/rep/up/+"
    assert kafka_topics("rep", central=False) == ("rep.up", "rep.down")
    assert kafka_topics("rep", central=True) == ("rep.down", "rep.up")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 0}, "batch must be >= 1"),
        ({"per_message": 0}, "per_message must be >= 1"),
        ({"publish_timeout_s": 0}, "publish_timeout_s > 0"),
    ],
)
def test_bad_mqtt_link_settings_are_refused(
    tmp_path: Path, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(TwinflowError, match=f"'edge-a'.*{message}"):
        MqttLink(
            TwinReplica("edge-a"),
            DiskOutbox(tmp_path),
            MqttSettings(),
            *edge_topics("rep", "edge-a"),
            **kwargs,  # type: ignore[arg-type]
        )


def test_bad_kafka_link_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TwinflowError, match="delivery_timeout_s must be > 0"):
        KafkaLink(
            TwinReplica("edge-a"),
            DiskOutbox(tmp_path),
            "127.0.0.1:9",
            *kafka_topics("rep", central=False),
            group_id="g",
            delivery_timeout_s=0,
        )


def test_a_write_while_never_connected_waits_in_the_outbox(tmp_path: Path) -> None:
    link = MqttLink(
        TwinReplica("edge-a"), DiskOutbox(tmp_path), MqttSettings(), *edge_topics("r", "edge-a")
    )
    w = link.write("pump-1", "desired", "speed_rpm", 1500)  # not started: nothing is sent
    assert link.replica.get("pump-1", "desired", "speed_rpm") == w
    assert link.outbox.pending == 1 and link.counts["sent"] == 0


def test_a_full_node_queue_drops_the_oldest_and_counts_it(tmp_path: Path) -> None:
    from twinflow.connectors.replication.node import ReplicationNode
    from twinflow.operators.replication import Applied

    settings = MqttSettings(host="127.0.0.1", port=1, client_id="never")
    link = MqttLink(TwinReplica("central"), DiskOutbox(tmp_path / "c"), settings, "a", "b")
    node = ReplicationNode(link, "central", queue=2)
    writer = TwinReplica("edge")
    writes = [writer.write("pump-1", "reported", "speed", v) for v in range(3)]
    for w in writes:
        node._applied(w, Applied.WON)
    assert [r.write.value for r in node.take_received()] == [1, 2]
    assert node.dropped == 1
    link.outbox.close()
