"""While a flow runs, Bytewax's dataflow API serves its metrics and twinflow's at /metrics."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.services.ports import free_port
from twinflow.core.records import TelemetryFrame
from twinflow.flows.demo import run_demo
from twinflow.flows.metrics import enable_dataflow_api


def test_metrics_endpoint_serves_bytewax_and_twinflow_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("BYTEWAX_DATAFLOW_API_ENABLED", "false")  # restored after the test
    monkeypatch.setenv("BYTEWAX_DATAFLOW_API_PORT", "0")
    enable_dataflow_api(port)
    scraped: list[str] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    scraped.append(r.read().decode())
            except OSError:
                pass
            time.sleep(0.05)

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        run_demo(
            twins=30,
            duration_s=4 * 3600,
            seed=1,
            out_dir=tmp_path,
            progress=None,
            write_telemetry=False,
        )
    finally:
        stop.set()
        scraper.join(timeout=5)
    assert scraped, "the dataflow API answered while the flow ran"
    last = scraped[-1]
    assert "bytewax_item_inp_count_total" in last
    assert 'twinflow_readings_total{twin_type="motor"}' in last
    assert "twinflow_dead_letters_total" in last
    assert "twinflow_alert_lag_seconds_bucket" in last


def _every_metric_module() -> None:
    """Import every module of twinflow's connectors and flows, so that every metric family
    twinflow registers is in prometheus_client's registry."""
    import importlib
    import pkgutil

    import twinflow.connectors
    import twinflow.flows

    for pkg in (twinflow.connectors, twinflow.flows):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(m.name)


def _documented() -> set[str]:
    """Metric names in the tables of the operations guide (``name_total{labels}`` -> name)."""
    import re

    page = Path(__file__).parents[2] / "docs" / "guide" / "operations.md"
    names = set()
    for line in page.read_text().splitlines():
        m = re.match(r"\| `([a-z_*]+)", line)
        if m:
            names.add(re.sub(r"_total$", "", m.group(1)))
    return names


def test_every_served_metric_family_is_documented() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from twinflow.flows.metrics import serve_metrics

    _every_metric_module()
    port = free_port()
    server = serve_metrics(port)
    try:
        assert server.server_address[0] == "127.0.0.1", "bound to the documented address"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    served = {f.name for f in text_string_to_metric_families(text)}
    documented = _documented()
    patterns = {d[:-1] for d in documented if d.endswith("*")}

    def covered(name: str) -> bool:
        return name in documented or any(name.startswith(p) for p in patterns)

    assert "twinflow_kafka_consumer_lag" in served and "twinflow_twins_in_alarm" in served
    missing = sorted(n for n in served if not covered(n))
    assert not missing, f"served but not documented in docs/guide/operations.md: {missing}"
    stale = sorted(d for d in documented if not d.endswith("*") and d not in served)
    assert not stale, f"documented but not served: {stale}"


