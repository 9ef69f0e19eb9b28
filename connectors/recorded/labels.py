"""Anomaly labels of a recording as runs: per twin, the spans where the label column is 1."""

from __future__ import annotations

import numpy as np


class LabelRuns:
    """Collects, batch by batch and in time order per twin, the spans labelled 1.

    A span starts at the first row labelled 1 and ends at the last one before a row labelled
    0 (or the end of the recording).
    """

    def __init__(self) -> None:
        self.runs: dict[str, list[tuple[float, float]]] = {}
        self._open: dict[str, tuple[float, float]] = {}
        self.seen: set[str] = set()

    def add(self, twin: str, times: np.ndarray, labels: np.ndarray) -> None:
        """Rows of one twin (times non-decreasing), ``labels`` 1 for anomalous, else 0."""
        self.seen.add(twin)
        if times.size == 0:
            return
        on = labels > 0.5
        start = self._open.pop(twin, None)
        edges = np.flatnonzero(np.diff(np.concatenate(([start is not None], on)).astype(np.int8)))
        # rows where the label changes, counting the run left open by the batch before
        spans = self.runs.setdefault(twin, [])
        begin = start[0] if start is not None else None
        carried_end = start[1] if start is not None else 0.0
        for i in edges.tolist():
            if on[i]:
                begin = float(times[i])
            elif begin is not None:
                spans.append((begin, float(times[i - 1]) if i > 0 else carried_end))
                begin = None
        if on[-1] and begin is not None:
            self._open[twin] = (begin, float(times[-1]))

    def close(self) -> dict[str, list[tuple[float, float]]]:
        """Every span, the open ones ended at their twin's last labelled row."""
        for twin, (begin, end) in self._open.items():
            self.runs.setdefault(twin, []).append((begin, end))
        self._open.clear()
        return self.runs
