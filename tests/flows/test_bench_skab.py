"""bench_skab on a small SKAB-style file: the replay finds a labelled fault with the defaults,
and ``--set`` really reaches the replays (a warm-up longer than the file finds nothing)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks import bench_skab

HEADER = "datetime;" + ";".join(bench_skab.SIGNALS) + ";anomaly;changepoint"


def write_file(path: Path, rows: int = 480, fault: int = 400) -> None:
    """A healthy rig with one lasting offset (8 sigmas on the current) from row ``fault``."""
    rng = np.random.default_rng(7)
    base = np.array([0.027, 0.04, 1.0, 0.05, 70.0, 25.0, 230.0, 32.0])
    scale = np.array([0.0004, 0.0008, 0.05, 0.03, 0.05, 0.01, 3.0, 0.3])
    lines = [HEADER]
    for i in range(rows):
        x = base + rng.normal(0.0, 1.0, 8) * scale
        bad = i >= fault
        if bad:
            x[2] += 8 * scale[2]
        minute, second = divmod(i, 60)
        stamp = f"2020-03-09 10:{minute:02d}:{second:02d}"
        lines.append(";".join([stamp, *(f"{v:.6g}" for v in x), f"{float(bad)}", "0.0"]))
    path.write_text("\n".join(lines) + "\n")


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    monkeypatch.setattr(sys, "argv", ["bench_skab.py", *argv])
    bench_skab.main()
    return capsys.readouterr().out


def pooled_f1(out: str) -> float:
    line = next(x for x in out.splitlines() if x.startswith("twinflow replay: anomaly_sample"))
    return float(re.split(r"\s{2,}", line.strip())[1].split()[0])


def test_defaults_find_the_fault_and_set_reaches_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "valve1").mkdir()
    write_file(tmp_path / "valve1" / "0.csv")
    out = run(monkeypatch, capsys, str(tmp_path))
    assert "flow settings" not in out
    assert pooled_f1(out) > 0.5
    out = run(monkeypatch, capsys, str(tmp_path), "--set", "sample_warmup=100000")
    assert "flow settings: sample_warmup=100000" in out
    assert pooled_f1(out) == 0.0
