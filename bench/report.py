"""Where benchmark figures go: bench/results/<name>.json with the machine and versions."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def scale() -> str:
    """BENCH_SCALE: ``small`` (a quick pass), ``large`` (bench.scaling's 4M store; every other
    benchmark runs at full size), else ``full``."""
    wanted = os.environ.get("BENCH_SCALE", "").lower()
    return wanted if wanted in ("small", "large") else "full"


def rounds(full: int) -> int:
    """Rounds of a benchmark that alternates its contenders: ``BENCH_ROUNDS``, else ``full``, but
    one in a small run — a quick pass that takes every road once, for ``make bench-small``."""
    default = 1 if scale() == "small" else full
    return int(os.environ.get("BENCH_ROUNDS", str(default)))


@functools.cache
def machine() -> dict[str, Any]:
    """The machine and versions, asked once a process (bench.all asks before it forks)."""

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "unavailable"

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "postgres": version(["psql", "--version"]),
        "docker": version(["docker", "version", "--format", "{{.Server.Version}}"]),
    }


def result_path(name: str, results: Path = RESULTS) -> Path:
    """Where a benchmark's figures go: a small run's under ``small/`` (not committed), so a quick
    pass never overwrites the full-size figures that BENCHMARKS.md quotes."""
    return (results / "small" if scale() == "small" else results) / f"{name}.json"


def write_result(name: str, figures: dict[str, Any]) -> Path:
    path = result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "scale": scale(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **figures,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


@asynccontextmanager
async def cleanup_service(database_url: str, **overrides: Any) -> AsyncIterator[Any]:
    """botfleet's real CleanupService on ``database_url``, as the server would build it.

    Containers are off unless ``container_cleanup_enabled`` is passed; then the engines come from
    DOCKER_HOSTS like the server's.
    """
    from botfleet.cleanup.service import CleanupService
    from botfleet.config import Settings
    from botfleet.runtime.fleet import Fleet
    from botfleet.store.session import create_engine

    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": "x" * 40,
        "container_cleanup_enabled": False,
        "cleanup_enabled": False,
    }
    settings = Settings(**(values | overrides))  # type: ignore[arg-type]
    engine = create_engine(settings)
    fleet = Fleet.from_settings(settings) if settings.container_cleanup_enabled else Fleet([])
    try:
        yield CleanupService(settings=settings, db=engine, fleet=fleet, observers=[])
    finally:
        await fleet.close()
        await engine.dispose()
