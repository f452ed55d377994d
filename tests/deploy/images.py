"""The deploy tests' images and containers: built once a session from the local Debian base
(deploy/docker/build.sh), run on the host's network, waited for by their own HEALTHCHECK.

Building costs minutes (BENCHMARKS.md), so these tests carry the ``deploy`` marker and run in
``make test-deploy``, not in ``make test``.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import time
from typing import Any

from tests.conftest import ROOT, missing_service
from tests.support.wait import wait_until

BUILD = ROOT / "deploy/docker/build.sh"
LOCAL_BASE = ROOT / "deploy/docker/local-base.sh"


def need(command: str) -> str:
    """A tool the deploy tests drive (make test-deploy installs it: ensure-deploy-tools.sh)."""
    path = shutil.which(command)
    if path is None:
        missing_service(f"{command} (make test-deploy installs it: scripts/ensure-deploy-tools.sh)")
    return str(path)


@functools.cache
def built(what: str) -> str:
    """Build ``server``, ``postgres`` or ``prometheus`` on the local base; its tag."""
    need("mmdebstrap")
    done = subprocess.run(
        ["bash", str(BUILD), what],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@functools.cache
def local_base(name: str) -> str:
    """The tag of a local Debian base (``python`` is the server image's runtime base)."""
    need("mmdebstrap")
    done = subprocess.run(
        ["bash", str(LOCAL_BASE), name], capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()[-600:]}")
    return done


def inspect(container: str) -> dict[str, Any]:
    document: list[dict[str, Any]] = json.loads(docker("inspect", container).stdout)
    return document[0]


def health(container: str) -> str:
    state = inspect(container)["State"]
    if not state["Running"]:
        return f"exited({state['ExitCode']})"
    return str(state.get("Health", {}).get("Status", "none"))


def wait_healthy(container: str, timeout: float = 120) -> float:
    """Seconds until the container's own HEALTHCHECK says healthy; fails early if it exits."""
    start = time.monotonic()

    def healthy() -> bool:
        status = health(container)
        if status.startswith("exited") or status == "unhealthy":
            logs = docker("logs", "--tail", "30", container, check=False)
            raise AssertionError(f"{container} is {status}:\n{logs.stdout}{logs.stderr}")
        return status == "healthy"

    wait_until(healthy, timeout=timeout, message=f"{container} to be healthy", interval=0.25)
    return time.monotonic() - start


def remove_containers(label: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
