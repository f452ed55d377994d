"""Shared fixtures: a fresh store on SQLite and PostgreSQL, a real Docker Engine, the ASGI app.

In CI (``CI=true``) a missing PostgreSQL or Docker Engine fails the run; on a laptop it skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from botfleet.config import Settings
from botfleet.store.migrate import upgrade_sync

IN_CI = os.environ.get("CI", "").lower() == "true"
# No test pulls from a public registry (nothing may leave loopback): servers and commands started
# by tests inherit this; the tests of image pulls ask for a pull policy and use the local registry.
os.environ["BOT_IMAGE_PULL"] = "never"
PG_ADMIN_URL = os.environ.get("BOTFLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[1]
SAMPLE_IMAGE = "botfleet/sample-bot:latest"
TEST_TOKEN = "test-admin-token-" + "x" * 24
# No garbage collection while a report is made: tests/support/report_guard.py.
pytest_plugins = ("tests.support.report_guard",)
TABLES = ("bots", "results", "cleanup_runs", "cleanup_audit", "notify_outbox", "bot_events")


def not_here(message: str) -> None:
    """Fail in CI, skip elsewhere: what a test needs and lacks must never pass silently in CI."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)  # only off CI: under CI=true the line above fails instead


def missing_service(what: str) -> None:
    not_here(f"{what} is not available (make test starts it: scripts/ensure-services.sh)")


# --- PostgreSQL ------------------------------------------------------------------------------
def _pg_exec(sql: str, url: str = PG_ADMIN_URL) -> None:
    import asyncpg

    async def _run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(_run())


def pg_available() -> bool:
    try:
        _pg_exec("SELECT 1")
    except Exception:
        return False
    return True


