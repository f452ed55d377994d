"""`botfleet cleanup`: in-process against the store (server down) and through `--server`."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from botfleet.auth import fingerprint
from botfleet.cleanup.lock import lock_for
from botfleet.cli.main import app as cli
from botfleet.config import Settings
from tests.conftest import TEST_TOKEN
from tests.servers import free_port, live_server
from tests.support.store import Store

T = TypeVar("T")


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """The CLI configures logging on the runner's streams; put the test's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = Store(settings)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def botfleet(settings: Settings, *args: str, input: str | None = None, **env: str) -> Any:
    values = {
        "DATABASE_URL": settings.database_url,
        "ADMIN_TOKEN": TEST_TOKEN,
        "BOTFLEET_INSTANCE": settings.botfleet_instance,
        "CLEANUP_ENABLED": "false",
        "CONTAINER_CLEANUP_ENABLED": "false",
        "DOCKER_HOSTS": "",
        "MAIN_SERVER_URL": settings.main_server_url,
    }
    values.update(env)
    return CliRunner().invoke(cli, ["cleanup", *args], env=values, input=input)


def expired_bots(settings: Settings, n: int, results: int = 1) -> set[uuid.UUID]:
    ago = datetime.now(UTC) - timedelta(days=30)

    async def make(store: Store) -> set[uuid.UUID]:
        return {await store.bot(deleted_at=ago, results=results) for _ in range(n)}

    return with_store(settings, make)


def bot_ids(settings: Settings) -> set[uuid.UUID]:
    return {uuid.UUID(i) for i in with_store(settings, lambda s: s.bot_ids())}


@contextmanager
def another_run_holds_the_lock(settings: Settings) -> Iterator[None]:
    """The cleanup lock held as another replica would, on an event loop of its own (the CLI
    runs its own loop meanwhile; an asyncpg connection must stay on the loop that made it)."""
    loop = asyncio.new_event_loop()
    held = lock_for(settings)
    try:
        assert loop.run_until_complete(held.acquire())
        yield
    finally:
        loop.run_until_complete(held.release())
        loop.close()


