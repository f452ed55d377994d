"""scripts/monitor-cleanup.sh driven through its stdin against a real server (both backends)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from botfleet.cleanup.lock import lock_for
from botfleet.config import Settings
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.store.models import Bot, Result
from tests.conftest import ROOT, TEST_TOKEN, in_store
from tests.servers import free_port, live_server

SCRIPT = ROOT / "scripts/monitor-cleanup.sh"


@dataclass
class Server:
    url: str
    settings: Settings

    def run(
        self, *args: str, stdin: str = "", token: str | None = TEST_TOKEN, url: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "MAIN_SERVER_URL")}
        env["MAIN_SERVER_URL"] = url or self.url
        if token is not None:
            env["ADMIN_TOKEN"] = token
        return subprocess.run(
            [str(SCRIPT), *args],  # run as operators do: the file itself, by its shebang
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )


@pytest.fixture
def server(settings_factory: Callable[..., Settings]) -> Iterator[Server]:
    port = free_port()
    settings = settings_factory(
        port=port, main_server_url=f"http://127.0.0.1:{port}", container_cleanup_grace_minutes=0
    )
    with live_server(settings) as url:
        yield Server(url, settings)


def seed(settings: Settings) -> None:
    """One expired soft-deleted bot with 3 results, one live bot with 1, 2 orphaned results."""

    async def add(session: Any) -> None:
        old = datetime.now(UTC) - timedelta(days=30)
        gone = Bot(name="gone", image="i", token_hash="h", status="deleted", deleted_at=old)
        live = Bot(name="live", image="i", token_hash="h", status="running")
        session.add_all([gone, live])
        await session.flush()
        session.add_all([Result(bot_id=gone.id, data={}) for _ in range(3)])
        session.add(Result(bot_id=live.id, data={}))
        session.add_all([Result(bot_id=uuid.uuid4(), data={}) for _ in range(2)])

    in_store(settings, add)


def counts(settings: Settings) -> tuple[int, int]:
    async def count(session: Any) -> tuple[int, int]:
        bots = await session.scalar(select(func.count()).select_from(Bot))
        results = await session.scalar(select(func.count()).select_from(Result))
        return int(bots), int(results)

    bots, results = in_store(settings, count)
    return int(bots), int(results)


def test_menu_option_1_prints_the_status(server: Server) -> None:
    done = server.run(stdin="1\nq\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "1) Check service status" in out and "4) Perform cleanup" in out
    assert "botfleet cleanup status" in out
    assert "Mode" in out and "scheduler OFF" in out
    assert re.search(rf"\n  Instance +{server.settings.botfleet_instance}\n", out)
    assert re.search(r"\n  Breakers +database closed, engine:local closed\n", out)
    assert "No cleanup has run yet" in out
    assert "{" not in out  # tables, not raw JSON


def test_cleanup_yes_performs_a_cleanup_and_prints_what_it_removed(
    server: Server, docker_client: Any, sample_image: str, cleanup_containers: None
) -> None:
    seed(server.settings)
    labels = {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: server.settings.botfleet_instance,
        LABEL_BOT_ID: str(uuid.uuid4()),
    }
    orphan = docker_client.containers.create(
        sample_image, ["true"], labels=labels, network_mode="none"
    )
    done = server.run("cleanup", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Step 1/2: planning" in out and "Step 2/2: applying plan" in out
    plan_id = out.split("applying plan ", 1)[1].split("…", 1)[0]
    assert f"plan     {plan_id}" in out.split("Step 2/2", 1)[1]  # the applied plan is the shown one
    assert "Cleanup: SUCCEEDED (real run" in out
    assert "Removed (" in out
    assert orphan.id in out  # the container, by id, in the removed list
    assert "bots: expired" in out
    table = out.split("Cleanup: SUCCEEDED", 1)[1]
    assert _row(table, "bots") == ["1", "1"]
    assert _row(table, "bot_results") == ["3", "3"]
    assert _row(table, "orphaned_results") == ["2", "2"]
    assert _row(table, "containers") == ["1", "1"]
    assert counts(server.settings) == (1, 1)  # the live bot and its result remain
    assert not docker_client.containers.list(all=True, sparse=True, filters={"id": orphan.id})


def test_declining_the_confirmation_deletes_nothing(server: Server) -> None:
    seed(server.settings)
    done = server.run("cleanup", stdin="no\n")
    assert done.returncode == 7
    assert (
        'Type "yes" to confirm' in done.stdout and "Cancelled: nothing was deleted." in done.stdout
    )
    interactive = server.run(stdin="4\n\nq\n")  # an empty answer is a no too
    assert interactive.returncode == 0
    assert "Cancelled" in interactive.stdout and "(exit code 7)" in interactive.stdout
    assert counts(server.settings) == (2, 6)


def test_orphans_and_dry_run_show_tables_and_change_nothing(server: Server) -> None:
    seed(server.settings)
    orphans = server.run("orphans")
    assert orphans.returncode == 0, orphans.stderr
    assert "KIND" in orphans.stdout and "ELIGIBLE" in orphans.stdout
    assert _row(orphans.stdout, "orphaned_results")[:2] == ["2", "2"]
    dry = server.run(stdin="3\nq\n")
    assert dry.returncode == 0
    assert "Dry run: SUCCEEDED (dry run" in dry.stdout and "would delete (sample):" in dry.stdout
    assert counts(server.settings) == (2, 6)


def test_nothing_to_clean_up_asks_nothing(server: Server) -> None:
    done = server.run("cleanup")
    assert done.returncode == 0
    assert "Nothing to clean up." in done.stdout and "confirm" not in done.stdout


def test_wrong_token_missing_token_unreachable_server_and_bad_usage(server: Server) -> None:
    wrong = server.run("status", token="not-the-token-at-all")
    assert wrong.returncode == 4
    assert "refused the token (HTTP 401)" in wrong.stderr
    missing = server.run("status", token=None)
    assert missing.returncode == 2 and "ADMIN_TOKEN is not set" in missing.stderr
    down = server.run("status", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 3
    assert "cannot reach the botfleet server" in down.stderr
    bogus = server.run("explode")
    assert bogus.returncode == 2 and "usage:" in bogus.stderr
    menu = server.run(stdin="9\nq\n")
    assert menu.returncode == 0 and "unknown choice '9'" in menu.stderr


def test_a_cleanup_already_running_is_reported(server: Server) -> None:
    async def holding_the_lock() -> subprocess.CompletedProcess[str]:
        lock = lock_for(server.settings)
        assert await lock.acquire()
        try:
            return await asyncio.to_thread(server.run, "dry-run")
        finally:
            await lock.release()

    done = asyncio.run(holding_the_lock())
    assert done.returncode == 6
    assert "another cleanup is already running" in done.stderr


def test_the_token_never_appears_in_the_process_list() -> None:
    text = SCRIPT.read_text()
    # The header goes through a file descriptor (curl -H @file), never argv.
    assert "-H @<(printf 'Authorization: Bearer %s" in text
    assert '"Authorization: Bearer $ADMIN_TOKEN"' not in text


def _row(text: str, kind: str) -> list[str]:
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] == kind:
            return cells[1:3]
    raise AssertionError(f"no row for {kind} in:\n{text}")
