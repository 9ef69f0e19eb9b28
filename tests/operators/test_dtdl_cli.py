"""``twinflow models check``: exit codes and one line per problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.operators.compressor import PROFILE, write_compressor
from tests.operators.dtdl_samples import base, write
from twinflow.flows.cli import main
from twinflow.operators.dtdl import INTERFACES_DIR


def test_simulator_interfaces_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "check", str(INTERFACES_DIR)]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^3 files, 3 interfaces: all valid \(\d+ elements checked in \d+\.\d{3} s\)$", out, re.M
    )


def test_invalid_model_prints_file_element_rule_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = base()
    doc["contents"][0]["unit"] = "bar"
    doc["contents"][1]["name"] = "1bad"
    [path] = write(tmp_path, {"bad.json": doc})
    assert main(["models", "check", str(path), str(INTERFACES_DIR)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{path}: dtmi:test:Base;1 contents[0].unit: unit-mismatch: " in lines[0] + lines[1]
    assert any(": name-syntax: " in line for line in lines)
    assert re.fullmatch(
        r"2 problems in 1 of 4 files: the models are invalid "
        r"\(4 interfaces, \d+ elements checked in \d+\.\d{3} s\)",
        lines[-1],
    )


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "check", str(tmp_path / "missing.json")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["models", "check", str(tmp_path)]) == 2  # a folder with no models
    with pytest.raises(SystemExit) as info:
        main(["models", "check"])
    assert info.value.code == 2


def test_profiles_beside_the_models_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_compressor(tmp_path / "ok")
    assert main(["models", "check", str(tmp_path / "ok")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "1 profile, twin types compressor: all valid"
    )
    assert main(["models", "check", str(INTERFACES_DIR)]) == 0
    assert "3 profiles, twin types motor, pump, wind_turbine: all valid" in capsys.readouterr().out


def test_a_bad_profile_names_file_and_field_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_compressor(tmp_path, PROFILE.replace("high: 16", "high: sixteen"))
    assert main(["models", "check", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r"1 file, 1 interface: all valid \(\d+ elements checked in [0-9.]+ s\)", lines[0]
    )
    assert lines[1].startswith(f"{profile}: signals.discharge_pressure.high")
    assert lines[-1] == "1 problem in 1 profile: invalid"


def test_a_profile_that_disagrees_with_its_model_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_compressor(tmp_path, PROFILE.replace("  oil_level:", "  oil_temp:"))
    assert main(["models", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "oil_level" in out and "oil_temp" in out
