"""Factories for the cleanup tests: rows written straight to the store, containers straight to
the Docker Engine (the bot lifecycle is not needed to make orphans), and a frozen clock."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from botfleet.cleanup.audit import expand
from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot, CleanupAudit, CleanupRun, Result
from botfleet.store.session import create_engine, create_session_factory

TABLES = {"bots": Bot, "results": Result, "cleanup_runs": CleanupRun, "cleanup_audit": CleanupAudit}


class Clock:
    """A clock the test moves by hand: ``now`` is all the service knows of time."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Store:
    """The test's own window on the database the service uses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        self.sessions = create_session_factory(self.engine)

    async def bot(
        self,
        *,
        deleted_at: datetime | None = None,
        labels: dict[str, str] | None = None,
        results: int = 0,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> uuid.UUID:
        async with self.sessions() as session, session.begin():
            bot = Bot(
                id=uuid.uuid4(),
                name=name or f"bot-{uuid.uuid4().hex[:8]}",
                image="botfleet/sample-bot:latest",
                token_hash="0" * 64,
                labels=labels or {},
                env=env or {},
                status="deleted" if deleted_at else "running",
                deleted_at=deleted_at,
            )
            session.add(bot)
            session.add_all(Result(bot_id=bot.id, data={"n": n}) for n in range(results))
            return bot.id

    async def orphans(self, count: int, bot_id: uuid.UUID | None = None) -> list[int]:
        """Results whose bot_id names no bot row."""
        owner = bot_id or uuid.uuid4()
        async with self.sessions() as session, session.begin():
            rows = [Result(bot_id=owner, data={"orphan": True}) for _ in range(count)]
            session.add_all(rows)
            await session.flush()
            return [r.id for r in rows]

    async def counts(self) -> dict[str, int]:
        async with self.sessions() as session:
            return {
                name: int(await session.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in TABLES.items()
            }

    async def bot_ids(self) -> set[uuid.UUID]:
        async with self.sessions() as session:
            return set((await session.scalars(select(Bot.id))).all())

    async def result_ids(self) -> set[int]:
        async with self.sessions() as session:
            return set((await session.scalars(select(Result.id))).all())

    async def results_of(self, bot_id: uuid.UUID) -> int:
        async with self.sessions() as session:
            return int(
                await session.scalar(
                    select(func.count()).select_from(Result).where(Result.bot_id == bot_id)
                )
                or 0
            )

    async def restore(self, bot_id: uuid.UUID) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Bot).where(Bot.id == bot_id).values(deleted_at=None, status="running")
            )

    async def hard_delete(self, bot_id: uuid.UUID) -> None:
        """A bot row removed behind the cleanup's back: its results become orphans."""
        async with self.sessions() as session, session.begin():
            await session.execute(text("DELETE FROM bots WHERE id = :id").bindparams(id=bot_id))

    async def audit_records(self, run_id: str) -> list[CleanupAudit]:
        """The run's audit rows as stored (a batch of bots is one row)."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(CleanupAudit)
                .where(CleanupAudit.run_id == uuid.UUID(run_id))
                .order_by(CleanupAudit.id)
            )
            return list(rows.all())

    async def audit(self, run_id: str) -> list[SimpleNamespace]:
        """The run's audit trail as readers see it: one item per bot (or container, or batch
        of results), with attributes ``kind``, ``resource_id``, ``snapshot``, ``engine``…"""
        items = []
        for record in await self.audit_records(run_id):
            fields = {c.name: getattr(record, c.name) for c in CleanupAudit.__table__.columns}
            items.extend(SimpleNamespace(**item) for item in expand(fields))
        return items

    async def close(self) -> None:
        await self.engine.dispose()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = Store(settings)
    try:
        yield s
    finally:
        await s.close()


def make_service(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None, **kw: Any
) -> CleanupService:
    return CleanupService(
        settings=settings,
        sessions=store.sessions,
        fleet=Fleet.from_settings(settings),
        clock=clock or (lambda: datetime.now(UTC)),
        **kw,
    )


def labels_for(instance: str, bot_id: uuid.UUID | str | None = None) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: instance,
        LABEL_BOT_ID: str(bot_id or uuid.uuid4()),
    }


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


class Containers:
    """Containers made straight with the docker SDK (network none), removed at teardown."""

    def __init__(self, client: Any, image: str) -> None:
        self.client = client
        self.image = image
        self.ids: list[str] = []

    def make(self, state: str, labels: dict[str, str] | None = None) -> str:
        """``created`` (never started), ``running`` (sleeps) or ``exited`` (ran ``true``)."""
        command = ["sleep", "600"] if state == "running" else ["true"]
        container = self.client.containers.create(
            self.image, command=command, labels=labels or {}, network_mode="none", detach=True
        )
        self.ids.append(container.id)
        if state != "created":
            container.start()
            wanted = "running" if state == "running" else "exited"
            wait_until(lambda: self.state(container.id) == wanted, what=f"{state} container")
        return str(container.id)

    def state(self, container_id: str) -> str | None:
        from docker.errors import NotFound

        try:
            return str(self.client.api.inspect_container(container_id)["State"]["Status"])
        except NotFound:
            return None

    def inspect(self, container_id: str) -> dict[str, Any]:
        return dict(self.client.api.inspect_container(container_id))

    def snapshot(self) -> dict[str, str | None]:
        """Every container this test made, and its state (None: removed)."""
        return {cid: self.state(cid) for cid in self.ids}

    def remove_all(self) -> None:
        from docker.errors import NotFound

        for cid in self.ids:
            with contextlib.suppress(NotFound):
                self.client.api.remove_container(cid, force=True)


@pytest.fixture
def containers(docker_client: Any, sample_image: str) -> Iterator[Containers]:
    made = Containers(docker_client, sample_image)
    try:
        yield made
    finally:
        made.remove_all()


def docker_time(value: str) -> datetime:
    from botfleet.runtime.docker import parse_docker_time

    parsed = parse_docker_time(value)
    assert parsed is not None
    return parsed


def found(report: dict[str, Any]) -> dict[str, int]:
    return {kind: stats["found"] for kind, stats in report["resources"].items()}


def deleted(report: dict[str, Any]) -> dict[str, int]:
    return {kind: stats["deleted"] for kind, stats in report["resources"].items()}


def days(n: float) -> timedelta:
    return timedelta(days=n)
