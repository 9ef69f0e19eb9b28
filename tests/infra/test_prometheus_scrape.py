"""A real Prometheus scrapes a running ``twinflow run`` with the alert rules loaded; then the
flow and the simulator stop cleanly on SIGTERM and Ctrl-C (exit status 0, summary lines).

mosquitto carries the telemetry of ``twinflow simulate`` to ``twinflow run``; Prometheus
(Debian's package) scrapes ``/metrics`` every second on loopback ports.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.test_alert_rules import RULES, ops_expressions
from tests.services.mosquitto import Mosquitto
from tests.services.ports import free_port

pytestmark = pytest.mark.services

CLI = [sys.executable, "-m", "twinflow.flows.cli"]


def _until(what: str, check: Callable[[], Any], timeout_s: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} not seen within {timeout_s:g} s; log:\n{log.read_text()[-3000:]}")


class Prometheus:
    """Prometheus on a free loopback port scraping ``target`` every second."""

    def __init__(self, folder: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: `apt-get install prometheus`")
        self.port = free_port()
        config = folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES}']\n"
            "scrape_configs:\n"
            f"  - job_name: twinflow\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = folder / "prometheus.log"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"),
        )  # fmt: skip

    def api(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def value(self, expr: str) -> float | None:
        answer = self.api("query", query=expr)
        if not answer or answer["status"] != "success" or not answer["data"]["result"]:
            return None
        return float(answer["data"]["result"][0]["value"][1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


def test_prometheus_scrapes_a_running_flow_and_it_stops_cleanly(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config = tmp_path / "plant.yaml"
    config.write_text(
        "version: 1\nsite: s1\n"
        f"services:\n  mqtt: {{url: 'mqtt://{broker.host}:{broker.port}', client_id: scrape}}\n"
        "simulator: {twins: 3, speed: 60, duration: 2h}\n"
        "flow: {max_future_s: 86400, window_s: 60, lateness_s: 10}\n"
        "twins:\n  - {id: wt-001, type: wind_turbine, protocol: mqtt}\n"
        "  - {id: pump-002, type: pump, protocol: mqtt}\n"
    )
    metrics = free_port()
    run_log, sim_log = tmp_path / "run.log", tmp_path / "simulate.log"
    run = subprocess.Popen(
        [*CLI, "run", str(config), "--out", str(tmp_path / "out"), "--metrics-port",
         str(metrics), "--progress-every", "1s"],
        stdout=subprocess.DEVNULL, stderr=run_log.open("w"),
    )  # fmt: skip
    simulate = subprocess.Popen(
        [*CLI, "simulate", str(config), "--progress-every", "1s"],
        stdout=subprocess.DEVNULL, stderr=sim_log.open("w"),
    )  # fmt: skip
    prom = Prometheus(tmp_path, f"127.0.0.1:{metrics}")
    try:
        _until("readings scraped by Prometheus",
               lambda: (prom.value('sum(twinflow_readings_total{job="twinflow"})') or 0) > 0,
               120, run_log)  # fmt: skip
        connected = prom.value('min(twinflow_connection_up{role="source", protocol="mqtt"})')
        assert connected == 1.0

        def rules_ok() -> bool:
            groups = prom.api("rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return len(rules) == 8 and all(r["health"] == "ok" for r in rules)

        _until("the 8 rules loaded and evaluated", rules_ok, 60, prom.log)
        for expr in ops_expressions():
            concrete = (
                expr.replace("$job", "twinflow").replace("$instance", ".*")
                .replace("$__rate_interval", "1m")
            )  # fmt: skip
            answer = prom.api("query", query=concrete)
            assert answer and answer["status"] == "success", (concrete, answer)
        alerts = prom.api("alerts")["data"]["alerts"]
        assert not [a for a in alerts if a["state"] == "firing"], alerts
        # (TwinflowDown may be pending: Prometheus may have scraped before the flow listened)
        assert "TwinflowSourceDisconnected" not in {a["labels"]["alertname"] for a in alerts}
        _until("a progress line with readings", lambda: "readings/s (" in run_log.read_text(),
               60, run_log)  # fmt: skip
    finally:
        prom.stop()
        run.send_signal(signal.SIGTERM)
        run_rc = run.wait(timeout=120)
        simulate.send_signal(signal.SIGINT)
        sim_rc = simulate.wait(timeout=60)
    run_err, sim_err = run_log.read_text(), sim_log.read_text()
    assert run_rc == 0, run_err
    assert "MQTT broker at" in run_err and ": up" in run_err, "the startup check"
    assert "readings/s (" in run_err, "progress lines"
    assert "SIGTERM: stopping" in run_err and "twinflow run stopped by a signal after" in run_err
    assert "Traceback" not in run_err and "panicked" not in run_err
    assert sim_rc == 0, sim_err
    assert "Ctrl-C: stopping" in sim_err and "twinflow simulate stopped by a signal" in sim_err
    assert "Traceback" not in sim_err
    assert list((tmp_path / "out" / "windows").glob("**/*.parquet")), "windows were written"
