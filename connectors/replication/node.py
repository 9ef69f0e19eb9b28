"""One process's part in replication: its replica, link, sync status and what the flow asks.

A :class:`ReplicationNode` is what the flow's replication steps call (they run on Bytewax's
worker threads; the link receives on its own threads, so every call here is thread-safe):

- :meth:`forward` (an edge): a record of a forwarded stream becomes property writes
  (:func:`~twinflow.connectors.replication.forward.writes_of`), each sent only when its
  value changed;
- :meth:`desire`: a desired change made here (a request of this instance) becomes a desired
  write, tracked with its property's consistency;
- :meth:`take_desired` (an edge): the desired writes received from the link that won, for
  twins this edge owns, as :class:`DesiredChange` items for its command loop (issued once:
  a write is handed over once, and its update id is the request id, so the command id is
  the same however often it is replayed);
- :meth:`take_received`: every received write that was new here, to store (central);
- :attr:`feeds` (central): the writes of the roll-ups across sites and the received
  telemetry buckets (:class:`~twinflow.connectors.replication.feeds.CentralFeeds`);
- :meth:`sync_status`: the :class:`PropertySync` of every tracked property, also published
  as metrics;
- :meth:`settled`: whether a finite run may end (nothing left to send, hand over or store,
  and nothing written or received for a while).

With ``state_path`` the replica's state is loaded at :meth:`start`, saved every
``snapshot_interval_s`` and at :meth:`stop`; a replica that starts empty asks its peers for
their state (:mod:`~twinflow.connectors.replication.state`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Gauge, Histogram

from twinflow.connectors.replication.feeds import CentralFeeds
from twinflow.connectors.replication.forward import ACCEPTED, ANSWERS, CommandProgress, writes_of
from twinflow.connectors.replication.link import ReplicaLink
from twinflow.connectors.replication.outbox import Entry
from twinflow.connectors.replication.state import load_state, save_state, state_writes
from twinflow.core.records import Command, DesiredChange
from twinflow.core.times import utc
from twinflow.operators.command_book import desired_command_id
from twinflow.operators.replication import Applied, PropertyKey, Write
from twinflow.operators.replication.compact import decode_row
from twinflow.operators.replication.fleet import LinkNow, site_twin, tracked
from twinflow.operators.replication.hlc import wall_clock_ms
from twinflow.operators.replication.register import canonical
from twinflow.operators.replication.status import PropertySync, SyncTracker, summary
from twinflow.operators.replication.update import update_doc, update_id

SYNC = Gauge(
    "twinflow_replication_sync_properties",
    "Replicated properties by sync state (in_sync, pending, conflict, link_down)",
    ["replica", "state"],
)
LAG = Gauge(
    "twinflow_replication_pending_lag_seconds",
    "How long the oldest unconfirmed write of a property has waited",
    ["replica"],
)
DOWN_SINCE = Gauge(
    "twinflow_replication_link_down_since_seconds",
    "Epoch seconds at which the replication link went down (0 while it is up)",
    ["replica"],
)
log = logging.getLogger(__name__)

ACCEPT = Histogram(
    "twinflow_replication_accept_seconds",
    "From a desired write to the owning edge's answer through its command loop",
    ["replica", "consistency"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

ROLES = ("edge", "central")


@dataclass(frozen=True, slots=True)
class Received:
    """A received write that was new to this replica (won or lost), as stored centrally."""

    write: Write
    outcome: Applied
    replica: str
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        """The ``twin_update.v1`` document with ``outcome``, ``received_by``, ``received_at_ms``."""
        return {
            **update_doc(self.write),
            "outcome": self.outcome.value,
            "received_by": self.replica,
            "received_at_ms": self.at_ms,
        }


class ReplicationNode:
    """The replica, link and sync status of one twinflow process (see the module docstring).

    ``role`` is ``edge`` or ``central``; ``owned`` maps the twins this replica commands to
    their type (an edge's own twins; empty for central); ``consistency(twin_id, prop)``
    gives a desired property's consistency; ``forward`` names the streams an edge forwards;
    ``desired_ttl_s`` is how long a desired change handed to the command loop may wait;
    ``queue`` bounds the received items waiting for the flow (and the pending answers);
    ``state_path`` is the replica's snapshot file (``None``: the state lives in memory only),
    saved every ``snapshot_interval_s``; ``ask_state`` asks the peers for their state when
    the replica starts empty. ``silent_after_s`` is how long a site may send nothing before
    the central roll-ups read its link ``silent``; ``telemetry_every_s`` the bucket of
    downsampled telemetry an edge forwards; ``report_link``: an edge writes its link's state
    at each :meth:`sync_status` when it changed (for the central roll-ups).
    """

    def __init__(
        self,
        link: ReplicaLink,
        role: str,
        *,
        owned: Mapping[str, str] | None = None,
        consistency: Callable[[str, str], str] = lambda _t, _p: "eventual",
        forward: Sequence[str] = (),
        desired_ttl_s: float = 600.0,
        now_ms: Callable[[], int] = wall_clock_ms,
        queue: int = 100_000,
        state_path: Path | None = None,
        snapshot_interval_s: float = 30.0,
        ask_state: bool = False,
        silent_after_s: float = 60.0,
        telemetry_every_s: float = 60.0,
        report_link: bool = False,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"replication role must be one of {ROLES}, got {role!r}")
        self.link = link
        self.replica = link.replica
        self.role = role
        self.owned = dict(owned or {})
        self.consistency = consistency
        self.forward_streams = tuple(forward)
        self.desired_ttl_s = desired_ttl_s
        self.now_ms = now_ms
        self.tracker = SyncTracker(self.replica.replica_id)
        self._lock = threading.Lock()
        self._desired: deque[DesiredChange] = deque()
        self._received: deque[Received] = deque()
        self.silent_after_s = silent_after_s
        self.telemetry_every_s = telemetry_every_s
        self.report_link = report_link
        self._link_reported = ""
        self.feeds = CentralFeeds(self.replica.replica_id, queue)
        #: Received writes not handed to the flow because ``queue`` were waiting already.
        self.dropped = 0
        self._sent_values: dict[tuple[str, str, str], str] = {}
        self._commands = CommandProgress()
        #: Commands that carry a received desired write: command id -> (prop, update id).
        self._expected: dict[str, tuple[str, str]] = {}
        self._written_ms: dict[str, tuple[int, str]] = {}
        self._cap = queue
        self.state_path = state_path
        self.snapshot_interval_s = snapshot_interval_s
        self.ask_state = ask_state
        #: Writes loaded from the snapshot at start, and the state request sent (if any).
        self.loaded = 0
        self.asked: Write | None = None
        self._active = time.monotonic()
        self._stopping = threading.Event()
        #: How long :meth:`stop` waits for the outbox to drain (a finite run's end).
        self.drain_s = 0.0
        self._saver: threading.Thread | None = None
        link.on_applied = self._applied
        link.on_sent = self._sent

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> ReplicationNode:
        """Load the snapshot, start the link (connects and sends in the background), ask
        the peers for their state if the replica is still empty, and start saving."""
        if self.state_path is not None:
            with self.link.lock:
                self.loaded = load_state(self.replica, self.state_path)
            self._stopping.clear()
            self._saver = threading.Thread(
                target=self._save_loop, name=f"replica-state-{self.replica.replica_id}",
                daemon=True,
            )  # fmt: skip
            self._saver.start()
        if self.ask_state and not self.replica.registers():
            self.asked = self.link.request_state()
        self.link.start()
        return self

    def stop(self) -> None:
        """Stop the link, save the state and close the outbox (what was not sent stays on
        disk)."""
        self._stopping.set()
        if self._saver is not None:
            self._saver.join(timeout=30)
        deadline = time.monotonic() + self.drain_s
        while self.link.outbox.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        self.link.stop()
        self.save()
        self.link.outbox.close()

    def save(self) -> int:
        """Save the replica's state to ``state_path`` now (0 without one)."""
        if self.state_path is None:
            return 0
        writes = state_writes(self.replica, self.link.lock)
        return save_state(writes, self.state_path)

    def _save_loop(self) -> None:
        while not self._stopping.wait(self.snapshot_interval_s):
            try:
                self.save()
            except OSError as exc:  # a full disk must not stop replication
                log.warning("replication %s: state not saved: %s", self.replica.replica_id, exc)

    def settled(self, quiet_s: float = 2.0) -> bool:
        """Whether a finite run of this node may end: the outbox is drained (the broker
        acknowledged every write), nothing waits for the flow, and nothing was written or
        received for ``quiet_s`` seconds."""
        with self._lock:
            waiting = len(self._desired) + len(self._received) + self.feeds.waiting()
            idle = time.monotonic() - self._active
        return waiting == 0 and self.link.outbox.pending == 0 and idle >= quiet_s

    # -- from the flow ----------------------------------------------------------------------

    def forward(self, record: object) -> int:
        """Write the properties that forward ``record`` (unchanged values are skipped);
        returns how many were written."""
        twin = getattr(record, "twin_id", None)
        if not isinstance(twin, str):
            return 0
        if isinstance(record, Command) and not self._commands.is_news(record):
            return 0  # a history row learnt late: the register keeps the furthest status
        n = 0
        for kind, name, value in writes_of(record, self.forward_streams):
            text = canonical(value)
            slot = (twin, kind, name)
            with self._lock:
                if self._sent_values.get(slot) == text:
                    continue
                self._sent_values[slot] = text
            self.link.write(twin, kind, name, value)
            self._active = time.monotonic()
            n += 1
        if isinstance(record, Command):
            n += self._answer(record)
        return n

    def _answer(self, command: Command) -> int:
        """Answer a received desired write once its command was accepted or refused."""
        with self._lock:
            expected = self._expected.get(command.command_id)
            if expected is None or command.status not in ANSWERS:
                return 0
            del self._expected[command.command_id]
            prop, uid = expected
            if command.status in ACCEPTED:  # an answer to a change made here, too
                key = PropertyKey(command.twin_id, "desired", prop)
                self.tracker.accepted(key, uid, self.now_ms())
            self._observe_accept(uid, self.now_ms())
        answer = {"update_id": uid, "status": command.status.value, "command": command.command_id}
        self.link.write(command.twin_id, "metadata", f"accepted:{prop}", answer)
        return 1

    def desire(self, change: DesiredChange) -> Write | None:
        """A desired change made at this replica: write it (a change that came from the
        link itself is not written again)."""
        if change.source == "replication":
            return None
        w = self.link.write(change.twin_id, "desired", change.prop, change.value)
        self._active = time.monotonic()
        level = self.consistency(change.twin_id, change.prop)
        uid = update_id(w)
        with self._lock:
            self.tracker.wrote(w, level, self.now_ms())
            self._written_ms[uid] = (self.now_ms(), level)
            while len(self._written_ms) > self._cap:
                del self._written_ms[next(iter(self._written_ms))]
            if change.twin_id in self.owned:  # this edge's own command loop answers it
                cid = desired_command_id(change.twin_id, change.prop, change.request_id)
                self._expected[cid] = (change.prop, uid)
        return w

    def take_desired(self, limit: int = 1000) -> list[DesiredChange]:
        """Received desired writes for this edge's twins, oldest first."""
        with self._lock:
            n = min(limit, len(self._desired))
            return [self._desired.popleft() for _ in range(n)]

    def take_received(self, limit: int = 1000) -> list[Received]:
        """Received writes that were new here, oldest first."""
        with self._lock:
            n = min(limit, len(self._received))
            return [self._received.popleft() for _ in range(n)]

    def watch_fleet(self) -> None:
        """Start the roll-ups' feed (:attr:`feeds`) with the replica's current registers."""
        with self.link.lock:  # no write is merged between the registers and the feed
            held = [w[0] for k, w in self.replica.registers().items() if tracked(k.kind, k.name)]
            self.feeds.watch_fleet(held)

    def link_now(self) -> LinkNow:
        """This replica's link now: up or down since when, and its outbox's pending writes."""
        now = self.now_ms()
        with self._lock:
            self.tracker.link(self.link.connected, now)
            down = self.tracker.link_down_since_ms
        return LinkNow(now, down is None, down, self.link.outbox.pending)

    def sync_status(self) -> list[PropertySync]:
        """Every tracked property's sync status now; the metrics follow."""
        now = self.now_ms()
        rid = self.replica.replica_id
        with self._lock:
            self.tracker.link(self.link.connected, now)
            with self.link.lock:
                statuses = self.tracker.status(self.replica, now)
            down = self.tracker.link_down_since_ms
        counts, lag = summary(statuses)
        for state in ("in_sync", "pending", "conflict", "link_down"):
            SYNC.labels(rid, state).set(counts.get(state, 0))
        LAG.labels(rid).set(lag / 1000)
        DOWN_SINCE.labels(rid).set(0 if down is None else down / 1000)
        if self.report_link and self.role == "edge":
            self._report_link(down, now)
        return statuses

    def _report_link(self, down: int | None, now: int) -> None:
        """An edge's own link as a write of its site twin (``_site:<replica>``,
        ``metadata/link``: connected, down since, pending writes) when it changed: what the
        central roll-ups show of it once it arrives."""
        doc = {
            "connected": down is None,
            "down_since_ms": down,
            "pending": self.link.outbox.pending,
        }
        text = canonical(doc)
        if text == self._link_reported:
            return
        self._link_reported = text
        self.link.write(
            site_twin(self.replica.replica_id), "metadata", "link", {**doc, "at_ms": now}
        )

    # -- from the link (its threads) --------------------------------------------------------

    def _sent(self, entries: Sequence[Entry]) -> None:
        now = self.now_ms()
        with self._lock:
            for e in entries:
                twin, kind, name = e.key.split("/", 2)
                if kind == "desired":
                    uid = _update_id_of(e.payload)
                    self.tracker.sent(PropertyKey(twin, kind, name), uid, now)

    def _applied(self, write: Write, outcome: Applied) -> None:
        self._active = time.monotonic()
        if outcome not in (Applied.WON, Applied.LOST):
            return  # a duplicate or stale write changes nothing
        now = self.now_ms()
        key = write.key
        self.feeds.applied(write, outcome, now)
        with self._lock:
            self._queue(self._received, Received(write, outcome, self.replica.replica_id, now))
            if outcome is Applied.WON and key.kind == "desired":
                self.tracker.received(write, now, self.consistency(key.twin_id, key.name))
                if key.twin_id in self.owned:
                    self._hand_over(write, now)
            if key.kind == "metadata" and key.name.startswith("accepted:"):
                self._accepted(write, now)

    def _queue(self, queue: deque[Any], item: Any) -> None:
        """Queue an item for the flow; a full queue drops the oldest, counted and logged
        (lock held): the flow drains far faster than a link delivers, unless it is stuck."""
        if len(queue) >= self._cap:
            queue.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning(
                    "replication %s: the flow is not taking received writes; %d dropped",
                    self.replica.replica_id,
                    self.dropped,
                )
        queue.append(item)

    def _hand_over(self, write: Write, now: int) -> None:
        """A won desired write for an owned twin: to the command loop (lock held)."""
        value = write.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return  # desired values the command loop takes are numbers
        uid = update_id(write)
        key = write.key
        at = utc(now / 1000)
        change = DesiredChange(
            key.twin_id,
            self.owned[key.twin_id],
            key.name,
            float(value),
            at,
            uid,
            at + timedelta(seconds=self.desired_ttl_s),
            source="replication",
        )
        self._expected[desired_command_id(key.twin_id, key.name, uid)] = (key.name, uid)
        while len(self._expected) > self._cap:
            del self._expected[next(iter(self._expected))]
        self._queue(self._desired, change)

    def _accepted(self, write: Write, now: int) -> None:
        """An edge's answer to a desired write (lock held)."""
        answer = write.value
        if not isinstance(answer, dict):
            return
        prop = write.key.name.split(":", 1)[1]
        uid = str(answer.get("update_id"))
        key = PropertyKey(write.key.twin_id, "desired", prop)
        if answer.get("status") in {s.value for s in ACCEPTED}:
            self.tracker.accepted(key, uid, now)
        self._observe_accept(uid, now)

    def _observe_accept(self, uid: str, now: int) -> None:
        """The time from a desired write made here to its answer (lock held)."""
        written = self._written_ms.pop(uid, None)
        if written is not None:
            ACCEPT.labels(self.replica.replica_id, written[1]).observe((now - written[0]) / 1000)


def _update_id_of(payload: bytes) -> str:
    """The update id of an outbox payload (a ``twin_updates.v2`` row, or a
    ``twin_update.v1`` document written by an earlier version)."""
    doc = orjson.loads(payload)
    if isinstance(doc, list):
        return update_id(decode_row(doc))
    return str(doc.get("update_id")) if isinstance(doc, dict) else ""


__all__ = ["ROLES", "Received", "ReplicationNode"]
