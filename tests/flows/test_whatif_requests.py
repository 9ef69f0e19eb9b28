"""The ``whatif`` kind of Kafka request, read without a broker: every problem is a rejected
result naming the field, grants need ``whatif`` among their commands, and a request may not
name code to import."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from twinflow.connectors.kafka.command_requests import CommandRequests
from twinflow.connectors.kafka.request_auth import (
    ISSUER_HEADER,
    SIGNATURE_HEADER,
    Grant,
    Key,
    RequestAuth,
)
from twinflow.core.records import DeadLetter
from twinflow.core.times import iso
from twinflow.operators.whatif.request import WhatIfRequest, WhatIfResult

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MS = (TIMESTAMP_CREATE_TIME, int(T0.timestamp() * 1000))
KEY = Key(b"planning-key-0123456789abcdef")
SCENARIO = {"horizon": "1h", "scenarios": [{"name": "hotter", "steps": [{"change": {"a": 5}}]}]}


def doc(**changes: Any) -> dict[str, Any]:
    base = {"request_id": "w1", "twin_id": "M1", "expires_at": iso(T0 + timedelta(minutes=5))}
    return {**base, "whatif": SCENARIO, **changes}


def read(value: dict[str, Any] | bytes, auth: RequestAuth | None = None) -> Any:
    payload = value if isinstance(value, bytes) else json.dumps(value).encode()
    headers = [(ISSUER_HEADER, b"planning"), (SIGNATURE_HEADER, KEY.sign(payload).encode())]
    reader = CommandRequests({"M1": "motor"}, auth=auth)
    return reader.item(payload, "kafka:req", MS, T0.timestamp(), headers)


def test_a_wellformed_request_is_read_with_its_scenarios() -> None:
    item = read(doc())
    assert isinstance(item, WhatIfRequest)
    assert (item.twin_id, item.twin_type, item.issued_at) == ("M1", "motor", T0)
    assert [s.name for s in item.whatif.all_scenarios] == ["no change", "hotter"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (doc(whatif={"scenarios": []}), "scenarios must be a non-empty list"),
        (doc(whatif={"horizon": "soon", "scenarios": SCENARIO["scenarios"]}), "horizon"),
        (doc(whatif={**SCENARIO, "dynamics": "os:system"}), "whatif.dynamics is not accepted"),
        (doc(whatif={**SCENARIO, "twin": "M2"}), "whatif.twin 'M2' is not the request's twin"),
        (doc(whatif="derate"), "field 'whatif' must be an object"),
        (doc(twin_id="M9"), "unknown twin 'M9'"),
        (doc(expires_at="tomorrow"), "expires_at 'tomorrow' is not ISO-8601"),
        (doc(params={}), "unknown field(s) params"),
        ({"request_id": "w1", "twin_id": "M1", "whatif": SCENARIO}, "missing field(s) expires_at"),
    ],
)
def test_a_bad_request_is_a_rejected_result_naming_the_field(
    value: dict[str, Any], words: str
) -> None:
    item = read(value)
    assert isinstance(item, WhatIfResult), item
    assert item.status == "rejected" and words in str(item.reason), item.reason
    assert item.request_id == "w1" and item.report is None


def test_bad_json_stays_a_dead_letter() -> None:
    assert isinstance(read(b'{"whatif": '), DeadLetter)


def test_grants_need_whatif_among_their_commands() -> None:
    allowed = RequestAuth({"planning": KEY}, (Grant("planning", frozenset({"whatif"}),
                                                    types=frozenset({"motor"})),))  # fmt: skip
    derate_only = RequestAuth({"planning": KEY}, (Grant("planning", frozenset({"derate"}),
                                                        types=frozenset({"motor"})),))  # fmt: skip
    assert isinstance(read(doc(), allowed), WhatIfRequest)
    refused = read(doc(), derate_only)
    assert isinstance(refused, WhatIfResult) and refused.status == "rejected"
    assert "may not send command 'whatif'" in str(refused.reason)
