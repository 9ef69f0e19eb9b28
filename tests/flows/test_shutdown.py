"""Ctrl-C stops a running command cleanly: the sources end, outputs flush, exit status 0.

Real subprocesses and real signals; the demo needs no service. ``twinflow run`` and
``twinflow simulate`` on a real broker are in ``test_shutdown_services.py``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from twinflow.flows.shutdown import stoppable

CLI = [sys.executable, "-m", "twinflow.flows.cli"]


def stop_after(
    proc: subprocess.Popen[str], wanted: str, signum: int, timeout_s: float
) -> tuple[str, str]:
    """Read ``proc``'s stderr until a line holds ``wanted``, send ``signum``; then wait for
    the end: (all stdout, all stderr)."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    for line in proc.stderr:
        lines.append(line)
        if wanted in line:
            proc.send_signal(signum)
            break
        assert time.monotonic() < deadline, "".join(lines)
    stdout, rest = proc.communicate(timeout=timeout_s)
    return stdout, "".join(lines) + rest


def test_ctrl_c_stops_the_demo_with_its_summary_and_exit_status_0(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [*CLI, "demo", "--twins", "50", "--duration", "3d", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, err = stop_after(proc, "| readings", signal.SIGINT, timeout_s=120)
    assert proc.returncode == 0, err
    assert "Ctrl-C: stopping" in err
    assert "Traceback" not in err and "panicked" not in err
    assert "stopped by a signal" in stdout
    assert "false alarms" in stdout and (out / "summary.json").is_file()
    assert (out / "windows").is_dir(), "the windows open at the stop were flushed"


def test_simulate_with_speed_0_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twinflow.flows.cli import main

    path = tmp_path / "plant.yaml"
    path.write_text(
        "version: 1\nsite: s\nservices:\n  mqtt: {url: 'mqtt://127.0.0.1:1'}\n"
        "twins:\n  - {id: wt-001, type: wind_turbine, protocol: mqtt}\n"
    )
    assert main(["simulate", str(path), "--speed", "0"]) == 2  # no exception escapes
    assert "twinflow: error: --speed must be a number of simulated seconds" in (
        capsys.readouterr().err
    )


def test_a_stoppable_source_ends_when_asked_and_keeps_its_resume_state() -> None:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
    from bytewax.testing import TestingSink, run_main

    class Endless(StatefulSourcePartition[int, int]):
        def __init__(self, n: int) -> None:
            self.n = n

        def next_batch(self) -> list[int]:
            self.n += 1
            time.sleep(0.001)
            return [self.n]

        def snapshot(self) -> int:
            return self.n

    class Source(FixedPartitionedSource[int, int]):
        def list_parts(self) -> list[str]:
            return ["only"]

        def build_part(self, _step: str, _part: str, resume: int | None) -> Endless:
            return Endless(resume or 0)

    stop = threading.Event()
    seen: list[int] = []
    flow = Dataflow("endless")
    op.output("out", op.input("in", flow, stoppable(Source(), stop, None)), TestingSink(seen))
    threading.Timer(0.5, stop.set).start()
    run_main(flow)  # returns only because the source ended
    assert seen and seen == list(range(1, len(seen) + 1))
    wrapped = stoppable(Source(), stop, None)
    assert isinstance(wrapped, FixedPartitionedSource)
    part = wrapped.build_part("s", "only", 41)  # type: ignore[attr-defined]
    assert part.snapshot() == 41
    with pytest.raises(StopIteration):
        part.next_batch()


def test_a_clean_stop_with_recovery_resumes_exactly_where_it_stopped(tmp_path: Path) -> None:
    """The stop ends with a snapshot: the next run continues the source and the state with
    nothing read twice or lost."""
    from datetime import timedelta

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, run_main

    class Counting(StatefulSourcePartition[tuple[str, int], int]):
        def __init__(self, n: int) -> None:
            self.n = n

        def next_batch(self) -> list[tuple[str, int]]:
            self.n += 1
            time.sleep(0.001)
            return [("k", self.n)]

        def snapshot(self) -> int:
            return self.n

    class Source(FixedPartitionedSource[tuple[str, int], int]):
        def list_parts(self) -> list[str]:
            return ["only"]

        def build_part(self, _step: str, _part: str, resume: int | None) -> Counting:
            return Counting(resume or 0)

    init_db_dir(tmp_path, 1)

    def one_run() -> list[tuple[str, tuple[int, int]]]:
        stop, out = threading.Event(), []  # type: ignore[var-annotated]
        flow = Dataflow("resume")
        items = op.input("in", flow, stoppable(Source(), stop, None))
        counted = op.stateful_map("count", items, lambda c, v: ((c or 0) + 1, ((c or 0) + 1, v)))
        op.output("out", counted, TestingSink(out))
        threading.Timer(0.4, stop.set).start()
        run_main(flow, epoch_interval=timedelta(seconds=0.1),
                 recovery_config=RecoveryConfig(str(tmp_path)))  # fmt: skip
        return out

    first, second = one_run(), one_run()
    assert first and second
    n = len(first)
    assert first[-1] == ("k", (n, n))
    assert second[0] == ("k", (n + 1, n + 1)), "source position and state both resumed"


def test_ctrl_c_stops_a_replay_with_its_summary_and_exit_status_0(tmp_path: Path) -> None:
    import numpy as np
    import polars as pl

    n = 30 * 86400  # a month of a pump at 1 Hz: longer than the test waits
    rng = np.random.default_rng(1)
    start = np.datetime64("2024-03-01T00:00:00")
    pl.DataFrame(
        {
            "time": (start + np.arange(n).astype("timedelta64[s]")).astype("datetime64[us]"),
            "flow_m3h": 250 + rng.normal(0, 1, n),
            "suction_bar": 1.0 + rng.normal(0, 0.01, n),
            "discharge_bar": 8.0 + rng.normal(0, 0.05, n),
            "motor_current_a": 80 + rng.normal(0, 0.5, n),
            "motor_voltage_v": 400 + rng.normal(0, 0.5, n),
        }
    ).write_parquet(tmp_path / "p1.parquet")
    dep = tmp_path / "dep.yaml"
    dep.write_text("version: 1\nsite: rig\ntwins:\n  - {id: p1, type: pump, protocol: replay}\n")
    proc = subprocess.Popen(
        [*CLI, "replay", str(dep), str(tmp_path / "p1.parquet"), "--twin", "p1", "--tz", "UTC",
         "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, err = stop_after(proc, "| readings", signal.SIGINT, timeout_s=120)
    assert proc.returncode == 0, err
    assert "Ctrl-C: stopping" in err and "Traceback" not in err and "panicked" not in err
    assert "stopped by a signal" in stdout and "replayed " in stdout
    rows = int(stdout.split("replayed ")[1].split(" rows")[0].replace(",", ""))
    assert 0 < rows < n, "stopped before the end of the recording"
