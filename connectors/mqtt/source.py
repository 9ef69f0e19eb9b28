"""MQTT telemetry into Bytewax: :class:`MqttSource`.

Why a :class:`~bytewax.inputs.FixedPartitionedSource` with one partition: an MQTT session
belongs to ONE client id, and two connections with the same id take the session from each
other. One fixed partition means exactly one worker of the whole cluster holds the client,
whatever the number of workers; the flow spreads the decoded frames by twin right after.
The partition's Bytewax resume state is empty: the position in the stream lives in the
broker's persistent session (subscriptions plus the QoS 1 messages not yet acknowledged),
not in offsets.

To spread MQTT over a cluster, ``shared=N`` makes N partitions instead, each a session of its
own (client ids ``<client_id>-0`` .. ``<client_id>-N-1``) subscribed to every filter as the
MQTT v5 shared subscription ``$share/<client_id>/<filter>``: the broker hands each message to
one session of the group, and Bytewax places the N partitions on the cluster's workers. The
guarantees below hold per session; a twin's messages may then arrive through different
sessions, so their order across sessions is not kept (event-time windows absorb it within
``flow.lateness_s``).

``partitions=N`` spreads MQTT without giving up a twin's order: N sessions (client ids
``<client_id>-p0`` .. ``<client_id>-pN-1``), session ``i`` subscribed only to the topics of the
twins that :func:`twin_partition` places in ``i`` (a CRC-32 of the twin id, the same in every
process and run). Each twin is read by one session, in the order one session would read it,
like a Kafka topic keyed by twin.

Delivery guarantees (QoS 1, a persistent session on a broker that keeps it):

- At least once. A message is acknowledged (PUBACK) only after Bytewax has taken the batch
  that carries it: at the start of the following ``next_batch`` call, or in ``close``. A
  message the broker delivered but the flow had not taken when the process stopped or the
  connection dropped is redelivered, to this partition after a reconnect or to the next one
  with the same client id after a restart.
- Duplicates are possible: after a crash, what was taken but not yet acknowledged comes
  again; a publisher that retries after a broker restart may send a reading twice. A
  redelivery the partition can recognise (same packet id and payload, DUP flag, while the
  session survived) is acknowledged and dropped, and counted as ``redelivered``.
- Order: per topic, in the order the broker delivers (MQTT keeps order per topic for one
  publisher); redeliveries after a reconnect may come after newer messages. Each emitted
  frame is sorted by time.
- Not covered: what a broker loses itself (a crash between its autosaves, a session that
  expired, a queue over its ``max_queued_messages``), and items the flow had taken but not
  yet written when the process died (Bytewax recovery replays from its snapshots only).

The broker may be away at start or at any time: paho reconnects with backoff in its network
thread and ``next_batch`` returns what is buffered, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bytewax.inputs import FixedPartitionedSource

from twinflow.connectors.bindings import MqttBinding, MqttSettings
from twinflow.connectors.mqtt.client import SESSION_EXPIRY_S
from twinflow.connectors.mqtt.frames import MessageDecoder
from twinflow.connectors.mqtt.session import CLOSE_WAIT_S, Item, MqttPartition, twin_partition
from twinflow.core.errors import ConfigError

__all__ = ["CLOSE_WAIT_S", "Item", "MqttPartition", "MqttSource", "twin_partition"]


class MqttSource(FixedPartitionedSource[Item, None]):
    """Telemetry of the MQTT-bound twins as frames (one per twin per batch) and dead letters.

    ``settings.client_id`` is used as is and must be fixed: the broker keeps the session
    under it. ``max_batch`` caps the messages decoded per ``next_batch``. For tests and
    bounded runs, ``max_messages`` ends the source after that many messages and
    ``idle_timeout_s`` after that long without one. ``receive_maximum`` (default
    ``4 * max_batch``, at most 65535) bounds the unacknowledged messages the broker sends
    at once, hence memory: up to ``receive_maximum`` payloads are buffered. ``shared`` > 0
    reads through that many sessions of an MQTT v5 shared subscription, ``partitions`` > 0
    through that many sessions that each read a fixed share of the twins (module docstring).
    """

    def __init__(
        self,
        settings: MqttSettings,
        bindings: Sequence[MqttBinding],
        max_batch: int = 5000,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        receive_maximum: int | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        poll_interval_s: float = 0.005,
        shared: int = 0,
        partitions: int = 0,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"MqttSource max_batch must be an integer >= 1, got {max_batch!r}")
        if max_messages is not None and max_messages < 1:
            raise ConfigError(f"MqttSource max_messages must be >= 1, got {max_messages!r}")
        if idle_timeout_s is not None and not (
            idle_timeout_s > 0 and math.isfinite(idle_timeout_s)
        ):
            raise ConfigError(f"MqttSource idle_timeout_s must be > 0, got {idle_timeout_s!r}")
        if not bindings:
            raise ConfigError("MqttSource needs at least one MQTT binding (twin) to subscribe to")
        if not settings.client_id:
            raise ConfigError("MQTT client_id must be set (the broker keeps the session under it)")
        if isinstance(shared, bool) or not isinstance(shared, int) or not 0 <= shared <= 1024:
            raise ConfigError(f"MqttSource shared must be an integer 0..1024, got {shared!r}")
        if shared and any(c in settings.client_id for c in "/+#"):
            raise ConfigError(
                f"MQTT client_id {settings.client_id!r} names the shared subscription group and "
                "must not contain '/', '+' or '#'"
            )
        if isinstance(partitions, bool) or not isinstance(partitions, int):
            raise ConfigError(f"MqttSource partitions must be an integer, got {partitions!r}")
        if not 0 <= partitions <= 1024 or (partitions and shared):
            raise ConfigError(
                f"MqttSource partitions must be 0..1024 and not set with shared, got "
                f"partitions={partitions!r}, shared={shared!r}"
            )
        self.shared = shared
        self.partitions = partitions
        self.settings = settings
        self.bindings = tuple(bindings)
        self.max_batch = max_batch
        self.max_messages = max_messages
        self.idle_timeout_s = idle_timeout_s
        self.receive_maximum = min(receive_maximum or 4 * max_batch, 65535)
        self.session_expiry_s = session_expiry_s
        self.poll_interval_s = poll_interval_s
        # Checks the bindings now, so a bad deployment fails when the flow is built.
        self.decoder = MessageDecoder(self.bindings, settings.max_payload_bytes)

    def list_parts(self) -> list[str]:
        if self.partitions:
            return [f"mqtt:{self.settings.client_id}-p{i}" for i in range(self.partitions)]
        if self.shared:
            return [f"mqtt:{self.settings.client_id}-{i}" for i in range(self.shared)]
        return [f"mqtt:{self.settings.client_id}"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> MqttPartition:
        if self.partitions:
            return MqttPartition(self, int(for_part.rpartition("-p")[2]))
        if self.shared:
            return MqttPartition(self, int(for_part.rpartition("-")[2]))
        return MqttPartition(self)
