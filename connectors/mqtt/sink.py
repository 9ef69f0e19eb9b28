"""Commands out to devices over MQTT, and the devices' responses back: :class:`MqttCommandSink`.

Each worker's partition owns a paho client (client id ``<client_id>-commands-<worker>``) and
a small dispatcher thread, so ``write_batch`` never waits for the network. The checks (binding,
twin type and catalogue: REJECTED; expiry: EXPIRED), the replay guard and the retry pacing are
:class:`~twinflow.connectors.command_sink.CommandSink`'s; then the command's versioned JSON
(``Command.to_json()``) is published at QoS 1 to the twin's ``command_topic``. Outcomes go to
the :class:`~twinflow.connectors.feedback.CommandFeedback` given as ``feedback``:

- SENT (with the attempt number) when the broker acknowledged the publish (PUBACK);
- an attempt fails when the broker is not connected within ``connect_wait_s``, when paho
  refuses the publish (its queue is full) or when no PUBACK comes within
  ``ack_timeout_s``; it is retried with
  :class:`~twinflow.core.backoff.Backoff` until the attempts run out (FAILED "gave up after
  N attempts: <last error>") or ``expires_at`` passes (EXPIRED);
- the partition of worker 0 subscribes, in a persistent session, to every twin's
  ``response_topic``: a device's ``acknowledged`` (or ``accepted``) response becomes
  ACKNOWLEDGED, ``succeeded`` SUCCEEDED and ``failed`` FAILED (see
  :mod:`twinflow.connectors.mqtt.responses`).

A command id the sink has taken on before (a Bytewax replay) is not published again. paho
resends a QoS 1 publish that was in flight when the connection broke after reconnecting,
so a device may see a command twice; devices treat a repeated id as the same command.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client import Counter

from twinflow.connectors import connection_state
from twinflow.connectors.bindings import MqttBinding, MqttSettings
from twinflow.connectors.command_sink import CommandPartition, CommandSink
from twinflow.connectors.feedback import CommandFeedback
from twinflow.connectors.mqtt.client import (
    CONNECTED,
    RECONNECTS,
    is_failure,
    make_client,
    paho,
    subscribe_options,
)
from twinflow.connectors.mqtt.responses import report_response
from twinflow.connectors.mqtt.topics import TopicRouter, bindings_by_twin, concrete_topic
from twinflow.core.backoff import DEFAULT_BACKOFF, Backoff
from twinflow.core.records import Command, CommandStatus
from twinflow.core.times import epoch

log = logging.getLogger(__name__)

COMMANDS_OUT = Counter(
    "twinflow_mqtt_commands",
    "Commands handed to the MQTT sink, by outcome: published (acknowledged by the broker), "
    "retried, gave_up, unknown_twin, rejected, expired, duplicate, ignored (not queued)",
    ["outcome"],
)
#: The shared sink's events that this metric names otherwise (the sink reports no other status
#: than sent, failed, rejected and expired; the devices' answers are counted as responses).
_OUTCOME_OF = {"sent": "published", "failed": "gave_up"}

#: QoS of command publishes.
COMMAND_QOS = 1


@dataclass(slots=True)
class _Job:
    """One command on its way to the broker."""

    command: Command
    topic: str
    payload: str
    attempt: int = 0
    last: str = ""


class _CommandPartition(CommandPartition[_Job]):
    """One worker's publisher and dispatcher (and, on worker 0, the response listener)."""

    def __init__(self, sink: MqttCommandSink, worker_index: int) -> None:
        super().__init__(sink)
        self._sink = sink
        self._listen = worker_index == 0
        self.client_id = f"{sink.settings.client_id}-commands-{worker_index}"
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Job]] = []  # heap of (monotonic due, seq, job)
        self._awaiting: dict[int, tuple[_Job, float]] = {}  # mid -> (job, PUBACK deadline)
        self._overdue: OrderedDict[int, _Job] = OrderedDict()  # mid -> job, PUBACK late
        self._early: dict[int, Any] = {}  # mid -> reason code, PUBACK before publish returned
        self._seq = itertools.count()
        self._busy = 0  # jobs the dispatcher took off the heap and is attempting now
        self._connections = 0
        self._closing = False
        self._client = make_client(
            sink.settings,
            self.client_id,
            v5=True,
            persistent=self._listen,
            max_queued=sink.max_queued,
        )
        self._peer = f"{sink.settings.host}:{sink.settings.port}"
        self._failures = 0
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.loop_start()
        self._thread = threading.Thread(
            target=self._dispatch, name=f"twinflow-mqtt-{self.client_id}", daemon=True
        )
        self._thread.start()

    # -- paho's thread ------------------------------------------------------------------

    def _on_connect(self, client: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if is_failure(reason):
            log.error("MQTT command sink %r: connection refused: %s", self.client_id, reason)
            return
        self._connections += 1
        self._failures = 0
        if self._connections > 1:
            RECONNECTS.labels(self.client_id).inc()
        CONNECTED.labels(self.client_id).set(1)
        connection_state.up("mqtt", "sink", self._peer, reconnected=self._connections > 1)
        if self._listen:
            opts = subscribe_options(self._sink.settings.qos)
            client.subscribe([(f, opts) for f in self._sink.response_router.filters])
        with self._cond:
            self._cond.notify_all()

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        """A connection attempt failed: said once per outage, then at debug level."""
        self._failures += 1
        connection_state.down("mqtt", "sink", self._peer)
        log.log(
            logging.WARNING if self._failures == 1 else logging.DEBUG,
            "MQTT command sink %r cannot reach the broker at %s; retrying with backoff",
            self.client_id,
            self._peer,
        )

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        CONNECTED.labels(self.client_id).set(0)
        if not self._closing:
            connection_state.down("mqtt", "sink", self._peer)
            log.warning(
                "MQTT command sink %r lost the broker (%s); reconnecting", self.client_id, reason
            )

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._cond:
            found = self._awaiting.pop(mid, None)
            job = found[0] if found is not None else self._overdue.pop(mid, None)
            if job is None:
                self._early[mid] = reason
                while len(self._early) > 10_000:
                    del self._early[next(iter(self._early))]
                return
            self._cond.notify_all()
        self._acked(job, reason)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "?"
        sink = self._sink
        report_response(topic, msg.payload, sink.response_router, sink.feedback, sink.clock())

    # -- Bytewax's thread ---------------------------------------------------------------

    def submit(self, command: Command, plan: _Job) -> None:
        self._schedule(plan, 0.0)

    def close(self) -> None:
        """Wait (up to the sink's ``close_timeout_s``) for the commands on their way, then
        disconnect; commands still retrying get no further outcome."""
        deadline = time.monotonic() + self._sink.close_timeout_s
        with self._cond:
            self._cond.wait_for(
                lambda: not (self._due or self._awaiting or self._busy),
                deadline - time.monotonic(),
            )
            left = len(self._due) + len(self._awaiting) + self._busy
            self._closing = True
            self._cond.notify_all()
        if left:
            log.warning(
                "MQTT command sink %r closes with %d commands not acknowledged by the broker",
                self.client_id,
                left,
            )
        self._thread.join(5.0)
        self._client.disconnect()
        self._client.loop_stop()
        CONNECTED.labels(self.client_id).set(0)
        connection_state.forget("mqtt", "sink", self._peer)

    # -- the dispatcher thread ----------------------------------------------------------

    def _schedule(self, job: _Job, delay_s: float) -> None:
        with self._cond:
            heapq.heappush(self._due, (time.monotonic() + delay_s, next(self._seq), job))
            self._cond.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                if self._closing:
                    return
                now = time.monotonic()
                ready: list[_Job] = []
                while self._due and self._due[0][0] <= now:
                    ready.append(heapq.heappop(self._due)[2])
                late = [m for m, (_, deadline) in self._awaiting.items() if deadline <= now]
                overdue = [self._awaiting.pop(m)[0] for m in late]
                for m, job in zip(late, overdue, strict=True):
                    self._overdue[m] = job  # a late PUBACK still reports SENT
                while len(self._overdue) > 10_000:
                    self._overdue.popitem(last=False)
                self._busy = len(ready) + len(overdue)
                if not self._busy:
                    waits = [self._due[0][0] - now] if self._due else []
                    waits += [d - now for _, d in self._awaiting.values()]
                    self._cond.wait(min([0.25, *waits]))
                    continue
            timeout = self._sink.ack_timeout_s
            for job in overdue:
                self._failed_attempt(job, f"no PUBACK from the broker within {timeout:g} s")
            for job in ready:
                self._attempt(job)
            with self._cond:
                self._busy = 0
                self._cond.notify_all()

    def _attempt(self, job: _Job) -> None:
        sink = self._sink
        if sink.expire_if_due(job.command, job.attempt, job.last):
            return
        job.attempt += 1
        wait_s = min(sink.connect_wait_s, max(0.0, epoch(job.command.expires_at) - sink.clock()))
        with self._cond:  # on_connect wakes this up
            self._cond.wait_for(lambda: self._closing or self._client.is_connected(), wait_s)
        if not self._client.is_connected():
            s = sink.settings
            self._failed_attempt(job, f"not connected to the broker {s.host}:{s.port}")
            return
        info = self._client.publish(job.topic, job.payload, qos=COMMAND_QOS)
        mqtt = paho()
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self._failed_attempt(job, f"paho's outgoing queue is full ({sink.max_queued})")
            return
        with self._cond:
            reason = self._early.pop(info.mid, None)
            if reason is None:
                self._awaiting[info.mid] = (job, time.monotonic() + sink.ack_timeout_s)
                return
        self._acked(job, reason)

    def _acked(self, job: _Job, reason: Any) -> None:
        if is_failure(reason):
            detail = f"the broker refused the publish: {reason}"
            self._sink.report(job.command, CommandStatus.FAILED, detail, attempt=job.attempt)
            return
        detail = f"published to {job.topic!r}, acknowledged by the broker"
        self._sink.report(job.command, CommandStatus.SENT, detail, attempt=job.attempt)

    def _failed_attempt(self, job: _Job, why: str) -> None:
        job.last = why
        pause = self._sink.retry_after(job.command, job.attempt, why)
        if pause is not None:
            self._schedule(job, pause)


class MqttCommandSink(CommandSink[MqttBinding, _Job]):
    """Publish queued commands to each twin's command topic; read the devices' responses.

    ``feedback`` receives the outcomes (see the module docstring); ``backoff`` paces the
    attempts; ``connect_wait_s`` is how long one attempt waits for a connection to the
    broker, ``ack_timeout_s`` how long it waits for the broker's PUBACK;
    ``clock`` (epoch seconds) judges expiry. ``max_queued`` bounds paho's outgoing queue per
    worker; ``close_timeout_s`` bounds how long closing waits for commands on their way.
    """

    protocol: ClassVar[str] = "MQTT"

    def __init__(
        self,
        settings: MqttSettings,
        bindings: Sequence[MqttBinding],
        *,
        feedback: CommandFeedback | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        ack_timeout_s: float = 10.0,
        connect_wait_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        max_queued: int = 10_000,
        close_timeout_s: float = 5.0,
        max_ids: int = 100_000,
    ) -> None:
        by_twin = bindings_by_twin(bindings)  # refuses a twin bound twice
        super().__init__(bindings, feedback=feedback, backoff=backoff, clock=clock, max_ids=max_ids)
        self.settings = settings
        self.ack_timeout_s = ack_timeout_s
        self.connect_wait_s = connect_wait_s
        self.max_queued = max_queued
        self.close_timeout_s = close_timeout_s
        self.command_topics = {
            t: concrete_topic(b.command_topic, b, "command_topic") for t, b in by_twin.items()
        }
        self.response_router = TopicRouter(by_twin.values(), attr="response_topic")

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        return _CommandPartition(self, worker_index)

    def plan(self, command: Command, binding: MqttBinding) -> _Job:
        payload = json.dumps(command.to_json(), separators=(",", ":"))
        return _Job(command, self.command_topics[command.twin_id], payload)

    def count(self, event: str, status: CommandStatus | None = None) -> None:
        COMMANDS_OUT.labels(_OUTCOME_OF.get(event, event)).inc()
