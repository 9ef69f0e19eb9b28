"""librdkafka client settings built from :class:`~twinflow.connectors.bindings.KafkaSettings`.

Defaults first, then ``settings.extra`` (SASL, TLS, tuning: anything librdkafka knows, e.g.
``security.protocol``, ``sasl.mechanism``, ``sasl.username``, ``ssl.ca.location``), then what
the connector itself must set (group id, end-of-partition events, delivery callback).
``extra`` may not name what has a field of its own (``bootstrap.servers``, ``group.id``) nor
weaken the producer's durability (``acks``, ``enable.idempotence``): such a deployment file
is refused with a :class:`ConfigError`.

>>> from twinflow.connectors.bindings import KafkaSettings
>>> s = KafkaSettings(bootstrap="k1:9092", extra={"security.protocol": "SASL_SSL"})
>>> p = producer_config(s)
>>> p["acks"], p["enable.idempotence"], p["security.protocol"], p["bootstrap.servers"]
('all', True, 'SASL_SSL', 'k1:9092')
>>> producer_config(KafkaSettings(extra={"acks": "1"}))
Traceback (most recent call last):
...
twinflow.core.errors.ConfigError: kafka.extra sets acks='1', which would weaken ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError

from twinflow.connectors.bindings import KafkaSettings
from twinflow.connectors.kafka.links import STATS_INTERVAL_MS
from twinflow.connectors.kafka.logs import OncePerCondition
from twinflow.core.errors import ConfigError

#: librdkafka's log lines and error events go to this logger (served on poll/consume), one
#: line per condition a minute while a broker is away (see :mod:`.logs`).
LOG = logging.getLogger("twinflow.kafka")
LOG.addFilter(OncePerCondition(window_s=60.0))

#: Producer defaults: every write acknowledged by all in-sync replicas, no duplicates or
#: reordering on retries, small batches (5 ms, so alerts leave sooner: issue 13) compressed
#: with lz4, and the Java client's partitioner so a twin's key lands on the same partition as
#: from any other client.
PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "compression.type": "lz4",
    "partitioner": "murmur2_random",
}

#: Consumer defaults: offsets live in Bytewax's recovery state, never in the group; a resume
#: offset already deleted by retention restarts at the oldest message still kept; fetches
#: return after at most 10 ms (librdkafka's 500 ms default halves throughput on Tansu, and at
#: 100 ms new readings waited behind an idle fetch: tens of ms more to an alert); each
#: partition's consumer fetches ahead at most 16 MB (librdkafka's default 64 MB is 256 MB with
#: four partitions; bench_e2e --memory-variants: no throughput loss measured at 16 MB).
CONSUMER_DEFAULTS: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 10,
    "queued.max.messages.kbytes": 16384,
}

_OWN_FIELDS = {"bootstrap.servers": "bootstrap", "group.id": "group_id"}
_DURABLE = {"acks": ("all", "-1"), "enable.idempotence": ("true",)}


def check_extra(extra: Mapping[str, Any], section: str = "kafka", file: object = None) -> None:
    """Refuse ``extra`` settings that have a field of their own or weaken durability.

    The deployment loader calls this with the file and ``services.kafka`` so the error names
    both; the client builders call it again for settings built in code.
    """
    at = f"{file}: {section}" if file is not None else section
    for key, field in _OWN_FIELDS.items():
        if key in extra:
            raise ConfigError(
                f"{at}.extra sets {key!r}; set {section}.{field} instead (the environment "
                "variable KAFKA_BOOTSTRAP overrides the bootstrap servers)"
            )
    for key, allowed in _DURABLE.items():
        if key in extra and str(extra[key]).lower() not in allowed:
            raise ConfigError(
                f"{at}.extra sets {key}={extra[key]!r}, which would weaken the delivery "
                f"guarantee of alerts and commands; remove it (twinflow uses {key}={allowed[0]})"
            )


def _base(settings: KafkaSettings) -> dict[str, Any]:
    check_extra(settings.extra)
    return {
        "bootstrap.servers": settings.bootstrap,
        "client.id": "twinflow",  # names twinflow in broker logs and quotas; extra may override
        "logger": LOG,
        "error_cb": log_error,
    }


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Settings of a durable producer: defaults, ``settings.extra``, then ``overrides``."""
    config = _base(settings)
    config.update(PRODUCER_DEFAULTS)
    config.update(settings.extra)
    config.update(overrides)
    return config


def sink_producer_config(
    settings: KafkaSettings,
    max_messages: int,
    on_error: Callable[[KafkaError], None],
    on_stats: Callable[[str], None],
) -> dict[str, Any]:
    """A sink partition's producer: reports errors to ``on_error`` and librdkafka's statistics
    (broker connection states) to ``on_stats``; its queue holds more than the sink's outbox
    (``max_messages``); it retries until delivered unless ``extra`` sets a message timeout."""
    overrides: dict[str, Any] = {
        "error_cb": on_error,
        "stats_cb": on_stats,
        "statistics.interval.ms": STATS_INTERVAL_MS,
        "queue.buffering.max.messages": max(max_messages + 1000, 100_000),
    }
    if not {"message.timeout.ms", "delivery.timeout.ms"} & set(settings.extra):
        overrides["message.timeout.ms"] = 0  # the outbox bounds what waits
    return producer_config(settings, **overrides)


def consumer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Settings of a consumer that is assigned partitions (no group rebalancing)."""
    config = _base(settings)
    config.update(CONSUMER_DEFAULTS)
    config.update(settings.extra)
    config["group.id"] = settings.group_id
    config.update(overrides)
    return config


def admin_config(settings: KafkaSettings) -> dict[str, Any]:
    """Settings of the admin client that lists partitions (connection and security only)."""
    config = _base(settings)
    config.update(settings.extra)
    return config


def log_error(error: KafkaError) -> None:
    """librdkafka error events (broker down, auth failures): logged, the client retries.

    Fatal errors are raised by the client itself on its next call, and by the sink.
    """
    level = logging.ERROR if error.fatal() else logging.WARNING
    LOG.log(level, "kafka client error: %s", error)


__all__ = [
    "CONSUMER_DEFAULTS",
    "LOG",
    "PRODUCER_DEFAULTS",
    "admin_config",
    "check_extra",
    "consumer_config",
    "log_error",
    "producer_config",
    "sink_producer_config",
]
