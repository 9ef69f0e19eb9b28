"""Safe outputs (issue 11): --out never loses data without --overwrite; private modes;
a resume refuses snapshots another user could have written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from twinflow.connectors.files import JsonLinesSink, ParquetSink, private_dir, read_jsonl
from twinflow.core.errors import ConfigError
from twinflow.flows.cli import main
from twinflow.flows.outputs import OUTPUT_NAMES, prepare_out
from twinflow.flows.recovery import check_owner, recovery_config


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_prepare_out_refuses_a_folder_with_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_out(out)  # new: created
    assert out.is_dir() and mode(out) == 0o700
    prepare_out(out)  # empty: fine
    (out / "alerts.jsonl").write_text("{}\n")
    (out / "windows").mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"already holds alerts\.jsonl.*--overwrite"):
        prepare_out(out)
    assert (out / "alerts.jsonl").read_text() == "{}\n"
    prepare_out(out, resuming=True)  # a resume cuts the sinks back itself
    assert (out / "alerts.jsonl").exists()
    prepare_out(out, overwrite=True)
    assert not (out / "alerts.jsonl").exists() and not (out / "windows").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not an output: kept


def test_prepare_out_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        prepare_out(tmp_path / "f", overwrite=True)


def test_sinks_create_private_files(tmp_path: Path) -> None:
    old = os.umask(0o022)  # even under a permissive umask
    try:
        sink = JsonLinesSink(tmp_path / "a" / "x.jsonl", lambda v: {"v": v})
        part = sink.build_part("s", "x.jsonl", None)
        part.write_batch([1, 2])
        part.close()
        parquet = ParquetSink(tmp_path / "p", lambda v: {"v": v}, lambda v: "g")
        pp = parquet.build_part("s", "p0", None)
        pp.write_batch([1, 2])
        pp.close()
    finally:
        os.umask(old)
    assert read_jsonl(tmp_path / "a" / "x.jsonl") == [{"v": 1}, {"v": 2}]
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "x.jsonl") == 0o600
    (f,) = (tmp_path / "p").glob("*/*.parquet")
    assert mode(f) == 0o600 and mode(f.parent) == 0o700 and mode(tmp_path / "p") == 0o700
    assert mode(private_dir(tmp_path / "n" / "m")) == 0o700 and mode(tmp_path / "n") == 0o700


def test_demo_twice_on_one_out_keeps_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["demo", "--twins", "2", "--duration", "20m", "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = (out / "summary.json").read_text()
    windows = sorted(p.name for p in out.glob("windows/*/*.parquet"))
    assert windows and mode(out / "summary.json") == 0o600 and mode(out) == 0o700
    capsys.readouterr()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == first
    assert sorted(p.name for p in out.glob("windows/*/*.parquet")) == windows
    assert main([*args, "--overwrite"]) == 0
    assert (out / "summary.json").exists()


def test_the_demo_replaces_only_its_own_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out the demo writes to out/demo and may run again (the Quick start's
    command); a run's outputs in out/ beside it are left alone."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "alerts.jsonl").write_text("kept\n")
    args = ["demo", "--twins", "2", "--duration", "20m", "--quiet"]
    assert main(args) == 0 and main(args) == 0
    assert (tmp_path / "out" / "demo" / "summary.json").exists()
    assert (tmp_path / "out" / "alerts.jsonl").read_text() == "kept\n"


def test_recovery_directory_is_private_and_owned(tmp_path: Path) -> None:
    d = tmp_path / "recovery"
    recovery_config(d)
    assert mode(d) == 0o700
    parts = list(d.glob("part-*.sqlite3"))
    assert parts and all(mode(p) == 0o600 for p in parts)
    recovery_config(d)  # resume: own files, fine
    with pytest.raises(ConfigError, match=r"owned by user .* refused"):
        check_owner(d, uid=os.getuid() + 1)
    parts[0].chmod(0o666)
    with pytest.raises(ConfigError, match="writable by others"):
        recovery_config(d)
    parts[0].chmod(0o600)
    link = d / "part-9.sqlite3"
    link.symlink_to(parts[0])
    with pytest.raises(ConfigError, match="a link"):
        recovery_config(d)


def test_run_and_replay_refuse_an_out_with_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = tmp_path / "plant.yaml"
    plant.write_text(
        "version: 1\nservices:\n  mqtt: {url: 'mqtt://127.0.0.1:1'}\n"
        "twins:\n  - {id: wt-001, type: wind_turbine, protocol: mqtt}\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "alerts.jsonl").write_text('{"a": 1}\n')
    data = tmp_path / "rec.csv"
    data.write_text("time,twin_id,wind_speed_ms\n2026-01-01T00:00:00Z,wt-001,5\n")
    for argv in (
        ["run", str(plant), "--out", str(out)],
        ["run", str(plant), "--out", str(out), "--recovery-dir", str(tmp_path / "new")],
        ["replay", str(plant), str(data), "--out", str(out), "--quiet"],
    ):
        assert main(argv) == 2, argv
        assert "pass --overwrite" in capsys.readouterr().err
        assert (out / "alerts.jsonl").read_text() == '{"a": 1}\n'


def test_merged_parquet_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        sink = ParquetSink(tmp_path / "p", lambda v: {"v": v}, lambda v: "g", rows_per_part=1)
        part = sink.build_part("s", "p0", None)
        for i in range(5):
            part.write_batch([i])  # a part each, merged at close
        part.close()
    finally:
        os.umask(old)
    (f,) = (tmp_path / "p").glob("*/*.parquet")
    assert f.name == "part-p0-00000-00004.parquet" and mode(f) == 0o600


def test_every_file_a_flow_writes_under_out_is_an_output_name() -> None:
    """--overwrite removes what a run wrote: each `out / "name"` in the sources is listed."""
    import re

    import twinflow.connectors
    import twinflow.flows
    import twinflow.operators

    written: set[str] = set()
    for package in (twinflow.flows, twinflow.connectors, twinflow.operators):
        assert package.__file__ is not None
        for source in Path(package.__file__).parent.rglob("*.py"):
            written |= set(re.findall(r'out(?:_dir)? / "([\w.]+)"', source.read_text()))
    assert written, "the scan found no output files: the pattern no longer matches the sources"
    assert written <= set(OUTPUT_NAMES), sorted(written - set(OUTPUT_NAMES))
