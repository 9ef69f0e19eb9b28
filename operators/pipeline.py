"""The flow's first operator: one input (raw payload, frame or dead letter) checked.

Plain Python, without Bytewax or the flow's settings: connectors and tests call it directly,
and ``twinflow.flows.steps`` adapts it (and every other step) to Bytewax.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


def check_item(item: object, validator: Validator, now: float) -> list[Frame | DeadLetter]:
    """Decode (raw payloads) and validate one input; never raises.

    Returns the accepted frame (possibly with out-of-range readings blanked) and any dead
    letters; an input of an unknown kind becomes a dead letter too, and a dead letter a
    connector emitted passes through. An unexpected error of the decoder or validator (a
    bug, or an input no check foresaw) becomes a dead letter naming it rather than an
    exception out of the step, which recovery would replay into a crash loop.
    """
    try:
        return _check(item, validator, now)
    except Exception as exc:
        log.warning("input refused by an unexpected %s: %s", type(exc).__name__, exc)
        stage = "validate" if isinstance(item, TelemetryFrame | WaveformFrame) else "decode"
        reason = f"unexpected {type(exc).__name__} while checking the input: {str(exc)[:200]}"
        if isinstance(item, RawMessage):
            try:
                return [dead_letter_for(item, DecodeError(reason), stage=stage)]
            except Exception:  # a payload that is not bytes: describe the item instead
                pass
        return [
            DeadLetter(
                stage=stage,
                reason=reason,
                source=str(getattr(item, "source", "unknown"))[:200],
                time=utc(now),
                twin_id=_text_or_none(getattr(item, "twin_id", None)),
                payload=_repr(item),
            )
        ]


def _text_or_none(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _repr(item: object) -> str:
    try:
        return repr(item)[:200]
    except Exception as exc:  # a repr that fails in turn
        return f"<{type(item).__name__}: repr failed with {type(exc).__name__}>"


def _check(item: object, validator: Validator, now: float) -> list[Frame | DeadLetter]:
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
                payload=_repr(item),
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
