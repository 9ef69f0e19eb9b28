"""Replication over MQTT: a replica's outbox sent to a broker, updates received applied.

An edge publishes its writes to ``<base>/up/<edge id>`` and subscribes to ``<base>/down``;
the central replica subscribes to ``<base>/up/+``, publishes its own writes to
``<base>/down`` and relays there every write it received that was new to it, so each edge
also gets the other edges' writes (:func:`edge_topics`, :func:`central_topics`).

Sending is store-and-forward (:class:`~twinflow.connectors.replication.link.ReplicaLink`):
pending records are published at QoS 1 while the broker is connected and acknowledged in the
outbox only once the broker has them (PUBACK). One MQTT message carries up to
``per_message`` records as one ``twin_updates.v2`` batch: a backlog goes out in few
messages, a single write at once. Records published when the connection broke are published
again later; the receiver's merge is idempotent, so a resend is counted as a duplicate (or
stale) and changes nothing. Receiving uses a persistent session (MQTT v5, clean start off),
so the broker queues the updates for a replica that is away and delivers them when it
returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Gauge

from twinflow.connectors.bindings import MqttSettings
from twinflow.connectors.mqtt.client import is_failure, make_client
from twinflow.connectors.replication.link import ReplicaLink
from twinflow.connectors.replication.outbox import DiskOutbox, Entry
from twinflow.core.errors import TwinflowError
from twinflow.operators.replication import Applied, TwinReplica, Write

log = logging.getLogger(__name__)

CONNECTED = Gauge(
    "twinflow_replication_connected", "1 while the replication link is connected", ["replica"]
)


def edge_topics(base: str, edge_id: str) -> tuple[str, str]:
    """(publish, subscribe) topics of an edge replica."""
    return f"{base}/up/{edge_id}", f"{base}/down"


def central_topics(base: str) -> tuple[str, str]:
    """(publish, subscribe) topics of the central replica."""
    return f"{base}/down", f"{base}/up/+"


class MqttLink(ReplicaLink):
    """Connects one :class:`TwinReplica` and its :class:`DiskOutbox` to an MQTT broker.

    ``settings`` name the broker (its ``client_id`` is used for the persistent session);
    ``relay`` makes the link re-send every received write that was new to the replica (the
    central replica's job); ``batch`` bounds the records published before waiting for the
    broker's acknowledgements, ``per_message`` the records carried by one MQTT message (one
    ``twin_updates.v2`` batch), ``publish_timeout_s`` how long to wait for the
    acknowledgements before the batch is sent again; ``on_applied`` is called with each
    received write and its outcome.
    """

    def __init__(
        self,
        replica: TwinReplica,
        outbox: DiskOutbox,
        settings: MqttSettings,
        publish_topic: str,
        subscribe_topic: str,
        *,
        relay: bool = False,
        batch: int = 2000,
        per_message: int = 100,
        publish_timeout_s: float = 5.0,
        dead_letters: int = 100,
        on_applied: Callable[[Write, Applied], None] | None = None,
    ) -> None:
        super().__init__(
            replica,
            outbox,
            relay=relay,
            batch=batch,
            dead_letters=dead_letters,
            on_applied=on_applied,
        )
        if per_message < 1 or publish_timeout_s <= 0:
            raise TwinflowError(
                f"replication link of {replica.replica_id!r}: per_message must be >= 1 and "
                f"publish_timeout_s > 0, got {per_message} and {publish_timeout_s}"
            )
        self.settings = settings
        self.publish_topic = publish_topic
        self.subscribe_topic = subscribe_topic
        self.per_message = per_message
        self.publish_timeout_s = publish_timeout_s
        self._acks = threading.Condition()
        self._acked: set[int] = set()
        self._connected = threading.Event()
        self._client: Any = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> MqttLink:
        """Connect (in the background, retrying) and start sending."""
        self._open()
        self._start_sender()
        return self

    def stop(self) -> None:
        """Stop sending and disconnect; the outbox keeps what was not sent."""
        self._stop_sender()
        self._close()

    def cut(self) -> None:
        """Drop the connection as a lost uplink would (writes go on into the outbox)."""
        self._close()

    def restore(self) -> None:
        """Reconnect after :meth:`cut`; the broker delivers what it queued meanwhile."""
        self._open()

    def _open(self) -> None:
        client = make_client(
            self.settings,
            self.settings.client_id,
            persistent=True,
            max_inflight=max(20, -(-self.batch // self.per_message)),  # a batch's messages
            receive_maximum=100,  # messages the broker may send before our PUBACKs
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client
        client.loop_start()

    def _close(self) -> None:
        client, self._client = self._client, None
        self._connected.clear()
        CONNECTED.labels(self.replica.replica_id).set(0)
        if client is not None:
            client.disconnect()
            client.loop_stop()

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up."""
        return self._connected.is_set()

    # -- paho callbacks ---------------------------------------------------------------------

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if is_failure(reason):
            log.warning("replication link %s: connect refused: %s", self.replica.replica_id, reason)
            return
        client.subscribe(self.subscribe_topic, qos=1)
        self._connected.set()
        CONNECTED.labels(self.replica.replica_id).set(1)
        self._wake.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        self._connected.clear()
        CONNECTED.labels(self.replica.replica_id).set(0)

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._acks:
            self._acked.add(mid)
            self._acks.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        self._receive_payload(bytes(message.payload))

    # -- sending ----------------------------------------------------------------------------

    def _ready(self) -> bool:
        return self._connected.is_set() and self._client is not None

    def _send(self, entries: Sequence[Entry]) -> bool:
        client = self._client
        if client is None:
            return False
        with self._acks:
            self._acked.clear()
        mids = []
        for message in self._messages(entries, self.per_message):
            mids.append(client.publish(self.publish_topic, message, qos=1).mid)
        with self._acks:
            return self._acks.wait_for(
                lambda: all(m in self._acked for m in mids), self.publish_timeout_s
            )
