"""The one configuration object of the simulated plant, validated when it is built.

Every field is a plain value, so a deployment file maps onto it directly and a flow can hand
it down unchanged. Errors name the field and say what a valid value looks like.

>>> PlantConfig(n_twins=3, duration_s=600, seed=1).chunk_s
60.0
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from twinflow.connectors.simulator.types import BPFO_HZ, MOTOR
from twinflow.core.config import Field, Number, Whole, check_value
from twinflow.core.errors import ConfigError

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
        for spec in _FIELDS:
            check_value(spec, getattr(self, spec.key), "PlantConfig.")
        if not isinstance(self.start, datetime) or self.start.utcoffset() != timedelta(0):
            raise ConfigError(
                f"PlantConfig.start must be a timezone-aware UTC datetime, got {self.start!r}"
            )
        if float(self.chunk_s) != int(self.chunk_s):
            raise ConfigError(
                f"PlantConfig.chunk_s must be a whole number of seconds (data is 1 Hz), "
                f"got {self.chunk_s!r}"
            )
        burst_len = self.waveform_samples / self.waveform_rate
        burst = Number(
            "burst_interval_s",
            "Seconds between vibration bursts.",
            0.0,
            low=burst_len,
            finite=True,
            expect=f"at least one burst long ({burst_len:g} s)",
        )
        check_value(burst, self.burst_interval_s, "PlantConfig.")

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


_NYQUIST = 2.0 * 3.0 * BPFO_HZ  # the third BPFO harmonic must be representable


def _share(key: str, doc: str, high: float) -> Number:
    return Number(key, doc, 0.0, low=0.0, high=high, expect=f"a share in [0, {high:g}]")


#: The checks of the fields that do not depend on each other.
_FIELDS: tuple[Field[Any], ...] = (
    Whole("n_twins", "Twins simulated.", 1, 1),
    Whole("seed", "Seed of the plant's randomness.", 0, 0),
    Whole("waveform_samples", "Samples per vibration waveform.", 4096, 16),
    Number("duration_s", "Simulated seconds.", 1.0, 1.0, finite=True, expect="at least 1 second"),
    Number(
        "chunk_s",
        "Seconds per frame.",
        60.0,
        1.0,
        finite=True,
        expect="a whole number of seconds >= 1",
    ),
    Number(
        "waveform_rate",
        "Waveform sample rate (Hz).",
        8192.0,
        _NYQUIST,
        finite=True,
        expect=f"a sample rate >= {_NYQUIST:.0f} Hz",
    ),
    _share("fault_fraction", "Share of twins that get a fault.", 1.0),
    _share("bad_message_rate", "Share of emitted items that are bad raw messages.", 0.5),
    _share("raw_message_rate", "Share of good frames sent as JSON.", 1.0),
)
