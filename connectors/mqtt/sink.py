"""Commands out to devices over MQTT, and their acknowledgements back: :class:`MqttCommandSink`.

Each worker's partition owns a paho client (client id ``<client_id>-commands-<worker>``).
Only commands with status ``issued`` are acted on: the command's versioned JSON
(``Command.to_json()``) is published at QoS 1 to its twin's ``command_topic``. The partition
of worker 0 also subscribes, in a persistent session, to every twin's ``response_topic`` and
records acknowledgements in :attr:`MqttCommandSink.responses`.

While the broker is away, paho keeps each publish in its in-memory queue and sends it after
reconnecting (retrying QoS 1 until the broker acknowledges it). The queue holds at most
``max_queued`` messages: when it is full, a command is NOT sent; it is logged and counted
as ``queue_full`` (its lifecycle then ends timed out). A process that dies loses its
queue: commands are derived deterministically, so a Bytewax replay issues them again with
the same id, and devices treat a repeated id as the same command.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from prometheus_client import Counter

from connectors.bindings import MqttBinding, MqttSettings
from connectors.mqtt.client import (
    CONNECTED,
    RECONNECTS,
    PublishTracker,
    is_failure,
    make_client,
    paho,
    subscribe_options,
)
from connectors.mqtt.responses import ResponseBook, ResponseError, parse_response
from connectors.mqtt.topics import TopicRouter, bindings_by_twin, concrete_topic
from operators.records import Command, CommandStatus

log = logging.getLogger(__name__)

COMMANDS_OUT = Counter(
    "twinflow_mqtt_commands",
    "Commands handed to the MQTT sink, by outcome: published (queued to the broker), "
    "unknown_twin, queue_full, ignored (not issued)",
    ["outcome"],
)
RESPONSES = Counter(
    "twinflow_mqtt_command_responses",
    "Command acknowledgements read from response topics: succeeded, failed, invalid",
    ["status"],
)

#: QoS of command publishes.
COMMAND_QOS = 1


class _CommandPartition(StatelessSinkPartition[Command]):
    """One worker's publisher (and, on worker 0, the response listener)."""

    def __init__(self, sink: MqttCommandSink, worker_index: int) -> None:
        self._sink = sink
        self._listen = worker_index == 0
        self.client_id = f"{sink.settings.client_id}-commands-{worker_index}"
        self._tracker = PublishTracker()
        self._connections = 0
        self._closing = False
        self._client = make_client(
            sink.settings,
            self.client_id,
            v5=True,
            persistent=self._listen,
            max_queued=sink.max_queued,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._tracker.on_publish
        self._client.loop_start()

    def _on_connect(self, client: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if is_failure(reason):
            log.error("MQTT command sink %r: connection refused: %s", self.client_id, reason)
            return
        self._connections += 1
        if self._connections > 1:
            RECONNECTS.labels(self.client_id).inc()
        CONNECTED.labels(self.client_id).set(1)
        if self._listen:
            opts = subscribe_options(self._sink.settings.qos)
            client.subscribe([(f, opts) for f in self._sink.response_router.filters])

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        CONNECTED.labels(self.client_id).set(0)
        if not self._closing:
            log.warning(
                "MQTT command sink %r lost the broker (%s); reconnecting", self.client_id, reason
            )

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "?"
        binding = self._sink.response_router.route(topic)
        if binding is None:
            RESPONSES.labels("invalid").inc()
            log.warning(
                "MQTT command response on %r: %s",
                topic,
                self._sink.response_router.why_unmapped(topic),
            )
            return
        try:
            response = parse_response(msg.payload, binding.twin_id, time.time())
        except ResponseError as e:
            RESPONSES.labels("invalid").inc()
            log.warning(
                "MQTT command response of twin %r on %r refused: %s", binding.twin_id, topic, e
            )
            return
        RESPONSES.labels(response.status).inc()
        self._sink.responses.add(response)

    def write_batch(self, items: list[Command]) -> None:
        mqtt = paho()
        for cmd in items:
            if not isinstance(cmd, Command):
                raise TypeError(
                    f"MqttCommandSink takes operators.records.Command items, got "
                    f"{type(cmd).__name__}; route only commands to this sink"
                )
            if cmd.status is not CommandStatus.ISSUED:
                COMMANDS_OUT.labels("ignored").inc()
                continue
            topic = self._sink.command_topics.get(cmd.twin_id)
            if topic is None:
                COMMANDS_OUT.labels("unknown_twin").inc()
                log.warning(
                    "command %s for twin %r not sent: the twin has no MQTT binding",
                    cmd.command_id,
                    cmd.twin_id,
                )
                continue
            payload = json.dumps(cmd.to_json(), separators=(",", ":"))
            info = self._client.publish(topic, payload, qos=COMMAND_QOS)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                COMMANDS_OUT.labels("queue_full").inc()
                log.error(
                    "command %s for twin %r not sent: the MQTT outgoing queue is full (%d); "
                    "is the broker %s:%s reachable?",
                    cmd.command_id,
                    cmd.twin_id,
                    self._sink.max_queued,
                    self._sink.settings.host,
                    self._sink.settings.port,
                )
                continue
            COMMANDS_OUT.labels("published").inc()
            self._tracker.published(info.mid)

    def close(self) -> None:
        """Wait (up to the sink's ``close_timeout_s``) for the broker to acknowledge what
        was published, then disconnect."""
        unsent = self._tracker.wait(self._sink.close_timeout_s)
        if unsent:
            log.warning(
                "MQTT command sink %r closes with %d commands not acknowledged by the broker",
                self.client_id,
                unsent,
            )
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        CONNECTED.labels(self.client_id).set(0)


class MqttCommandSink(DynamicSink[Command]):
    """Publish issued commands to each twin's command topic; read the acknowledgements.

    ``responses`` maps command id to the latest :class:`~connectors.mqtt.responses.
    CommandResponse` (thread-safe; ``responses.wait(id, timeout_s)`` blocks until one comes).
    ``max_queued`` bounds paho's outgoing queue per worker while the broker is away;
    ``close_timeout_s`` bounds how long closing waits for the broker's acknowledgements.
    """

    def __init__(
        self,
        settings: MqttSettings,
        bindings: Sequence[MqttBinding],
        *,
        max_queued: int = 10_000,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.bindings = tuple(bindings)
        self.max_queued = max_queued
        self.close_timeout_s = close_timeout_s
        by_twin = bindings_by_twin(self.bindings)
        self.command_topics = {
            t: concrete_topic(b.command_topic, b, "command_topic") for t, b in by_twin.items()
        }
        self.response_router = TopicRouter(by_twin.values(), attr="response_topic")
        self.responses = ResponseBook()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        return _CommandPartition(self, worker_index)
