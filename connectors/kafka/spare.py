"""Producers made when a flow starts, for Kafka sink partitions that Bytewax builds later.

Bytewax builds a sink partition when its first item arrives, so a producer made there meets
the first alert (or command) cold: a new idempotent librdkafka producer delivers nothing
until it has its producer id, which took about 0.5 s against Tansu (issue 13's "first alert
costs 0.5 s"). :class:`Spares` makes one producer per partition when Bytewax lists the
partitions at start-up, so that by the first item it is connected and has its id. Its
callbacks go through a :class:`Relay` that forwards them to the partition that takes it; until
then (nothing polls it) they wait in librdkafka's queue.

A spare that no partition takes (another process owns the partition, or no item ever came)
stays idle until the process ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Producer

from twinflow.connectors.kafka.config import log_error

#: Makes a producer with the given error and statistics callbacks.
MakeProducer = Callable[[Callable[[KafkaError], None], Callable[[str], None]], Producer]


class Relay:
    """A spare producer's callbacks, forwarded to the partition that took it (if any)."""

    __slots__ = ("on_error", "on_stats")

    def __init__(self) -> None:
        self.on_error: Callable[[KafkaError], None] | None = None
        self.on_stats: Callable[[str], None] | None = None

    def error(self, error: KafkaError) -> None:
        if self.on_error is None:
            log_error(error)
        else:
            self.on_error(error)

    def stats(self, stats: str) -> None:
        if self.on_stats is not None:
            self.on_stats(stats)


class Spares:
    """One warm producer per partition name, made once however many workers list them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: set[str] = set()
        self._ready: dict[str, tuple[Producer, Relay]] = {}

    def make(self, parts: list[str], new: MakeProducer) -> None:
        """A producer for each of ``parts`` not made before."""
        with self._lock:
            for part in parts:
                if part in self._made:
                    continue
                self._made.add(part)
                relay = Relay()
                self._ready[part] = (new(relay.error, relay.stats), relay)

    def take(self, part: str) -> tuple[Producer, Relay] | None:
        """The warm producer of ``part`` and its relay, once (``None`` when there is none)."""
        with self._lock:
            return self._ready.pop(part, None)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a sink sent to another process) without its producers."""
        return {}

    def __setstate__(self, _state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


__all__ = ["MakeProducer", "Relay", "Spares"]
