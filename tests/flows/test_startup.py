"""Startup checks: one line per service, its address and what to check; wait or exit.

Nothing here starts a peer: an unreachable service is a free loopback port where nothing
listens, and a service that comes up during the wait is a plain listening socket.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.services.ports import free_port
from twinflow.flows.deploy import load_deployment
from twinflow.flows.startup import ServiceUnavailable, check_services, services_of


def _deployment(tmp_path: Path, services: str, twins: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(f"version: 1\nsite: s1\nservices:\n{services}\ntwins:\n{twins}\n")
    return path


def _mqtt(tmp_path: Path, port: int) -> Path:
    return _deployment(
        tmp_path,
        f"  mqtt: {{url: 'mqtt://127.0.0.1:{port}', client_id: t}}",
        "  - {id: wt-001, type: wind_turbine, protocol: mqtt}",
    )


def test_an_unreachable_broker_is_reported_with_its_address_and_what_to_check(
    tmp_path: Path,
) -> None:
    port = free_port()
    dep = load_deployment(_mqtt(tmp_path, port))
    out = io.StringIO()
    left = check_services(dep, out)
    text = out.getvalue()
    assert [s.address for s in left] == [f"127.0.0.1:{port}"]
    assert f"MQTT broker at 127.0.0.1:{port}: UNREACHABLE" in text
    assert "check that the broker runs" in text
    assert "starting anyway" in text
    with pytest.raises(ServiceUnavailable, match=f"MQTT broker at 127.0.0.1:{port}"):
        check_services(dep, io.StringIO(), require=True)


def test_the_wait_ends_when_the_service_comes_up(tmp_path: Path) -> None:
    port = free_port()
    dep = load_deployment(_mqtt(tmp_path, port))
    listener = socket.socket()

    def open_later() -> None:
        time.sleep(1.0)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    opener = threading.Thread(target=open_later)
    opener.start()
    out = io.StringIO()
    try:
        left = check_services(dep, out, wait_s=60, require=True, every_s=0.2)
    finally:
        opener.join()
        listener.close()
    text = out.getvalue()
    assert left == []
    assert "s left" in text, "a countdown was shown while waiting"
    assert text.rstrip().endswith(f"MQTT broker at 127.0.0.1:{port}: up")


def test_every_service_of_a_deployment_is_probed_once(tmp_path: Path) -> None:
    kafka = free_port()
    path = _deployment(
        tmp_path,
        f"  kafka: {{bootstrap: '127.0.0.1:{kafka}', telemetry_topics: [t]}}",
        "  - {id: k-1, type: pump, protocol: kafka}\n"
        "  - {id: wt-001, type: wind_turbine, protocol: opcua,\n"
        "     opcua: {endpoint: 'opc.tcp://127.0.0.1:4999/x'}}\n"
        "  - {id: wt-004, type: wind_turbine, protocol: opcua,\n"
        "     opcua: {endpoint: 'opc.tcp://127.0.0.1:4999/x'}}",
    )
    dep = load_deployment(path)
    found = [(s.what, s.address, s.can_wait) for s in services_of(dep)]
    assert found == [
        ("Kafka broker", f"127.0.0.1:{kafka}", False),
        ("OPC UA server", "127.0.0.1:4999", True),
    ]


def test_run_without_its_kafka_source_exits_with_a_clear_error_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twinflow.flows.cli import main

    port = free_port()
    path = _deployment(
        tmp_path,
        f"  kafka: {{bootstrap: '127.0.0.1:{port}', telemetry_topics: [plant.telemetry]}}",
        "  - {id: p-1, type: pump, protocol: kafka}",
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2  # nothing escapes
    err = capsys.readouterr().err
    assert f"Kafka broker at 127.0.0.1:{port}: UNREACHABLE" in err
    assert "twinflow: error: unreachable (the Kafka source cannot start without its broker)" in err


def test_a_metrics_port_in_use_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twinflow.flows.cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        args = ["demo", "--twins", "2", "--duration", "10m", "--out", str(tmp_path / "o")]
        assert main([*args, "--metrics-port", str(port)]) == 2
    finally:
        taken.close()
    assert f"cannot serve metrics on 127.0.0.1:{port}" in capsys.readouterr().err
