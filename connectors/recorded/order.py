"""Time order of a recording's rows: which go backwards, repeat a time or jump ahead.

Per twin (and, in the long format, per signal) a recording's times must go forward. These
helpers find the rows that do not, keeping a longest strictly increasing run so that one row
stamped far ahead costs that row, not every row after it.
"""

from __future__ import annotations

import bisect

import numpy as np

#: Row numbers a dead letter's reason lists before "and N more".
SHOWN_ROWS = 5


def out_of_order(t: np.ndarray, last: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows that go backwards, repeat a time, or jump ahead of the rows after them.

    In order (the common case) only the running maximum is checked. Otherwise the rows kept
    are a longest strictly increasing run after ``last``, so that one row stamped far ahead
    costs that row, not every row after it.
    """
    prev = np.maximum.accumulate(np.concatenate(([last], t)))[:-1]
    back, dup = t < prev, t == prev
    none = np.zeros(t.size, dtype=bool)
    if not back.any():
        return back, dup, none
    after = np.flatnonzero(t > last)
    keep = np.zeros(t.size, dtype=bool)
    keep[after[longest_increasing(t[after])]] = True
    kept = np.flatnonzero(keep)
    at = np.searchsorted(kept, np.arange(t.size))  # the first kept row at or after each row
    nxt = np.append(t[kept], np.inf)[at]
    before = np.concatenate(([last], t[kept]))[at]  # the kept time before each row
    ahead = ~keep & (t > nxt)
    dup = ~keep & ~ahead & ((t == before) | (t == nxt))
    return ~keep & ~ahead & ~dup, dup, ahead


def longest_increasing(t: np.ndarray) -> np.ndarray:
    """Indices of a longest strictly increasing subsequence of ``t`` (patience sorting)."""
    tails: list[float] = []
    ends: list[int] = []
    link = [-1] * t.size
    for i, x in enumerate(t.tolist()):
        k = bisect.bisect_left(tails, x)
        if k < len(tails) and tails[k] == x:
            continue  # an equal time: the first of them stays
        if k == len(tails):
            tails.append(x)
            ends.append(i)
        else:
            tails[k], ends[k] = x, i
        link[i] = ends[k - 1] if k else -1
    out: list[int] = []
    i = ends[-1] if ends else -1
    while i >= 0:
        out.append(i)
        i = link[i]
    return np.array(out[::-1], dtype=np.int64)


def first_finite(t: np.ndarray) -> float:
    ok = t[np.isfinite(t)]
    return float(ok[0]) if ok.size else 0.0


__all__ = ["SHOWN_ROWS", "first_finite", "longest_increasing", "out_of_order"]
