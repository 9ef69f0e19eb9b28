"""The messages a Kafka sink partition accepted and the brokers have not acknowledged yet.

A bounded, ordered store (:class:`Outbox`): each message gets a sequence number when it is
accepted and leaves when its acknowledgement arrives. It is what a new producer sends again
after the old one failed (in acceptance order, so a twin's messages keep their order), and
what a Bytewax snapshot keeps (:meth:`Outbox.held`), so a flow resumed from recovery sends
again what was accepted before the snapshot but not acknowledged.

>>> box = Outbox(max_messages=2, max_bytes=100)
>>> a = box.add(b"k", b"v1", []); b = box.add(b"k", b"v2", [])
>>> box.has_room(1), len(box)
(False, 2)
>>> box.ack(a), [value for _, value, _ in box.held()], box.has_room(1)
(True, [b'v2'], True)
"""

from __future__ import annotations

from collections.abc import Iterator

#: Kafka headers as confluent-kafka takes them.
Headers = list[tuple[str, str | bytes | None]]
#: One message: key, value, headers.
Held = tuple[bytes, bytes, Headers]


class Outbox:
    """Accepted, unacknowledged messages in acceptance order, bounded by count and bytes."""

    __slots__ = ("_messages", "_next", "bytes", "max_bytes", "max_messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._messages: dict[int, Held] = {}
        self._next = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._messages)

    def has_room(self, size: int) -> bool:
        """Whether a message of ``size`` bytes fits (an empty outbox takes any one message)."""
        if not self._messages:
            return True
        return len(self._messages) < self.max_messages and self.bytes + size <= self.max_bytes

    def add(self, key: bytes, value: bytes, headers: Headers) -> int:
        """Hold a message; returns its sequence number."""
        seq = self._next
        self._next += 1
        self._messages[seq] = (key, value, headers)
        self.bytes += len(key) + len(value)
        return seq

    def ack(self, seq: int) -> bool:
        """Forget an acknowledged message; False if it was not held (a late report)."""
        held = self._messages.pop(seq, None)
        if held is None:
            return False
        self.bytes -= len(held[0]) + len(held[1])
        return True

    def items(self) -> Iterator[tuple[int, Held]]:
        """``(seq, message)`` in acceptance order (a copy: safe while acks arrive)."""
        return iter(list(self._messages.items()))

    def held(self) -> list[Held]:
        """The held messages in acceptance order: a snapshot's state."""
        return list(self._messages.values())


__all__ = ["Headers", "Held", "Outbox"]
