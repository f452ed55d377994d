"""The container stage's coalesced bot look-ups: right answers, fewer queries, errors to all."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botfleet.cleanup import bot_lookup, container_removal
from botfleet.cleanup.bot_lookup import BotLookup
from tests.support.store import Store, store

__all__ = ["store"]


async def test_concurrent_look_ups_share_queries_and_get_their_own_rows(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = await store.bot()
    gone = await store.bot(deleted_at=datetime.now(UTC) - timedelta(days=3))
    queries: list[int] = []
    real = bot_lookup.bot_records

    async def counting(sessions: Any, ids: Any) -> Any:
        queries.append(len(list(ids)))
        return await real(sessions, ids)

    monkeypatch.setattr(bot_lookup, "bot_records", counting)
    lookup = BotLookup(store.sessions)
    asked = [str(live), str(gone), str(uuid.uuid4()), "not-a-uuid", None] * 8
    answers = await asyncio.gather(*(lookup.get(a) for a in asked))
    for question, answer in zip(asked, answers, strict=True):
        if question in (str(live), str(gone)):
            assert answer is not None and answer.id == question
        else:
            assert answer is None
    assert next(a for a in answers if a and a.id == str(gone)).deleted_at is not None
    assert 1 <= len(queries) <= 3 < len(asked)  # 40 questions, a query or two


async def test_a_failed_query_fails_every_waiting_look_up_and_the_next_one_retries(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await store.bot()
    real = bot_lookup.bot_records
    calls = 0

    async def flaky(sessions: Any, ids: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database gone")
        return await real(sessions, ids)

    monkeypatch.setattr(bot_lookup, "bot_records", flaky)
    lookup = BotLookup(store.sessions)
    outcomes = await asyncio.gather(
        *(lookup.get(str(bot)) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    again = await lookup.get(str(bot))
    assert again is not None and again.id == str(bot)


def test_a_removal_thread_that_gets_no_bot_answer_removes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine thread waits for the bot query on the loop; a hung or cancelled query is a
    failed check (the container stays), never a thread stuck for good."""
    import concurrent.futures

    answered: concurrent.futures.Future[Any] = concurrent.futures.Future()
    answered.set_result(None)
    assert container_removal._wait_for(answered) is None

    monkeypatch.setattr(container_removal, "BOT_CHECK_TIMEOUT_SECONDS", 0.05)
    hung: concurrent.futures.Future[Any] = concurrent.futures.Future()
    with pytest.raises(container_removal._BotCheckFailed, match="timed out"):
        container_removal._wait_for(hung)
    assert hung.cancelled()

    cancelled: concurrent.futures.Future[Any] = concurrent.futures.Future()
    cancelled.cancel()
    with pytest.raises(container_removal._BotCheckFailed, match="cancelled"):
        container_removal._wait_for(cancelled)


async def test_the_sqlite_reader_answers_each_read_as_committed_at_that_moment(
    store: Store,
) -> None:
    from sqlalchemy import text, update
    from sqlalchemy.ext.asyncio import create_async_engine

    from botfleet.cleanup.bot_lookup import SqliteBotReader
    from botfleet.store.models import Bot

    memory = create_async_engine("sqlite+aiosqlite:///:memory:")
    assert SqliteBotReader.for_engine(memory) is None  # private to its connection: no reader
    await memory.dispose()
    reader = SqliteBotReader.for_engine(store.engine)
    if not store.settings.is_sqlite:
        assert reader is None  # PostgreSQL keeps the shared query on the event loop
        return
    assert reader is not None
    try:
        bot = await store.bot(labels={"team": "a"})
        first = await asyncio.to_thread(reader.get, str(bot))
        assert first is not None and first.id == str(bot)
        assert first.deleted_at is None and dict(first.labels) == {"team": "a"}
        when = datetime.now(UTC) - timedelta(days=2)
        async with store.sessions() as session, session.begin():
            await session.execute(update(Bot).where(Bot.id == bot).values(deleted_at=when))
        again = await asyncio.to_thread(reader.get, str(bot))  # the same pooled connection
        assert again is not None and again.deleted_at == when
        for nobody in (str(uuid.uuid4()), "not-a-uuid", None):
            assert await asyncio.to_thread(reader.get, nobody) is None
        with pytest.raises(Exception, match="readonly"), reader._engine.connect() as conn:
            conn.execute(text("DELETE FROM bots"))
    finally:
        reader.close()
    assert await store.bot_ids() == {str(bot)}


def test_a_bot_read_that_fails_is_a_failed_check_not_an_answer(tmp_path: Any) -> None:
    """A database file the reader cannot open (moved, permissions) fails the check: the removal
    gives up (the container stays), it never reads "no such bot" from an error."""
    from botfleet.cleanup.bot_lookup import SqliteBotReader

    reader = SqliteBotReader(tmp_path / "missing.db")
    try:
        with pytest.raises(container_removal._BotCheckFailed, match="OperationalError"):
            container_removal._read(reader, str(uuid.uuid4()))
    finally:
        reader.close()
    assert not (tmp_path / "missing.db").exists()  # read-only: never created


def test_a_bot_read_never_waits_for_a_connection_another_thread_holds(tmp_path: Any) -> None:
    """Several engines' removal threads may read at once, beyond the connections kept."""
    import sqlite3
    import threading

    from botfleet.cleanup.bot_lookup import SqliteBotReader

    path = tmp_path / "b.db"
    with sqlite3.connect(path) as raw:
        raw.execute(
            "CREATE TABLE bots (id CHAR(32), deleted_at DATETIME, labels JSON,"
            " status_at_deletion VARCHAR(20))"
        )
    reader = SqliteBotReader(path, threads=1)
    answers: list[Any] = []
    try:
        with reader._engine.connect():  # the one kept connection, held by "another thread"
            other = threading.Thread(target=lambda: answers.append(reader.get(str(uuid.uuid4()))))
            other.start()
            other.join(timeout=5)
            assert not other.is_alive(), "the read waited for the held connection"
    finally:
        reader.close()
    assert answers == [None]


async def test_the_sqlite_reader_reads_a_group_of_bots_in_one_query(store: Store) -> None:
    """A swarm's group of services reads its bots' rows at once: each label gets its own row,
    under any spelling of its id; a label that names none gets none."""
    from botfleet.cleanup.bot_lookup import SqliteBotReader

    reader = SqliteBotReader.for_engine(store.engine)
    if not store.settings.is_sqlite:
        assert reader is None  # PostgreSQL reads the group's rows on the event loop
        return
    assert reader is not None
    try:
        bots = [str(await store.bot(labels={"n": str(i)})) for i in range(5)]
        asks = [*bots, bots[0].upper(), str(uuid.uuid4()), "not-a-uuid"]
        found = await asyncio.to_thread(reader.read, asks)
        assert set(found) == {*bots, bots[0].upper()}
        for label, row in found.items():
            assert row.id == label.lower()
    finally:
        reader.close()
