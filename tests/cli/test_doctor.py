"""`botfleet doctor`: verdicts from pure judges, and the command against real stores and servers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botfleet.backlog import Backlog
from botfleet.cleanup.lock import lock_for
from botfleet.cli.main import app as cli
from botfleet.config import Settings
from botfleet.diagnosis.gather import flock_holders
from botfleet.diagnosis.judges import (
    FAIL,
    OK,
    RUNS_SHOWN,
    SKIP,
    WARN,
    LockHolder,
    RunRow,
    judge_backlog,
    judge_breakers,
    judge_lock,
    judge_migration,
    judge_mode,
    judge_runs,
    judge_swarm,
)
from botfleet.store.models import CleanupRun
from botfleet.store.session import create_engine, create_session_factory
from tests.conftest import TEST_TOKEN
from tests.servers import free_port, live_server
from tests.support.swarm import Swarm
from tests.support.swarm import docker as swarm_docker

NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)


def run_row(status: str, minutes_ago: float, errors: list[str] | None = None) -> RunRow:
    started = NOW - timedelta(minutes=minutes_ago)
    finished = None if status == "running" else started + timedelta(seconds=3)
    return RunRow(
        str(uuid.uuid4()),
        "schedule",
        "schedule",
        False,
        status,
        started,
        finished,
        "h:1",
        errors or [],
    )


# --- judges ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "head", "verdict", "hint"),
    [
        ("0002", "0002", OK, ""),
        (None, "0002", FAIL, "db upgrade"),
        ("0001", "0002", FAIL, "db upgrade"),
    ],
)
def test_migration_verdicts(current: str | None, head: str, verdict: str, hint: str) -> None:
    check = judge_migration(current, head)
    assert check.verdict == verdict and hint in check.next_step


@pytest.mark.parametrize(
    ("runs", "verdict", "words"),
    [
        ([], WARN, "no cleanup has run yet"),
        ([run_row("succeeded", 10)], OK, "last run succeeded"),
        (
            [run_row("partial", 10, ["engine b: timeout"]), run_row("succeeded", 400)],
            WARN,
            "engine b: timeout",
        ),
        (
            [run_row("failed", 5, ["db down"]), run_row("succeeded", 400)],
            WARN,
            "1 failed run(s)",
        ),
        (
            [run_row("failed", 5, ["db down"]), run_row("abandoned", 300), run_row("failed", 600)],
            FAIL,
            "db down",
        ),
        ([run_row("succeeded", 60 * 24 * 3)], WARN, "twice the scheduling gap"),
        ([run_row("running", 1), run_row("succeeded", 30)], OK, "last run succeeded"),
    ],
)
def test_run_verdicts(runs: list[RunRow], verdict: str, words: str) -> None:
    check = judge_runs(runs, now=NOW, gap=timedelta(hours=6), threshold=3, enabled=True)
    assert check.verdict == verdict, check
    assert words in check.detail
    assert len(check.lines) == min(len(runs), RUNS_SHOWN)


def test_lock_verdicts() -> None:
    holder = LockHolder(4242, "botfleet-cleanup-lock from 10.0.0.7")
    hour = timedelta(hours=1)
    assert judge_lock([], [], now=NOW, max_run=hour).verdict == OK
    busy = judge_lock([holder], [run_row("running", 5)], now=NOW, max_run=hour)
    assert busy.verdict == OK and "in progress" in busy.detail
    assert "held by pid 4242 (botfleet-cleanup-lock from 10.0.0.7)" in busy.lines[0]
    stuck = judge_lock([holder], [run_row("running", 120)], now=NOW, max_run=hour)
    assert stuck.verdict == WARN and "2.0h" in stuck.detail
    ghost = judge_lock([], [run_row("running", 5)], now=NOW, max_run=hour)
    assert ghost.verdict == WARN and "nobody holds the lock" in ghost.detail
    orphan = judge_lock([holder], [], now=NOW, max_run=hour)
    assert orphan.verdict == WARN and "no run is recorded" in orphan.detail


def test_breaker_verdicts() -> None:
    closed = {"breakers": {"database": {"state": "closed"}, "engine:local": {"state": "closed"}}}
    assert judge_breakers(closed, None, url="u").verdict == OK
    nested = {
        "scheduler": {
            "breakers": {"engine:b": {"state": "open", "since": "t", "last_error": "boom"}}
        }
    }
    check = judge_breakers(nested, None, url="u")
    assert check.verdict == FAIL and "engine:b: open since t; last error: boom" in check.lines
    half = {"breakers": {"database": {"state": "half_open"}}}
    assert judge_breakers(half, None, url="u").verdict == WARN
    assert judge_breakers(None, None, url="u").verdict == SKIP
    down = judge_breakers(None, "ConnectError", url="http://x")
    assert down.verdict == WARN and "http://x" in down.detail


def test_backlog_verdicts() -> None:
    fine = Backlog(NOW, backlog={"bots": 3}, orphaned={"containers": 1})
    check = judge_backlog(fine, None, gap=timedelta(hours=6))
    assert check.verdict == OK and "bots 3" in check.detail and "containers 1" in check.detail
    late = Backlog(NOW, backlog={"bots": 3}, oldest_age_seconds={"bots": 3 * 86400})
    assert judge_backlog(late, None, gap=timedelta(hours=6)).verdict == WARN
    blind = Backlog(NOW, engine_errors=["b: timeout"])
    assert judge_backlog(blind, None, gap=timedelta(hours=6)).verdict == WARN


def test_mode_is_context_not_a_fault() -> None:
    assert "scheduler off" in judge_mode(False, False).detail
    dry = judge_mode(True, True)
    assert dry.verdict == OK and "CLEANUP_DRY_RUN=false" in dry.detail
    assert not dry.needs_attention


def test_flock_holders_are_read_from_proc_locks(tmp_path: Path) -> None:
    lock = tmp_path / "botfleet.db.cleanup.lock"
    lock.write_text("")
    inode = lock.stat().st_ino
    table = tmp_path / "locks"
    table.write_text(
        f"1: POSIX  ADVISORY  WRITE 11 08:01:{inode} 0 EOF\n"
        f"2: FLOCK  ADVISORY  WRITE {os.getpid()} 00:2a:{inode} 0 EOF\n"
        f"2: -> FLOCK  ADVISORY  WRITE 99 00:2a:{inode} 0 EOF\n"
        f"3: FLOCK  ADVISORY  WRITE 12 00:2a:{inode + 1} 0 EOF\n"
    )
    holders = flock_holders(lock, table)
    assert [h.pid for h in holders] == [os.getpid()]
    assert holders[0].who.endswith("(this process)")
    assert flock_holders(tmp_path / "missing", table) == []


# --- the command -----------------------------------------------------------------------------
@pytest.fixture
def keep_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def doctor(settings: Settings, *args: str, **env: str) -> Any:
    values = {
        "DATABASE_URL": settings.database_url,
        "ADMIN_TOKEN": TEST_TOKEN,
        "BOTFLEET_INSTANCE": settings.botfleet_instance,
        "CLEANUP_ENABLED": "true",
        "DOCKER_HOSTS": "",
        "MAIN_SERVER_URL": f"http://127.0.0.1:{free_port()}",
    }
    values.update(env)
    return CliRunner().invoke(cli, ["doctor", *args], env=values)


def add_runs(settings: Settings, *runs: tuple[str, list[str]]) -> None:
    async def go() -> None:
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                now = datetime.now(UTC)
                for i, (status, errors) in enumerate(runs):
                    at = now - timedelta(minutes=10 * (i + 1))
                    session.add(
                        CleanupRun(
                            trigger="schedule",
                            actor="schedule",
                            dry_run=False,
                            status=status,
                            started_at=at,
                            finished_at=at + timedelta(seconds=2),
                            report={
                                "status": status,
                                "errors": [{"stage": "bots", "message": m} for m in errors],
                                "resources": {"bots": {"found": 2, "deleted": 2}},
                            },
                        )
                    )
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_a_healthy_system_exits_zero(
    settings_factory: Callable[..., Settings], keep_logging: None
) -> None:
    port = free_port()
    settings = settings_factory(port=port)
    add_runs(settings, ("succeeded", []))
    with live_server(settings) as url:
        result = doctor(settings, "--server", url)
    assert result.exit_code == 0, result.output
    out = result.output
    for line in (
        "OK    database",
        "OK    migrations",
        "OK    engine local",
        "OK    cleanup lock",
        "OK    last runs",
        "OK    breakers",
        "OK    backlog",
        "all checks passed",
    ):
        assert line in out, out
    assert "all closed (database, engine:local)" in out
    assert "OK    mode          ACTIVE: scheduled runs delete" in out
    assert TEST_TOKEN not in out


def test_failures_are_named_with_what_to_do(settings: Settings, keep_logging: None) -> None:
    add_runs(settings, ("failed", ["database is locked"]), ("failed", ["x"]), ("failed", ["y"]))
    result = doctor(settings, "--offline", DOCKER_HOSTS="unix:///nonexistent/docker.sock")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "FAIL  engine unix:///nonexistent/docker.sock" in out
    assert "docker -H unix:///nonexistent/docker.sock info" in out
    assert "FAIL  last runs" in out and "3 failed run(s) in a row; last: database is locked" in out
    assert "SKIP  breakers" in out
    assert "needs attention: engine unix:///nonexistent/docker.sock, last runs" in out


def test_json_output_and_an_unreachable_server(settings: Settings, keep_logging: None) -> None:
    add_runs(settings, ("succeeded", []))
    result = doctor(settings, "--json")
    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["breakers"]["verdict"] == "warn"
    assert "did not answer" in checks["breakers"]["detail"]
    assert checks["database"]["verdict"] == "ok"


def test_an_unmigrated_database(tmp_path: Path, instance: str, keep_logging: None) -> None:
    from tests.conftest import make_settings

    settings = make_settings(
        database_url=f"sqlite:///{tmp_path}/empty.db", botfleet_instance=instance
    )
    result = doctor(settings, "--offline")
    assert result.exit_code == 1
    assert "FAIL  migrations" in result.output and "botfleet db upgrade" in result.output
    assert "last runs" not in result.output  # nothing to read before the schema exists


def test_an_unreachable_database(instance: str, keep_logging: None) -> None:
    from tests.conftest import make_settings

    settings = make_settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
        botfleet_instance=instance,
    )
    result = doctor(settings, "--offline")
    assert result.exit_code == 1
    assert "FAIL  database" in result.output and "pg_isready" in result.output


def test_who_holds_the_cleanup_lock(settings: Settings, keep_logging: None) -> None:
    add_runs(settings, ("succeeded", []))

    async def holding() -> Any:
        lock = lock_for(settings)
        assert await lock.acquire()
        try:
            return await asyncio.to_thread(doctor, settings, "--offline")
        finally:
            await lock.release()

    result = asyncio.run(holding())
    assert result.exit_code == 1
    assert "WARN  cleanup lock  held, but no run is recorded as running" in result.output
    holder = f"held by pid {os.getpid()}" if settings.is_sqlite else "(botfleet-cleanup-lock from"
    assert holder in result.output, result.output


def test_a_swarm_manager_and_its_nodes(
    settings: Settings, swarm: Swarm, keep_logging: None
) -> None:
    """With BOT_RUNTIME=swarm the engine check asks the manager for its nodes: all ready and
    active is fine; a drained node is reported (and swarm moves its bots by itself)."""
    result = doctor(settings, "--offline", BOT_RUNTIME="swarm", DOCKER_HOSTS=swarm.manager.url)
    assert "OK    engine swarm" in result.output, result.output
    assert "2 nodes, all ready and active" in result.output
    worker = swarm.node_of(swarm.worker.url)
    swarm_docker(swarm.manager.url, "node", "update", "--availability", "drain", worker)
    try:
        drained = doctor(settings, "--offline", BOT_RUNTIME="swarm", DOCKER_HOSTS=swarm.manager.url)
    finally:
        swarm_docker(swarm.manager.url, "node", "update", "--availability", "active", worker)
    assert drained.exit_code == 1, drained.output
    assert "WARN  engine swarm" in drained.output and "drain" in drained.output


def test_an_engine_that_is_no_swarm_manager_fails_the_check(
    settings: Settings, docker_client: Any, keep_logging: None
) -> None:
    result = doctor(
        settings,
        "--offline",
        BOT_RUNTIME="swarm",
        DOCKER_HOSTS="unix:///var/run/docker.sock",
    )
    assert result.exit_code == 1
    assert "FAIL  engine swarm" in result.output and "not a swarm manager" in result.output


def test_a_down_node_is_a_warning_that_names_it() -> None:
    """Pure: a node the manager sees as down (its daemon dead) is reported, as a drained one is."""
    nodes = [
        {
            "id": "a" * 25,
            "hostname": "m1",
            "role": "manager",
            "leader": True,
            "state": "ready",
            "availability": "active",
        },
        {
            "id": "b" * 25,
            "hostname": "w1",
            "role": "worker",
            "state": "down",
            "availability": "active",
        },
    ]
    check = judge_swarm("swarm", "20.10", nodes)
    assert check.verdict == WARN and "w1 (down, active)" in check.detail
    assert "m1" not in check.detail.split(";")[1]
    assert judge_swarm("swarm", "20.10", nodes[:1]).verdict == OK
