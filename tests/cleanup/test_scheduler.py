"""The scheduler: pure tick logic against a fake service, then the real service on both stores."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from botfleet.cleanup.scheduler import Scheduler
from botfleet.cleanup.ticks import (
    TICK_FAILED,
    TICK_LOCKED,
    TICK_OUTSIDE_WINDOW,
    TICK_RAN,
    TICK_SKIPPED,
)
from botfleet.config import Settings
from botfleet.errors import CleanupInProgress
from botfleet.store.models import Bot, Result
from tests.conftest import make_settings, started_app
from tests.support.store import Store, store
from tests.support.wait import wait_until_async

__all__ = ["store"]
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
Scripted = dict[str, Any] | BaseException | Callable[[], Awaitable[dict[str, Any]]]


def report(
    status: str = "succeeded", found: int = 1, errors: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "run_id": "r1",
        "status": status,
        "resources": {"bots": {"found": found, "deleted": found, "sample": []}},
        "errors": errors or [],
    }


class FakeService:
    """Implements the two calls the scheduler makes; answers from a script."""

    def __init__(self, *results: Scripted) -> None:
        self.results = list(results)
        self.calls: list[dict[str, Any]] = []
        self.stop_requests = 0
        self.stopped = asyncio.Event()
        self.current_run_id: str | None = None

    async def run(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        result = self.results.pop(0) if self.results else report()
        if isinstance(result, BaseException):
            raise result
        if callable(result):
            self.current_run_id = "fake"  # it holds the lock while it runs
            try:
                return await result()
            finally:
                self.current_run_id = None
        return result

    async def breakers_changed(self, changes: Any) -> None:
        self.breaker_events = [*getattr(self, "breaker_events", []), *changes]

    def request_stop(self) -> None:
        self.stop_requests += 1
        self.stopped.set()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def scheduler(service: FakeService, clock: Clock | None = None, **overrides: Any) -> Scheduler:
    values: dict[str, Any] = {
        "cleanup_enabled": True,
        "cleanup_retry_minutes": 5,
        "cleanup_breaker_threshold": 2,
        "cleanup_breaker_cooldown_seconds": 60,
    }
    values.update(overrides)
    return Scheduler(
        settings=make_settings(**values),
        service=service,
        engines=["a", "b"],
        clock=clock or Clock(),
        rng=random.Random(1),
    )


def delay(s: Scheduler, clock: Clock) -> timedelta:
    assert s.next is not None
    return s.next.at - clock.now


# --- one tick ------------------------------------------------------------------------------------
async def test_tick_runs_as_schedule_with_the_configured_mode() -> None:
    service = FakeService()
    s = scheduler(service, cleanup_dry_run=True)
    tick = await s.tick()
    assert tick.kind == TICK_RAN and tick.status == "succeeded"
    assert service.calls == [
        {"trigger": "schedule", "actor": "schedule", "dry_run": True, "skip_engines": frozenset()}
    ]
    assert s.status()["mode"] == "dry_run"


async def test_lock_taken_is_a_skip_not_a_failure() -> None:
    clock = Clock()
    service = FakeService(CleanupInProgress("other-run"))
    s = scheduler(service, clock)
    tick = await s.tick()
    assert tick.kind == TICK_LOCKED
    s.next = s.plan_after(tick)
    assert s.status()["consecutive_failures"] == 0
    assert s.status()["next_run_reason"] == "interval"
    assert timedelta(hours=6) <= delay(s, clock) <= timedelta(hours=6, minutes=5)


async def test_failures_retry_with_backoff_then_success_resets() -> None:
    clock = Clock()
    service = FakeService(report("failed"), RuntimeError("boom"), report("failed"), report())
    s = scheduler(service, clock, cleanup_breaker_threshold=10)
    expected = [5, 10, 20]
    for minutes in expected:
        tick = await s.tick()
        assert tick.kind in (TICK_RAN, TICK_FAILED) and tick.outcome.failed
        s.next = s.plan_after(tick)
        assert s.next.reason == "retry"
        d = delay(s, clock)
        assert timedelta(minutes=minutes) <= d <= timedelta(minutes=minutes * 1.05)
    assert s.status()["consecutive_failures"] == 3
    s.next = s.plan_after(await s.tick())
    assert s.status()["consecutive_failures"] == 0
    assert s.next.reason == "interval"


async def test_a_partial_run_is_not_a_failure_unless_a_database_stage_failed() -> None:
    engine = {"stage": "containers", "engine": "b", "message": "refused"}
    database = {"stage": "bots", "dependency": "database", "message": "lock timeout\n[SQL: …]"}
    stopped = {"stage": "bots", "reason": "interrupted", "message": "stop requested"}
    s = scheduler(
        FakeService(
            report("partial", errors=[engine]),
            report("partial", errors=[stopped]),
            report("partial", errors=[database]),
        )
    )
    assert not (await s.tick()).outcome.failed
    assert not (await s.tick()).outcome.failed
    assert s.streaks.failures == 0
    tick = await s.tick()
    assert tick.outcome.failed and s.streaks.failures == 1
    assert s.plan_after(tick).reason == "retry"


async def test_engine_breaker_opens_skips_probes_and_closes() -> None:
    clock = Clock()
    err = {"stage": "containers", "engine": "b", "message": "connection refused"}
    service = FakeService(
        report("partial", errors=[err]),
        report("partial", errors=[err]),
        report("partial", errors=[{**err, "message": "skipped: breaker open"}]),
        report("partial", errors=[err]),  # the half-open probe fails
        report(),  # skipped again
        report(),  # the next probe succeeds
    )
    s = scheduler(service, clock)
    await s.tick()
    assert s.status()["breakers"]["engine:b"]["state"] == "closed"
    await s.tick()
    breakers = s.status()["breakers"]
    assert breakers["engine:b"]["state"] == "open"
    assert breakers["engine:b"]["last_error"] == "connection refused"
    assert breakers["engine:a"]["state"] == "closed"
    assert breakers["database"]["state"] == "closed"
    await s.tick()
    assert service.calls[-1]["skip_engines"] == frozenset({"b"})
    assert s.status()["breakers"]["engine:b"]["state"] == "open"  # a skip proves nothing
    clock.now += timedelta(seconds=60)
    await s.tick()
    assert service.calls[-1]["skip_engines"] == frozenset()
    assert s.status()["breakers"]["engine:b"]["state"] == "open"
    assert s.status()["breakers"]["engine:b"]["since"] == clock.now.isoformat()
    await s.tick()
    assert service.calls[-1]["skip_engines"] == frozenset({"b"})
    clock.now += timedelta(seconds=60)
    await s.tick()
    assert s.status()["breakers"]["engine:b"]["state"] == "closed"


async def test_database_breaker_open_skips_the_run_and_holds_the_retry() -> None:
    clock = Clock()
    lost = OperationalError("SELECT 1", {}, Exception("connection lost"))
    service = FakeService(lost, lost, report())
    s = scheduler(service, clock, cleanup_breaker_cooldown_seconds=3600)
    await s.tick()
    await s.tick()
    assert s.status()["breakers"]["database"]["state"] == "open"
    assert s.status()["breakers"]["database"]["last_error"] == (
        "OperationalError: (builtins.Exception) connection lost"
    )
    tick = await s.tick()
    assert tick.kind == TICK_SKIPPED and "database circuit breaker open" in (tick.reason or "")
    assert len(service.calls) == 2  # the run was not even attempted
    s.next = s.plan_after(tick)
    # Retry would say 10 minutes; the open breaker holds the next run until it half-opens.
    assert s.next.reason == "retry"
    assert T0 + timedelta(hours=1) <= s.next.at <= T0 + timedelta(hours=1, minutes=5)
    clock.now += timedelta(hours=1)
    assert (await s.tick()).kind == TICK_RAN
    assert s.status()["breakers"]["database"]["state"] == "closed"
    assert s.status()["consecutive_failures"] == 0


async def test_database_errors_in_the_report_feed_the_database_breaker() -> None:
    err = {"stage": "bots", "dependency": "database", "message": "statement timeout"}
    s = scheduler(FakeService(report("failed", errors=[err])), cleanup_breaker_threshold=1)
    await s.tick()
    assert s.status()["breakers"]["database"]["state"] == "open"


async def test_container_stage_off_touches_no_engine_breaker() -> None:
    err = {"stage": "containers", "engine": "b", "message": "refused"}
    service = FakeService(report(errors=[err]), report(errors=[err]))
    s = scheduler(service, container_cleanup_enabled=False, cleanup_breaker_threshold=1)
    await s.tick()
    await s.tick()
    assert service.calls[-1]["skip_engines"] == frozenset()
    assert s.status()["breakers"]["engine:b"]["state"] == "closed"


@pytest.mark.parametrize(
    ("reports", "reason"),
    [
        ([report(found=0)] * 3, "adaptive"),  # three empty runs stretch the interval
        ([report(found=0)] * 2, "interval"),
        ([{**report(), "resources": {"bots": {"found": 9, "deleted": 0, "capped": True}}}],
         "adaptive"),
    ],
)  # fmt: skip
async def test_adaptive_outcomes(reports: list[dict[str, Any]], reason: str) -> None:
    s = scheduler(FakeService(*reports))
    for _ in reports:
        tick = await s.tick()
    assert s.plan_after(tick).reason == reason


async def test_run_over_max_run_seconds_is_stopped_and_brings_the_next_run_forward() -> None:
    service = FakeService()

    async def long_run() -> dict[str, Any]:
        await asyncio.wait_for(service.stopped.wait(), 10)
        return report("partial")

    service.results = [long_run]
    clock = Clock()
    s = scheduler(service, clock, cleanup_max_run_seconds=0.05)
    tick = await s.tick()
    assert service.stop_requests == 1
    assert tick.outcome.backlog
    s.next = s.plan_after(tick)
    assert s.next.reason == "adaptive"
    assert timedelta(hours=3) <= delay(s, clock) <= timedelta(hours=3, minutes=5)


async def test_once_outside_the_window_does_not_run() -> None:
    service = FakeService()
    s = scheduler(service, cleanup_window="01:00-05:00")  # T0 is noon UTC
    tick = await s.tick(respect_window=True)
    assert tick.kind == TICK_OUTSIDE_WINDOW and service.calls == []
    assert s.plan_after(tick).reason == "window"


def test_the_banner_says_which_mode_is_on() -> None:
    from botfleet.startup import cleanup_mode

    dry = make_settings(
        cleanup_enabled=True,
        cleanup_dry_run=True,
        container_cleanup_enabled=False,
        cleanup_window="01:00-05:00",
        cleanup_timezone="Europe/Berlin",
    )
    assert cleanup_mode(dry).startswith("DRY RUN (scheduled runs plan only, delete nothing)")
    assert "container cleanup off" in cleanup_mode(dry)
    assert "window 01:00-05:00 Europe/Berlin" in cleanup_mode(dry)
    active = make_settings(cleanup_enabled=True, cleanup_adaptive=False)
    assert cleanup_mode(active).startswith("ACTIVE (scheduled runs delete); container cleanup on")
    assert "every 6h (fixed)" in cleanup_mode(active)
    assert cleanup_mode(make_settings(cleanup_enabled=False)).startswith("scheduler off")


# --- the loop ------------------------------------------------------------------------------------
def live(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "cleanup_enabled": True,
        "cleanup_startup_delay_seconds": 0,
        "cleanup_interval_hours": 0.05 / 3600,
        "cleanup_retry_minutes": 0.05 / 60,
    }
    values.update(overrides)
    return make_settings(**values)


async def test_loop_survives_errors_and_keeps_ticking() -> None:
    service = FakeService(RuntimeError("boom"), KeyError("x"), report())
    s = Scheduler(settings=live(), service=service, engines=["a"])
    await s.start()
    try:
        await wait_until_async(
            lambda: len(service.calls) >= 5, timeout=10, message="five scheduled runs"
        )
    finally:
        await s.stop()
    assert s.status()["consecutive_failures"] == 0
    assert s.status()["next_run_at"] is None


async def test_stop_asks_the_run_to_finish_its_batch() -> None:
    service = FakeService()
    entered = asyncio.Event()

    async def batches() -> dict[str, Any]:
        entered.set()
        await asyncio.wait_for(service.stopped.wait(), 30)
        return report("partial")

    service.results = [batches]
    s = Scheduler(settings=live(), service=service, engines=["a"])
    await s.start()
    await asyncio.wait_for(entered.wait(), 10)
    assert s.status()["leader"] is True
    started = time.monotonic()
    await s.stop()
    assert time.monotonic() - started < 2
    assert service.stop_requests == 1
    assert s.last_tick is not None and s.last_tick.status == "partial"


async def test_stop_cancels_a_run_that_ignores_the_request() -> None:
    service = FakeService()
    entered = asyncio.Event()

    async def stubborn() -> dict[str, Any]:
        entered.set()
        await asyncio.sleep(3600)
        return report()

    service.results = [stubborn]
    s = Scheduler(settings=live(), service=service, engines=["a"], stop_timeout=0.2)
    await s.start()
    await asyncio.wait_for(entered.wait(), 10)
    started = time.monotonic()
    await s.stop()
    assert time.monotonic() - started < 2


# --- the real service, on SQLite and PostgreSQL, with the real Docker Engine ---------------------
def scheduled(settings_factory: Callable[..., Settings], **overrides: Any) -> Settings:
    """Seconds-scale scheduling: first run at once, then every 0.3 s."""
    values: dict[str, Any] = {
        "cleanup_enabled": True,
        "cleanup_startup_delay_seconds": 0,
        "cleanup_interval_hours": 0.3 / 3600,
        "cleanup_retry_minutes": 0.3 / 60,
        "container_cleanup_grace_minutes": 0,
    }
    values.update(overrides)
    return settings_factory(**values)


async def finished_runs(store: Store, n: int) -> list[dict[str, Any]]:
    runs = [r for r in await store.runs() if r["status"] != "running"]
    return runs if len(runs) >= n else []


async def test_the_scheduler_alone_purges_deleted_bots(
    settings_factory: Callable[..., Settings],
    store: Store,
    docker_client: Any,
    admin_headers: dict[str, str],
) -> None:
    settings = scheduled(settings_factory)
    expired = await store.seed_bots(5, results_per_bot=3)
    kept = await store.seed_bots(2, deleted_ago=timedelta(days=1))
    kept += await store.seed_bots(2, deleted_ago=None, results_per_bot=2)
    app, ctx = await started_app(settings)
    try:
        scheduler = app.state.services.scheduler

        async def purged() -> bool:
            # ... and the run that did it is over: the scheduler has planned the next one.
            planned = scheduler.last_tick is not None and scheduler.next.reason != "startup"
            return planned and not await store.bots_left(expired)

        await wait_until_async(
            purged, timeout=30, message="the scheduler to purge the expired bots"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            status = (await client.get("/admin/cleanup/status", headers=admin_headers)).json()
    finally:
        await ctx.__aexit__(None, None, None)
    assert status["mode"] == "active"
    assert status["next_run_reason"] in ("interval", "adaptive")
    assert datetime.fromisoformat(status["next_run_at"]) > datetime.now(UTC) - timedelta(seconds=5)
    assert status["consecutive_failures"] == 0
    assert status["breakers"]["database"]["state"] == "closed"
    assert status["breakers"]["engine:local"]["state"] == "closed"
    assert isinstance(status["leader"], bool)
    assert status["window"] is None
    runs = await finished_runs(store, 1)
    assert runs and all(r["trigger"] == "schedule" and r["actor"] == "schedule" for r in runs)
    assert all(not r["dry_run"] for r in runs)
    assert sum(r["report"]["resources"]["bots"]["deleted"] for r in runs) == 5
    assert sum(r["report"]["resources"]["bot_results"]["deleted"] for r in runs) == 15
    assert await store.bots_left(kept) == set(kept)
    assert sum((await store.results_per_bot()).values()) == 2 + 2 * 2


async def test_dry_run_mode_runs_on_schedule_and_deletes_nothing(
    settings_factory: Callable[..., Settings],
    store: Store,
    docker_client: Any,
    sample_image: str,
    instance: str,
    cleanup_containers: None,
) -> None:
    settings = scheduled(settings_factory, cleanup_dry_run=True)
    await store.seed_bots(4, results_per_bot=2)
    await store.orphans(3)
    orphan = docker_client.containers.create(
        sample_image,
        command=["true"],
        network_mode="none",
        labels={
            "botfleet.managed": "true",
            "botfleet.instance": instance,
            "botfleet.bot-id": str(uuid.uuid4()),
        },
    )
    counts = (await store.count(Bot), await store.count(Result))
    _app, ctx = await started_app(settings)
    try:
        runs = await wait_until_async(
            lambda: finished_runs(store, 3), timeout=30, message="three scheduled dry runs"
        )
    finally:
        await ctx.__aexit__(None, None, None)
    for run in runs:
        assert (run["trigger"], run["dry_run"], run["status"]) == ("schedule", True, "succeeded")
        resources = run["report"]["resources"]
        assert resources["bots"]["found"] == 4 and resources["orphaned_results"]["found"] == 3
        assert resources["containers"]["found"] == 1
        assert all(r["deleted"] == 0 for r in resources.values())
    assert (await store.count(Bot), await store.count(Result)) == counts
    assert await store.audit_count() == 0
    orphan.reload()
    assert orphan.status == "created"