def test_a_dry_run_by_default(settings: Settings) -> None:
    bots = expired_bots(settings, 2)
    result = botfleet(settings, "run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "planned" in result.output
    assert bot_ids(settings) == bots


def test_execute_with_yes_deletes_and_prints_json(settings: Settings) -> None:
    expired_bots(settings, 2, results=3)
    result = botfleet(settings, "run", "--execute", "--yes", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trigger"] == "cli" and report["actor"].startswith("cli:")
    assert report["resources"]["bots"]["deleted"] == 2
    assert report["resources"]["bot_results"]["deleted"] == 6
    assert bot_ids(settings) == set()


def test_execute_asks_first_and_then_applies_the_plan_it_showed(settings: Settings) -> None:
    bots = expired_bots(settings, 1)
    declined = botfleet(settings, "run", "--execute", input="n\n")
    assert declined.exit_code == 3
    assert "Delete these 2 items" in declined.output  # the bot and its result
    assert bot_ids(settings) == bots

    accepted = botfleet(settings, "run", "--execute", "--json", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    # The runner echoes the typed answer on stdout, before the JSON.
    report = json.loads(accepted.stdout[accepted.stdout.index("{") :])
    assert report["plan_id"] != report["run_id"]  # the plan of the dry run it showed
    assert report["resources"]["bots"]["planned"] == 1
    assert bot_ids(settings) == set()


def test_execute_a_stored_plan(settings: Settings) -> None:
    expired_bots(settings, 1)
    dry = json.loads(botfleet(settings, "run", "--json").stdout)
    late = expired_bots(settings, 1)  # appeared after the plan, just as old: not in it
    result = botfleet(settings, "run", "--execute", "--plan", dry["plan_id"], input="y\n")
    assert result.exit_code == 1, result.output  # the bots stage refuses: more than planned
    assert "the plan had 1" in result.output
    assert late <= bot_ids(settings)


def test_exit_codes(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory()
    expired_bots(settings, 2)
    capped = botfleet(settings, "run", "--execute", "--yes", CLEANUP_MAX_DELETIONS="1")
    assert capped.exit_code == 1, capped.output
    assert "CLEANUP_MAX_DELETIONS=1" in capped.output

    # An empty database file (no schema): the run cannot even be recorded.
    empty = settings_factory(database_url=f"sqlite:///{tmp_path}/empty.db")
    failed = botfleet(empty, "run", "--execute", "--yes")
    assert failed.exit_code == 2, failed.output

    bad = botfleet(settings, "run", "--only", "everything")
    assert bad.exit_code == 3 and "only:" in bad.output

    not_a_plan = botfleet(settings, "run", "--execute", "--yes", "--plan", str(uuid.uuid4()))
    assert not_a_plan.exit_code == 3 and "not found" in not_a_plan.output


def test_a_run_elsewhere_is_reported(settings: Settings) -> None:
    with another_run_holds_the_lock(settings):
        result = botfleet(settings, "run")
    assert result.exit_code == 3
    assert "already in progress" in result.output


def test_status_orphans_runs_and_show(settings: Settings) -> None:
    expired_bots(settings, 1)
    ran = botfleet(settings, "run", "--execute", "--yes", "--json")
    assert ran.exit_code == 0, (ran.output, ran.exception)
    report = json.loads(ran.stdout)
    status = botfleet(settings, "status", "--json")
    assert status.exit_code == 0
    assert json.loads(status.stdout)["last_run"]["run_id"] == report["run_id"]
    assert "retention_days" in botfleet(settings, "status").output

    orphans = json.loads(botfleet(settings, "orphans", "--json").stdout)
    assert orphans["summary"]["bots"]["total"] == 0
    assert botfleet(settings, "orphans").exit_code == 0

    runs = json.loads(botfleet(settings, "runs", "--json").stdout)
    assert runs["total"] == 1 and runs["items"][0]["id"] == report["run_id"]
    assert report["run_id"][:8] in botfleet(settings, "runs").output

    shown = botfleet(settings, "show", report["run_id"])
    assert shown.exit_code == 0 and "1 audit records" in shown.output
    detail = json.loads(botfleet(settings, "show", report["run_id"], "--json").stdout)
    assert detail["audit"]["items"][0]["kind"] == "bots"
    assert botfleet(settings, "show", "nope").exit_code == 3
    assert botfleet(settings, "show", str(uuid.uuid4())).exit_code == 3


def test_through_the_server(settings_factory: Callable[..., Settings]) -> None:
    port = free_port()
    settings = settings_factory(
        port=port, main_server_url=f"http://127.0.0.1:{port}", container_cleanup_enabled=False
    )
    expired_bots(settings, 1, results=2)
    with live_server(settings) as url:
        result = botfleet(settings, "run", "--server", "--execute", "--yes", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["trigger"] == "manual"
        assert report["actor"] == f"api:{fingerprint(TEST_TOKEN)}@127.0.0.1"
        assert report["resources"]["bot_results"]["deleted"] == 2
        status = json.loads(botfleet(settings, "status", "--server", "--json").stdout)
        assert status["last_run"]["run_id"] == report["run_id"]
        runs = json.loads(botfleet(settings, "runs", "--server", "--url", url, "--json").stdout)
        assert runs["total"] == 1
        shown = botfleet(settings, "show", report["run_id"], "--server", "--json")
        assert json.loads(shown.stdout)["audit"]["total"] == 1
        assert botfleet(settings, "orphans", "--server").exit_code == 0

        with another_run_holds_the_lock(settings):
            busy = botfleet(settings, "run", "--server")
        assert busy.exit_code == 3 and "already in progress" in busy.output

        wrong = botfleet(settings, "status", "--server", ADMIN_TOKEN="w" * 40)
        assert wrong.exit_code == 3 and "401" in wrong.output
    down = botfleet(settings, "status", "--server")
    assert down.exit_code == 3 and "cannot reach" in down.output
