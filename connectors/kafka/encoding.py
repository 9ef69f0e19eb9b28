"""How a Kafka sink turns an item into a message: its key, JSON value and headers."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from twinflow.connectors.kafka.outbox import Headers
from twinflow.core.errors import TwinflowError

ToJson = Callable[[Any], Mapping[str, Any]]
KeyOf = Callable[[Any], str]


def twin_id_of(item: Any) -> str:
    """The Kafka key of an alert, command or twin state: its twin id."""
    return str(item.twin_id)


#: Compact JSON, no NaN, UTF-8 as is (one encoder: ``json.dumps`` with options makes one a call).
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


@functools.lru_cache(maxsize=256)
def _headers(schema: Any, version: Any) -> Headers:
    """The ``schema`` and ``version`` headers of a document (shared: never changed)."""
    named = (("schema", schema), ("version", version))
    return [(h, str(v).encode()) for h, v in named if v is not None]


def encode(to_json: ToJson, item: Any, key: str, topic: str) -> tuple[bytes, Headers]:
    """The value and headers of ``item`` (of twin or asset ``key``) for ``topic``."""
    try:
        doc = to_json(item)
        value = _JSON.encode(doc)
    except (TypeError, ValueError) as exc:
        raise TwinflowError(
            f"cannot write {type(item).__name__} of twin {key!r} to Kafka topic {topic!r} as "
            f"JSON: {exc}"
        ) from exc
    return value.encode(), _headers(doc.get("schema"), doc.get("version"))


__all__ = ["KeyOf", "ToJson", "encode", "twin_id_of"]
