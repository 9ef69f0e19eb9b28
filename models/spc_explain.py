"""Explanations of :class:`~twinflow.models.spc.SpcDetector` scores: which monitored
variables drive a row's T² and SPE, as shares of their limit-scaled contributions."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from twinflow.models.spc_stats import Model


class Explanation:
    """Mixin of :class:`~twinflow.models.spc.SpcDetector`: a row's score split by variable."""

    variables: tuple[str, ...]
    columns: tuple[str, ...]
    model: Model | None
    limits: tuple[float, float, float]
    _last: np.ndarray

    def _split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _phi(self, s: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _row(self, x: Mapping[str, float]) -> np.ndarray:
        return np.array([[float(x.get(c, math.nan)) for c in self.columns]])

    def _raw(self, s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.model is not None
        _u, t2, spe = self.model.parts(self._phi(s), y)
        lim_t, lim_q, _ = self.limits
        combined = np.maximum(t2.sum(axis=1) / lim_t, spe.sum(axis=1) / lim_q)
        return combined, t2, spe

    def explain(self, x: Mapping[str, float], top: int = 3) -> dict[str, float]:
        """The ``top`` variables that drive the row's score, each with its share (0-1) of
        the limit-scaled T² and SPE contributions."""
        if self.model is None:
            return {}
        row = np.where(np.isfinite(r := self._row(x)), r, self._last)
        if not np.isfinite(row).all():
            return {}
        return self.contributions(row, top)

    def shares(self, rows: np.ndarray) -> np.ndarray:
        """Each (filled) row's score split by monitored variable: shares summing to 1 of the
        limit-scaled T² and SPE contributions (0 for a variable left out as constant)."""
        assert self.model is not None
        s, y = self._split(np.atleast_2d(rows))
        _c, t2, spe = self._raw(s, y)
        lim_t, lim_q, _ = self.limits
        part = np.abs(t2) / lim_t + spe / lim_q
        total = part.sum(axis=1, keepdims=True)
        out = np.zeros((len(part), len(self.variables)))
        out[:, self.model.keep] = part / np.where(total > 0, total, 1.0)
        return out

    def contributions(self, row: np.ndarray, top: int = 3) -> dict[str, float]:
        """The ``top`` variables of one (filled) row's score with their shares."""
        share = self.shares(row)[0]
        ranked = sorted(zip(self.variables, share, strict=True), key=lambda kv: -kv[1])[:top]
        return {k: round(float(v), 3) for k, v in ranked}


__all__ = ["Explanation"]
