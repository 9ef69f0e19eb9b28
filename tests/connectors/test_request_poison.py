"""Poison command requests: any byte sequence is a request or a dead letter with a reason.

The cases measured in issue 11 (each one used to raise out of the request step, and so crash
the flow again at every resume) are explicit examples of a property test over the parser and
the command book behind it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from twinflow.connectors.kafka.command_requests import CommandRequests, parse_command_request
from twinflow.connectors.kafka.request_json import MAX_BYTES, nesting
from twinflow.core.records import Command, DeadLetter, DesiredChange
from twinflow.operators.catalog import CATALOG
from twinflow.operators.command_book import CommandBook

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TWINS = {"P1": "pump", "T1": "wind_turbine"}


def request(params: str = '{"m3h": 250}', expires_at: str = "2026-01-01T00:05:00Z") -> bytes:
    return (
        '{"request_id": "ops-1", "twin_id": "P1", "command": "set_flow", '
        f'"params": {params}, "expires_at": "{expires_at}"}}'
    ).encode()


DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_PARAMS = request('{"a":' * 10_000 + "1" + "}" * 10_000)
INT_400 = request('{"m3h": ' + "9" * 400 + "}")
INT_5000 = request('{"m3h": ' + "9" * 5000 + "}")
FLOAT_HUGE = request('{"m3h": 1e400}')
NAN = request('{"m3h": NaN}')
LATE = request(expires_at="9999-12-31T23:59:59-23:59")
EARLY = request(expires_at="0001-01-01T00:00:00+23:59")
HUGE = b'{"request_id": "' + b"x" * (MAX_BYTES * 16) + b'"}'
LONG_ID = json.dumps(
    {
        "request_id": "r" * 10_000,
        "twin_id": "P1",
        "command": "set_flow",
        "params": {"m3h": 1},
        "expires_at": "2026-01-01T00:05:00Z",
    }
).encode()

POISON = {
    "nested 10,000 deep": (DEEP_ARRAY, "nested 10000 deep"),
    "params nested 10,000 deep": (DEEP_PARAMS, "nested 10001 deep"),
    "integer of 400 digits": (INT_400, "integer of 400 digits"),
    "integer of 5,000 digits": (INT_5000, "integer of 5000 digits"),
    "float beyond double": (FLOAT_HUGE, "out of range"),
    "NaN": (NAN, "not a JSON number"),
    "expires_at 9999-12-31T23:59:59-23:59": (LATE, "lies outside"),
    "expires_at 0001-01-01T00:00:00+23:59": (EARLY, "lies outside"),
    "huge payload": (HUGE, "exceeds 65536 bytes"),
    "request id of 10,000 characters": (LONG_ID, "longer than 128 characters"),
}


def run_through(payload: bytes) -> None:
    """Parse, then put what came out through the command book and its JSON; nothing raises."""
    item = parse_command_request(payload, source="kafka:req", issued_at=T0, twins=TWINS)
    assert isinstance(item, Command | DesiredChange | DeadLetter)
    if isinstance(item, DeadLetter):
        assert item.reason and len(item.reason) < 1_000
        json.dumps(item.to_json())
        return
    book = CommandBook(CATALOG[item.twin_type])
    now = T0.timestamp()
    out = book.desire(item, now) if isinstance(item, DesiredChange) else book.submit(item, now)
    for command in out + book.tick(now + 3600):
        json.dumps(command.to_json(), allow_nan=False)


@pytest.mark.parametrize("case", sorted(POISON))
def test_each_poison_request_is_a_dead_letter_with_the_reason(case: str) -> None:
    payload, reason = POISON[case]
    dead = parse_command_request(payload, source="kafka:req", issued_at=T0, twins=TWINS)
    assert isinstance(dead, DeadLetter), dead
    assert reason in dead.reason, dead.reason
    assert len(dead.reason) < 300 and len(dead.payload) <= 1_024


def test_a_far_but_valid_expiry_is_carried_in_utc() -> None:
    item = parse_command_request(
        request(expires_at="8999-12-31T23:59:59+23:59"), source="k", issued_at=T0, twins=TWINS
    )
    assert isinstance(item, Command) and item.expires_at.utcoffset() is not None
    assert item.expires_at == datetime(8999, 12, 31, 0, 0, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "ms"),
    [(TIMESTAMP_CREATE_TIME, 253_402_300_800_000 * 10), (TIMESTAMP_CREATE_TIME, -5)],
)
def test_a_kafka_timestamp_outside_the_range_is_a_dead_letter(kind: int, ms: int) -> None:
    dead = CommandRequests(TWINS).item(request(), "kafka:req", (kind, ms), T0.timestamp())
    assert isinstance(dead, DeadLetter) and "Kafka timestamp" in dead.reason, dead
    assert dead.time == T0


def test_a_message_without_timestamp_takes_the_fetch_time() -> None:
    item = CommandRequests(TWINS).item(
        request(), "kafka:req", (TIMESTAMP_NOT_AVAILABLE, 0), T0.timestamp()
    )
    assert isinstance(item, Command) and item.issued_at == T0


def test_nesting_ignores_brackets_inside_strings() -> None:
    assert nesting('{"a": "[[[[{{{{\\"]]"}') == 1


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "P1",
            "T1",
            "pump",
            "set_flow",
            "derate",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2026-01-01T00:05:00Z",
            "2026-01-01T00:05:00",
        ]
    ),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_requests = st.fixed_dictionaries(
    {},
    optional={
        "request_id": st.one_of(st.text(max_size=10), _json),
        "twin_id": st.one_of(st.sampled_from(["P1", "T1", "X"]), _json),
        "twin_type": st.one_of(st.sampled_from(["pump", "wind_turbine"]), _json),
        "command": st.one_of(st.sampled_from(["set_flow", "derate", "explode"]), _json),
        "params": st.one_of(
            st.dictionaries(st.sampled_from(["m3h", "fraction", "x"]), _scalars, max_size=3), _json
        ),
        "desired": st.one_of(
            st.dictionaries(
                st.sampled_from(["flow_setpoint", "power_limit", "x"]), _scalars, max_size=2
            ),
            _json,
        ),
        "expires_at": _json,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), _requests.map(lambda d: json.dumps(d).encode())))
@example(DEEP_ARRAY)
@example(DEEP_PARAMS)
@example(INT_400)
@example(INT_5000)
@example(FLOAT_HUGE)
@example(NAN)
@example(LATE)
@example(EARLY)
@example(HUGE)
@example(LONG_ID)
@example(request(expires_at="8999-12-31T23:59:59+23:59"))
def test_any_bytes_become_a_request_or_a_dead_letter(payload: bytes) -> None:
    run_through(payload)


def _doc(value: Any) -> bytes:
    return json.dumps(value).encode()


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**70))
@example(-(10**30))
def test_any_kafka_timestamp_is_a_request_or_a_dead_letter(ms: int) -> None:
    item = CommandRequests(TWINS).item(
        request(), "kafka:req", (TIMESTAMP_CREATE_TIME, ms), T0.timestamp()
    )
    assert isinstance(item, Command | DeadLetter)


@pytest.mark.services
@pytest.mark.timeout(60)
def test_poison_on_the_topic_never_stops_a_flow_that_resumes(tmp_path: Path) -> None:
    """Poison requests between good ones, read by a flow with recovery: every message is an
    item, and each resume goes on after them (no crash loop replaying the same message)."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, run_main
    from confluent_kafka import Producer

    from tests.services.kafka import KafkaBroker, create_topic, unique_topic
    from twinflow.connectors.bindings import KafkaSettings
    from twinflow.connectors.kafka import kafka_command_request_source

    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    with KafkaBroker() as broker:
        topic = create_topic(broker.bootstrap, unique_topic("poison-requests"))
        s = KafkaSettings(bootstrap=broker.bootstrap, command_requests_topic=topic)

        def send(values: list[bytes], **kw: Any) -> None:
            producer = Producer(
                {"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4_000_000}
            )
            for v in values:
                producer.produce(topic, v, **kw)
            assert producer.flush(10) == 0

        def run_once() -> list[Any]:
            out: list[Any] = []
            flow = Dataflow("poison-requests")
            source = kafka_command_request_source(s, twins=TWINS, tail=False)
            op.output("out", op.input("in", flow, source), TestingSink(out))
            run_main(flow, recovery_config=recovery)
            return out

        poison = [payload for payload, _ in POISON.values()]
        send([request(), *poison[:5]])
        send([b"{}"], timestamp=253_402_300_800_000 * 2)  # a Kafka timestamp after 9999
        send(poison[5:])
        first = run_once()
        assert len(first) == 2 + len(poison)
        assert sum(isinstance(x, Command) for x in first) == 1
        dead = [x for x in first if isinstance(x, DeadLetter)]
        assert any("Kafka timestamp" in d.reason for d in dead)
        assert run_once() == []
        send([request()])
        (again,) = run_once()
        assert isinstance(again, Command)
