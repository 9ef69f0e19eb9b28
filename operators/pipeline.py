"""The flow's first operator: one input (raw payload, frame or dead letter) checked.

Plain Python, without Bytewax or the flow's settings: connectors and tests call it directly,
and ``twinflow.flows.steps`` adapts it (and every other step) to Bytewax.
"""

from __future__ import annotations

from collections.abc import Mapping

from twinflow.core.errors import DecodeError
from twinflow.core.records import (
    DeadLetter,
    DesiredChange,
    Frame,
    RawMessage,
    TelemetryFrame,
    WaveformFrame,
)
from twinflow.core.times import utc
from twinflow.operators.catalog import TwinType, twin_type
from twinflow.operators.decode import decode
from twinflow.operators.validate import Validator, dead_letter_for


def check_item(item: object, validator: Validator, now: float) -> list[Frame | DeadLetter]:
    """Decode (raw payloads) and validate one input; never raises on bad data.

    Returns the accepted frame (possibly with out-of-range readings blanked) and any dead
    letters; an input of an unknown kind becomes a dead letter too, and a dead letter a
    connector emitted passes through.
    """
    if isinstance(item, DeadLetter):  # a connector already refused it (e.g. a bad payload)
        return [item]
    if isinstance(item, RawMessage):
        try:
            frame: Frame = decode(item)
        except DecodeError as exc:
            return [dead_letter_for(item, exc, stage="decode")]
    elif isinstance(item, TelemetryFrame | WaveformFrame):
        frame = item
    else:
        return [
            DeadLetter(
                stage="decode",
                reason=f"unsupported input of type {type(item).__name__}; expected a "
                "TelemetryFrame, WaveformFrame or RawMessage",
                source="unknown",
                time=utc(now),
                payload=repr(item)[:200],
            )
        ]
    accepted, dead = validator.validate(frame, now)
    out: list[Frame | DeadLetter] = list(dead)
    if accepted is not None:
        out.append(accepted)
    return out


def deployed_type(
    item: Frame | DesiredChange, types: Mapping[str, TwinType] | None = None
) -> TwinType:
    """The twin's type as deployed: ``types[twin_id]`` (e.g. limited to the signals its
    protocol binding carries), else the catalogue's type."""
    if types is not None and item.twin_id in types:
        return types[item.twin_id]
    return twin_type(item.twin_type)
