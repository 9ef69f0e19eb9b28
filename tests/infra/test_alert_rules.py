"""The Prometheus alerting rules under infra/prometheus/ and the Grafana dashboards under
infra/grafana/: valid, tested with promtool, and naming only metrics and tables that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
RULES = ROOT / "infra" / "prometheus" / "twinflow-rules.yml"
RULE_TESTS = ROOT / "infra" / "prometheus" / "twinflow-rules.test.yml"
OPS = ROOT / "infra" / "grafana" / "twinflow-ops.json"
FLEET = ROOT / "infra" / "grafana" / "twinflow-fleet.json"
OPERATIONS = ROOT / "docs" / "guide" / "operations.md"

_METRIC = re.compile(r"\b((?:twinflow|process|python)_[a-z_]+)")


def promtool() -> str:
    """The promtool binary (Debian's prometheus package), or a failure saying what to install."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: `apt-get install prometheus` (infra/dev test installs "
            "it when it runs as root)"
        )
    return found


def documented_metrics() -> set[str]:
    """Metric names in the operations guide's tables, with their sample suffixes."""
    names = set()
    for line in OPERATIONS.read_text().splitlines():
        m = re.match(r"\| `([a-z_]+)", line)
        if m:
            names.add(m.group(1))
    return names


def used_metrics(text: str) -> set[str]:
    """Metric names in PromQL text, reduced to a documented name (no ``_bucket`` suffix)."""
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in _METRIC.findall(text)}


def ops_expressions() -> list[str]:
    board = json.loads(OPS.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def fleet_queries() -> list[str]:
    board = json.loads(FLEET.read_text())
    return [t["rawSql"] for p in board["panels"] for t in p["targets"]]


def rule_expressions() -> list[str]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return [str(r["expr"]) for g in groups for r in g["rules"]]


@pytest.mark.services
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    tested = subprocess.run(
        [tool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULES.parent
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"]}
    fired = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for t in case.get("alert_rule_test", []):
            if t["exp_alerts"]:
                fired.add(t["alertname"])
    assert alerts == fired


def test_rules_and_the_ops_dashboard_use_only_documented_metrics() -> None:
    documented = {re.sub(r"_total$", "", n) for n in documented_metrics()}
    for text in [*rule_expressions(), *ops_expressions()]:
        for name in used_metrics(text):
            assert re.sub(r"_total$", "", name) in documented, f"{name} in {text!r}"


def test_dashboards_are_grafana_json_with_unique_ids_and_a_datasource_variable() -> None:
    for path, kind in ((OPS, "prometheus"), (FLEET, "grafana-postgresql-datasource")):
        board = json.loads(path.read_text())
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and board["uid"].startswith("twinflow-")
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["query"] == kind
        for p in board["panels"]:
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


def test_the_fleet_dashboard_reads_tables_and_views_the_migrations_create() -> None:
    migrations = " ".join(p.read_text() for p in (ROOT / "infra" / "migrations").glob("*.sql"))
    created = set(re.findall(r"CREATE (?:TABLE|VIEW) twinflow\.(\w+)", migrations))
    for sql in fleet_queries():
        for table in re.findall(r"twinflow\.(\w+)", sql):
            assert table in created, f"twinflow.{table} in {sql!r}"
