"""Telemetry from Kafka topics: each message becomes a :class:`RawMessage` for the decoder.

Payloads are telemetry wire format v1 (see :mod:`twinflow.operators.decode`); the flow's
``decode_validate`` step decodes them, so a bad payload becomes a dead letter there with the
same reasons as from any other protocol. A message without a value (a tombstone) becomes a
dead letter here. Keys and headers are not used: the payload names its twin.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Message

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.source import KafkaMessageSource
from twinflow.core.errors import ConfigError
from twinflow.core.records import DeadLetter, RawMessage
from twinflow.core.times import utc


def raw_messages(msgs: Sequence[Message], received: float) -> list[RawMessage | DeadLetter]:
    """One :class:`RawMessage` per message, sourced ``kafka:<topic>`` (the hot path).

    A message's time is its Kafka timestamp (``received``, the fetch time, only when it has
    none), so a message read again after recovery yields the same dead letter as the first
    time, and the idempotent sinks store it once.
    """
    source = f"kafka:{msgs[0].topic()}"
    return [
        RawMessage(source, value, _time(m, received))
        if (value := m.value()) is not None
        else _tombstone(m, _time(m, received))
        for m in msgs
    ]


def _time(m: Message, received: float) -> float:
    kind, ms = m.timestamp()
    return received if kind == TIMESTAMP_NOT_AVAILABLE else ms / 1000.0


def _tombstone(m: Message, received: float) -> DeadLetter:
    return DeadLetter(
        stage="decode",
        reason=f"Kafka message at partition {m.partition()} offset {m.offset()} has no value "
        "(a tombstone); telemetry needs a JSON payload",
        source=f"kafka:{m.topic()}",
        time=utc(received),
        payload=repr(m.key())[:200],
    )


def kafka_telemetry_source(
    settings: KafkaSettings,
    *,
    tail: bool = True,
    starting_offset: int = OFFSET_BEGINNING,
    batch_size: int = 1000,
) -> KafkaMessageSource:
    """Telemetry from ``settings.telemetry_topics`` as :class:`RawMessage` items.

    Feed it to ``twinflow.flows.telemetry.build_flow``; Bytewax recovery resumes each
    partition after the last message of the last snapshot (at-least-once: messages read
    after that snapshot are read again, and the flow's sinks are idempotent). ``tail=False``
    stops at the end of the topics.
    """
    if not settings.telemetry_topics:
        raise ConfigError(
            "kafka.telemetry_topics is empty; list the topics that carry telemetry, "
            "e.g. telemetry_topics: [plant.telemetry]"
        )
    return KafkaMessageSource(
        settings,
        settings.telemetry_topics,
        raw_messages,
        tail=tail,
        starting_offset=starting_offset,
        batch_size=batch_size,
    )


__all__ = ["kafka_telemetry_source", "raw_messages"]
