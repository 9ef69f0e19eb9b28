"""Twin types from files: a type defined only by DTDL + profile loads, and every profile rule
refuses a bad file with an error that names the file and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.operators.compressor import DTMI, PROFILE, write_compressor
from twinflow.core.errors import ConfigError
from twinflow.operators import profile as profiles
from twinflow.operators.catalog import CATALOG, TYPES_DIR, load_catalogue


def test_a_type_defined_only_by_files_loads(tmp_path: Path) -> None:
    write_compressor(tmp_path / "models")
    types = load_catalogue([tmp_path / "models"])
    assert sorted(types) == ["compressor", "motor", "pump", "wind_turbine"]
    c = types["compressor"]
    assert types.resolve(DTMI) is c and types.by_model[DTMI] == "compressor"
    assert [s.name for s in c.signals] == [
        "discharge_pressure",
        "discharge_temp",
        "motor_power",
        "oil_level",
    ]
    assert c.signal("discharge_pressure").unit == "bar"
    assert c.signal("motor_power").rate_hz == 0.5
    oil = c.signal("oil_level")
    assert (oil.unit, oil.optional) == ("%", True)
    assert c.expected_signals == {"discharge_pressure", "discharge_temp", "motor_power"}
    assert (
        c.command_problem("set_pressure", {"bar": 20.0})
        == "set_pressure: bar=20 is outside [4, 12]"
    )
    assert c.property("pressure_setpoint").command_params(8.0) == {"bar": 8.0}
    assert c.profile_file == str(tmp_path / "models" / "compressor.yaml")
    assert types["pump"] == CATALOG["pump"]


def test_the_bundled_types_are_loaded_by_the_same_path() -> None:
    assert load_catalogue() is CATALOG
    again = load_catalogue([TYPES_DIR], bundled=False)
    assert dict(again) == dict(CATALOG)
    assert {p.name for p in TYPES_DIR.glob("*.yaml")} == {
        "wind_turbine.yaml",
        "pump.yaml",
        "motor.yaml",
    }


def test_dtdl_files_without_a_profile_are_fine(tmp_path: Path) -> None:
    write_compressor(tmp_path)
    base = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Base;1",
        "@type": "Interface",
        "contents": [],
    }
    (tmp_path / "base.json").write_text(__import__("json").dumps(base))
    assert "compressor" in load_catalogue([tmp_path])


def _bad(tmp_path: Path, old: str, new: str) -> str:
    assert old in PROFILE
    write_compressor(tmp_path, PROFILE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_catalogue([tmp_path])
    return str(info.value)


# One case per validation rule: (text replaced, replacement, the field the error names, words).
RULES = [
    ("name: compressor", "name: compressor\nmodle: x", "unknown field 'modle'", "did you mean"),
    ("name: compressor\n", "", "name is required", ""),
    ("name: compressor", "name: 2compressor", "name = '2compressor'", "letters"),
    ("name: compressor", "name: site", "name = 'site'", "not 'site'"),
    ('model: "dtmi:example:Compressor;1"', "model: compressor", "model = 'compressor'", "DTMI"),
    ('model: "dtmi:example:Compressor;1"', 'model: "dtmi:example:Ghost;1"', "model = ", "Ghost"),
    ("{low: 0, high: 16}", "{high: 16}", "signals.discharge_pressure.low is required", ""),
    ("{low: 0, high: 16}", "{low: 0, high: x}", "signals.discharge_pressure.high = 'x'", "number"),
    ("{low: 0, high: 16}", "{low: 16, high: 0}", "signals.discharge_pressure.high", "above low"),
    ("rate_hz: 0.5", "rate_hz: 0", "signals.motor_power.rate_hz", "> 0"),
    ("{low: 0, high: 16}", "{low: 0, high: 16, burst_interval_s: 5}",
     "signals.discharge_pressure.burst_interval_s", "waveform"),
    ("{low: 0, high: 16}", "{low: 0, high: 16, colour: red}",
     "unknown field 'signals.discharge_pressure.colour'", ""),
    ("optional: true", "optional: maybe", "signals.oil_level.optional = 'maybe'", "true or false"),
    ("{low: 0, high: 16}", "{low: 0, high: 16, unit: psi}", "signals.discharge_pressure.unit",
     "drop the profile's unit"),
    ('unit: "%", ', "", "signals.oil_level.unit", "must give one"),
    ("  motor_power: {low: 0, high: 250, rate_hz: 0.5}\n", "", "signals:",
     "Telemetry 'motor_power' is in the DTDL but not in the profile"),
    ("  motor_power:", "  fan_speed: {low: 0, high: 1}\n  motor_power:", "signals.fan_speed:",
     "in the profile but not in the DTDL"),
    ("{bar: [4, 12]}", "{bar: [12, 4]}", "commands.set_pressure.bar", "low must not be above"),
    ("{bar: [4, 12]}", "{bar: 4}", "commands.set_pressure.bar = 4", "[low, high]"),
    ("{bar: [4, 12]}", "{psi: [4, 12]}", "commands.set_pressure:", "request fields"),
    ("set_pressure: {bar: [4, 12]}", "set_pressure: {bar: [4, 12]}\n  vent: {}", "commands.vent:",
     "in the profile but not in the DTDL"),
    ("    command: set_pressure\n", "", "properties.pressure_setpoint.command is required", ""),
    ("    command: set_pressure", "    command: vent", "properties.pressure_setpoint.command",
     "not a command"),
    ("    param: bar", "    param: psi", "properties.pressure_setpoint.param", "no parameter"),
    ("reported_signal: discharge_pressure", "reported_signal: flow",
     "properties.pressure_setpoint.reported_signal", "not a signal"),
    ("tolerance: 0.3", "tolerance: -1", "properties.pressure_setpoint.tolerance", ">= 0"),
    ("tolerance: 0.3", "tolerance: 0.3\n    scale: 0", "properties.pressure_setpoint.scale",
     "must not be 0"),
    ("    unit: bar\n", "", "properties.pressure_setpoint.unit", "must give one"),
    ("properties:", "spectrum: {fault_frequencies: {bpfo: 80}}\nproperties:", "spectrum:",
     "need a waveform signal"),
    ("properties:", "spectrum: {fault_frequencies: {bpfo: -1}}\nproperties:",
     "spectrum.fault_frequencies.bpfo", "> 0"),
    ("properties:", "spectrum: {bands: [[200, 50]]}\nproperties:", "spectrum.bands[0].high",
     "above low"),
    ("properties:", "spectrum: {bands: [7]}\nproperties:", "spectrum.bands[0] = 7", "[low, high]"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), RULES)
def test_each_profile_rule_names_the_file_and_the_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    text = _bad(tmp_path, old, new)
    assert str(tmp_path / "compressor.yaml") in text
    assert field in text and words in text


def test_a_profile_that_is_not_yaml_or_not_a_mapping(tmp_path: Path) -> None:
    for text, words in (("name: [\n", "not valid YAML"), ("- 1\n", "must be a mapping")):
        write_compressor(tmp_path, text)
        with pytest.raises(ConfigError, match=words) as info:
            load_catalogue([tmp_path])
        assert str(tmp_path / "compressor.yaml") in str(info.value)


def test_name_clashes_and_two_profiles_for_one_interface(tmp_path: Path) -> None:
    write_compressor(tmp_path)
    (tmp_path / "other.yaml").write_text(PROFILE)
    with pytest.raises(ConfigError, match=r"name = 'compressor'.*also declared by") as info:
        load_catalogue([tmp_path])
    assert "other.yaml" in str(info.value) and "compressor.yaml" in str(info.value)
    (tmp_path / "other.yaml").write_text(PROFILE.replace("name: compressor", "name: compressor2"))
    with pytest.raises(ConfigError, match=r"model = .*already has a profile"):
        load_catalogue([tmp_path])
    clash = tmp_path / "clash"
    write_compressor(clash, PROFILE.replace("name: compressor", "name: pump"))
    with pytest.raises(ConfigError, match=r"name = 'pump'.*also declared by .*pump.yaml"):
        load_catalogue([clash])


def test_a_new_section_is_one_row_of_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = profiles.ProfileSection("extension", lambda s: dict(s.data))
    monkeypatch.setitem(profiles.SECTIONS, "extension", row)
    write_compressor(tmp_path, PROFILE + "extension: {hot: 1}\n")
    assert load_catalogue([tmp_path])["compressor"].sections["extension"] == {"hot": 1}
    monkeypatch.delitem(profiles.SECTIONS, "extension")
    with pytest.raises(ConfigError, match="unknown field 'extension'"):
        load_catalogue([tmp_path])


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("anomaly:\n  operating: [speed]\n", r"anomaly.operating: 'speed' is not a scalar signal"),
        ("anomaly:\n  operating: motor_power\n", r"anomaly.operating = 'motor_power': expected a"),
        ("anomaly:\n  detector: pca\n", r"anomaly.detector = 'pca': expected zscore or spc"),
        ("anomaly:\n  sample_warmup: 4\n", r"anomaly.sample_warmup = 4: at least 8 samples"),
        ("anomaly:\n  sample_quantile: 1.0\n", r"anomaly.sample_quantile"),
        ("anomaly:\n  warmup: 60\n", r"anomaly.*warmup"),
    ],
)
def test_the_anomaly_section_refuses_bad_values(tmp_path: Path, extra: str, expected: str) -> None:
    from tests.operators.compressor import profile_error

    message = profile_error(tmp_path, extra)
    assert "compressor.yaml" in message
    assert re.search(expected, message), message


def test_the_anomaly_section_reads_settings_and_defers_the_rest(tmp_path: Path) -> None:
    from tests.operators.compressor import load_compressor
    from twinflow.operators.anomaly_profile import AnomalyProfile, anomaly_of

    extra = "anomaly:\n  operating: [motor_power]\n  samples: false\n  sample_warmup: 120\n"
    kind = load_compressor(tmp_path, extra)
    assert anomaly_of(kind) == AnomalyProfile(
        operating=("motor_power",), samples=False, sample_warmup=120
    )
    assert anomaly_of(load_compressor(tmp_path / "plain")) == AnomalyProfile()
