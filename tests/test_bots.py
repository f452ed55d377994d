"""The bot lifecycle (botfleet/bots.py) on the real Docker Engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from botfleet.auth import hash_token, new_bot_token
from botfleet.bot_queries import BotFilter
from botfleet.bot_spec import NewBot, container_name
from botfleet.bots import BotService, restorable
from botfleet.config import Settings
from botfleet.constants import (
    LABEL_BOT_ID,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    STATUS_DELETED,
    STATUS_RUNNING,
)
from botfleet.errors import (
    BotNameTaken,
    BotNotFound,
    EngineUnavailable,
    ImageNotAvailable,
    InvalidInput,
    RestoreExpired,
)
from botfleet.pagination import PageRequest
from botfleet.runtime.base import ContainerInfo
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot
from botfleet.store.session import create_engine, create_session_factory

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


async def insert_bot(
    settings: Settings,
    name: str,
    *,
    deleted: bool = False,
    labels: dict[str, str] | None = None,
    status: str = STATUS_RUNNING,
    created_at: datetime | None = None,
    engine: str | None = None,
) -> tuple[uuid.UUID, str]:
    """A bot row without a container (for API and listing tests); returns (id, token)."""
    token = new_bot_token()
    db = create_engine(settings)
    try:
        async with create_session_factory(db)() as session, session.begin():
            bot = Bot(
                name=name,
                image="botfleet/sample-bot:latest",
                env={},
                labels=labels or {},
                status=STATUS_DELETED if deleted else status,
                token_hash=hash_token(token),
                engine=engine,
                created_at=created_at or datetime.now(UTC),
                updated_at=created_at or datetime.now(UTC),
                deleted_at=datetime.now(UTC) if deleted else None,
            )
            session.add(bot)
        return bot.id, token
    finally:
        await db.dispose()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[BotService]:
    db = create_engine(settings)
    fleet = Fleet.from_settings(settings)
    yield BotService(sessions=create_session_factory(db), fleet=fleet, settings=settings)
    await fleet.close()
    await db.dispose()


async def count_bots(service: BotService) -> int:
    async with service._sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Bot)) or 0)


def sleeper(name: str, **kwargs: Any) -> NewBot:
    return NewBot(name=name, image="botfleet/sample-bot:latest", command=["sleep", "600"], **kwargs)


@pytest.mark.parametrize(
    ("deleted_ago", "retention_days", "expected"),
    [
        (timedelta(days=6, hours=23), 7, True),
        (timedelta(days=7), 7, False),
        (timedelta(days=8), 7, False),
        (timedelta(seconds=1), 0, False),
        (timedelta(0), 1, True),
    ],
)
def test_restorable_within_retention(
    deleted_ago: timedelta, retention_days: int, expected: bool
) -> None:
    assert restorable(NOW - deleted_ago, NOW, retention_days) is expected


@pytest.mark.docker
async def test_create_runs_a_labelled_container(
    service: BotService,
    settings: Settings,
    docker_client: Any,
    sample_image: str,
    instance: str,
    cleanup_containers: None,
) -> None:
    bot, token = await service.create(
        sleeper("worker", env={"GREETING": "hi"}, labels={"team": "ops"}), now=NOW
    )
    assert bot.status == STATUS_RUNNING
    assert bot.engine == "local"
    assert bot.token_hash == hash_token(token) and token not in bot.token_hash
    container = docker_client.containers.get(bot.container_id)
    assert container.name == container_name(bot.id)
    assert container.status == "running"
    assert container.labels[LABEL_MANAGED] == "true"
    assert container.labels[LABEL_BOT_ID] == str(bot.id)
    assert container.labels[LABEL_INSTANCE] == instance
    assert container.labels["team"] == "ops"
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["BOT_ID"] == str(bot.id)
    assert env["BOT_TOKEN"] == token
    assert env["MAIN_SERVER_URL"] == settings.main_server_url
    assert env["GREETING"] == "hi"
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    assert (await service.get(bot.id)).container_id == bot.container_id


@pytest.mark.docker
async def test_names_are_unique_among_live_bots_only(
    service: BotService, sample_image: str, cleanup_containers: None
) -> None:
    first, _ = await service.create(sleeper("dup"), now=NOW)
    with pytest.raises(BotNameTaken):
        await service.create(sleeper("dup"), now=NOW)
    await service.delete(first.id, now=NOW)
    second, _ = await service.create(sleeper("dup"), now=NOW)
    assert second.id != first.id
    # The first one cannot come back while the name is taken again.
    with pytest.raises(BotNameTaken):
        await service.restore(first.id, now=NOW)
    assert (await service.get(first.id)).deleted_at is not None


@pytest.mark.docker
async def test_a_container_that_cannot_run_leaves_no_row(
    service: BotService, docker_client: Any, instance: str, cleanup_containers: None
) -> None:
    with pytest.raises(ImageNotAvailable):
        await service.create(NewBot(name="ghost", image="botfleet/no-such-image:1"), now=NOW)
    assert await count_bots(service) == 0
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
        == []
    )


class FailingRecord(BotService):
    """The database write after the container started fails (as if the DB went away)."""

    async def _record_container(self, *args: Any, **kwargs: Any) -> Bot:
        raise ConnectionError("database went away")


@pytest.mark.docker
async def test_a_failed_db_write_leaves_no_container(
    settings: Settings,
    service: BotService,
    docker_client: Any,
    sample_image: str,
    instance: str,
    cleanup_containers: None,
) -> None:
    failing = FailingRecord(sessions=service._sessions, fleet=service._fleet, settings=settings)
    with pytest.raises(ConnectionError):
        await failing.create(sleeper("doomed"), now=NOW)
    assert await count_bots(service) == 0
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
        == []
    )


@pytest.mark.docker
async def test_delete_stops_and_keeps_the_container_and_is_idempotent(
    service: BotService, docker_client: Any, sample_image: str, cleanup_containers: None
) -> None:
    bot, _ = await service.create(sleeper("doomed"), now=NOW)
    later = NOW + timedelta(minutes=1)
    deleted = await service.delete(bot.id, now=later)
    assert deleted.deleted_at == later
    assert deleted.status == STATUS_DELETED
    container = docker_client.containers.get(bot.container_id)
    assert container.status == "exited"
    again = await service.delete(bot.id, now=later + timedelta(hours=1))
    assert again.deleted_at == later  # the first delete's time stands
    with pytest.raises(BotNotFound):
        await service.delete(uuid.uuid4(), now=NOW)


@pytest.mark.docker
async def test_a_bot_deleted_while_it_is_created_ends_with_its_container_stopped(
    service: BotService, docker_client: Any, sample_image: str, cleanup_containers: None
) -> None:
    """The delete lands while the engine creates the container, so it has nothing to stop: the
    create stops it, without waiting for a reconciler (none runs here)."""
    creating = asyncio.create_task(service.create(sleeper("raced"), now=NOW))
    async with asyncio.timeout(30):
        while (pending := await _only_bot(service)) is None:
            await asyncio.sleep(0.001)
    assert pending.container_id is None  # still in the engine's hands
    deleted = await service.delete(pending.id, now=NOW + timedelta(seconds=1))
    assert deleted.deleted_at is not None and deleted.container_id is None
    bot, _ = await creating
    assert bot.deleted_at is not None and bot.container_id
    assert docker_client.containers.get(bot.container_id).status == "exited"


async def _only_bot(service: BotService) -> Bot | None:
    async with service._sessions() as session:
        return await session.scalar(select(Bot))


@pytest.mark.docker
async def test_restore_starts_the_same_container_or_a_fresh_one(
    service: BotService, docker_client: Any, sample_image: str, cleanup_containers: None
) -> None:
    bot, token = await service.create(sleeper("phoenix"), now=NOW)
    await service.delete(bot.id, now=NOW)
    restored, new_token = await service.restore(bot.id, now=NOW + timedelta(days=1))
    assert new_token is None
    assert restored.deleted_at is None and restored.status == STATUS_RUNNING
    assert restored.container_id == bot.container_id
    assert docker_client.containers.get(bot.container_id).status == "running"
    # Restoring a live bot changes nothing.
    assert (await service.restore(bot.id, now=NOW))[0].container_id == bot.container_id

    # The cleanup service removed the stopped container: restore makes a fresh one.
    await service.delete(bot.id, now=NOW)
    docker_client.containers.get(bot.container_id).remove()
    restored, new_token = await service.restore(bot.id, now=NOW + timedelta(days=1))
    assert new_token is not None and new_token != token
    assert restored.token_hash == hash_token(new_token)
    assert restored.container_id != bot.container_id
    fresh = docker_client.containers.get(restored.container_id)
    assert fresh.status == "running"
    env = dict(item.split("=", 1) for item in fresh.attrs["Config"]["Env"])
    assert env["BOT_TOKEN"] == new_token


@pytest.mark.docker
async def test_restore_after_retention_is_refused(
    service: BotService, sample_image: str, cleanup_containers: None
) -> None:
    bot, _ = await service.create(sleeper("late"), now=NOW)
    await service.delete(bot.id, now=NOW)
    with pytest.raises(RestoreExpired):
        await service.restore(bot.id, now=NOW + timedelta(days=7))
    assert (await service.get(bot.id)).deleted_at == NOW


async def test_list_filters_and_pages(service: BotService, settings: Settings) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(7):
        await insert_bot(
            settings,
            f"bot-{i}",
            labels={"team": "ops" if i % 2 else "dev", "tier": "gold"},
            created_at=base + timedelta(minutes=i),
            status="exited" if i == 3 else STATUS_RUNNING,
        )
    await insert_bot(settings, "gone", deleted=True, labels={"team": "ops"})

    everything = await service.list(BotFilter(), PageRequest(limit=3))
    assert everything.total == 7
    assert [b.name for b in everything.items] == ["bot-6", "bot-5", "bot-4"]
    names = [b.name for b in everything.items]
    cursor = everything.next_cursor
    while cursor:
        page = await service.list(BotFilter(), PageRequest(limit=3, cursor=cursor))
        names += [b.name for b in page.items]
        cursor = page.next_cursor
    assert names == [f"bot-{i}" for i in range(6, -1, -1)]
    by_offset = await service.list(BotFilter(), PageRequest(limit=3, offset=6))
    assert [b.name for b in by_offset.items] == ["bot-0"] and by_offset.next_cursor is None

    ops = await service.list(BotFilter(labels={"team": "ops"}), PageRequest())
    assert sorted(b.name for b in ops.items) == ["bot-1", "bot-3", "bot-5"]
    both = await service.list(BotFilter(labels={"team": "ops", "tier": "gold"}), PageRequest())
    assert both.total == 3
    with_deleted = await service.list(
        BotFilter(labels={"team": "ops"}, include_deleted=True), PageRequest()
    )
    assert with_deleted.total == 4
    assert (await service.list(BotFilter(status="exited"), PageRequest())).total == 1
    deleted = await service.list(BotFilter(status=STATUS_DELETED), PageRequest())
    assert [b.name for b in deleted.items] == ["gone"]
    assert (await service.list(BotFilter(labels={"team": "nobody"}), PageRequest())).total == 0
    with pytest.raises(InvalidInput):
        await service.list(BotFilter(), PageRequest(cursor="not-a-cursor"))


def test_container_status_is_used_for_new_bots() -> None:
    from botfleet.reconcile_plan import container_status

    running = ContainerInfo(id="c", name="n", engine="local", state="running")
    assert container_status(running) == (STATUS_RUNNING, None)


async def test_a_restore_whose_engine_is_down_leaves_the_bot_deleted(
    settings_factory: Any,
) -> None:
    missing = "unix:///tmp/bf-restore-nowhere.sock"
    settings = settings_factory(docker_hosts=missing)
    bot_id, _ = await insert_bot(settings, "marooned", deleted=True, engine=missing)
    db = create_engine(settings)
    fleet = Fleet.from_settings(settings)
    service = BotService(sessions=create_session_factory(db), fleet=fleet, settings=settings)
    try:
        before = await service.get(bot_id)
        with pytest.raises(EngineUnavailable):
            await service.restore(bot_id, now=datetime.now(UTC))
        after = await service.get(bot_id)
        assert after.deleted_at == before.deleted_at
        assert after.status == STATUS_DELETED
    finally:
        await fleet.close()
        await db.dispose()
