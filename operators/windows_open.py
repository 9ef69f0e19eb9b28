"""What one open event-time window holds, the features it emits when it closes, and the
dead letter of readings that came after their window closed (:mod:`twinflow.operators.windows`
keeps the windows of a twin and decides when each closes)."""

from __future__ import annotations

import copy
import json
from typing import Any

from twinflow.core.records import DeadLetter, Frame, WaveformFrame, WindowFeatures
from twinflow.core.times import iso, utc
from twinflow.operators.features import Moments


class OpenWindow:
    """Accumulators of one open window: moments per signal, spectrum sums per waveform, and
    readings refused for their declared range per signal."""

    __slots__ = ("bursts", "moments", "refused", "spectra")

    def __init__(self) -> None:
        self.moments: dict[str, Moments] = {}
        self.spectra: dict[str, dict[str, float]] = {}
        self.bursts: dict[str, int] = {}
        self.refused: dict[str, int] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> OpenWindow:
        """A copy without the generic machinery (snapshots copy every open window)."""
        new = OpenWindow()
        new.moments = {k: copy.deepcopy(m, memo) for k, m in self.moments.items()}
        new.spectra = {k: dict(v) for k, v in self.spectra.items()}
        new.bursts = dict(self.bursts)
        new.refused = dict(self.refused)
        return new

    def refuse(self, name: str, count: int) -> None:
        self.refused[name] = self.refused.get(name, 0) + count

    def fold(self, name: str, row: list[float]) -> None:
        acc = self.moments.get(name)
        if acc is None:
            acc = self.moments[name] = Moments()
        acc.merge_row(row)

    def fold_spectrum(self, name: str, features: dict[str, float]) -> None:
        sums = self.spectra.setdefault(name, {})
        for key, value in features.items():
            sums[key] = sums.get(key, 0.0) + value
        self.bursts[name] = self.bursts.get(name, 0) + 1

    def features(
        self,
        twin_id: str,
        twin_type: str,
        k: int,
        length_s: float,
        expected: tuple[str, ...],
        late: int,
    ) -> WindowFeatures:
        """The closed window ``k`` (``[k × length_s, (k + 1) × length_s)``): each signal's
        statistics, ``<s>.missing`` for an ``expected`` signal that never came, the share of
        readings refused for their range, mean spectrum features; ``late`` readings since
        the last emitted window."""
        features: dict[str, float] = {}
        counts: dict[str, int] = {}
        extras = sorted(name for name in self.moments if name not in expected)
        for name in (*expected, *extras):
            acc = self.moments.get(name)
            if acc is None:
                features[f"{name}.missing"] = 1.0
                counts[name] = 0
                continue
            stats = acc.stats()
            slots = acc.count + acc.missing
            refused = self.refused.get(name, 0)
            if refused:  # refused readings are NaN now, but they did come
                stats["missing"] = (acc.missing - refused) / slots
            for stat, value in stats.items():
                features[f"{name}.{stat}"] = value
            features[f"{name}.out_of_range"] = refused / slots if slots else 0.0
            counts[name] = acc.count
            bursts = self.bursts.get(name)
            if bursts:
                for key, total in self.spectra[name].items():
                    features[f"{name}.{key}"] = total / bursts
        return WindowFeatures(
            twin_id=twin_id,
            twin_type=twin_type,
            start=utc(k * length_s),
            end=utc((k + 1) * length_s),
            features=features,
            counts=counts,
            late=late,
        )


def late_letter(
    frame: Frame,
    first: float,
    last: float,
    readings: int,
    windows: tuple[int, int],
    length_s: float,
    lateness_s: float,
    newest: float,
) -> DeadLetter:
    """The dead letter of ``readings`` readings of ``frame`` (from ``first`` to ``last``, in
    ``windows`` first to last) that came after their window had closed (``newest``: the
    twin's newest event time)."""
    length = length_s
    k0, k1 = windows
    span = "window" if k0 == k1 else "windows"
    names = [frame.signal] if isinstance(frame, WaveformFrame) else list(frame.signals)
    excerpt = {
        "twin_id": frame.twin_id,
        "signals": names[:20],
        "readings": readings,
        "first": iso(utc(first)),
        "last": iso(utc(last)),
    }
    return DeadLetter(
        stage="window",
        reason=(
            f"late by {newest - first:.0f} s: {span} [{iso(utc(k0 * length))}, "
            f"{iso(utc((k1 + 1) * length))}) already closed (twin {frame.twin_id!r}, "
            f"{readings} reading(s), allowed lateness {lateness_s:g} s)"
        ),
        source=frame.source,
        time=utc(newest),
        twin_id=frame.twin_id,
        payload=json.dumps(excerpt),
        readings=readings,
    )


__all__ = ["OpenWindow", "late_letter"]
