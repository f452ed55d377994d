"""What ``botfleet doctor`` looks at, gathered: the database, the engines, the last runs, who
holds the cleanup lock, the server's own status. Each behind a timeout, so that one dead
dependency cannot hang the whole diagnosis; the verdicts are :mod:`botfleet.diagnosis.judges`'.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.config import Settings
from botfleet.constants import CLEANUP_LOCK_KEY
from botfleet.diagnosis.checks import LockHolder, RunRow
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import CleanupRun
from botfleet.store.session import SessionFactory

TIMEOUT_SECONDS = 5.0


async def gather_database(engine: AsyncEngine) -> str | None:
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return reason_of(exc)
    return None


async def gather_engine(
    fleet: Fleet, name: str
) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """The engine's version (or why it did not answer), and its nodes if it is a swarm."""
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            engine = fleet.engines[name]
            await engine.ping()
            return await engine.version(), None, await engine.nodes()
    except Exception as exc:
        return None, reason_of(exc), []


async def gather_runs(sessions: SessionFactory, limit: int = 20) -> list[RunRow]:
    async with asyncio.timeout(TIMEOUT_SECONDS), sessions() as session:
        rows = await session.scalars(
            select(CleanupRun).order_by(CleanupRun.started_at.desc()).limit(limit)
        )
        return [_run_row(r) for r in rows]


def _run_row(run: CleanupRun) -> RunRow:
    report = run.report or {}
    errors = [
        str(e.get("message", e)) if isinstance(e, Mapping) else str(e)
        for e in report.get("errors") or []
    ]
    resources = report.get("resources") or {}
    counts = " ".join(
        f"{kind} {stats.get('deleted', 0)}/{stats.get('found', 0)}"
        for kind, stats in resources.items()
        if isinstance(stats, Mapping) and (stats.get("found") or stats.get("deleted"))
    )
    return RunRow(
        id=str(run.id),
        trigger=run.trigger,
        actor=run.actor,
        dry_run=run.dry_run,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        owner=run.owner,
        errors=errors,
        counts=counts,
    )


_PG_HOLDERS = text(
    "SELECT l.pid, a.application_name, host(a.client_addr) AS addr, a.backend_start"
    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"
)


async def gather_lock_holders(settings: Settings, engine: AsyncEngine) -> list[LockHolder]:
    """Who holds the cleanup lock: pg_locks on PostgreSQL, /proc/locks for SQLite's flock file."""
    path = settings.sqlite_path
    if path is not None:
        return await asyncio.to_thread(flock_holders, Path(f"{path}.cleanup.lock"))
    async with asyncio.timeout(TIMEOUT_SECONDS), engine.connect() as conn:
        rows = (await conn.execute(_PG_HOLDERS, {"key": CLEANUP_LOCK_KEY})).all()
    return [
        LockHolder(
            int(r.pid),
            f"{r.application_name or 'unnamed'} from {r.addr or 'local socket'}",
            r.backend_start,
        )
        for r in rows
    ]


def flock_holders(path: Path, proc_locks: Path = Path("/proc/locks")) -> list[LockHolder]:
    """Processes holding an flock on ``path``, read from the kernel without touching the lock."""
    try:
        inode = path.stat().st_ino
        table = proc_locks.read_text()
    except OSError:
        return []
    holders = []
    for line in table.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:123456 0 EOF"; blocked waiters have "->".
        if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts:
            continue
        if parts[5].rsplit(":", 1)[-1] == str(inode):
            pid = int(parts[4])
            holders.append(LockHolder(pid, _cmdline(pid)))
    return holders


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "process not visible"
    text_ = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return (text_[:80] or "unknown") + (" (this process)" if pid == os.getpid() else "")


async def gather_status(url: str, token: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """``GET /admin/cleanup/status`` of a running server (breakers live in its memory)."""
    import httpx  # here: `botfleet serve` loads the CLI, and with it this module

    if not token:
        return None, "ADMIN_TOKEN is not set, so the server cannot be asked"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            answer = await client.get(url.rstrip("/") + "/admin/cleanup/status", headers=headers)
    except httpx.HTTPError as exc:
        return None, reason_of(exc)
    if answer.status_code == 401:
        return None, "401: ADMIN_TOKEN is not this server's token"
    if answer.status_code != 200:
        return None, f"HTTP {answer.status_code}"
    body = answer.json()
    return (body if isinstance(body, dict) else None), None


def reason_of(exc: BaseException) -> str:
    """One line naming the error, for a verdict's detail."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}"[:300] if message else type(exc).__name__
