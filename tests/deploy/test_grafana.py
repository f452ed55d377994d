"""The Grafana dashboard: valid JSON, the issue's panels, PromQL that promtool accepts and that
selects only metrics a live /metrics exports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, missing_service
from tests.deploy.promql import concrete, live_sample_names, metric_names

DASHBOARD = ROOT / "deploy/grafana/botfleet-cleanup.json"


def panels() -> list[dict[str, Any]]:
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in doc["panels"]:
        out.extend(panel.get("panels", []))
        if panel["type"] != "row":
            out.append(panel)
    return out


def expressions() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_dashboard_has_the_issue_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "botfleet-cleanup"
    used = set().union(*(metric_names(expr) for _title, expr in expressions()))
    for wanted in (
        "botfleet_cleanup_runs_total",  # runs and outcomes
        "botfleet_cleanup_duration_seconds_bucket",  # duration
        "botfleet_cleanup_resources_deleted_total",  # deleted per kind
        "botfleet_cleanup_backlog",  # backlog
        "botfleet_cleanup_bytes_reclaimed_total",  # bytes reclaimed
        "botfleet_cleanup_breaker_state",  # breakers
    ):
        assert wanted in used, wanted
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_every_expression_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_service("promtool (Debian's prometheus package)")
    rules = [
        {"record": f"grafana:panel_{i}", "expr": concrete(expr)}
        for i, (_title, expr) in enumerate(expressions())
    ]
    path = tmp_path / "grafana-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    done = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_panels_only_query_exported_metrics(tmp_path: Path) -> None:
    exported = await live_sample_names(tmp_path)
    for title, expr in expressions():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert not names - exported, f"{title} queries {names - exported}"


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(foo_bucket{stage="a b", x=~"y"}[5m])))'
        " / on() group_left() max(bar_total offset 1h) > bool 2 and time() - baz"
    )
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz"}
