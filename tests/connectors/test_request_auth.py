"""Command requests are authenticated (HMAC-SHA256 per issuer) and authorised by grants."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Producer

from twinflow.connectors.kafka import kafka_command_request_source
from twinflow.connectors.kafka.command_requests import REFUSED, CommandRequests, command_id_for
from twinflow.connectors.kafka.deploy import SPEC, KafkaService
from twinflow.connectors.kafka.request_auth import (
    ISSUER_HEADER,
    SIGNATURE_HEADER,
    Grant,
    Key,
    RequestAuth,
)
from twinflow.core.errors import ConfigError
from twinflow.core.records import Command, DesiredChange
from twinflow.flows.deploy import load_deployment
from twinflow.operators.catalog import CATALOG
from twinflow.operators.command_book import CommandBook, desired_command_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MS = (TIMESTAMP_CREATE_TIME, int(T0.timestamp() * 1000))
TWINS = {"P1": "pump", "P2": "pump", "T1": "wind_turbine"}
OPS = Key(b"ops-key-0123456789abcdef")
AUTH = RequestAuth(
    {"ops": OPS, "tool": Key(b"tool-key-0123456789abcdef")},
    (
        Grant(
            "ops",
            commands=frozenset({"set_flow"}),
            properties=frozenset({"flow_setpoint"}),
            types=frozenset({"pump"}),
        ),
        Grant("tool", commands=frozenset({"*"}), twins=frozenset({"T1"})),
    ),
)


def body(**changes: Any) -> bytes:
    doc = {
        "request_id": "ops-1",
        "twin_id": "P1",
        "command": "set_flow",
        "params": {"m3h": 250},
        "expires_at": "2026-01-01T00:05:00Z",
    }
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def signed(value: bytes, issuer: str = "ops", key: Key = OPS) -> list[tuple[str, bytes]]:
    return [(ISSUER_HEADER, issuer.encode()), (SIGNATURE_HEADER, key.sign(value).encode())]


def judge(value: bytes, headers: Any) -> Command | DesiredChange:
    item = CommandRequests(TWINS, auth=AUTH).item(value, "kafka:req", MS, T0.timestamp(), headers)
    assert isinstance(item, Command | DesiredChange), item
    return item


def refused(reason: str) -> float:
    return REFUSED.labels(reason)._value.get()  # type: ignore[attr-defined,no-any-return]


def test_a_signed_and_granted_request_passes_and_is_queued() -> None:
    value = body()
    item = judge(value, signed(value))
    assert isinstance(item, Command) and item.status.value == "issued"
    (queued,) = CommandBook(CATALOG["pump"]).submit(item, T0.timestamp())
    assert queued.status.value == "queued"
    change = judge(v := body(command=..., params=..., desired={"flow_setpoint": 200}), signed(v))
    assert isinstance(change, DesiredChange)


@pytest.mark.parametrize(
    ("headers", "reason", "detail"),
    [
        (None, "unsigned", "no twinflow-issuer header"),
        ([(ISSUER_HEADER, b"ops")], "unsigned", "no twinflow-signature header"),
        (
            [(ISSUER_HEADER, b"mallory"), (SIGNATURE_HEADER, b"sha256=00")],
            "unknown_issuer",
            "unknown issuer 'mallory'",
        ),
        (signed(b"another payload"), "bad_signature", "signature does not match issuer 'ops'"),
        (signed(body(), key=Key(b"guessed-key-0123456789")), "bad_signature", "does not match"),
    ],
)
def test_unsigned_and_forged_requests_end_rejected_and_are_counted(
    headers: Any, reason: str, detail: str
) -> None:
    before = refused(reason)
    item = judge(body(), headers)
    assert isinstance(item, Command)
    assert (item.status.value, item.command_id) == ("rejected", command_id_for("ops-1"))
    assert detail in item.detail and item.detail.startswith("not authenticated")
    assert refused(reason) == before + 1
    assert CommandBook(CATALOG["pump"]).submit(item, T0.timestamp()) == [item]
    assert item.to_json()["status"] == "rejected"


@pytest.mark.parametrize(
    ("value", "issuer", "detail"),
    [
        (body(command="stop", params={}), "ops", "may not send command 'stop' to twin 'P1'"),
        (body(twin_id="T1", command="derate", params={"fraction": 0.5}), "ops", "twin 'T1'"),
        (body(command=..., params=..., desired={"flow_setpoint": 1}), "tool", "desired property"),
        (body(), "tool", "issuer 'tool' may not send command 'set_flow' to twin 'P1'"),
    ],
)
def test_requests_outside_the_grants_end_rejected(value: bytes, issuer: str, detail: str) -> None:
    key = AUTH.keys[issuer]
    before = refused("forbidden")
    item = judge(value, signed(value, issuer, key))
    assert isinstance(item, Command) and item.status.value == "rejected", item
    assert detail in item.detail and item.detail.startswith("not authorised")
    assert refused("forbidden") == before + 1


def test_a_refused_desired_change_keeps_the_id_the_book_would_give_it() -> None:
    item = judge(body(command=..., params=..., desired={"flow_setpoint": 200}), None)
    assert isinstance(item, Command) and item.status.value == "rejected"
    assert item.command_id == desired_command_id("P1", "flow_setpoint", "ops-1")
    assert (item.name, item.origin) == ("set_flow", "desired")


def test_the_tool_may_send_anything_to_its_turbine() -> None:
    value = body(twin_id="T1", command="derate", params={"fraction": 0.5})
    item = judge(value, signed(value, "tool", AUTH.keys["tool"]))
    assert isinstance(item, Command) and item.status.value == "issued"


def test_keys_never_show_in_a_repr() -> None:
    assert "ops-key" not in repr(AUTH) and "Key(<secret>)" in repr(AUTH)


# ------------------------------------------------------------------------- deployment file

SECTION = """
version: 1
services:
  kafka:
    command_requests_topic: req
    telemetry_topics: [tel]
    requests:
{requests}
twins:
  - {{id: P1, type: pump, protocol: kafka}}
