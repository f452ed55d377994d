"""A real Prometheus scrapes a real `botfleet serve` and answers a query about it.

Debian's prometheus binary, loopback only, its own storage in tmp, a 1-second scrape interval;
the alert rules are loaded too and must evaluate without errors. Both processes stop by pid.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, TEST_TOKEN, missing_service
from tests.servers import free_port
from tests.support.wait import wait_until

ALERTS = ROOT / "deploy/prometheus/alerts.yml"
# Both processes answer within a minute; a refused connection means "not yet".
poll = functools.partial(wait_until, timeout=60.0, interval=0.1, ignore=(httpx.TransportError,))


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def botfleet_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CLEANUP_"))}
    env.update(
        PORT=str(port),
        HOST="127.0.0.1",
        ADMIN_TOKEN=TEST_TOKEN,
        DATABASE_URL=f"sqlite:///{tmp_path}/botfleet.db",
        BOTFLEET_INSTANCE=f"e2e{port}",
        CLEANUP_ENABLED="true",
        CLEANUP_STARTUP_DELAY_SECONDS="3600",
    )
    log = (tmp_path / "botfleet.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "botfleet.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, message="botfleet")
        yield url
    finally:
        stop(proc)
        log.close()


@pytest.fixture
def prometheus(tmp_path: Path, botfleet_server: str) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        missing_service("Prometheus (Debian's prometheus package)")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "botfleet",
                "static_configs": [{"targets": [botfleet_server.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            str(binary),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        poll(
            lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, message="prometheus"
        )
        yield url
    finally:
        stop(proc)
        log.close()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_botfleet_and_sees_a_cleanup_run(
    botfleet_server: str, prometheus: str
) -> None:
    # The live exposition of a real server process is clean for promtool's linter.
    exposition = httpx.get(f"{botfleet_server}/metrics", timeout=10).text
    linted = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert linted.returncode == 0 and not (linted.stdout + linted.stderr).strip(), linted
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    run = httpx.post(f"{botfleet_server}/admin/cleanup?dry_run=false", headers=headers, timeout=60)
    assert run.status_code == 200, run.text

    up = poll(lambda: query(prometheus, 'up{job="botfleet"} == 1'), message="the target to be up")
    assert up[0]["metric"]["instance"] == botfleet_server.removeprefix("http://")
    expr = 'botfleet_cleanup_runs_total{trigger="manual",status="succeeded",dry_run="false"}'
    runs = poll(lambda: [r for r in query(prometheus, expr) if r["value"][1] == "1"], message=expr)
    assert runs[0]["metric"]["job"] == "botfleet"
    last = poll(
        lambda: query(
            prometheus, "time() - max(botfleet_cleanup_last_success_timestamp_seconds) < 300"
        ),
        message="the last success to be recent",
    )
    assert float(last[0]["value"][1]) >= 0
    breakers = poll(lambda: query(prometheus, "botfleet_cleanup_breaker_state"), message="breakers")
    assert {b["metric"]["dependency"] for b in breakers} >= {"database"}

    # The alert rules load and evaluate against real series without errors.
    def rules_evaluated() -> list[dict[str, Any]]:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return (
            rules
            if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules)
            else []
        )

    rules = poll(rules_evaluated, message="every rule evaluated")
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    firing = [r["name"] for r in rules if r["state"] == "firing"]
    assert firing == [], firing
