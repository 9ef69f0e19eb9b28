"""Signed requests cannot be replayed, and grants cannot name what the deployment lacks.

A signed request may expire at most ``max_validity`` after it is read; the twin's command
book keeps the id of every finished external request until it expires, so a copy sent again
is dropped however many commands came in between; a grant naming an unknown twin, type,
asset, command or property is refused when the deployment is loaded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from twinflow.connectors.kafka.command_requests import REFUSED, CommandRequests
from twinflow.connectors.kafka.request_auth import (
    ISSUER_HEADER,
    SIGNATURE_HEADER,
    Grant,
    Key,
    RequestAuth,
)
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, CommandStatus
from twinflow.core.times import iso
from twinflow.flows.deploy import load_deployment
from twinflow.operators.catalog import CATALOG
from twinflow.operators.command_book import CommandBook, CommandSettings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MS = (TIMESTAMP_CREATE_TIME, int(T0.timestamp() * 1000))
OPS = Key(b"ops-key-0123456789abcdef")
AUTH = RequestAuth(
    {"ops": OPS},
    (Grant("ops", commands=frozenset({"set_flow"}), types=frozenset({"pump"})),),
    max_validity_s=600.0,
)


def request(rid: str, expires: datetime) -> bytes:
    doc = {"request_id": rid, "twin_id": "P1", "command": "set_flow", "params": {"m3h": 250}}
    return json.dumps({**doc, "expires_at": iso(expires)}).encode()


def judged(value: bytes, read_at: datetime) -> Command:
    headers = [(ISSUER_HEADER, b"ops"), (SIGNATURE_HEADER, OPS.sign(value).encode())]
    item = CommandRequests({"P1": "pump"}, auth=AUTH).item(
        value, "kafka:req", MS, read_at.timestamp(), headers
    )
    assert isinstance(item, Command), item
    return item


def test_a_signed_request_valid_for_longer_than_max_validity_is_rejected() -> None:
    before = REFUSED.labels("too_long")._value.get()  # type: ignore[attr-defined]
    ok = judged(request("short", T0 + timedelta(minutes=10)), T0)
    long = judged(request("long", T0 + timedelta(minutes=10, seconds=1)), T0)
    assert ok.status is CommandStatus.ISSUED
    assert long.status is CommandStatus.REJECTED
    assert "at most 600 s" in long.detail and "max_validity" in long.detail
    assert REFUSED.labels("too_long")._value.get() == before + 1  # type: ignore[attr-defined]


def test_a_copied_request_is_dropped_until_it_expires_however_many_came_since() -> None:
    settings = CommandSettings(remember=16, rate_limit=1000, max_open=1000)
    book = CommandBook(CATALOG["pump"], settings)
    now = T0.timestamp()
    first = judged(request("first", T0 + timedelta(minutes=10)), T0)
    (queued,) = book.submit(first, now)
    assert queued.status is CommandStatus.QUEUED
    for i in range(50):  # more than `remember`: the deque of finished ids forgets it
        later = judged(request(f"other-{i}", T0 + timedelta(minutes=10)), T0)
        book.submit(later, now + i)
    book.tick(now + 60)  # everything open times out (no device answers)
    assert first.command_id not in book.finished
    assert book.submit(first, now + 120) == []  # a replay: dropped, not carried out again
    (ended,) = book.submit(first, now + 601)  # once expired, a copy only ends `expired`
    assert ended.status is CommandStatus.EXPIRED


def test_the_memory_of_unexpired_requests_is_bounded() -> None:
    book = CommandBook(CATALOG["pump"], CommandSettings(remember=2, rate_limit=1))
    now = T0.timestamp()
    for i in range(40):
        book.submit(judged(request(f"r{i}", T0 + timedelta(minutes=5 + i % 5)), T0), now)
    assert len(book.unexpired) == 8  # 4 * remember
    assert all(t > now for t in book.unexpired.values())


PLANT = """
version: 1
site: plant-a
assets:
  - {{id: line-1, type: line}}
services:
  kafka:
    telemetry_topics: [tel]
    command_requests_topic: req
    requests:
      issuers: {{ops: {{key_env: OPS_KEY}}}}
      allow: [{grant}]
twins:
  - {{id: P1, type: pump, protocol: kafka, part_of: line-1}}
"""


@pytest.mark.parametrize(
    ("grant", "error"),
    [
        ("{issuer: ops, commands: [set_flow], twins: [P9]}", "twin 'P9' is not in the deployment"),
        ("{issuer: ops, commands: [set_flow], types: [pmup]}", "type 'pmup' is not in the"),
        ("{issuer: ops, commands: [set_flow], assets: [line-2]}", "asset 'line-2' is not in"),
        ("{issuer: ops, commands: [set_flwo], twins: [P1]}", "command 'set_flwo' is not declared"),
        ("{issuer: ops, properties: [speed], types: [pump]}", "property 'speed' is not declared"),
    ],
)
def test_a_grant_naming_what_the_deployment_lacks_is_refused(
    tmp_path: Path, grant: str, error: str
) -> None:
    from twinflow.flows.run import request_sources

    path = tmp_path / "plant.yaml"
    path.write_text(PLANT.format(grant=grant))
    dep = load_deployment(path, env={"OPS_KEY": "ops-key-0123456789abcdef"})
    with pytest.raises(ConfigError, match=error) as caught:
        request_sources(dep)
    assert "allow[0]" in str(caught.value) and str(path) in str(caught.value)


def test_grants_by_site_and_wildcards_are_accepted(tmp_path: Path) -> None:
    from twinflow.flows.run import request_sources

    path = tmp_path / "plant.yaml"
    grants: list[Any] = [
        "{issuer: ops, commands: ['*'], assets: [plant-a]}",
        "{issuer: ops, properties: [flow_setpoint], twins: ['*']}",
    ]
    path.write_text(PLANT.format(grant=", ".join(grants)))
    dep = load_deployment(path, env={"OPS_KEY": "ops-key-0123456789abcdef"})
    assert len(request_sources(dep)) == 1
