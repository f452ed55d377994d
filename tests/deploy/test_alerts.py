"""Alert rules: promtool checks and unit-tests them; each uses live metrics and a runbook anchor."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, missing_service
from tests.deploy.promql import live_sample_names, metric_names

PROM_DIR = ROOT / "deploy/prometheus"
RUNBOOK = ROOT / "docs/operations.md"
# Series Prometheus itself makes, not botfleet.
PROMETHEUS_SERIES = {"up"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_service("promtool (Debian's prometheus package)")
    return str(path)


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", "alerts.yml"],
        cwd=PROM_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=PROM_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_example_prometheus_config_is_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "config", "prometheus.yml"],
        cwd=PROM_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_issue_alerts_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "BotfleetCleanupFailing",
        "BotfleetCleanupNoRecentSuccess",
        "BotfleetCleanupBacklogGrowing",
        "BotfleetOrphansGrowing",
        "BotfleetCleanupBreakerOpen",
        "BotfleetCleanupDryRunLeftOn",
        "BotfleetNotifyOutboxStuck",
    } <= names


def test_every_alert_is_unit_tested_firing() -> None:
    tests = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alert_rules()} <= fired


def test_every_alert_has_a_summary_and_a_runbook_anchor() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {_anchor(h) for h in re.findall(r"^#+\s+(.+)$", runbook, re.M)}
    anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', runbook))
    for rule in alert_rules():
        notes = rule["annotations"]
        assert notes.get("summary"), rule["alert"]
        link = notes.get("runbook_url", "")
        assert link.startswith("docs/operations.md#"), rule["alert"]
        assert link.split("#", 1)[1] in anchors, f"{rule['alert']}: no anchor {link}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}


async def test_alerts_only_use_metrics_the_server_exports(tmp_path: Path) -> None:
    exported = await live_sample_names(tmp_path)
    for rule in alert_rules():
        missing = metric_names(rule["expr"]) - exported - PROMETHEUS_SERIES
        assert not missing, f"{rule['alert']} uses {missing}"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_runbook_links_resolve() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {_anchor(h) for h in re.findall(r"^#+\s+(.+)$", runbook, re.M)}
    for link in re.findall(r"\]\(#([^)]+)\)", runbook):
        assert link in anchors, link
