"""`botfleet doctor`: the incident checklist as one command.

Exit codes: 0 all good, 1 something needs attention (a warning or a failure), 2 bad configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.backlog import Backlog, measure
from botfleet.cleanup.timing import longest_gap_seconds
from botfleet.config import Settings
from botfleet.constants import RUN_RUNNING
from botfleet.diagnosis.checks import FAIL, OK, SKIP, WARN, Check
from botfleet.diagnosis.gather import (
    gather_database,
    gather_engine,
    gather_lock_holders,
    gather_runs,
    gather_status,
    reason_of,
)
from botfleet.diagnosis.judges import (
    judge_backlog,
    judge_breakers,
    judge_database,
    judge_engine,
    judge_lock,
    judge_migration,
    judge_mode,
    judge_runs,
)
from botfleet.runtime.fleet import Fleet
from botfleet.store.migrate import current_revision, head_revision
from botfleet.store.session import create_engine, create_session_factory

EXIT_ATTENTION = 1
_STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}


def doctor(
    server: str = typer.Option(
        None, "--server", help="Server to ask for breakers [default: MAIN_SERVER_URL]."
    ),
    offline: bool = typer.Option(False, "--offline", help="Do not ask a running server."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check database, migrations, engines, cleanup lock, last runs, breakers and backlog."""
    from botfleet.cli.common import settings_or_exit

    settings = settings_or_exit()
    # Reading the schema revision makes Alembic chatty; the verdicts say what matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = server or settings.main_server_url
    checks = asyncio.run(diagnose(settings, server=None if offline else url))
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in checks], indent=2, default=str))
    else:
        render(checks)
    if any(c.needs_attention for c in checks):
        raise typer.Exit(EXIT_ATTENTION)


async def diagnose(
    settings: Settings, *, server: str | None, now: datetime | None = None
) -> list[Check]:
    now = now or datetime.now(UTC)
    gap = timedelta(seconds=longest_gap_seconds(settings))
    db = create_engine(settings)
    fleet = Fleet.from_settings(settings)
    checks = [judge_mode(settings.cleanup_enabled, settings.cleanup_dry_run)]
    try:
        db_error = await gather_database(db)
        checks.append(judge_database(db_error, _safe_url(settings)))
        schema_ok = False
        if db_error is None:
            try:
                current = await current_revision(db)
            except Exception as exc:
                migration = Check("migrations", FAIL, f"cannot read: {reason_of(exc)}")
            else:
                migration = judge_migration(current, head_revision(settings))
            checks.append(migration)
            schema_ok = migration.verdict == OK
        engines = await asyncio.gather(*(gather_engine(fleet, n) for n in fleet.names))
        for name, (version, error, nodes) in zip(fleet.names, engines, strict=True):
            checks.append(judge_engine(name, version, error, nodes))
        if schema_ok:
            try:
                checks.extend(await _store_checks(settings, db, now, gap))
            except Exception as exc:
                checks.append(Check("last runs", FAIL, f"cannot read: {reason_of(exc)}"))
        if server is None:
            checks.append(judge_breakers(None, None, url=""))
        else:
            status, error = await gather_status(server, _token(settings))
            checks.append(judge_breakers(status, error, url=server))
        if schema_ok:
            backlog: Backlog | None = None
            backlog_error = None
            try:
                backlog = await measure(create_session_factory(db), fleet, settings, now=now)
            except Exception as exc:
                backlog_error = reason_of(exc)
            checks.append(judge_backlog(backlog, backlog_error, gap=gap))
    finally:
        await fleet.close()
        await db.dispose()
    return checks


async def _store_checks(
    settings: Settings, db: AsyncEngine, now: datetime, gap: timedelta
) -> list[Check]:
    """The cleanup lock and the last runs: both read the store."""
    runs = await gather_runs(create_session_factory(db))
    try:
        holders, lock_error = await gather_lock_holders(settings, db), None
    except Exception as exc:
        holders, lock_error = [], reason_of(exc)
    running = [r for r in runs if r.status == RUN_RUNNING]
    max_run = timedelta(seconds=settings.cleanup_max_run_seconds)
    return [
        judge_lock(holders, running, now=now, max_run=max_run, error=lock_error),
        judge_runs(
            runs,
            now=now,
            gap=gap,
            threshold=settings.cleanup_breaker_threshold,
            enabled=settings.cleanup_enabled,
        ),
    ]


def render(checks: list[Check]) -> None:
    """One line per check, its evidence indented below, and the next step after an arrow."""
    console = Console(highlight=False, soft_wrap=True)
    width = max(len(c.name) for c in checks) + 2
    for check in checks:
        verdict = f"[{_STYLE[check.verdict]}]{check.verdict.upper():<4}[/]"
        console.print(f"{verdict}  {check.name:<{width}}{escape(check.detail)}")
        for line in check.lines:
            console.print(f"{'':6}{'':<{width}}{escape(line)}")
        if check.next_step and check.needs_attention:
            console.print(f"{'':6}{'':<{width}}[bold]-> {escape(check.next_step)}[/]")
    attention = [c.name for c in checks if c.needs_attention]
    if attention:
        console.print(f"\n[bold]needs attention:[/] {', '.join(attention)}")
    else:
        console.print("\nall checks passed")


def _token(settings: Settings) -> str | None:
    return settings.admin_token.get_secret_value() if settings.admin_token else None


def _safe_url(settings: Settings) -> str:
    return str(settings.redacted()["DATABASE_URL"])
