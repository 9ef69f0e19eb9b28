"""The messages a Kafka sink partition accepted and the brokers have not acknowledged yet.

A bounded, ordered store (:class:`Outbox`) kept per *write*, not per message: the messages of
one ``write_batch`` form a :class:`Sent`, whose bound method :meth:`Sent.report` is the
delivery callback of each of them and only counts acknowledgements. A write leaves the
outbox, from the oldest on, once all its messages are acknowledged (:meth:`Outbox.collect`);
so the bookkeeping per message is one counter increment, with no Python object or sequence
number made per message.

The outbox is what a new producer sends again after the old one failed (in acceptance order,
so a twin's messages keep their order), and what a Bytewax snapshot keeps
(:meth:`Outbox.held`), so a flow resumed from recovery sends again what was accepted before
the snapshot but not acknowledged. Both take whole writes: a message acknowledged while
others of its write (or an older write) were not is sent again too, which at-least-once
delivery allows.

>>> box = Outbox(max_messages=2, max_bytes=100)
>>> w = box.open(0, lambda sent, error, msg: None)
>>> box.add(w, b"k", b"v1", []); box.add(w, b"k", b"v2", [])
>>> box.has_room(1), len(box)
(False, 2)
>>> w.report(None, None); box.seal(w); box.collect(), len(box)
(1, 2)
>>> w.report(None, None); box.collect(), box.held(), box.has_room(1)
(2, [], True)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

#: Kafka headers as confluent-kafka takes them.
Headers = list[tuple[str, str | bytes | None]]
#: One message: key, value, headers.
Held = tuple[bytes, bytes, Headers]
#: What a :class:`Sent` calls with a delivery error: (the write, the error, the message).
OnError = Callable[["Sent", Any, Any], None]


class Tally:
    """Acknowledgements counted across the writes of one outbox (progress, for stall checks)."""

    __slots__ = ("acked",)

    def __init__(self) -> None:
        self.acked = 0


class Sent:
    """The messages of one write, the producer generation that sent them, acks counted."""

    __slots__ = ("acked", "bytes", "generation", "messages", "on_error", "sealed", "tally")

    def __init__(self, generation: int, on_error: OnError, tally: Tally) -> None:
        self.generation = generation
        self.on_error = on_error
        self.tally = tally
        self.messages: list[Held] = []
        self.bytes = 0
        self.acked = 0
        self.sealed = False  # no more messages join it

    def report(self, error: Any, msg: Any) -> None:
        """confluent-kafka's delivery callback for each message of this write."""
        if error is None:
            self.acked += 1
            self.tally.acked += 1
        else:
            self.on_error(self, error, msg)

    @property
    def done(self) -> bool:
        return self.sealed and self.acked >= len(self.messages)


class Outbox:
    """Accepted writes not fully acknowledged, in acceptance order, bounded by the count and
    bytes of their messages."""

    __slots__ = ("_count", "_writes", "bytes", "max_bytes", "max_messages", "tally")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._writes: deque[Sent] = deque()
        self._count = 0
        self.bytes = 0
        self.tally = Tally()

    def __len__(self) -> int:
        """Messages held (those of every write not yet fully acknowledged)."""
        return self._count

    def has_room(self, size: int) -> bool:
        """Whether a message of ``size`` bytes fits (an empty outbox takes any one message)."""
        if not self._count:
            return True
        return self._count < self.max_messages and self.bytes + size <= self.max_bytes

    def open(self, generation: int, on_error: OnError) -> Sent:
        """A new write, at the end of the outbox."""
        sent = Sent(generation, on_error, self.tally)
        self._writes.append(sent)
        return sent

    def add(self, sent: Sent, key: bytes, value: bytes, headers: Headers) -> None:
        """Hold a message of the write ``sent`` (its producer sends it with ``sent.report``)."""
        sent.messages.append((key, value, headers))
        size = len(key) + len(value)
        sent.bytes += size
        self.bytes += size
        self._count += 1

    def seal(self, sent: Sent) -> None:
        """No more messages join ``sent``; a write with none leaves at once."""
        sent.sealed = True
        if not sent.messages:
            if self._writes and self._writes[-1] is sent:
                self._writes.pop()
            else:
                self._writes.remove(sent)

    def collect(self) -> int:
        """Forget the fully acknowledged writes from the oldest on; returns the count of
        acknowledgements so far (it grows while the brokers make progress)."""
        writes = self._writes
        while writes and writes[0].done:
            sent = writes.popleft()
            self._count -= len(sent.messages)
            self.bytes -= sent.bytes
        return self.tally.acked

    def resend(self, generation: int, on_error: OnError) -> list[Sent]:
        """Every held write again as a new, sealed write of ``generation`` (nothing counted
        acknowledged), for a new producer to send; reports to the old ones are ignored."""
        fresh = []
        for old in self._writes:
            sent = Sent(generation, on_error, self.tally)
            sent.messages, sent.bytes, sent.sealed = old.messages, old.bytes, True
            fresh.append(sent)
        self._writes = deque(fresh)
        return fresh

    def held(self) -> list[Held]:
        """The held messages in acceptance order: a snapshot's state."""
        return [m for sent in self._writes for m in sent.messages]


class HeldState(list[Held]):
    """A sink partition's snapshot: the messages held when it was taken, and ``take``, which
    gives the messages to keep when the snapshot is pickled.

    Bytewax asks for a snapshot at every epoch, with or without recovery, and pickles it only
    with recovery, right after asking. So only a kept snapshot calls ``take`` (which may wait
    a little for acknowledgements, so that it keeps fewer); a run without recovery never
    waits for the brokers at an epoch's end. Unpickled, it is a plain list.
    """

    def __init__(self, held: list[Held], take: Callable[[], list[Held]]) -> None:
        super().__init__(held)
        self._take = take

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (self._take(),))


__all__ = ["Headers", "Held", "HeldState", "OnError", "Outbox", "Sent", "Tally"]