def _value(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def _sum(name: str) -> float:
    from prometheus_client import REGISTRY

    return sum(s.value for m in REGISTRY.collect() for s in m.samples if s.name == name)


def test_a_flow_counts_alarms_latency_and_dead_letter_reasons(tmp_path: Path) -> None:
    """The edge metrics of a demo run agree with what the run wrote."""
    from twinflow.connectors.files import read_jsonl

    before_dead = _sum("twinflow_dead_letter_reasons_total")
    before_latency = _sum("twinflow_reading_to_alert_seconds_count")
    summary = run_demo(
        twins=12, duration_s=3 * 3600, seed=3, out_dir=tmp_path, progress=None,
        write_telemetry=False,
    )  # fmt: skip
    assert _sum("twinflow_dead_letter_reasons_total") - before_dead == summary["dead_letters"] > 0
    timed = _sum("twinflow_reading_to_alert_seconds_count") - before_latency
    assert 0 < timed <= summary["alerts"]
    open_by_type: dict[str, set[str]] = {}
    last: dict[tuple[str, str], dict[str, str]] = {}
    for a in read_jsonl(tmp_path / "alerts.jsonl"):
        last[(a["twin_id"], a["rule"])] = a
    for a in last.values():
        if a["state"] == "raised":
            open_by_type.setdefault(a["twin_type"], set()).add(a["twin_id"])
    for twin_type in ("wind_turbine", "pump", "motor"):
        want = len(open_by_type.get(twin_type, set()))
        assert _value("twinflow_twins_in_alarm", twin_type=twin_type) == want, twin_type


def test_kafka_telemetry_is_timed_where_it_is_decoded() -> None:
    """Raw payloads (Kafka telemetry) get their arrival when ``decode_validate`` decodes
    them, so an alert on their readings is in the reading-to-alert latency."""
    from datetime import UTC, datetime

    from twinflow.core.records import Alert, AlertState, RawMessage, Severity
    from twinflow.flows.config import FlowConfig
    from twinflow.flows.metrics import RunStats
    from twinflow.flows.observe import Observer
    from twinflow.flows.steps import CheckStep

    wall = [1_767_225_600.0]
    observer = Observer(clock=lambda: wall[0])
    stats = RunStats(on_decoded=observer.arrived)
    check = CheckStep.create(FlowConfig(), None, lambda: wall[0], stats)
    payload = (
        b'{"twin_id": "P1", "twin_type": "pump", "times": [1767225590, 1767225599], '
        b'"signals": {"flow_m3h": [250.0, 251.0]}}'
    )
    (frame,) = check(RawMessage("kafka:telemetry", payload, 1_767_225_599.0))
    assert observer.arrival_of("P1", 1_767_225_599.0) == wall[0]
    before = _sum("twinflow_reading_to_alert_seconds_count")
    wall[0] += 0.25  # the alert is written a quarter of a second later
    at = datetime.fromtimestamp(1_767_225_599.0, UTC)
    alert = Alert(
        Alert.make_id("P1", "r", at), "P1", "pump", "r", AlertState.RAISED,
        Severity.WARNING, at, at, "test",
    )  # fmt: skip
    observer.alerts([("P1", alert)])
    assert _sum("twinflow_reading_to_alert_seconds_count") == before + 1
    assert frame.twin_id == "P1"


def test_alerts_are_timed_from_their_reading_or_from_the_frame_that_closed_the_window() -> None:
    """A rule judged per reading is timed from the arrival of its reading; a window rule from
    the arrival of the first frame that reached its window's end plus ``lateness_s`` (the one
    that let the window close), so the wait for late data is not counted."""
    from datetime import UTC, datetime

    from twinflow.core.records import Alert, AlertState, Severity
    from twinflow.flows.observe import Observer

    def frame(newest: float) -> TelemetryFrame:
        times = np.array([newest - 9.0, newest])
        return TelemetryFrame("P1", "pump", times, {"flow_m3h": np.array([1.0, 2.0])})

    def alert(rule: str, at: float) -> Alert:
        t = datetime.fromtimestamp(at, UTC)
        return Alert(Alert.make_id("P1", rule, t), "P1", "pump", rule, AlertState.RAISED,
                     Severity.WARNING, t, t, "test")  # fmt: skip

    wall = [1_000.0]
    observer = Observer(clock=lambda: wall[0])
    observer.judge_by(60.0, lambda _twin, rule: rule == "flow_m3h_spikes")
    t0 = 1_767_225_600.0
    for k in range(12):  # frames of 10 s of data arriving once a second of wall time
        observer.arrived([frame(t0 + 10.0 * k)])
        wall[0] += 1.0
    # now = 1012; the frame reaching t0 + 20 arrived at 1002, the one reaching t0 + 80 at 1008
    reading = _latency_sum("reading"), _latency_count("reading")
    window = _latency_sum("window"), _latency_count("window")
    observer.alerts([("P1", alert("flow_m3h_spikes", t0 + 20.0)), ("P1", alert("dry", t0 + 20.0))])
    assert _latency_count("reading") == reading[1] + 1
    assert _latency_sum("reading") - reading[0] == pytest.approx(10.0)
    assert _latency_count("window") == window[1] + 1
    assert _latency_sum("window") - window[0] == pytest.approx(4.0)
    # a window whose closing frame has not arrived is not timed
    observer.alerts([("P1", alert("dry2", t0 + 60.0))])
    assert _latency_count("window") == window[1] + 1


def _latency_sum(rules: str) -> float:
    return _value("twinflow_reading_to_alert_seconds_sum", rules=rules)


def _latency_count(rules: str) -> float:
    return _value("twinflow_reading_to_alert_seconds_count", rules=rules)


def test_every_sink_is_metered_and_the_alert_sink_still_observed() -> None:
    from bytewax.testing import TestingSink

    from twinflow.flows.observe import Observer
    from twinflow.flows.telemetry import FlowOutputs

    out: list[object] = []
    seen: list[object] = []
    observer = Observer()
    observer.alerts = seen.extend  # type: ignore[method-assign]
    sinks = observer.outputs(
        FlowOutputs(dead_letters=None, alerts=[TestingSink(out), TestingSink([])], commands=None)
    )
    assert isinstance(sinks.alerts, list) and len(sinks.alerts) == 2
    labels = {"stream": "alerts", "sink": "TestingSink"}
    before = _value("twinflow_output_items_total", **labels)
    timed = _value("twinflow_output_write_seconds_count", **labels)
    first = sinks.alerts[0].build("alerts_out", 0, 1)
    first.write_batch([("P1", "a"), ("P1", "b")])
    sinks.alerts[1].build("alerts_out_1", 0, 1).write_batch([("P1", "a")])
    assert out == [("P1", "a"), ("P1", "b")] and seen == out  # only the first is observed
    assert _value("twinflow_output_items_total", **labels) == before + 3
    assert _value("twinflow_output_write_seconds_count", **labels) == timed + 2
