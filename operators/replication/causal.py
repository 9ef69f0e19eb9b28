"""Causal delivery for the properties declared ``causal``: a write waits for what it depends on.

A causal write carries its dependencies (:attr:`Write.deps`): for every *other* property of
the same twin and kind that its writer held, the stamp of the value it held. A receiver
exposes the write (merges it into its registers) only once each of those properties holds
that write or a newer one there; until then :class:`CausalBuffer` holds it, with the
dependency it waits for. Because a dependency is satisfied by "that value or a newer one of
the same property", a receiver that shows a causal write also shows everything of that twin
its writer had seen, however the writes travelled: no chain of dependencies needs following.
The property itself needs no dependency: exposing the write makes its register at least as
new as the writer's base.

Eventual and strong writes carry no dependencies and are never held. A held write is
released when its dependencies arrive, or forced out after ``hold_ms`` or when ``max_held``
writes wait (the oldest first): a write whose dependency was lost for good (an outbox that
dropped records) must not stall its property forever, and every replica still converges
because every write is exposed in the end.

>>> from twinflow.operators.replication.hlc import Stamp
>>> mode = PropertyKey("pump-1", "desired", "mode")
>>> speed = PropertyKey("pump-1", "desired", "speed")
>>> regs = {mode: (Write.make(mode, "auto", Stamp(5, 0, "c"), None),)}
>>> deps_of(regs, {"mode", "speed"}, speed)
(('mode', Stamp(wall_ms=5, logical=0, replica='c')),)
>>> w = Write.make(speed, 900, Stamp(6, 0, "c"), None, deps_of(regs, {"mode"}, speed))
>>> missing({}, w), missing(regs, w)
(('mode', Stamp(wall_ms=5, logical=0, replica='c')), None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from twinflow.operators.replication.hlc import Stamp
from twinflow.operators.replication.register import PropertyKey, Write, cached_key

#: A causal write's dependencies: (property name, stamp), same twin and kind as the write.
Deps = tuple[tuple[str, Stamp], ...]
Registers = Mapping[PropertyKey, tuple[Write, ...]]

#: How long a causal write may be held before it is exposed anyway (ms), and how many may be.
DEFAULT_HOLD_MS = 300_000
DEFAULT_MAX_HELD = 10_000


def deps_of(registers: Registers, names: Iterable[str], key: PropertyKey) -> Deps:
    """The dependencies of a causal write of ``key``: the held value's stamp of each other
    property ``names`` of its twin and kind (sorted by name)."""
    out = []
    for name in sorted(names):
        if name != key.name:
            held = registers.get(PropertyKey(key.twin_id, key.kind, name))
            if held:
                out.append((name, held[0].stamp))
    return tuple(out)


def missing(registers: Registers, write: Write) -> tuple[str, Stamp] | None:
    """The first dependency of ``write`` the registers do not satisfy (``None``: none)."""
    k = write.key
    for name, stamp in write.deps:
        held = registers.get(cached_key(k.twin_id, k.kind, name))
        if not held or held[0].stamp < stamp:
            return name, stamp
    return None


@dataclass(frozen=True, slots=True)
class Held:
    """A causal write held back: since when (the receiver's ms) and what it waits for."""

    write: Write
    since_ms: int
    waiting_for: tuple[str, Stamp]

    def reason(self) -> str:
        """What it waits for, as ``kind/property@stamp``."""
        name, stamp = self.waiting_for
        return f"{self.write.key.kind}/{name}@{stamp.text()}"


@dataclass(frozen=True, slots=True)
class Release:
    """A held write let go: ``why`` is ``ready`` (its dependencies arrived), ``timeout`` or
    ``overflow`` (exposed without them)."""

    write: Write
    why: str


class CausalBuffer:
    """The causal writes a replica holds back, oldest first (see the module docstring)."""

    def __init__(self, hold_ms: int = DEFAULT_HOLD_MS, max_held: int = DEFAULT_MAX_HELD) -> None:
        if hold_ms <= 0 or max_held < 1:
            raise ValueError(f"hold_ms must be > 0 and max_held >= 1, got {hold_ms}, {max_held}")
        self.hold_ms = hold_ms
        self.max_held = max_held
        #: The held writes, oldest first (read its truth value for "any held?": a dict's is
        #: C-level, where ``len(buffer)`` is a Python call per merged write).
        self.by_write: dict[Write, Held] = {}
        self._by_twin: dict[tuple[str, str], set[Write]] = {}

    def __len__(self) -> int:
        return len(self.by_write)

    def __contains__(self, write: Write) -> bool:
        return write in self.by_write

    def held(self) -> list[Held]:
        """Every held write, oldest first."""
        return list(self.by_write.values())

    def hold(self, write: Write, now_ms: int, waiting_for: tuple[str, Stamp]) -> list[Release]:
        """Hold ``write``; returns the oldest writes forced out if the buffer overflowed."""
        self.by_write[write] = Held(write, now_ms, waiting_for)
        self._by_twin.setdefault((write.key.twin_id, write.key.kind), set()).add(write)
        out = []
        while len(self.by_write) > self.max_held:
            out.append(Release(self._drop(next(iter(self.by_write))), "overflow"))
        return out

    def ready(self, twin_id: str, kind: str, registers: Registers) -> list[Release]:
        """Remove and return the held writes of a twin and kind whose dependencies the
        registers now satisfy (oldest stamp first)."""
        waiting = self._by_twin.get((twin_id, kind))
        if not waiting:
            return []
        go = sorted((w for w in waiting if missing(registers, w) is None), key=Write.order)
        return [Release(self._drop(w), "ready") for w in go]

    def expired(self, now_ms: int) -> list[Release]:
        """Remove and return the writes held longer than ``hold_ms``."""
        old = []
        for h in self.by_write.values():  # oldest first: stop at the first one still in time
            if now_ms - h.since_ms < self.hold_ms:
                break
            old.append(h.write)
        return [Release(self._drop(w), "timeout") for w in old]

    def twins(self) -> list[tuple[str, str]]:
        """The (twin, kind) pairs that have held writes."""
        return [k for k, v in self._by_twin.items() if v]

    def _drop(self, write: Write) -> Write:
        del self.by_write[write]
        slot = (write.key.twin_id, write.key.kind)
        group = self._by_twin[slot]
        group.discard(write)
        if not group:
            del self._by_twin[slot]
        return write


__all__ = [
    "DEFAULT_HOLD_MS",
    "DEFAULT_MAX_HELD",
    "CausalBuffer",
    "Deps",
    "Held",
    "Release",
    "deps_of",
    "missing",
]
