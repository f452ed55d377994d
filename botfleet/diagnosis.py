"""``botfleet doctor``'s checks: the seed's incident checklist, each with a verdict and a next step.

Judging is pure (``judge_*`` take what was gathered and ``now``); gathering (``gather_*``) does
the I/O, each behind a timeout so that one dead dependency cannot hang the whole diagnosis.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.backlog import Backlog
from botfleet.config import Settings
from botfleet.constants import (
    CLEANUP_LOCK_KEY,
    RUN_ABANDONED,
    RUN_FAILED,
    RUN_PARTIAL,
    RUN_RUNNING,
    RUN_SUCCEEDED,
)
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import CleanupRun
from botfleet.store.session import SessionFactory

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
TIMEOUT_SECONDS = 5.0
RUNS_SHOWN = 5


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # ok | warn | fail | skip
    detail: str
    next_step: str = ""
    lines: tuple[str, ...] = ()  # extra rows worth printing (the last runs, the lock holder)

    @property
    def needs_attention(self) -> bool:
        return self.verdict in (WARN, FAIL)


@dataclass(frozen=True)
class RunRow:
    id: str
    trigger: str
    actor: str
    dry_run: bool
    status: str
    started_at: datetime
    finished_at: datetime | None
    owner: str | None
    errors: list[str] = field(default_factory=list)
    counts: str = ""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    who: str  # application name, client address, or the process's command line
    since: datetime | None = None


# --- judges (pure) ------------------------------------------------------------------------------
def judge_database(error: str | None, url: str) -> Check:
    if error is None:
        return Check("database", OK, f"connected ({url})")
    return Check(
        "database",
        FAIL,
        f"cannot connect to {url}: {error}",
        "check DATABASE_URL; for PostgreSQL run `pg_isready -h <host> -p <port>` and read its log",
    )


def judge_migration(current: str | None, head: str | None) -> Check:
    if current == head:
        return Check("migrations", OK, f"schema at head ({head})")
    if current is None:
        return Check(
            "migrations", FAIL, f"schema is empty (head is {head})", "run `botfleet db upgrade`"
        )
    return Check(
        "migrations",
        FAIL,
        f"schema at {current}, this botfleet expects {head}",
        "run `botfleet db upgrade` (or upgrade botfleet if the database is newer)",
    )


def judge_engine(name: str, version: str | None, error: str | None) -> Check:
    if error is None:
        return Check(f"engine {name}", OK, f"Docker {version} answers")
    where = f"-H {name} " if "://" in name else ""
    return Check(
        f"engine {name}",
        FAIL,
        f"unreachable: {error}",
        f"check the daemon (`docker {where}info`, `systemctl status docker`) and DOCKER_HOSTS; "
        "its container stage is skipped until it answers",
    )


def judge_lock(
    holders: Sequence[LockHolder],
    running: Sequence[RunRow],
    *,
    now: datetime,
    max_run: timedelta,
    error: str | None = None,
) -> Check:
    if error is not None:
        return Check("cleanup lock", WARN, f"could not inspect the lock: {error}")
    lines = tuple(
        f"held by pid {h.pid} ({h.who})"
        + (f" since {h.since:%Y-%m-%d %H:%M:%S}Z" if h.since else "")
        for h in holders
    ) + tuple(
        f"run {r.id} running since {r.started_at:%Y-%m-%d %H:%M:%S}Z on {r.owner}" for r in running
    )
    if not holders and not running:
        return Check("cleanup lock", OK, "free: no cleanup is running")
    if holders and not running:
        return Check(
            "cleanup lock",
            WARN,
            "held, but no run is recorded as running",
            "a run may be starting; if it stays like this, find the holder below "
            "(pg_stat_activity / ps) and stop it",
            lines,
        )
    if running and not holders:
        return Check(
            "cleanup lock",
            WARN,
            f"run {running[0].id} is marked running but nobody holds the lock",
            "its process died; the next run marks it abandoned (or restart a replica)",
            lines,
        )
    oldest = min(r.started_at for r in running)
    if now - oldest > max_run:
        return Check(
            "cleanup lock",
            WARN,
            f"run {running[0].id} has been running for {_ago(now - oldest)}, "
            f"over CLEANUP_MAX_RUN_SECONDS",
            "check its progress in the server log (grep the run id); stop the holder if it hangs",
            lines,
        )
    return Check("cleanup lock", OK, f"run {running[0].id} in progress", lines=lines)


def judge_runs(
    runs: Sequence[RunRow], *, now: datetime, gap: timedelta, threshold: int, enabled: bool
) -> Check:
    lines = tuple(_run_line(r) for r in runs[:RUNS_SHOWN])
    finished = [r for r in runs if r.status != RUN_RUNNING]
    if not finished:
        return Check(
            "last runs",
            WARN if enabled else OK,
            "no cleanup has run yet",
            "preview one: `scripts/monitor-cleanup.sh dry-run`",
            lines,
        )
    failures = 0
    for run in finished:
        if run.status not in (RUN_FAILED, RUN_ABANDONED):
            break
        failures += 1
    last = finished[0]
    if failures:
        verdict = FAIL if failures >= threshold else WARN
        why = "; ".join(last.errors[:2]) or "no error recorded"
        return Check(
            "last runs",
            verdict,
            f"{failures} failed run(s) in a row; last: {why}",
            "fix the cause named above, then `scripts/monitor-cleanup.sh dry-run`",
            lines,
        )
    successes = [r for r in finished if r.status == RUN_SUCCEEDED and r.finished_at]
    if enabled and (
        not successes or now - max(r.finished_at for r in successes if r.finished_at) > 2 * gap
    ):
        return Check(
            "last runs",
            WARN,
            "no succeeded run within twice the scheduling gap",
            "look at the errors of the partial runs below; `botfleet doctor` again after a run",
            lines,
        )
    if last.status == RUN_PARTIAL:
        why = "; ".join(last.errors[:2]) or "see the report"
        return Check(
            "last runs",
            WARN,
            f"last run partial: {why}",
            "see the breakers and engines above",
            lines,
        )
    return Check(
        "last runs", OK, f"last run {last.status} {_ago(now - last.started_at)} ago", lines=lines
    )


def judge_breakers(status: Mapping[str, Any] | None, error: str | None, *, url: str) -> Check:
    if status is None:
        if error is None:
            return Check("breakers", SKIP, "not checked (--offline)")
        return Check(
            "breakers",
            WARN,
            f"server at {url} did not answer: {error}",
            "is `botfleet serve` running there? pass --server URL, or --offline",
        )
    breakers = find_breakers(status)
    if breakers is None:
        return Check("breakers", SKIP, "the server reports no scheduler (CLEANUP_ENABLED=false?)")
    bad = {name: b for name, b in breakers.items() if str(b.get("state")) != "closed"}
    if not bad:
        return Check("breakers", OK, f"all closed ({', '.join(sorted(breakers)) or 'none'})")
    lines = tuple(
        f"{name}: {b.get('state')} since {b.get('since')}; last error: {b.get('last_error')}"
        for name, b in sorted(bad.items())
    )
    return Check(
        "breakers",
        FAIL if any(b.get("state") == "open" for b in bad.values()) else WARN,
        f"not closed: {', '.join(sorted(bad))}",
        "fix the dependency named; the breaker closes itself after a successful probe",
        lines,
    )


def judge_backlog(backlog: Backlog | None, error: str | None, *, gap: timedelta) -> Check:
    if backlog is None:
        return Check("backlog", WARN, f"could not measure: {error}")
    parts = [f"{k} {n}" for k, n in backlog.backlog.items() if n]
    orphans = [f"{k} {n}" for k, n in backlog.orphaned.items() if n]
    detail = "eligible: " + (", ".join(parts) or "nothing")
    detail += "; orphaned: " + (", ".join(orphans) or "nothing")
    stale = {k: s for k, s in backlog.oldest_age_seconds.items() if s > 2 * gap.total_seconds()}
    if backlog.engine_errors:
        return Check(
            "backlog",
            WARN,
            detail + f"; engines not listed: {'; '.join(backlog.engine_errors)}",
            "container counts are incomplete until the engines answer",
        )
    if stale:
        worst = max(stale.values())
        return Check(
            "backlog",
            WARN,
            detail + f"; oldest eligible item waits {_ago(timedelta(seconds=worst))}",
            "cleanup is not keeping up: check the last runs; `scripts/monitor-cleanup.sh cleanup`",
        )
    return Check("backlog", OK, detail)


def judge_mode(enabled: bool, dry_run: bool) -> Check:
    """Context, not a fault: a dry-run rollout is deliberate (the alert fires after 3 days)."""
    if not enabled:
        return Check("mode", OK, "scheduler off (CLEANUP_ENABLED=false): manual runs only")
    if dry_run:
        return Check(
            "mode",
            OK,
            "DRY RUN: scheduled runs delete nothing; set CLEANUP_DRY_RUN=false once their plans "
            "look right",
        )
    return Check("mode", OK, "ACTIVE: scheduled runs delete")


def find_breakers(status: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The breakers in a /admin/cleanup/status answer, at the top or under ``scheduler``."""
    for where in (status, status.get("scheduler")):
        if isinstance(where, Mapping) and isinstance(where.get("breakers"), Mapping):
            return {str(k): dict(v) for k, v in where["breakers"].items() if isinstance(v, Mapping)}
    return None


def _run_line(r: RunRow) -> str:
    took = f" in {_ago(r.finished_at - r.started_at)}" if r.finished_at else ""
    mode = "dry run" if r.dry_run else "real"
    errors = f"; errors: {'; '.join(r.errors[:2])}" if r.errors else ""
    return (
        f"{r.started_at:%Y-%m-%d %H:%M}Z {r.status:<9} {r.trigger:<8} {mode:<7}{took}"
        f" {r.counts}{errors}"
    ).rstrip()


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{max(seconds, 0)}s"


# --- gatherers (I/O) ----------------------------------------------------------------------------
async def gather_database(engine: AsyncEngine) -> str | None:
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return reason_of(exc)
    return None


async def gather_engine(fleet: Fleet, name: str) -> tuple[str | None, str | None]:
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            engine = fleet.engines[name]
            await engine.ping()
            return await engine.version(), None
    except Exception as exc:
        return None, reason_of(exc)


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
