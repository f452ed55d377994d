"""Helpers for the deploy tests: metric names in PromQL, and what a live /metrics exports."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from botfleet.store.migrate import upgrade_sync
from tests.conftest import make_settings, started_app

KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "inf",
        "nan",
        "atan2",
    }
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = _STRINGS.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPINGS.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name in KEYWORDS or re.fullmatch(r"\d.*", name):
            continue
        names.add(name)
    return names


def concrete(expr: str) -> str:
    """A Grafana expression with its built-in variables replaced, fit for promtool."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


async def live_sample_names(tmp_path: Path) -> set[str]:
    """Every sample name a freshly started server exports, after one run report and requests."""
    url = f"sqlite:///{tmp_path}/live-{uuid.uuid4().hex[:6]}.db"
    settings = make_settings(
        database_url=url, cleanup_enabled=True, cleanup_startup_delay_seconds=3600
    )
    await asyncio.to_thread(upgrade_sync, settings)
    app, ctx = await started_app(settings)
    try:
        services = app.state.services
        services.metrics.observe(
            {
                "run_id": "r",
                "dry_run": False,
                "trigger": "manual",
                "status": "succeeded",
                "started_at": "2030-01-01T00:00:00+00:00",
                "finished_at": "2030-01-01T00:00:01+00:00",
                "resources": {"bots": {"found": 1, "deleted": 1}},
                "errors": [],
            }
        )
        await services.metrics.refresher.refresh()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/healthz")
            text = (await client.get("/metrics")).text
    finally:
        await ctx.__aexit__(None, None, None)
    # Sample names only: a family without samples would give a panel nothing to show.
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
