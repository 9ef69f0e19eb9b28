"""What-if requests over Kafka (Tansu) in ``twinflow run``: a signed, granted request is
answered on the results topic from the twin's live state; malformed, unsigned and incomplete
ones are answered ``rejected`` with a reason that names the field."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from confluent_kafka import Consumer, Producer
from jsonschema import Draft202012Validator

from tests.flows.test_plan import COSTS
from tests.flows.test_recovery import wire_json
from tests.flows.test_whatif import DERATE, TWIN
from tests.flows.test_whatif_live import SCHEMA, history
from tests.services.kafka import KafkaBroker, create_topic, unique_topic
from twinflow.connectors.kafka.request_auth import ISSUER_HEADER, SIGNATURE_HEADER, Key
from twinflow.flows.cli import main
from twinflow.flows.deploy import load_deployment
from twinflow.flows.run import Watch, deployment_flow

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

KEY = "ops-key-for-the-whatif-test-0123"


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


def signed(value: bytes, key: str = KEY) -> list[tuple[str, bytes]]:
    return [(ISSUER_HEADER, b"ops"), (SIGNATURE_HEADER, Key(key.encode()).sign(value).encode())]


def request(rid: str, whatif: Any, **extra: Any) -> bytes:
    later = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    doc = {"request_id": rid, "twin_id": TWIN, "expires_at": later, "whatif": whatif, **extra}
    return json.dumps(doc).encode()


def documents(bootstrap: str, topic: str, n: int, timeout_s: float) -> list[Any]:
    """The first ``n`` JSON documents on ``topic`` (fewer if the time runs out)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return got


def results(bootstrap: str, topic: str, n: int, timeout_s: float) -> dict[str, Any]:
    """The first ``n`` result documents on ``topic``, by request id."""
    return {doc["request_id"]: doc for doc in documents(bootstrap, topic, n, timeout_s)}


def test_whatif_requests_are_answered_on_the_results_topic(
    tmp_path: Path,
    kafka: KafkaBroker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    telemetry = create_topic(kafka.bootstrap, unique_topic("whatif-telemetry"))
    asked = create_topic(kafka.bootstrap, unique_topic("whatif-requests"))
    answers = create_topic(kafka.bootstrap, unique_topic("whatif-results"))
    plans = create_topic(kafka.bootstrap, unique_topic("plans"), partitions=1)
    path = tmp_path / "plant.yaml"
    path.write_text(f"""
version: 1
services:
  kafka:
    bootstrap: "{kafka.bootstrap}"
    telemetry_topics: [{telemetry}]
    command_requests_topic: {asked}
    whatif_results_topic: {answers}
    alerts_topic: {unique_topic("alerts")}
    commands_topic: {unique_topic("commands")}
    twin_state_topic: {unique_topic("states")}
    maintenance_plan_topic: {plans}
    requests:
      issuers: {{ops: {{key_env: OPS_KEY}}}}
      allow: [{{issuer: ops, commands: [whatif], twins: [{TWIN}]}}]
flow: {{max_past_s: 100000000, whatif_history_s: 3600, parquet_max_delay_s: 0.5}}
twins:
  - {{id: {TWIN}, type: motor, protocol: kafka}}
{COSTS}""")
    monkeypatch.setenv("OPS_KEY", KEY)  # `twinflow whatif kafka` reads the deployment too
    dep = load_deployment(path)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for frame in history():
        producer.produce(telemetry, wire_json(frame), key=TWIN.encode())
    assert producer.flush(10) == 0

    scenario = {**DERATE, "horizon": "30m"}
    bad = {"horizon": "30m", "scenarios": [{"name": "x", "steps": [{"at": -5}]}]}
    sent = {
        "granted": (request("granted", scenario), True),
        "bad-scenario": (request("bad-scenario", bad), True),
        "unsigned": (request("unsigned", scenario), False),
        "no-expiry": (json.dumps({"request_id": "no-expiry", "twin_id": TWIN,
                                  "whatif": scenario}).encode(), True),
    }  # fmt: skip
    out = tmp_path / "out"
    watch = Watch()
    flow = deployment_flow(dep, out, watch=watch)
    got: dict[str, Any] = {}

    def ask() -> None:
        try:
            deadline = time.monotonic() + 60
            while not list((out / "telemetry").rglob("*.parquet")):
                assert time.monotonic() < deadline, "the flow never wrote the twin's telemetry"
                time.sleep(0.2)
            file = tmp_path / "derate.yaml"
            file.write_text(json.dumps({**scenario, "twin": TWIN}))
            cli = ["whatif", "kafka", str(file), "--config", str(path), "--issuer", "ops"]
            assert main([*cli, "--json", str(tmp_path / "live.json")]) == 0
            for value, sign in sent.values():
                producer.produce(asked, value, headers=signed(value) if sign else None)
            producer.flush(10)
            got.update(results(kafka.bootstrap, answers, len(sent) + 1, 150))
        finally:
            watch.stop.set()

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    run_main(flow)  # type: ignore[no-untyped-call]
    asker.join(timeout=30)

    live = json.loads((tmp_path / "live.json").read_text())
    assert live["status"] == "done" and live["request_id"].startswith("whatif-cli-")
    assert [s["name"] for s in live["report"]["scenarios"]] == ["no change", "derate now"]
    assert "what-if for motor-006 (motor)" in capsys.readouterr().out
    sent[live["request_id"]] = (b"", True)
    assert set(got) == set(sent), got
    check = Draft202012Validator(json.loads(SCHEMA.read_text()))
    for doc in got.values():
        check.validate(doc)
        assert doc["twin_id"] == TWIN and doc["twin_type"] == "motor"
    done = got["granted"]
    assert done["status"] == "done", done["reason"]
    scenarios = done["report"]["scenarios"]
    assert [s["name"] for s in scenarios] == ["no change", "derate now"]
    assert scenarios[1]["signals"]["winding_temp"][-1] < scenarios[0]["signals"]["winding_temp"][-1]
    for rid, words in (
        ("bad-scenario", "scenarios[0].steps[0].at: must be positive"),
        ("unsigned", "not authenticated"),
        ("no-expiry", "missing field(s) expires_at"),
    ):
        assert got[rid]["status"] == "rejected" and words in got[rid]["reason"], got[rid]
        assert got[rid]["report"] is None
    lines = (out / "whatif_results.jsonl").read_text().splitlines()  # the run's own copy
    assert {json.loads(line)["request_id"] for line in lines} == set(sent)
    # the maintenance: section makes the run plan too: every version in the file and on Kafka
    versions = [json.loads(line) for line in (out / "maintenance_plans.jsonl").open()]
    assert versions and versions[-1] == json.loads((out / "maintenance_plan.json").read_text())
    on_kafka = [doc["plan_id"] for doc in documents(kafka.bootstrap, plans, len(versions), 30)]
    assert on_kafka == [v["plan_id"] for v in versions]
    assert {i["twin_id"] for i in versions[-1]["items"]} == {TWIN}
