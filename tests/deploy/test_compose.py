"""deploy/compose.yaml brought up for real with Debian's docker-compose 1.29 and the images built
on the local base: the database healthy, the migration exited 0, the server healthy, Prometheus
scraping it (``up == 1`` through Prometheus' own API) with the shipped alert rules loaded; and
``down -v`` leaves no container, volume or network behind.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.images import built, docker, health, need
from tests.servers import free_port
from tests.support.wait import wait_until

# The first test waits for the image builds (minutes on a cold cache; BENCHMARKS.md).
pytestmark = [pytest.mark.deploy, pytest.mark.docker, pytest.mark.timeout(1500)]
COMPOSE_FILE = ROOT / "deploy/compose.yaml"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"


class Stack:
    """One compose project of the test's own, on free loopback ports."""

    def __init__(self) -> None:
        self.project = f"bftest{uuid.uuid4().hex[:8]}"
        self.ports = {
            "POSTGRES_PORT": free_port(),
            "BOTFLEET_PORT": free_port(),
            "PROMETHEUS_PORT": free_port(),
        }
        self.env = {
            **os.environ,
            **{key: str(value) for key, value in self.ports.items()},
            "ADMIN_TOKEN": secrets.token_hex(24),
            "METRICS_TOKEN": secrets.token_hex(24),
            "POSTGRES_PASSWORD": secrets.token_hex(12),
            "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
            "BOTFLEET_INSTANCE": self.project,
            "BOTFLEET_IMAGE": built("server"),
            "POSTGRES_IMAGE": built("postgres"),
            "PROMETHEUS_IMAGE": built("prometheus"),
        }

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = [need("docker-compose"), "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return subprocess.run(
            command, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {
            kind: docker(*command, "--filter", label).stdout.split()
            for kind, command in {
                "containers": ("ps", "-aq"),
                "volumes": ("volume", "ls", "-q"),
                "networks": ("network", "ls", "-q"),
            }.items()
        }


@pytest.fixture
def stack() -> Iterator[Stack]:
    made = Stack()
    yield made
    made.compose("down", "-v", "--remove-orphans")


def prometheus(stack: Stack, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{stack.ports['PROMETHEUS_PORT']}/api/v1/{path}"
    answer = httpx.get(url, params=params, timeout=5)
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    return body["data"]


def test_the_file_is_valid_for_compose_1_29_and_keeps_grafana_behind_its_profile() -> None:
    stack = Stack.__new__(Stack)
    stack.project = "bfconfig"
    stack.env = {
        **os.environ,
        "ADMIN_TOKEN": "x" * 32,
        "METRICS_TOKEN": "y" * 32,
        "POSTGRES_PASSWORD": "p",
        "DOCKER_GID": "999",
    }
    done = stack.compose("config")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"postgres", "migrate", "server", "prometheus", "grafana"}
    assert all(service["network_mode"] == "host" for service in services.values())
    # Grafana's image comes from a registry: it starts only with --profile grafana.
    assert [name for name, service in services.items() if service.get("profiles")] == ["grafana"]
    assert services["grafana"]["profiles"] == ["grafana"]
    # A missing secret is named, and nothing starts.
    del stack.env["ADMIN_TOKEN"]
    refused = stack.compose("config")
    assert refused.returncode != 0
    assert "ADMIN_TOKEN" in refused.stderr


def test_up_brings_the_stack_up_and_down_leaves_nothing(stack: Stack) -> None:
    up = stack.compose("up", "-d", timeout=600)
    assert up.returncode == 0, up.stderr[-2000:]

    # docker-compose returns once the server has started, which it does only after the database
    # was healthy and the migration exited 0.
    assert health(stack.container("postgres")) == "healthy"
    migrate = docker(
        "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", stack.container("migrate")
    )
    assert migrate.stdout.split() == ["exited", "0"]
    wait_until(
        lambda: health(stack.container("server")) == "healthy",
        timeout=120,
        message="the server to be healthy",
        interval=0.5,
    )

    def scraped() -> bool:
        result = prometheus(stack, "query", query='up{job="botfleet"}')["result"]
        return bool(result) and all(sample["value"][1] == "1" for sample in result)

    wait_until(scraped, timeout=120, message="Prometheus to scrape the server", interval=1,
               ignore=(httpx.HTTPError,))  # fmt: skip
    targets = prometheus(stack, "targets")["activeTargets"]
    assert [t["labels"]["instance"] for t in targets] == [
        f"127.0.0.1:{stack.ports['BOTFLEET_PORT']}"
    ]
    shipped = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    loaded = {
        rule["name"] for group in prometheus(stack, "rules")["groups"] for rule in group["rules"]
    }
    assert shipped and shipped <= loaded
    # The metrics need the token that Prometheus sends.
    metrics = f"http://127.0.0.1:{stack.ports['BOTFLEET_PORT']}/metrics"
    assert httpx.get(metrics, timeout=5).status_code == 401

    down = stack.compose("down", "-v")
    assert down.returncode == 0, down.stderr
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
