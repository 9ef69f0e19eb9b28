"""The one exception root of twinflow and its few children.

Messages name the twin, the field, the file and what to do, so a user can act on them.
"""

from __future__ import annotations


class TwinflowError(Exception):
    """Root of every error twinflow raises on purpose."""


class ConfigError(TwinflowError):
    """A deployment file, option or environment variable is invalid."""


class DecodeError(TwinflowError):
    """A payload could not be turned into a telemetry frame."""


class ValidationError(TwinflowError):
    """A decoded frame breaks its twin type's contract (unknown signal, range, time...)."""