def create_pg_database(prefix: str = "botfleet_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    _pg_exec(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throw-away, migrated database for this test session."""
    if not pg_available():
        missing_service("PostgreSQL at 127.0.0.1:5432")
    url = create_pg_database()
    upgrade_sync(make_settings(database_url=url))
    yield url
    drop_pg_database(url)


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """A database of its own, unmigrated, for tests of migrations or of whole processes."""
    if not pg_available():
        missing_service("PostgreSQL at 127.0.0.1:5432")
    url = create_pg_database("botfleet_tmp")
    yield url
    drop_pg_database(url)


# --- settings and stores ---------------------------------------------------------------------
def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: explicit values, never the developer's environment."""
    values: dict[str, Any] = {
        "admin_token": TEST_TOKEN,
        "cleanup_enabled": False,
        "cleanup_startup_delay_seconds": 3600,
        "botfleet_instance": "test",
        "reconcile_interval_seconds": 3600,
        "bot_image_pull": "never",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# A test of PostgreSQL's own machinery (TIDs, partial indexes, slices): that backend only, rather
# than a SQLite variant that would skip.
postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated store on each backend: a new SQLite file, or a truncated PG database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/botfleet.db"
        upgrade_sync(make_settings(database_url=url))
        return url
    url: str = request.getfixturevalue("pg_url")
    _pg_exec(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY", url)
    return url


@pytest.fixture
def instance() -> str:
    """A BOTFLEET_INSTANCE of this test's own, so that tests never see each other's containers."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(database_url: str, instance: str) -> Settings:
    return make_settings(database_url=database_url, botfleet_instance=instance)


@pytest.fixture
def settings_factory(database_url: str, instance: str) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": database_url, "botfleet_instance": instance}
        values.update(overrides)
        return make_settings(**values)

    return factory


# --- the app ---------------------------------------------------------------------------------
async def started_app(settings: Settings) -> tuple[FastAPI, Any]:
    from botfleet.app import create_app

    app = create_app(settings, migrate=False)
    ctx = app.router.lifespan_context(app)
    await ctx.__aenter__()
    return app, ctx


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app, ctx = await started_app(settings)
    try:
        yield app
    finally:
        await ctx.__aexit__(None, None, None)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_TOKEN}"}


# --- Docker ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception:
        missing_service("the Docker Engine")
    yield client
    client.close()


@pytest.fixture(scope="session")
def sample_image(docker_client: Any) -> str:
    """The sample bot image, built from the host's busybox (no registry needed)."""
    subprocess.run(
        [str(ROOT / "examples/sample-bot/build.sh"), SAMPLE_IMAGE], check=True, capture_output=True
    )
    return SAMPLE_IMAGE


@pytest.fixture(scope="session")
def registry_image(sample_image: str) -> str:
    """The sample bot image in the local registry (127.0.0.1:5000), where swarm nodes pull it."""
    from tests.support.swarm import push, registry_answers

    if not registry_answers():
        missing_service("the local registry at 127.0.0.1:5000")
    return push(sample_image, "botfleet/sample-bot:latest")


@pytest.fixture(scope="session")
def swarm_session(docker_client: Any, registry_image: str) -> Iterator[Any]:
    """A two-node swarm of the session's own (tests/support/swarm.py), removed at the end."""
    from tests.engines import EngineStartError
    from tests.support.swarm import Swarm

    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        missing_service("a swarm of two dockerd (needs root and dockerd on PATH)")
    made = Swarm()
    try:
        made.start()
    except (EngineStartError, RuntimeError) as exc:
        made.remove()
        missing_service(f"a swarm of two dockerd ({exc})")
    yield made
    made.remove()


# What the swarm's health check saw and recovered from, shown at the end of the session.
SWARM_NOTES: list[str] = []


@pytest.fixture
def swarm(swarm_session: Any, request: pytest.FixtureRequest) -> Any:
    """The session's swarm, checked before each test that uses it. A node that missed
    heartbeats and came back is noted in the session's summary; a swarm that is broken (a
    daemon dead, a node down for 30 s) is noted with what its daemons' logs say, and replaced
    by a new one, once per session: the swarm is the tests' equipment, not what they test
    (tests/reliability/test_swarm_node_failure.py kills a node on purpose, and revives it). A
    second break fails the test with the logs."""
    from tests.support.swarm import SwarmBroken

    try:
        recovered = swarm_session.check_healthy()
    except SwarmBroken as broken:
        if any(note.startswith("rebuilt") for note in SWARM_NOTES):
            raise
        SWARM_NOTES.append(f"rebuilt before {request.node.nodeid}: {broken}")
        swarm_session.rebuild()
        return swarm_session
    if recovered:
        SWARM_NOTES.append(f"{request.node.nodeid}: {recovered}")
    return swarm_session


@pytest.fixture
def cleanup_containers(docker_client: Any, instance: str) -> Iterator[None]:
    """Remove every container this test's instance created, whatever the test did."""
    from docker.errors import NotFound

    yield
    for c in docker_client.containers.list(
        all=True, sparse=True, filters={"label": f"botfleet.instance={instance}"}
    ):
        with contextlib.suppress(NotFound):  # a server's cleanup got there first
            c.remove(force=True)


@pytest.fixture
def engine_factory(docker_client: Any, sample_image: str) -> Iterator[Callable[[], Any]]:
    """Start extra Docker Engines of this test's own (tests/engines.py), each holding the sample
    image; every one is stopped and removed at the end, containers and data included."""
    from tests.engines import EngineStartError, ExtraEngine

    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        missing_service("a second dockerd (needs root and dockerd on PATH)")
    engines: list[ExtraEngine] = []

    def start() -> ExtraEngine:
        engine = ExtraEngine()
        engines.append(engine)
        try:
            engine.start()
        except EngineStartError as exc:
            missing_service(f"a second dockerd ({exc})")
        engine.load_images([sample_image])
        return engine

    yield start
    for engine in engines:
        engine.remove()


def in_store(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    """Run ``await fn(session)`` in one transaction on the store of ``settings`` (sync callers)."""
    from botfleet.store.session import create_engine, create_session_factory

    async def go() -> Any:
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await fn(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


# --- the session itself ----------------------------------------------------------------------
def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SWARM_NOTES:
        terminalreporter.section("the test swarm's health")
        for note in SWARM_NOTES:
            terminalreporter.line(note)
