"""``botfleet cleanup schedule``: the scheduler without the server.

``--once`` runs one scheduled cycle and exits (for cron users): the same tick as inside
``botfleet serve`` — ``trigger=schedule``, CLEANUP_DRY_RUN, CLEANUP_WINDOW, the lock — with an exit
code a cron job can act on. Without ``--once`` the scheduler runs in the foreground until SIGTERM
or Ctrl-C, which end the current run after its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import typer

from botfleet.cli.common import settings_or_exit
from botfleet.config import Settings

if TYPE_CHECKING:
    from botfleet.cleanup.scheduler import Scheduler

# Exit codes: as `botfleet cleanup run` (0 succeeded, 1 partial, 2 failed); a skipped tick
# (another run holds the lock, outside the window) is not an error for cron.
EXIT_BY_STATUS = {"succeeded": 0, "partial": 1, "failed": 2}


@contextlib.asynccontextmanager
async def _scheduler(settings: Settings) -> AsyncIterator[Scheduler]:
    from botfleet.cleanup.scheduler import Scheduler
    from botfleet.cleanup.service import CleanupService
    from botfleet.cleanup.timing import governor_for
    from botfleet.runtime.fleet import Fleet
    from botfleet.store.session import create_engine

    db = create_engine(settings)
    fleet = Fleet.from_settings(settings)
    try:
        service = CleanupService(
            settings=settings, db=db, fleet=fleet, governor=governor_for(settings)
        )
        yield Scheduler(settings=settings, service=service, engines=fleet.names)
    finally:
        await fleet.close()
        await db.dispose()


async def _once(settings: Settings) -> int:
    from botfleet.cleanup.report import summary_line
    from botfleet.cleanup.ticks import TICK_FAILED, TICK_RAN

    async with _scheduler(settings) as scheduler:
        tick = await scheduler.tick(respect_window=True)
    if tick.kind == TICK_RAN and tick.report is not None:
        report = tick.report
        dry = " (dry run)" if report.get("dry_run") else ""
        typer.echo(
            f"cleanup run {report['run_id']} {report['status']}{dry}: {summary_line(report)}"
        )
        return EXIT_BY_STATUS.get(str(report["status"]), 2)
    if tick.kind == TICK_FAILED:
        typer.echo(f"botfleet: scheduled cleanup failed: {tick.reason}", err=True)
        return 2
    typer.echo(f"scheduled cleanup skipped: {tick.reason}")
    return 0


async def _forever(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with _scheduler(settings) as scheduler:
        await scheduler.start()
        try:
            await stop.wait()
        finally:
            await scheduler.stop()


def schedule(
    once: bool = typer.Option(
        False,
        "--once",
        help="Run one scheduled cycle and exit (for cron). Exit 0: succeeded, or skipped "
        "(another run holds the lock, outside CLEANUP_WINDOW); 1 partial; 2 failed.",
    ),
) -> None:
    """Run scheduled cleanups without the server: one cycle (--once) or until SIGTERM."""
    settings = settings_or_exit()
    if once:
        raise typer.Exit(asyncio.run(_once(settings)))
    from botfleet.startup import announce

    announce(settings)
    asyncio.run(_forever(settings))
