"""One server's subscription kept alive from a thread of its own, feeding a bounded queue.

asyncua runs on asyncio and Bytewax calls sources synchronously, so each
:class:`Subscriber` runs an event loop in a daemon thread. It connects, creates one
subscription (publishing interval = the smallest sampling interval of its bindings) with a
monitored item per bound node, and puts what arrives on a thread-safe queue:

- :class:`Chunk`: the data changes of one publish response, as compact tuples;
- :class:`Lost`: the session was lost at ``at`` (epoch seconds);
- :class:`~twinflow.core.records.DeadLetter`: a node the server refused to monitor.

A lost session is noticed by a socket error, a bad subscription status change, asyncua's
connection watchdog, or by silence: the server must answer a publish request at least
every keep-alive period, so no answer for two periods means the link is dead. Then the
client is dropped and a new session and subscription are made, with exponential backoff
between attempts. Nothing escapes the thread: every failure is logged and retried. While the
subscription is up, the session is lent to the command sink of the process (a
:class:`~twinflow.connectors.shared_connections.Link`, registered from :meth:`Subscriber.start`
to the end of the thread), which writes over it on this loop.

When the queue is full the publish callback waits for room, which stops the publish
requests, so the server holds (and, past its monitored items' queues, drops the oldest of)
the changes: back-pressure the OPC UA way, never unbounded memory here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC

from twinflow.connectors import connection_state
from twinflow.connectors.opcua.connection import (
    Client,
    Endpoint,
    close_quietly,
    link_key,
    open_client,
    parse_node,
    ua,
)
from twinflow.connectors.opcua.frames import SOURCE, Change, Target
from twinflow.connectors.opcua.metrics import DATACHANGES, RECONNECTS
from twinflow.connectors.shared_connections import Link, close_link, open_link
from twinflow.core.backoff import Backoff
from twinflow.core.records import DeadLetter
from twinflow.core.redact import redact
from twinflow.core.times import utc

log = logging.getLogger(__name__)

_DataChange = ua.DataChangeNotification
_StatusChange = ua.StatusChangeNotification
#: A server that refuses a data change filter answers with one of these.
_FILTER_REFUSED = frozenset(
    (
        ua.StatusCodes.BadMonitoredItemFilterUnsupported,
        ua.StatusCodes.BadMonitoredItemFilterInvalid,
        ua.StatusCodes.BadFilterNotAllowed,
    )
)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Timing and sizing of one server link (see :class:`twinflow.connectors.opcua.OpcUaSource`)."""

    request_timeout_s: float = 4.0
    keepalive_s: float = 5.0
    session_timeout_s: float = 60.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    monitored_queue_size: int = 1000
    max_notifications: int = 10_000


@dataclass(frozen=True, slots=True)
class Chunk:
    """The data changes of one publish response; ``arrived`` is ``time.monotonic()``."""

    arrived: float
    changes: list[Change]


@dataclass(frozen=True, slots=True)
class Lost:
    """The session to the server was lost at ``at`` (epoch seconds)."""

    at: float


Item = Chunk | Lost | DeadLetter


