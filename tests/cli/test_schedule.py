"""`botfleet cleanup schedule [--once]`: the scheduler without the server, as cron runs it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botfleet.cleanup.lock import lock_for
from botfleet.config import Settings
from botfleet.store.models import Bot
from tests.reliability._serve import clean_env
from tests.support.store import Store
from tests.support.wait import wait_until_async


def schedule(settings: Settings, tmp_path: Path, *args: str, **env: Any) -> subprocess.Popen[str]:
    environment = clean_env(
        DATABASE_URL=settings.database_url,
        BOTFLEET_INSTANCE=settings.botfleet_instance,
        CONTAINER_CLEANUP_ENABLED="false",
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "botfleet.cli", "cleanup", "schedule", *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def once(settings: Settings, tmp_path: Path, **env: Any) -> tuple[int, str, str]:
    proc = schedule(settings, tmp_path, "--once", **env)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


async def test_once_runs_one_scheduled_cycle(settings: Settings, tmp_path: Path) -> None:
    store = Store(settings)
    expired = await store.seed_bots(3, results_per_bot=2)
    code, out, err = await asyncio.to_thread(once, settings, tmp_path)
    assert code == 0, err
    assert out.startswith("cleanup run ") and " succeeded: bots 3/3 bot_results 6/6" in out
    (run,) = await store.runs()
    assert (run["trigger"], run["actor"], run["dry_run"]) == ("schedule", "schedule", False)
    assert not await store.bots_left(expired)
    await store.close()


async def test_once_in_dry_run_mode_deletes_nothing(settings: Settings, tmp_path: Path) -> None:
    store = Store(settings)
    await store.seed_bots(3)
    code, out, err = await asyncio.to_thread(once, settings, tmp_path, CLEANUP_DRY_RUN="true")
    assert code == 0, err
    assert "(dry run)" in out
    (run,) = await store.runs()
    assert (run["trigger"], run["dry_run"]) == ("schedule", True)
    assert await store.count(Bot) == 3
    await store.close()


async def test_once_skips_when_another_run_holds_the_lock(
    settings: Settings, tmp_path: Path
) -> None:
    store = Store(settings)
    await store.seed_bots(2)
    lock = lock_for(settings)
    assert await lock.acquire()
    try:
        code, out, err = await asyncio.to_thread(once, settings, tmp_path)
    finally:
        await lock.release()
    assert code == 0, err
    assert out.startswith("scheduled cleanup skipped:") and "already in progress" in out
    assert await store.runs() == []
    assert await store.count(Bot) == 2
    await store.close()


async def test_once_outside_the_window_does_nothing(settings: Settings, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    window = f"{now + timedelta(hours=2):%H}:00-{now + timedelta(hours=3):%H}:00"
    store = Store(settings)
    code, out, err = await asyncio.to_thread(once, settings, tmp_path, CLEANUP_WINDOW=window)
    assert code == 0, err
    assert f"outside CLEANUP_WINDOW {window} UTC" in out
    assert await store.runs() == []
    await store.close()


async def test_foreground_scheduler_runs_until_sigterm(settings: Settings, tmp_path: Path) -> None:
    store = Store(settings)
    expired = await store.seed_bots(2)
    proc = schedule(
        settings,
        tmp_path,
        CLEANUP_STARTUP_DELAY_SECONDS="0",
        CLEANUP_INTERVAL_HOURS=str(0.2 / 3600),
    )
    try:

        async def purged() -> bool:
            return not await store.bots_left(expired)

        await wait_until_async(purged, timeout=30, message="the foreground scheduler to purge")
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _out, err = await asyncio.to_thread(proc.communicate, None, 30)
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "cleanup scheduler stopped" in err
    runs = await store.runs()
    assert runs and {r["trigger"] for r in runs} == {"schedule"}
    await store.close()
