"""Restoring a purge from its archive: the run's bots back as soft-deleted, with their results.

All or nothing: every row to restore is checked against the store first, and if any bot or
result id is already there (a bot re-created with its id, a result restored before), nothing is
written and the collisions are listed. A restored bot is soft-deleted, so nothing runs and the
ordinary restore (``POST /bots/{id}/restore``) brings it back; its ``deleted_at`` is the restore
time unless ``keep_deleted_at`` — with the archived one, the next run would purge it again at
once. Only committed batch files are read: a sealed run's manifest lists them; a run that died
before sealing has none until the next run tidies it, and then its files are all read (a file
whose batch never committed holds rows still in the store, which the check refuses).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import FromClause, Uuid, insert, select

from botfleet.archive.format import MANIFEST, TABLE_BOTS, TABLE_RESULTS
from botfleet.archive.reader import batch_files, read_lines, run_path
from botfleet.archive.writer import Archive
from botfleet.errors import BotfleetError
from botfleet.store.models import Bot, Result, UTCDateTime
from botfleet.store.session import SessionFactory

_CHUNK = 1000
_SHOWN = 10


class RestoreRefused(BotfleetError):
    """Restoring would overwrite or duplicate live data: nothing was written."""

    def __init__(self, collisions: Sequence[str], total: int) -> None:
        shown = "; ".join(collisions[:_SHOWN])
        more = f" (and {total - _SHOWN} more)" if total > _SHOWN else ""
        super().__init__(
            f"restore refused, {total} row(s) already in the store: {shown}{more}; "
            "nothing was written"
        )
        self.collisions = list(collisions)


class BotNotArchived(BotfleetError):
    def __init__(self, run_id: str, bot_id: uuid.UUID) -> None:
        super().__init__(f"bot {bot_id} is not in the archive of run {run_id}")


@dataclass
class Rows:
    """The rows a restore would write, as the store's columns take them."""

    bots: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


def decode(table: FromClause, row: dict[str, Any]) -> dict[str, Any]:
    """An archived row (JSON) as column values: ids and times parsed, unknown keys dropped."""
    out: dict[str, Any] = {}
    for column in table.c:
        if column.name not in row:
            continue
        value = row[column.name]
        if value is not None and isinstance(column.type, UTCDateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(column.type, Uuid):
            value = uuid.UUID(str(value))
        out[column.name] = value
    return out


def committed_paths(archive: Archive, run_id: str) -> list[Path]:
    path = run_path(archive, run_id)
    manifest = path / MANIFEST
    if manifest.is_file():
        listed = {f["name"] for f in json.loads(manifest.read_text()).get("files", [])}
        return [p for p in batch_files(path) if p.name in listed]
    return batch_files(path)


def archived_rows(paths: Iterable[Path], bot_id: uuid.UUID | None = None) -> Rows:
    """Every archived bot and result of these files (only ``bot_id``'s, if given)."""
    rows = Rows()
    for path in paths:
        for line in read_lines(path):
            if line["table"] == TABLE_BOTS:
                bot = decode(Bot.__table__, line["row"])
                if bot_id is None or bot["id"] == bot_id:
                    rows.bots.append(bot)
            elif line["table"] == TABLE_RESULTS:
                result = decode(Result.__table__, line["row"])
                if bot_id is None or result["bot_id"] == bot_id:
                    rows.results.append(result)
    return rows


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


async def collisions(sessions: SessionFactory, rows: Rows) -> list[str]:
    """Which of the rows' ids the store already holds."""
    found: list[str] = []
    async with sessions() as session:
        for chunk in _chunks([b["id"] for b in rows.bots]):
            existing = await session.scalars(select(Bot.id).where(Bot.id.in_(chunk)))
            found.extend(f"bot {i}" for i in existing)
        for chunk in _chunks([r["id"] for r in rows.results]):
            taken = await session.scalars(select(Result.id).where(Result.id.in_(chunk)))
            found.extend(f"result {i}" for i in taken)
    return found


async def restore_run(
    archive: Archive,
    sessions: SessionFactory,
    run_id: str,
    *,
    now: datetime,
    bot_id: uuid.UUID | None = None,
    dry_run: bool = False,
    keep_deleted_at: bool = False,
) -> dict[str, Any]:
    """Restore ``run_id``'s purge (or one bot of it); answers what was (or would be) written.
    :class:`RestoreRefused` when anything collides, :class:`BotNotArchived` for an unknown bot."""
    paths = committed_paths(archive, run_id)
    rows = archived_rows(paths, bot_id)
    if bot_id is not None and not rows.bots:
        raise BotNotArchived(run_id, bot_id)
    if not keep_deleted_at:
        for bot in rows.bots:
            bot["deleted_at"] = now
    taken = await collisions(sessions, rows)
    if taken:
        raise RestoreRefused(taken, len(taken))
    if not dry_run:
        async with sessions() as session, session.begin():
            for chunk in _chunks(rows.bots):
                await session.execute(insert(Bot), list(chunk))
            for chunk in _chunks(rows.results):
                await session.execute(insert(Result), list(chunk))
    return {
        "run_id": run_id,
        "dry_run": dry_run,
        "bots": len(rows.bots),
        "results": len(rows.results),
        "files": [p.name for p in paths],
        "deleted_at": None if keep_deleted_at else now.isoformat(),
    }
