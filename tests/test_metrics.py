"""Metrics: values read back from a fresh registry; the live /metrics output passes promtool."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from botfleet import constants as c
from botfleet.backlog import classify_containers, leading_failures
from botfleet.cleanup.timing import longest_gap_seconds
from botfleet.metrics.gauges import StateCollector
from botfleet.metrics.runs import CleanupMetrics
from botfleet.runtime.base import ContainerInfo
from botfleet.services import Services
from botfleet.store.models import Bot, CleanupRun, Result
from tests.conftest import TEST_TOKEN, make_settings, missing_service, started_app
from tests.support.wait import wait_until_async

NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)


def report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "plan_id": str(uuid.uuid4()),
        "dry_run": False,
        "trigger": "schedule",
        "status": "succeeded",
        "started_at": "2030-01-10T12:00:00+00:00",
        "finished_at": "2030-01-10T12:00:42+00:00",
        "resources": {
            "bots": {"found": 3, "deleted": 3, "bytes_reclaimed": 8192, "sample": []},
            "bot_results": {"found": 10, "deleted": 9, "failed": 1, "sample": []},
            "orphaned_results": {"found": 0, "deleted": 0, "sample": []},
            "containers": {"found": 2, "deleted": 2, "bytes_reclaimed": 4096, "sample": []},
        },
        "errors": [],
    }
    base.update(overrides)
    return base


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_real_run_is_counted_per_kind() -> None:
    registry = CollectorRegistry()
    metrics = CleanupMetrics(registry)
    metrics.observe(report())
    assert (
        value(registry, c.M_CLEANUP_RUNS, trigger="schedule", status="succeeded", dry_run="false")
        == 1
    )
    assert value(registry, c.M_CLEANUP_RUNS, trigger="manual", status="failed", dry_run="true") == 0
    assert value(registry, c.M_CLEANUP_FOUND, kind="bot_results", dry_run="false") == 10
    assert value(registry, c.M_CLEANUP_DELETED, kind="bot_results") == 9
    assert value(registry, c.M_CLEANUP_FAILED, kind="bot_results") == 1
    assert value(registry, c.M_CLEANUP_DELETED, kind="containers") == 2
    assert value(registry, c.M_CLEANUP_BYTES_RECLAIMED, kind="containers") == 4096
    assert value(registry, c.M_CLEANUP_BYTES_RECLAIMED, kind="bots") == 8192  # with its results
    assert value(registry, c.M_CLEANUP_BYTES_RECLAIMED, kind="results") == 0
    assert value(registry, c.M_CLEANUP_BYTES_RECLAIMED, kind="bot_results") is None
    assert value(registry, c.M_CLEANUP_DURATION + "_sum", stage="total", dry_run="false") == 42
    assert value(registry, c.M_CLEANUP_DURATION + "_count", stage="total", dry_run="false") == 1
    assert metrics.last_success[False] == datetime(2030, 1, 10, 12, 0, 42, tzinfo=UTC)


def test_a_dry_run_finds_but_never_deletes() -> None:
    registry = CollectorRegistry()
    metrics = CleanupMetrics(registry)
    metrics.observe(report(dry_run=True, trigger="manual"))
    assert (
        value(registry, c.M_CLEANUP_RUNS, trigger="manual", status="succeeded", dry_run="true") == 1
    )
    assert value(registry, c.M_CLEANUP_FOUND, kind="bots", dry_run="true") == 3
    assert value(registry, c.M_CLEANUP_FOUND, kind="bots", dry_run="false") == 0
    assert value(registry, c.M_CLEANUP_DELETED, kind="bots") == 0
    assert value(registry, c.M_CLEANUP_BYTES_RECLAIMED, kind="containers") == 0
    assert value(registry, c.M_CLEANUP_BYTES_RECLAIMED, kind="bots") == 0
    assert False not in metrics.last_success


def test_a_failed_run_and_a_malformed_report_do_not_raise() -> None:
    registry = CollectorRegistry()
    metrics = CleanupMetrics(registry)
    metrics.observe(report(status="failed", resources={}, finished_at=None))
    metrics.observe({"resources": {"bots": "nonsense", "unknown_kind": {"found": 5}}})
    metrics.observe({"resources": None, "started_at": 12})
    assert (
        value(registry, c.M_CLEANUP_RUNS, trigger="schedule", status="failed", dry_run="false") == 1
    )
    assert metrics.last_success == {}


def test_stage_durations_and_deletion_lag_when_the_report_has_them() -> None:
    registry = CollectorRegistry()
    metrics = CleanupMetrics(registry)
    resources = report()["resources"]
    resources["bots"].update(duration_seconds=1.5, lag_seconds=[60, 7200])
    metrics.observe(report(resources=resources))
    assert value(registry, c.M_CLEANUP_DURATION + "_sum", stage="bots", dry_run="false") == 1.5
    assert value(registry, c.M_CLEANUP_DELETION_LAG + "_count", kind="bots") == 2
    assert value(registry, c.M_CLEANUP_DELETION_LAG + "_bucket", kind="bots", le="3600.0") == 1


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], 0),
        (["succeeded", "failed"], 0),
        (["failed", "failed", "succeeded", "failed"], 2),
        (["abandoned", "failed", "partial"], 2),
        (["failed"] * 5, 5),
    ],
)
def test_consecutive_failures_count_from_the_newest(statuses: list[str], expected: int) -> None:
    assert leading_failures(statuses) == expected


def _container(bot_id: str, state: str, age: timedelta, instance: str = "prod") -> ContainerInfo:
    labels = {c.LABEL_MANAGED: "true", c.LABEL_INSTANCE: instance, c.LABEL_BOT_ID: bot_id}
    return ContainerInfo(
        id=uuid.uuid4().hex,
        name="x",
        engine="local",
        state=state,
        labels=labels,
        created_at=NOW - age,
    )


def test_containers_are_orphaned_when_no_live_bot_owns_them() -> None:
    live, dead = str(uuid.uuid4()), str(uuid.uuid4())
    counts = classify_containers(
        [
            _container(live, "exited", timedelta(hours=1)),  # owned: neither
            _container(live.upper(), "exited", timedelta(hours=1)),  # owned, other spelling
            _container(dead, "exited", timedelta(hours=1)),  # orphaned, removable
            _container(dead, "running", timedelta(hours=1)),  # orphaned, running: kept
            _container(dead, "exited", timedelta(minutes=2)),  # orphaned, within the grace
            _container(dead, "exited", timedelta(hours=1), instance="other"),  # not ours
            _container("not-a-uuid", "dead", timedelta(hours=1)),  # orphaned, removable
        ],
        {live},
        instance="prod",
        grace=timedelta(minutes=10),
        now=NOW,
    )
    assert (counts.orphaned, counts.removable) == (4, 2)


# --- through the app, on both backends -----------------------------------------------------
async def test_every_series_exists_from_the_first_scrape(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    for name in (
        'botfleet_cleanup_runs_total{dry_run="false",status="failed",trigger="schedule"} 0.0',
        'botfleet_cleanup_resources_deleted_total{kind="containers"} 0.0',
        'botfleet_cleanup_backlog{kind="bots"}',
        'botfleet_orphaned_resources{kind="orphaned_results"}',
        'botfleet_bots{status="running"}',
        "botfleet_cleanup_consecutive_failures",
        'botfleet_cleanup_last_success_timestamp_seconds{dry_run="false"}',
        'botfleet_cleanup_bytes_reclaimed_total{kind="containers"} 0.0',
        'botfleet_cleanup_bytes_reclaimed_total{kind="results_over_quota"} 0.0',
        "botfleet_cleanup_dry_run_mode 0.0",
    ):
        assert name in text, name


async def test_live_output_passes_promtool_check_metrics(client: httpx.AsyncClient) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_service("promtool (Debian's prometheus package)")
    await client.get("/healthz")
    await client.get("/nowhere")
    services: Services = client._transport.app.state.services  # type: ignore[attr-defined]
    services.metrics.observe(report())
    text = (await client.get("/metrics")).text
    checked = await asyncio.to_thread(
        subprocess.run,
        [str(promtool), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""


async def test_http_requests_are_labelled_by_route_template(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    for i in range(3):
        assert (await client.get(f"/things/{i}")).status_code == 200
    await client.get("/no/such/path/123")
    registry = app.state.services.registry
    assert (
        value(registry, c.M_HTTP_REQUESTS, method="GET", route="/things/{thing_id}", status="200")
        == 3
    )
    assert value(registry, c.M_HTTP_REQUESTS, method="GET", route="unmatched", status="404") == 1
    assert (
        value(registry, c.M_HTTP_DURATION + "_count", method="GET", route="/things/{thing_id}") == 3
    )
    assert "/things/1" not in (await client.get("/metrics")).text


async def test_metrics_token_guards_the_endpoint(database_url: str, instance: str) -> None:
    settings = make_settings(
        database_url=database_url, botfleet_instance=instance, metrics_token="scrape-" + "y" * 30
    )
    app, ctx = await started_app(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/metrics")).status_code == 401
            wrong = {"Authorization": f"Bearer {TEST_TOKEN}"}  # the admin token is not it
            assert (await client.get("/metrics", headers=wrong)).status_code == 401
            right = {"Authorization": "Bearer scrape-" + "y" * 30}
            answer = await client.get("/metrics", headers=right)
            assert answer.status_code == 200
            assert "botfleet_cleanup_runs_total" in answer.text
    finally:
        await ctx.__aexit__(None, None, None)


async def test_snapshot_gauges_count_the_store(app: FastAPI) -> None:
    services: Services = app.state.services
    now = datetime.now(UTC)
    gone = uuid.uuid4()
    async with services.sessions() as session, session.begin():
        old = Bot(
            name="old",
            image="i",
            token_hash="h",
            status="deleted",
            deleted_at=now - timedelta(days=30),
        )
        recent = Bot(
            name="recent",
            image="i",
            token_hash="h",
            status="deleted",
            deleted_at=now - timedelta(days=1),
        )
        live = Bot(name="live", image="i", token_hash="h", status="running")
        held = Bot(
            name="held",
            image="i",
            token_hash="h",
            status="deleted",
            labels={c.LABEL_HOLD: "true"},
            deleted_at=now - timedelta(days=60),
        )
        session.add_all([old, recent, live, held])
        await session.flush()
        session.add_all(
            [Result(bot_id=old.id, data={}) for _ in range(4)]
            + [Result(bot_id=live.id, data={}) for _ in range(2)]
            + [Result(bot_id=gone, data={}) for _ in range(3)]
        )
        for minutes, status in ((1, "failed"), (2, "failed"), (3, "succeeded"), (4, "failed")):
            session.add(
                CleanupRun(
                    trigger="schedule",
                    actor="t",
                    dry_run=False,
                    status=status,
                    started_at=now - timedelta(minutes=minutes),
                    finished_at=now - timedelta(minutes=minutes) + timedelta(seconds=5),
                )
            )
    snap = await services.metrics.refresher.refresh()
    assert snap is not None
    registry = services.registry
    assert value(registry, c.M_BOTS, status="deleted") == 3
    assert value(registry, c.M_BOTS, status="running") == 1
    assert value(registry, c.M_BOTS, status="pending") == 0
    assert value(registry, c.M_BACKLOG, kind="bots") == 1  # the held one stays
    assert value(registry, c.M_BACKLOG, kind="bot_results") == 4
    assert value(registry, c.M_BACKLOG, kind="orphaned_results") == 3
    assert value(registry, c.M_ORPHANED, kind="orphaned_results") == 3
    oldest = value(registry, c.M_BACKLOG_OLDEST, kind="bots")
    assert oldest is not None and 23 * 86400 < oldest < 23 * 86400 + 3600
    assert value(registry, c.M_CLEANUP_CONSECUTIVE_FAILURES) == 2
    last = value(registry, c.M_CLEANUP_LAST_SUCCESS, dry_run="false")
    expected = (now - timedelta(minutes=3) + timedelta(seconds=5)).timestamp()
    assert last is not None and abs(last - expected) < 1
    assert value(registry, c.M_CLEANUP_LAST_SUCCESS, dry_run="true") == 0
    assert value(registry, c.M_BACKLOG, kind="results") == 0  # RESULT_RETENTION_DAYS unset


async def test_result_retention_backlog(settings_factory: Any) -> None:
    app, ctx = await started_app(settings_factory(result_retention_days=10))
    try:
        services: Services = app.state.services
        now = datetime.now(UTC)
        async with services.sessions() as session, session.begin():
            live = Bot(name="live", image="i", token_hash="h", status="running")
            session.add(live)
            await session.flush()
            for days in (30, 12, 1):
                session.add(Result(bot_id=live.id, data={}, created_at=now - timedelta(days=days)))
        await services.metrics.refresher.refresh()
        assert value(services.registry, c.M_BACKLOG, kind="results") == 2
        oldest = value(services.registry, c.M_BACKLOG_OLDEST, kind="results")
        assert oldest is not None and abs(oldest - 20 * 86400) < 600
    finally:
        await ctx.__aexit__(None, None, None)


class _FakeScheduler:
    """Just the status() shape of the scheduler (issue 5), for the breaker gauge."""

    def status(self) -> dict[str, Any]:
        return {
            "next_run_at": "2030-01-10T18:00:00+00:00",
            "consecutive_failures": 0,
            "leader": True,
            "breakers": {
                "database": {"state": "closed", "since": None, "last_error": None},
                "engine:local": {
                    "state": "open",
                    "since": "2030-01-10T11:00:00+00:00",
                    "last_error": "timeout",
                },
                "engine:other": {"state": "half_open", "since": None, "last_error": None},
            },
        }


async def test_breakers_next_run_and_leadership_come_from_the_scheduler(app: FastAPI) -> None:
    services: Services = app.state.services
    # The gauges of a fresh registry, reading this fake scheduler instead of the app's.
    registry = CollectorRegistry()
    registry.register(
        StateCollector(
            settings=services.settings,
            runs=services.metrics.cleanup,
            refresher=services.metrics.refresher,
            scheduler_status=_FakeScheduler().status,
        )
    )
    assert value(registry, c.M_CLEANUP_BREAKER_STATE, dependency="database") == 0
    assert value(registry, c.M_CLEANUP_BREAKER_STATE, dependency="engine:local") == 2
    assert value(registry, c.M_CLEANUP_BREAKER_STATE, dependency="engine:other") == 1
    assert (
        value(registry, c.M_CLEANUP_NEXT_RUN) == datetime(2030, 1, 10, 18, tzinfo=UTC).timestamp()
    )
    assert value(registry, c.M_CLEANUP_LEADER) == 1


@pytest.mark.docker
async def test_orphaned_containers_are_counted_from_the_engine(
    database_url: str,
    instance: str,
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    labels = {
        c.LABEL_MANAGED: "true",
        c.LABEL_INSTANCE: instance,
        c.LABEL_BOT_ID: str(uuid.uuid4()),
    }
    container = docker_client.containers.create(
        sample_image, ["true"], labels=labels, network_mode="none"
    )
    settings = make_settings(
        database_url=database_url, botfleet_instance=instance, container_cleanup_grace_minutes=0
    )
    app, ctx = await started_app(settings)
    try:
        services: Services = app.state.services
        await services.metrics.refresher.refresh()
        assert value(services.registry, c.M_ORPHANED, kind="containers") == 1
        assert (
            value(services.registry, c.M_BACKLOG, kind="containers") == 1
        )  # created = not running
    finally:
        await ctx.__aexit__(None, None, None)
        container.remove(force=True)


async def test_a_real_cleanup_through_the_api_moves_the_metrics(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    services: Services = app.state.services
    now = datetime.now(UTC)
    async with services.sessions() as session, session.begin():
        gone = Bot(
            name="gone",
            image="i",
            token_hash="h",
            status="deleted",
            deleted_at=now - timedelta(days=30),
        )
        session.add(gone)
        await session.flush()
        session.add_all([Result(bot_id=gone.id, data={}) for _ in range(3)])
        session.add_all([Result(bot_id=uuid.uuid4(), data={}) for _ in range(2)])
    await services.metrics.refresher.refresh()
    registry = services.registry
    assert value(registry, c.M_BACKLOG, kind="bots") == 1
    assert value(registry, c.M_BACKLOG, kind="orphaned_results") == 2

    answer = await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "succeeded"
    labels = {"trigger": "manual", "status": "succeeded", "dry_run": "false"}
    assert value(registry, c.M_CLEANUP_RUNS, **labels) == 1
    assert value(registry, c.M_CLEANUP_DELETED, kind="bots") == 1
    assert value(registry, c.M_CLEANUP_DELETED, kind="bot_results") == 3
    assert value(registry, c.M_CLEANUP_DELETED, kind="orphaned_results") == 2
    assert value(registry, c.M_CLEANUP_DURATION + "_count", stage="total", dry_run="false") == 1
    assert value(registry, c.M_CLEANUP_DURATION + "_count", stage="bots", dry_run="false") == 1
    assert value(registry, c.M_CLEANUP_DELETION_LAG + "_count", kind="bots") == 1
    # The observer poked the refresher: the backlog drains without waiting for its interval.
    await wait_until_async(
        lambda: value(registry, c.M_BACKLOG, kind="bots") == 0,
        timeout=10,
        message="the bots backlog to drain",
    )
    assert value(registry, c.M_BACKLOG, kind="orphaned_results") == 0
    assert (value(registry, c.M_CLEANUP_LAST_SUCCESS, dry_run="false") or 0) >= now.timestamp()


@pytest.mark.parametrize(
    ("overrides", "hours"),
    [
        ({"cleanup_interval_hours": 6, "cleanup_adaptive": False}, 6),
        (
            {
                "cleanup_interval_hours": 6,
                "cleanup_adaptive": True,
                "cleanup_max_interval_hours": 24,
            },
            24,
        ),
        (
            {
                "cleanup_interval_hours": 30,
                "cleanup_adaptive": True,
                "cleanup_max_interval_hours": 24,
            },
            30,
        ),
        (
            {
                "cleanup_interval_hours": 6,
                "cleanup_adaptive": False,
                "cleanup_window": "01:00-05:00",
            },
            26,
        ),
        (
            {
                "cleanup_interval_hours": 1,
                "cleanup_adaptive": False,
                "cleanup_window": "22:00-02:00",
            },
            21,
        ),
    ],
)
def test_longest_gap_the_alerts_compare_against(overrides: dict[str, Any], hours: float) -> None:
    assert longest_gap_seconds(make_settings(**overrides)) == hours * 3600
