"""The ``anomaly:`` profile section: operating settings and per-type anomaly settings.

``operating`` names the signals that set the machine's operating point (speed, load,
setpoints). The anomaly models condition on them instead of monitoring them, so a load
change is not an anomaly; without the key, the type's ``generic.commanded`` signals (its
setpoints) are the operating settings. The other keys override the deployment's ``flow:``
settings of the same meaning for twins of this type; left out (or ``default``), the
deployment's value applies. Every error names the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinflow.core.config import Choice, Duration, Flag, Names, Number, Schema, Section, Whole
from twinflow.operators.rulebook import generic_of, section_of
from twinflow.operators.twin_type import TwinType

#: Window-level detectors: max |z| of the window features, or T²/SPE of them.
DETECTORS = ("zscore", "spc")
#: The fewest warm-up samples a sample model takes.
MIN_WARMUP = 8

ANOMALY = Schema(
    "anomaly",
    "Operating settings and per-type anomaly settings (left out: the deployment's `flow:`).",
    (
        Names("operating", "Signals that set the operating point (speed, load, setpoints): "
              "the anomaly models condition on them and do not monitor them (default: "
              "`generic.commanded`).", what="signal names"),
        Choice("detector", "Window-level detector.", "zscore", choices=DETECTORS,
               shown="`flow.anomaly_detector`"),
        Flag("samples", "Score raw samples too.", True, shown="`flow.sample_anomaly`"),
        Flag("adapt", "Learn normal rows after warm-up.", True, shown="`flow.anomaly_adapt`"),
        Whole("sample_warmup", "Samples of warm-up (0: `flow.sample_warmup`).", 0, 0),
        Duration("sample_warmup_s", "Least warm-up time of the sample model (0: "
                 "`flow.sample_warmup_s`).", 0.0),
        Number("sample_quantile", "Quantile of warm-up scores that sets the limits (0: "
               "`flow.sample_quantile`).", 0.0, low=0, below=1),
        Number("sample_margin", "Factor on that limit (0: `flow.sample_margin`).", 0.0, low=0,
               finite=True),
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AnomalyProfile:
    """A type's ``anomaly:`` section; ``None``/0 fields defer to the flow's settings."""

    operating: tuple[str, ...] | None = None
    detector: str | None = None
    samples: bool | None = None
    adapt: bool | None = None
    sample_warmup: int = 0
    sample_warmup_s: float = 0.0
    sample_quantile: float = 0.0
    sample_margin: float = 0.0


def read_anomaly(s: Section) -> AnomalyProfile:
    """``anomaly:``: operating settings and overrides of the flow's anomaly settings."""
    s.check_keys(ANOMALY)

    def given(key: str) -> Any:
        return s.get(ANOMALY[key]) if s.data.get(key) is not None else None

    warmup = s.get(ANOMALY["sample_warmup"])
    if 0 < warmup < MIN_WARMUP:
        raise s.error("sample_warmup", f" = {warmup}: at least {MIN_WARMUP} samples (or 0)")
    return AnomalyProfile(
        operating=given("operating"),
        detector=given("detector"),
        samples=given("samples"),
        adapt=given("adapt"),
        sample_warmup=warmup,
        sample_warmup_s=s.get(ANOMALY["sample_warmup_s"]),
        sample_quantile=s.get(ANOMALY["sample_quantile"]),
        sample_margin=s.get(ANOMALY["sample_margin"]),
    )


_NONE = AnomalyProfile()


def anomaly_of(kind: TwinType) -> AnomalyProfile:
    """The type's ``anomaly:`` section (defaults when its profile has none)."""
    return section_of(kind, "anomaly", _NONE)


def operating_signals(kind: TwinType) -> tuple[str, ...]:
    """The type's operating settings: ``anomaly.operating``, else ``generic.commanded``."""
    declared = anomaly_of(kind).operating
    return declared if declared is not None else tuple(generic_of(kind).commanded)


__all__ = [
    "ANOMALY",
    "DETECTORS",
    "AnomalyProfile",
    "anomaly_of",
    "operating_signals",
    "read_anomaly",
]
