"""The alert rules: promtool accepts and unit-tests them, and they only read metrics we export.

promtool is Prometheus' own checker: missing, these tests skip locally and fail in CI.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import required_binary
from tests.pipeline import REPO
from tests.test_compose import exported_metric_names, metric_names

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RUNBOOKS = REPO / "docs" / "operations" / "runbooks.md"


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [required_binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    """Anchors of the runbooks page's headings."""
    text = RUNBOOKS.read_text()
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.prometheus
def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = run_promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_promtool_accepts_the_prometheus_config() -> None:
    # This also loads the rule files the config names, relative to the config file.
    result = run_promtool("check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # Given a rule file whose expression does not parse; promtool must say so
    broken = tmp_path / "alerts.yml"
    broken.write_text(RULES.read_text().replace("> 1000", "> > 1000", 1))
    assert run_promtool("check", "rules", broken).returncode != 0


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        own = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case.get("exp_alerts") for case in own), f"{rule['alert']}: no firing case"
        assert any(not case.get("exp_alerts") for case in own), f"{rule['alert']}: no quiet case"


def test_alerts_read_only_exported_metrics() -> None:
    known = exported_metric_names()
    for rule in alert_rules():
        assert metric_names(rule["expr"]) - known == set(), rule["alert"]


def test_rule_tests_feed_only_exported_metrics() -> None:
    # Otherwise a misspelt metric could pass: misspelt alike in the rule and in its test input.
    known = exported_metric_names()
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for series in group["input_series"]:
            assert metric_names(series["series"]) <= known, series["series"]


def test_alerts_carry_severity_annotations_and_a_runbook() -> None:
    anchors = runbook_anchors()
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "DispatcherDown",
        "DispatcherConsumerLagGrowing",
        "DispatcherDeadLettersAppearing",
        "DispatcherDeliveryFailureRatioHigh",
        "DispatcherConfigReloadFailing",
    }
    # One page for all: moving the repository means replacing one URL everywhere.
    assert len({rule["annotations"]["runbook_url"].partition("#")[0] for rule in rules}) == 1
    for rule in rules:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url.startswith("https://"), name
        assert url.endswith("/docs/operations/runbooks.md"), name
        assert anchor == github_anchor(f"Runbook: {name}"), name
        assert anchor in anchors, f"{name}: the runbooks page has no section 'Runbook: {name}'"


def test_github_anchors() -> None:
    assert github_anchor("Runbook: DispatcherDown") == "runbook-dispatcherdown"
    assert github_anchor("Alerts and runbook") == "alerts-and-runbook"
