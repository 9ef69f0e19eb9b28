"""``twinflow whatif kafka FILE --config plant.yaml``: ask the running flow, over Kafka.

The what-if file is checked here first (a bad field is an error before anything is sent),
then sent as a ``whatif`` request on the deployment's command request topic, signed when
``--issuer`` names one of ``services.kafka.requests.issuers`` (its key comes from the
environment or secret file the deployment names); the answer is read from
``whatif_results_topic``: the ``whatif_result`` document whose ``request_id`` is ours.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from twinflow.core.errors import ConfigError
from twinflow.core.times import iso
from twinflow.operators.whatif import read_whatif

#: How long after it is sent a request stays valid (within a deployment's max_validity).
VALID_S = 600.0


def read_document(path: Path, twin: str | None) -> tuple[dict[str, Any], str]:
    """The what-if file's document (checked) and the twin it is for."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"what-if file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON: {exc}") from None
    whatif = read_whatif(data, path)
    if whatif.dynamics is not None:
        raise ConfigError(
            f"{path}: dynamics: the flow does not take dynamics from a request; it runs those "
            "the twin type's profile declares (whatif.dynamics)"
        )
    chosen = twin or whatif.twin
    if chosen is None:
        raise ConfigError(f"{path}: name the twin (twin: in the file, or --twin)")
    doc = dict(data)
    doc.pop("twin", None)
    return doc, chosen


def ask_flow(
    kafka: Any,
    document: dict[str, Any],
    twin: str,
    *,
    issuer: str | None = None,
    timeout_s: float = 120.0,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Send a what-if request for ``twin`` and wait for its result document."""
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

    from twinflow.connectors.kafka.config import consumer_config, producer_config
    from twinflow.connectors.kafka.request_auth import ISSUER_HEADER, SIGNATURE_HEADER

    asked, answers = kafka.command_requests_topic, getattr(kafka, "whatif_results_topic", None)
    if not asked or not answers:
        raise ConfigError(
            "asking the running flow needs services.kafka.command_requests_topic and "
            "whatif_results_topic in the deployment file"
        )
    headers = None
    rid = request_id or f"whatif-cli-{uuid.uuid4()}"
    auth = getattr(kafka, "requests", None)
    valid = min(VALID_S, auth.max_validity_s) if auth is not None else VALID_S
    expires = datetime.now(UTC) + timedelta(seconds=valid)
    value = json.dumps(
        {"request_id": rid, "twin_id": twin, "expires_at": iso(expires), "whatif": document}
    ).encode()
    if issuer is not None:
        keys = auth.keys if auth is not None else {}
        if issuer not in keys:
            raise ConfigError(
                f"--issuer {issuer!r} is not under services.kafka.requests.issuers "
                f"({', '.join(sorted(keys)) or 'none'})"
            )
        headers = [(ISSUER_HEADER, issuer.encode()), (SIGNATURE_HEADER, keys[issuer].sign(value))]
    consumer = Consumer(consumer_config(kafka, **{"group.id": f"twinflow-whatif-{rid}"}))
    try:
        meta = consumer.list_topics(answers, timeout=10)
        parts = meta.topics[answers].partitions if answers in meta.topics else {}
        if not parts:
            raise ConfigError(f"the results topic {answers!r} has no partitions (does it exist?)")
        ends = []
        for p in parts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(answers, p), timeout=10)
            ends.append(TopicPartition(answers, p, high if high >= 0 else OFFSET_END))
        consumer.assign(ends)
        producer = Producer(producer_config(kafka))
        producer.produce(asked, value, twin.encode(), headers=headers)
        if producer.flush(30):
            raise ConfigError(f"the request was not delivered to {asked!r} within 30 s")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            got = None if msg is None or msg.error() is not None else msg.value()
            if got is None:
                continue
            doc = json.loads(got)
            if isinstance(doc, dict) and doc.get("request_id") == rid:
                return doc
    finally:
        consumer.close()
    raise ConfigError(f"no answer to what-if request {rid} on {answers!r} within {timeout_s:g} s")


__all__ = ["ask_flow", "read_document"]
