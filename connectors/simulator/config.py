"""The one configuration object of the simulated plant, validated when it is built.

Every field is a plain value, so a deployment file maps onto it directly and a flow can hand
it down unchanged. Errors name the field and say what a valid value looks like.

>>> PlantConfig(n_twins=3, duration_s=600, seed=1).chunk_s
60.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from twinflow.core.errors import ConfigError
from twinflow.operators.catalog import BPFO_HZ, MOTOR

#: Default start of simulated time: 2026-01-01T00:00Z.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PlantConfig:
    """What to simulate: how many twins, for how long, from which seed, and how noisy.

    ``chunk_s`` is how many simulated seconds of 1 Hz data one emitted frame carries;
    ``burst_interval_s`` how often a motor sends a vibration waveform of ``waveform_samples``
    samples at ``waveform_rate`` Hz. ``fault_fraction`` is the share of twins that get a
    fault, ``bad_message_rate`` the share of emitted items that are bad raw messages and
    ``raw_message_rate`` the share of good telemetry frames sent as JSON instead of objects.
    """

    n_twins: int
    duration_s: float
    seed: int
    start: datetime = DEFAULT_START
    chunk_s: float = 60.0
    burst_interval_s: float = MOTOR.signal("vibration").burst_interval_s
    waveform_rate: float = 8192.0
    waveform_samples: int = 4096
    fault_fraction: float = 0.6
    bad_message_rate: float = 0.002
    raw_message_rate: float = 0.01

    def __post_init__(self) -> None:
        _int_at_least("n_twins", self.n_twins, 1)
        _int_at_least("seed", self.seed, 0)
        _int_at_least("waveform_samples", self.waveform_samples, 16)
        _number_in("duration_s", self.duration_s, 1.0, math.inf, "at least 1 second")
        if not isinstance(self.start, datetime) or self.start.utcoffset() != timedelta(0):
            raise ConfigError(
                f"PlantConfig.start must be a timezone-aware UTC datetime, got {self.start!r}"
            )
        _number_in("chunk_s", self.chunk_s, 1.0, math.inf, "a whole number of seconds >= 1")
        if float(self.chunk_s) != int(self.chunk_s):
            raise ConfigError(
                f"PlantConfig.chunk_s must be a whole number of seconds (data is 1 Hz), "
                f"got {self.chunk_s!r}"
            )
        nyquist_need = 2.0 * 3.0 * BPFO_HZ  # the third BPFO harmonic must be representable
        _number_in(
            "waveform_rate",
            self.waveform_rate,
            nyquist_need,
            math.inf,
            f"a sample rate >= {nyquist_need:.0f} Hz",
        )
        burst_len = self.waveform_samples / self.waveform_rate
        _number_in(
            "burst_interval_s",
            self.burst_interval_s,
            burst_len,
            math.inf,
            f"at least one burst long ({burst_len:g} s)",
        )
        _number_in("fault_fraction", self.fault_fraction, 0.0, 1.0, "a share in [0, 1]")
        _number_in("bad_message_rate", self.bad_message_rate, 0.0, 0.5, "a share in [0, 0.5]")
        _number_in("raw_message_rate", self.raw_message_rate, 0.0, 1.0, "a share in [0, 1]")

    @property
    def start_epoch(self) -> float:
        """Start of simulated time in epoch seconds."""
        return self.start.timestamp()

    @property
    def n_samples(self) -> int:
        """How many 1 Hz timestamps the run has."""
        return int(self.duration_s)

    @property
    def chunk_samples(self) -> int:
        """How many 1 Hz timestamps one chunk (one frame per twin) carries."""
        return int(self.chunk_s)

    @property
    def n_chunks(self) -> int:
        """How many chunks the run has (the last one may be short)."""
        return -(-self.n_samples // self.chunk_samples)


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"PlantConfig.{name} must be an integer >= {low}, got {value!r}")


def _number_in(name: str, value: object, low: float, high: float, what: str) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )
    if not ok:
        raise ConfigError(f"PlantConfig.{name} must be {what}, got {value!r}")