class Subscriber:
    """Keeps a subscription to every target of ``endpoint`` alive; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        targets: Sequence[Target],
        out: queue.Queue[Item],
        settings: LinkSettings,
    ) -> None:
        self.endpoint = endpoint
        self.targets = tuple(targets)
        self.out = out
        self.settings = settings
        #: Set while a session with a live subscription exists.
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_publish = 0.0
        self._silence_limit = math.inf
        self._bindings = {b.twin_id: b for b in endpoint.bindings}
        self._nodes = [parse_node(t.node, t.twin_id, "node") for t in self.targets]
        self._link: Link[Client] | None = None

    # -- control, from any thread --------------------------------------------------------

    def start(self) -> None:
        """Start the link's thread (it connects in the background and keeps retrying)."""
        if self._thread is None:
            self._link = open_link("opcua", link_key(self.endpoint), self.endpoint.label)
            self._thread = threading.Thread(
                target=asyncio.run,
                args=(self._main(),),
                name=f"twinflow-opcua {self.endpoint.label}",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the session and end the thread (waits at most ``timeout_s``)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._link is not None:
            close_link(self._link)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the loop ------------------------------------------------------------------------

    async def _main(self) -> None:
        s = self.settings
        backoff = Backoff(s.reconnect_min_s, s.reconnect_max_s, jitter=0.0).cursor()
        label = self.endpoint.label
        was_up = False
        failures = 0
        while not self.stopping:
            client: Client | None = None
            lost = asyncio.Event()
            up = False
            try:
                budget = 2 * s.request_timeout_s + 1.0
                client = await asyncio.wait_for(
                    open_client(self.endpoint, s.request_timeout_s, s.session_timeout_s), budget
                )
                _on_connection_lost(client, lost)
                await asyncio.wait_for(self._subscribe(client, lost), budget)
                up = True
                connection_state.up("opcua", "source", label, reconnected=was_up)
                if was_up:
                    RECONNECTS.labels(label).inc()
                    log.info("OPC UA %s: reconnected and resubscribed", label)
                else:
                    log.info("OPC UA %s: subscribed to %d node(s)", label, len(self.targets))
                was_up, failures = True, 0
                backoff.reset()
                self.connected.set()
                if self._link is not None:
                    self._link.attach(asyncio.get_running_loop(), client)
                await self._watch(lost)
                if not self.stopping:
                    log.warning("OPC UA %s: connection lost; reconnecting", label)
            except Exception as exc:  # every failure is retried; none leaves the thread
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "OPC UA %s: connection failed (%d in a row): %s",
                    label,
                    failures,
                    redact(repr(exc)),
                )
            finally:
                self.connected.clear()
                if self._link is not None:
                    self._link.detach()
                if not self.stopping:
                    connection_state.down("opcua", "source", label)
                if up and not self.stopping:
                    await self._put(Lost(time.time()))
                if client is not None:
                    await close_quietly(client, s.request_timeout_s)
            if not self.stopping:
                await self._sleep(backoff.next())
        if self._link is not None:
            close_link(self._link)
        connection_state.forget("opcua", "source", label)

    async def _subscribe(self, client: Client, lost: asyncio.Event) -> None:
        s = self.settings
        interval = float(min(b.sampling_interval_ms for b in self.endpoint.bindings))
        keepalive = max(1, math.ceil(s.keepalive_s * 1000.0 / interval))
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = interval
        params.RequestedMaxKeepAliveCount = keepalive
        params.RequestedLifetimeCount = keepalive * 10
        params.MaxNotificationsPerPublish = s.max_notifications
        params.PublishingEnabled = True
        params.Priority = 0
        self._last_publish = time.monotonic()

        def on_publish(result: ua.PublishResult) -> object:
            return self._on_publish(result, lost)

        created = await client.uaclient.create_subscription(params, on_publish)
        period_s = created.RevisedPublishingInterval * created.RevisedMaxKeepAliveCount / 1000.0
        self._silence_limit = 2.0 * max(period_s, interval / 1000.0) + s.request_timeout_s
        refused = await self._monitor(client, created.SubscriptionId, range(len(self.targets)))
        unfiltered = [i for i, c in refused if c.value in _FILTER_REFUSED and not self._deadband(i)]
        if unfiltered:  # a server without the timestamp trigger: report value changes only
            refused = [(i, c) for i, c in refused if i not in unfiltered]
            refused += await self._monitor(client, created.SubscriptionId, unfiltered, False)
        for i, code in refused:
            await self._put(self._refused(self.targets[i], code))

    async def _monitor(
        self, client: Client, subscription: int, indexes: Iterable[int], trigger: bool = True
    ) -> list[tuple[int, ua.StatusCode]]:
        """Create the monitored items of ``indexes``; returns the refused ones."""
        indexes = list(indexes)
        request = ua.CreateMonitoredItemsParameters()
        request.SubscriptionId = subscription
        request.TimestampsToReturn = ua.TimestampsToReturn.Both
        request.ItemsToCreate = [self._item(i, trigger) for i in indexes]
        results = await client.uaclient.create_monitored_items(request)
        return [
            (i, r.StatusCode)
            for i, r in zip(indexes, results, strict=True)
            if not r.StatusCode.is_good()
        ]

    def _deadband(self, index: int) -> float:
        return float(self._bindings[self.targets[index].twin_id].deadband)

    def _item(self, index: int, trigger: bool = True) -> ua.MonitoredItemCreateRequest:
        """The monitored item of one target.

        Without a deadband the trigger is status, value *or source timestamp*, so a value
        that stays the same is still reported each time the device stamps it (a constant
        setpoint must not look stale). With a deadband only value changes larger than it
        (or status changes) are reported. ``trigger=False`` asks for the server's default.
        """
        target = self.targets[index]
        binding = self._bindings[target.twin_id]
        read = ua.ReadValueId()
        read.NodeId = self._nodes[index]
        read.AttributeId = ua.AttributeIds.Value
        params = ua.MonitoringParameters()
        params.ClientHandle = index
        params.SamplingInterval = float(binding.sampling_interval_ms)
        params.QueueSize = self.settings.monitored_queue_size
        params.DiscardOldest = True
        if binding.deadband > 0:
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValue
            flt.DeadbandType = ua.DeadbandType.Absolute
            flt.DeadbandValue = float(binding.deadband)
            params.Filter = flt
        elif trigger:
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValueTimestamp
            flt.DeadbandType = ua.DeadbandType.None_
            params.Filter = flt
        item = ua.MonitoredItemCreateRequest()
        item.ItemToMonitor = read
        item.MonitoringMode = ua.MonitoringMode.Reporting
        item.RequestedParameters = params
        return item

    def _refused(self, target: Target, status: ua.StatusCode) -> DeadLetter:
        return DeadLetter(
            stage="decode",
            reason=(
                f"twin {target.twin_id!r} signal {target.signal!r}: the OPC UA server at "
                f"{self.endpoint.label} refused to monitor node {target.node} "
                f"({status.name}); check the node id in the twin's binding"
            ),
            source=SOURCE,
            time=utc(time.time()),
            twin_id=target.twin_id,
            payload=target.node,
        )

    def _on_publish(self, result: ua.PublishResult, lost: asyncio.Event) -> object:
        """Turn one publish response into a chunk; runs on the loop for every response."""
        self._last_publish = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return None  # a keep-alive
        received = time.time()
        n = len(self.targets)
        changes: list[Change] = []
        append = changes.append
        for notification in data:
            if isinstance(notification, _DataChange):
                for item in notification.MonitoredItems:
                    handle = item.ClientHandle
                    if not 0 <= handle < n:
                        continue
                    dv = item.Value
                    variant = dv.Value
                    status = dv.StatusCode
                    stamp = dv.SourceTimestamp or dv.ServerTimestamp
                    if stamp is None:
                        t = received
                    else:
                        if stamp.tzinfo is None:
                            stamp = stamp.replace(tzinfo=UTC)
                        t = stamp.timestamp()
                        if t <= 0.0:
                            t = received
                    append(
                        (
                            handle,
                            None if variant is None else variant.Value,
                            0 if status is None else status.value,
                            t,
                        )
                    )
            elif isinstance(notification, _StatusChange) and not notification.Status.is_good():
                log.info(
                    "OPC UA %s: subscription status %s", self.endpoint.label, notification.Status
                )
                lost.set()
        if not changes:
            return None
        DATACHANGES.labels(self.endpoint.label).inc(len(changes))
        chunk = Chunk(time.monotonic(), changes)
        try:
            self.out.put_nowait(chunk)
        except queue.Full:
            return self._put(chunk)  # asyncua awaits it: publishing pauses until there is room
        return None

    async def _put(self, item: Item) -> None:
        """Queue ``item``, waiting for room (gives up only when the link stops)."""
        while not self.stopping:
            try:
                self.out.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.01)

    async def _watch(self, lost: asyncio.Event) -> None:
        """Return when the link is lost (event or silence) or stopping."""
        while not self.stopping and not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), 0.1)
            silent = time.monotonic() - self._last_publish
            if silent > self._silence_limit:
                log.warning(
                    "OPC UA %s: no publish response (nor keep-alive) for %.1f s",
                    self.endpoint.label,
                    silent,
                )
                return

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.1))


def _on_connection_lost(client: Client, lost: asyncio.Event) -> None:
    """Let asyncua's connection watchdog (asyncua >= 2) signal a loss."""

    async def lost_callback(exc: Exception) -> None:
        lost.set()

    client.connection_lost_callback = lost_callback
