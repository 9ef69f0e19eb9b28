"""Cheap state snapshots: a deep copy that shares what never changes.

Bytewax snapshots every stateful step's state of every twin touched in an epoch, recovery on
or off, with ``copy.deepcopy``. Per-twin state objects reference their twin type (and tables
derived from it) that all twins of the type share and nobody mutates; copying them made a
snapshot of one tracker cost a millisecond and ~16 KB of short-lived objects. A state class
defines ``__deepcopy__`` with :func:`copy_sharing`, naming the attributes to share.
Pickling (recovery) is not affected.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

T = TypeVar("T")


def copy_sharing(obj: T, memo: dict[int, Any], shared: tuple[str, ...]) -> T:
    """A deep copy of ``obj`` (an instance with a ``__dict__``) whose ``shared`` attributes
    are the originals, not copies.

    >>> class S:
    ...     def __init__(self) -> None:
    ...         self.kind, self.counts = ("a", "b"), [1]
    ...     def __deepcopy__(self, memo: dict[int, Any]) -> "S":
    ...         return copy_sharing(self, memo, ("kind",))
    >>> s = S()
    >>> c = copy.deepcopy(s)
    >>> c.kind is s.kind, c.counts == s.counts, c.counts is s.counts
    (True, True, False)
    """
    state = obj.__dict__
    for name in shared:
        value = state.get(name)
        if value is not None:
            memo[id(value)] = value
    new = object.__new__(type(obj))
    memo[id(obj)] = new
    new.__dict__.update(copy.deepcopy(state, memo))
    return new


__all__ = ["copy_sharing"]
