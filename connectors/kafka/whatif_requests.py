"""The ``whatif`` kind of request on the command request topic.

A request whose JSON object has a ``whatif`` field asks for a what-if of one twin::

    {"request_id": "ops-4713", "twin_id": "M1", "expires_at": "2026-01-01T00:05:00Z",
     "whatif": {"horizon": "2h", "scenarios": [{"name": "derate now",
                "steps": [{"command": "derate", "params": {"fraction": 0.7}}]}]}}

``whatif`` holds the scenario document of ``twinflow whatif`` (its ``twin:``, if given, must
be the request's twin; ``dynamics:``, an import path, is refused: a message on a topic must
not choose code for the flow to import; the flow runs the dynamics the twin's type declares in
its profile, ``whatif: {dynamics: ...}``, or the simulator's for a bundled type). Once it is
recognisably a what-if request, nothing in it becomes a dead letter: every problem (a missing
or mistyped field, an unknown twin, a bad scenario field) is a ``rejected``
:class:`~twinflow.operators.whatif.request.WhatIfResult` whose reason names the field, so the
asker gets an answer on the results topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from twinflow.connectors.kafka.request_json import bounded_time, show
from twinflow.core.errors import ConfigError, ValidationError
from twinflow.operators.catalog import TwinType
from twinflow.operators.whatif import read_whatif
from twinflow.operators.whatif.request import REJECTED, WhatIfRequest, WhatIfResult

FIELDS = ("request_id", "twin_id", "expires_at", "whatif", "twin_type")
REQUIRED = FIELDS[:4]
#: Longest id accepted (as for command requests).
MAX_NAME = 128


def is_whatif(doc: Mapping[str, Any]) -> bool:
    """Whether a request object is of the ``whatif`` kind."""
    return "whatif" in doc


def read_whatif_request(
    doc: Mapping[str, Any],
    issued_at: datetime,
    twins: Mapping[str, str] | None,
    catalog: Mapping[str, TwinType],
) -> WhatIfRequest | WhatIfResult:
    """The request, or its ``rejected`` result with the reason; never raises."""
    rid = _text(doc.get("request_id"))
    twin = _text(doc.get("twin_id"))
    kind = doc.get("twin_type") if isinstance(doc.get("twin_type"), str) else None
    try:
        return _request(doc, issued_at, twins, catalog)
    except (ValidationError, ConfigError) as exc:
        kind = (twins or {}).get(twin, kind)
        return WhatIfResult(rid, twin, kind, REJECTED, issued_at, str(exc))


def _text(raw: Any) -> str:
    return raw[:MAX_NAME] if isinstance(raw, str) else ""


def _request(
    doc: Mapping[str, Any],
    issued_at: datetime,
    twins: Mapping[str, str] | None,
    catalog: Mapping[str, TwinType],
) -> WhatIfRequest:
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise ValidationError(
            f"what-if request: missing field(s) {', '.join(missing)}; it needs "
            f"{', '.join(REQUIRED)}"
        )
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise ValidationError(
            f"what-if request: unknown field(s) {', '.join(k[:40] for k in unknown[:8])}; "
            f"allowed: {', '.join(FIELDS)}"
        )
    for name in ("request_id", "twin_id"):
        value = doc[name]
        if not isinstance(value, str) or not value or len(value) > MAX_NAME:
            raise ValidationError(
                f"what-if request: field {name!r} must be a string of 1 to {MAX_NAME} "
                f"characters, got {show(value)}"
            )
    rid, twin = doc["request_id"], doc["twin_id"]
    where = f"what-if request {show(rid)}"
    kind = _kind(doc, twin, where, twins, catalog)
    expires = bounded_time(doc["expires_at"], "expires_at")
    if not isinstance(doc["whatif"], dict):
        raise ValidationError(f"{where}: field 'whatif' must be an object (a what-if document)")
    if doc["whatif"].get("dynamics") is not None:
        raise ValidationError(
            f"{where}: whatif.dynamics is not accepted in a request (a request may not choose "
            "code to import); the flow runs the dynamics the twin's type declares in its profile "
            "(whatif.dynamics), or the simulator's for a bundled type"
        )
    whatif = read_whatif(doc["whatif"], Path(f"{where}: whatif"))
    if whatif.twin is not None and whatif.twin != twin:
        raise ValidationError(
            f"{where}: whatif.twin {show(whatif.twin)} is not the request's twin {show(twin)}"
        )
    return WhatIfRequest(rid, twin, kind.name, whatif, issued_at, expires)


def _kind(
    doc: Mapping[str, Any],
    twin: str,
    where: str,
    twins: Mapping[str, str] | None,
    catalog: Mapping[str, TwinType],
) -> TwinType:
    given = doc.get("twin_type")
    if given is not None and (not isinstance(given, str) or not given):
        raise ValidationError(f"{where}: field 'twin_type' must be a non-empty string")
    if twins is not None:
        if twin not in twins:
            raise ValidationError(f"{where}: unknown twin {show(twin)}; not in the deployment")
        if given is not None and given != twins[twin]:
            raise ValidationError(
                f"{where}: twin_type {show(given)} is not the twin's type {twins[twin]!r}"
            )
        given = twins[twin]
    if given is None:
        raise ValidationError(f"{where}: field 'twin_type' is needed (no twin registry)")
    if given not in catalog:
        raise ValidationError(f"{where}: unknown twin type {show(given)}")
    return catalog[given]


__all__ = ["FIELDS", "is_whatif", "read_whatif_request"]
