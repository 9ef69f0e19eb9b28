"""The validated settings of the telemetry flow, handed down as one frozen value.

Operators and models never read the environment; the command line (or a deployment file,
later) builds a :class:`FlowConfig` and the flow passes its parts down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

from twinflow.core.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds from ``"6h"``, ``"30m"``, ``"90s"``, ``"1.5d"`` or a plain number of seconds.

    >>> parse_duration("6h"), parse_duration("30m"), parse_duration(45)
    (21600.0, 1800.0, 45.0)
    """
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _DURATION.match(text)
        if not m:
            raise ConfigError(
                f"{what}: {text!r} is not a duration; use a number with a unit such as "
                "'90s', '30m', '6h' or '2d'"
            )
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{what}: must be positive, got {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Settings of the telemetry flow (all times in seconds of event time unless noted)."""

    out_dir: Path = Path("out")
    window_s: float = 300.0
    lateness_s: float = 60.0
    stale_factor: float = 3.0
    state_snapshot_s: float = 900.0
    anomaly_warmup: int = 24
    anomaly_quantile: float = 0.995
    anomaly_margin: float = 1.5
    command_interval_s: float = 1800.0
    derate_fraction: float = 0.7
    command_ttl_s: float = 600.0
    command_timeout_s: float = 120.0
    """Seconds (reference clock) a queued command may take to reach an end state before it
    ends timed out: long enough for a reported setpoint to come back."""
    command_rate_limit: int = 6
    """Commands that may be queued per twin within ``command_rate_window_s``."""
    command_rate_window_s: float = 60.0
    max_future_s: float = 300.0
    max_past_s: float = 7 * 86400.0
    write_telemetry: bool = True
    parquet_rows_per_part: int = 250_000
    parquet_max_delay_s: float = 30.0
    """Wall-clock seconds a row may wait in a Parquet buffer before its part is written."""
    sink_partitions: int = 1
    idle_flush_s: float = 30.0
    """Wall-clock seconds without data after which a twin's open windows are closed."""
    seed: int = 0

    def __post_init__(self) -> None:
        positive = (
            "window_s",
            "lateness_s",
            "stale_factor",
            "state_snapshot_s",
            "anomaly_margin",
            "command_interval_s",
            "command_ttl_s",
            "command_timeout_s",
            "command_rate_window_s",
            "max_future_s",
            "max_past_s",
            "idle_flush_s",
            "parquet_max_delay_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"flow config: {name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.anomaly_quantile < 1:
            raise ConfigError(
                f"flow config: anomaly_quantile must be in (0, 1), got {self.anomaly_quantile!r}"
            )
        if not 0 < self.derate_fraction <= 1:
            raise ConfigError(
                f"flow config: derate_fraction must be in (0, 1], got {self.derate_fraction!r}"
            )
        for name in (
            "anomaly_warmup",
            "parquet_rows_per_part",
            "sink_partitions",
            "command_rate_limit",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"flow config: {name} must be ≥ 1, got {getattr(self, name)!r}")
        if self.lateness_s >= self.window_s * 10:
            raise ConfigError(
                "flow config: lateness_s is more than ten windows long; per-twin state would "
                f"hold that many open windows (window_s={self.window_s}, "
                f"lateness_s={self.lateness_s})"
            )

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
