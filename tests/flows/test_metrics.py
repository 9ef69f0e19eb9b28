"""While a flow runs, Bytewax's dataflow API serves its metrics and twinflow's at /metrics."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services.ports import free_port
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
