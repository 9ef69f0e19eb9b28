"""The long-episode rule of :class:`~twinflow.models.spc.SpcDetector`: a way out of an
anomalous episode that has lasted so long, without developing, that it is the machine's new
normal.

The recovery rule moves normal only when an episode's score falls to a tenth of its peak: a
machine whose normal moved for good (a season, a re-mounted sensor, a process that settled
warmer) and whose score stays well above that keeps the twin anomalous, and its alarm open,
for ever. :class:`LongEpisode` follows the current episode in blocks of a quarter of
``rows`` and, once the episode has lasted ``rows`` rows, asks at each block's end whether
the score of its latest half is no higher than that of the half before it. A developing
fault grows, so its later half scores higher and it is never taken for normal; a level that
holds (or eases) is, and normal moves to the mean residual of the latest half. So a fault
that stops developing and then holds for ``rows`` rows is learned too: by then it has had its
alarm for that long (the detector sizes ``rows`` as a week of event time by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Blocks the rule compares: the latest half against the half before it.
BLOCKS = 4


@dataclass(slots=True)
class LongEpisode:
    """One detector's long-episode state (bounded: four block sums); ``rows`` 0 is off.

    >>> rule = LongEpisode(rows=8, width=1)
    >>> fired = [rule.step(2.0, np.array([1.0]), True) for _ in range(8)]
    >>> [f is not None for f in fired].index(True), fired[-1].tolist()
    (7, [1.0])
    >>> rule = LongEpisode(rows=8, width=1)  # a growing score is never taken for normal
    >>> [rule.step(1.0 + i, np.array([1.0]), True) for i in range(16)].count(None)
    16
    """

    rows: int
    width: int
    #: Rows judged in the current episode, and in the current block.
    n: int = 0
    block_n: int = 0
    #: The current block's score and residual sums, and those of the latest complete blocks
    #: (oldest first; at most ``BLOCKS``).
    block_score: float = 0.0
    block_resid: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scores: list[float] = field(default_factory=list)
    resids: list[np.ndarray] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Rows per block."""
        return max(1, math.ceil(self.rows / BLOCKS))

    def reset(self) -> None:
        """Forget the episode (it ended, or normal moved)."""
        self.n = self.block_n = 0
        self.block_score = 0.0
        self.block_resid = np.zeros(self.width)
        self.scores, self.resids = [], []

    def step(self, score: float, resid: np.ndarray, active: bool) -> np.ndarray | None:
        """Follow one judged row (``active``: an episode is under way); the new level (the
        mean residual of the episode's latest half) when the rule fires, else ``None``."""
        if self.rows <= 0:
            return None
        if not active:
            if self.n:
                self.reset()
            return None
        if self.block_resid.shape != (self.width,):
            self.block_resid = np.zeros(self.width)
        self.n += 1
        self.block_n += 1
        self.block_score += score
        self.block_resid = self.block_resid + resid
        if self.block_n < self.size:
            return None
        self.scores = [*self.scores, self.block_score][-BLOCKS:]
        self.resids = [*self.resids, self.block_resid][-BLOCKS:]
        self.block_n, self.block_score = 0, 0.0
        self.block_resid = np.zeros(self.width)
        half = BLOCKS // 2
        if self.n < self.rows or len(self.scores) < BLOCKS:
            return None
        if sum(self.scores[half:]) > sum(self.scores[:half]):
            return None  # still developing
        level: np.ndarray = np.sum(self.resids[half:], axis=0) / (half * self.size)
        self.reset()
        return level


__all__ = ["BLOCKS", "LongEpisode"]
