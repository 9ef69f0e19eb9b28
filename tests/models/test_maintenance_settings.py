"""The ``maintenance:`` section: read through the deployment file, bad cost tables refused
with an error that names the file and the field."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent, indent

import pytest
import yaml

from twinflow.core.config import Section
from twinflow.core.errors import ConfigError
from twinflow.flows.deploy import load_deployment
from twinflow.operators.maintenance import read_maintenance

BASE = """
version: 1
services:
  mqtt: {url: "mqtt://127.0.0.1:1883"}
assets:
  - {id: line-1, type: line}
twins:
  - {id: motor-001, type: motor, protocol: mqtt, part_of: line-1}
  - {id: pump-002, type: pump, protocol: mqtt, part_of: line-1}
"""

COSTS = """
types:
  motor:
    action: rewind
    planned_cost: 2000
    planned_duration: 4h
    unplanned_cost: 12000
    unplanned_duration: 1d
"""


def deployment(tmp_path: Path, maintenance: str) -> Path:
    p = tmp_path / "plant.yaml"
    p.write_text(dedent(BASE) + "maintenance:\n" + indent(dedent(maintenance), "  "))
    return p


def test_a_cost_table_loads_with_the_deployment(tmp_path: Path) -> None:
    text = (
        COSTS
        + """
horizon: 3d
slot: 12h
crew_hours_per_day: 8
downtime_cost_per_hour: 50
downtime: {line-1: 400, motor-001: 900}
windows:
  - {start: "2026-12-05T06:00:00Z", end: "2026-12-05T18:00:00+00:00"}
groups:
  - {name: shaft, twins: [motor-001, pump-002], downtime_cost_per_hour: 1000}
"""
    )
    path = deployment(tmp_path, text)
    load_deployment(path, env={})  # the deployment reader checks the section
    raw = yaml.safe_load(path.read_text())["maintenance"]
    s = read_maintenance(Section(raw, "maintenance", path))
    assert (s.horizon_s, s.slot_s, s.crew_hours_per_day) == (3 * 86400, 12 * 3600, 8)
    motor = s.types["motor"]
    assert (motor.action, motor.planned_hours, motor.unplanned_hours) == ("rewind", 4, 24)
    assert s.downtime_rate("motor-001", "line-1") == 900
    assert s.downtime_rate("pump-002", "line-1") == 400
    assert s.downtime_rate("other", None) == 50
    (group,) = s.groups
    assert (group.name, group.twins, group.downtime_cost_per_hour) == (
        "shaft",
        ("motor-001", "pump-002"),
        1000,
    )
    assert [w[0].hour for w in s.windows] == [6]


def test_a_deployment_without_the_section_plans_nothing(tmp_path: Path) -> None:
    p = tmp_path / "plant.yaml"
    p.write_text(dedent(BASE))
    load_deployment(p, env={})
    assert read_maintenance(Section(None, "maintenance", p)).types == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "types: {motor: {planned_duration: 4h, unplanned_cost: 1, unplanned_duration: 1d}}",
            r"maintenance\.types\.motor\.planned_cost is required",
        ),
        (
            "types: {motor: {planned_cost: -5, planned_duration: 4h, unplanned_cost: 1, "
            "unplanned_duration: 1d}}",
            r"maintenance\.types\.motor\.planned_cost must be >= 0, got -5",
        ),
        (
            "types: {motor: {planned_cost: lots, planned_duration: 4h, unplanned_cost: 1, "
            "unplanned_duration: 1d}}",
            r"maintenance\.types\.motor\.planned_cost = 'lots': expected a number",
        ),
        (
            "types: {motor: {planned_cost: 1, planned_duration: soon, unplanned_cost: 1, "
            "unplanned_duration: 1d}}",
            r"maintenance\.types\.motor\.planned_duration.*not a duration",
        ),
        (
            "types: {motor: {planned_cost: 1, planned_duration: 4h, unplanned_cost: 1, "
            "unplanned_duration: 1d, unplaned_cost: 3}}",
            r"unknown field 'maintenance\.types\.motor\.unplaned_cost'; did you mean "
            r"'unplanned_cost'\?",
        ),
        ("crew_hours_per_day: 0", r"maintenance\.crew_hours_per_day must be > 0, got 0"),
        (
            "horizon: 1d\nslot: 2d",
            r"maintenance\.slot \(172800 s\) must not be longer than horizon",
        ),
        ("crews: 3", r"unknown field 'maintenance\.crews'"),
        ("windows: {start: x}", r"maintenance\.windows = .*expected a list"),
        (
            "windows: [{start: '2026-12-05T06:00:00Z', end: '2026-12-05T05:00:00Z'}]",
            r"maintenance\.windows\[0\]\.end \(2026-12-05T05:00:00\+00:00\) must be after start",
        ),
        (
            "windows: [{start: '2026-12-05T06:00:00', end: '2026-12-05T09:00:00Z'}]",
            r"maintenance\.windows\[0\]\.start = .*expected an ISO 8601 time with a zone",
        ),
        (
            "windows: [{start: 'Monday 6am', end: '2026-12-05T09:00:00Z'}]",
            r"maintenance\.windows\[0\]\.start = 'Monday 6am': expected an ISO 8601 time",
        ),
        (
            "groups: [{name: g, twins: [motor-001, nobody]}]",
            r"maintenance\.groups\[0\]\.twins: 'nobody' is not a twin of this deployment",
        ),
        (
            "groups: [{name: g, twins: [motor-001]}]",
            r"maintenance\.groups\[0\]\.twins must name at least two different twins",
        ),
        (
            "groups: [{name: a, twins: [motor-001, pump-002]}, "
            "{name: b, twins: [pump-002, motor-001]}]",
            r"maintenance\.groups\[1\]\.twins: 'pump-002' is already in group 'a'",
        ),
        (
            "downtime: {line-2: 10}",
            r"maintenance\.downtime\.line-2: 'line-2' is neither a twin nor an asset",
        ),
        ("downtime: {line-1: -10}", r"maintenance\.downtime\.line-1 must be >= 0, got -10"),
    ],
)
def test_bad_cost_tables_are_refused_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = deployment(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_deployment(path, env={})
    assert str(err.value).startswith(str(path))