"""


def deployment(tmp_path: Path, requests: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "plant.yaml"
    indented = "\n".join("      " + line for line in requests.strip().splitlines())
    path.write_text(SECTION.format(requests=indented))
    return load_deployment(path, env=env or {})


def test_the_section_reads_keys_from_the_environment_and_a_secret_file(tmp_path: Path) -> None:
    (tmp_path / "tool.key").write_text("tool-key-0123456789abcdef\n")
    dep = deployment(
        tmp_path,
        """
issuers:
  ops: {key_env: OPS_KEY}
  tool: {key_file: tool.key}
allow:
  - {issuer: ops, commands: [set_flow], properties: [flow_setpoint], types: [pump]}
  - {issuer: tool, commands: ["*"], twins: [T1]}
""",
        env={"OPS_KEY": "ops-key-0123456789abcdef"},
    )
    service = dep.services["kafka"]
    assert isinstance(service, KafkaService) and service.requests is not None
    assert service.requests.keys == AUTH.keys and service.requests.grants == AUTH.grants


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        (
            "issuers: {ops: {key_env: NOPE}}",
            "services.kafka.requests.issuers.ops.key_env: environment variable 'NOPE' is not set",
        ),
        ("issuers: {ops: {key_env: SHORT}}", "holds fewer than 16 bytes"),
        ("issuers: {ops: {key: abc}}", "unknown field 'services.kafka.requests.issuers.ops.key'"),
        ("issuers: {ops: {}}", "services.kafka.requests.issuers.ops needs exactly one of"),
        ("issuers: {ops: {key_file: missing.key}}", "issuers.ops.key_file: cannot read"),
        ("issuers: {}", "services.kafka.requests.issuers is empty"),
        (
            "{issuers: {ops: {key_env: K}}, allow: [{issuer: eve, commands: [x], twins: [P1]}]}",
            "services.kafka.requests.allow[0].issuer = 'eve' is not under issuers",
        ),
        ("{issuers: {ops: {key_env: K}}, allow: [{issuer: ops, twins: [P1]}]}", "grants nothing"),
        ("{issuers: {ops: {key_env: K}}, allow: [{issuer: ops, commands: [x]}]}", "no twins"),
        (
            "{issuers: {ops: {key_env: K}}, allow: [{issuer: ops, commands: x, twins: [P1]}]}",
            "allow[0].commands",
        ),
    ],
)
def test_section_errors_name_the_file_and_field(
    tmp_path: Path, requests: str, message: str
) -> None:
    env = {"K": "k" * 16, "SHORT": "short"}
    with pytest.raises(ConfigError, match=r"plant\.yaml") as err:
        deployment(tmp_path, requests, env)
    assert message in str(err.value), err.value
    assert "k" * 16 not in str(err.value) and "'short'" not in str(err.value)


def test_without_authorisation_a_warning_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    service = KafkaService(command_requests_topic="req")
    with caplog.at_level(logging.WARNING, logger="twinflow.kafka.requests"):
        (source,) = SPEC.request_sources(service, TWINS)
    assert "not authenticated" in caplog.text and source is not None


# ------------------------------------------------------------------------- over real Kafka


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    from tests.services.kafka import KafkaBroker

    with KafkaBroker() as broker:
        yield broker.bootstrap


@pytest.mark.services
@pytest.mark.timeout(60)
def test_headers_travel_over_kafka(bootstrap: str) -> None:
    from tests.connectors.test_kafka import run, settings
    from tests.services.kafka import create_topic, unique_topic

    topic = create_topic(bootstrap, unique_topic("signed"))
    good, forged = body(request_id="good"), body(request_id="forged")
    unsigned = body(request_id="unsigned", expires_at=(T0 + timedelta(days=1)).isoformat())
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, good, headers=signed(good), timestamp=MS[1])
    producer.produce(topic, forged, headers=signed(good)[:1] + signed(b"x")[1:], timestamp=MS[1])
    producer.produce(topic, unsigned, key=uuid.uuid4().bytes, timestamp=MS[1])
    assert producer.flush(10) == 0
    source = kafka_command_request_source(
        settings(bootstrap, command_requests_topic=topic), twins=TWINS, auth=AUTH, tail=False
    )
    items = run(source)
    assert [(c.reason, c.status.value) for c in items] == [
        ("request:good", "issued"),
        ("request:forged", "rejected"),
        ("request:unsigned", "rejected"),
    ]


def test_a_grant_by_asset_covers_the_twins_within_it(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text("""
version: 1
site: plant-a
assets:
  - {id: line-1, type: line}
  - {id: skid-1, type: skid, part_of: line-1}
services:
  kafka:
    telemetry_topics: [tel]
    command_requests_topic: req
    requests:
      issuers: {ops: {key_env: OPS_KEY}}
      allow: [{issuer: ops, commands: [set_flow], assets: [line-1]}]
twins:
  - {id: P1, type: pump, protocol: kafka, part_of: skid-1}
  - {id: P2, type: pump, protocol: kafka}
""")
    from twinflow.flows.run import request_sources

    dep = load_deployment(path, env={"OPS_KEY": "ops-key-0123456789abcdef"})
    (source,) = request_sources(dep)
    requests = source.map_batch  # the CommandRequests of the source
    assert isinstance(requests, CommandRequests) and requests.auth is not None
    assert requests.auth.within["P1"] == {"skid-1", "line-1", "plant-a"}
    inside, outside = body(), body(request_id="ops-2", twin_id="P2")
    ok = requests.item(inside, "kafka:req", MS, T0.timestamp(), signed(inside))
    no = requests.item(outside, "kafka:req", MS, T0.timestamp(), signed(outside))
    assert isinstance(ok, Command) and ok.status.value == "issued", ok
    assert isinstance(no, Command) and no.status.value == "rejected", no
    assert "may not send command 'set_flow' to twin 'P2'" in no.detail
