"""``botfleet archive list|show|restore``: what CLEANUP_ARCHIVE_DIR holds, and putting a purge back.

In-process, against the archive directory and the database of the environment (it works while the
server is down). Exit codes: 0 done, 1 refused (a restore that would collide: nothing written),
2 bad configuration or input (no CLEANUP_ARCHIVE_DIR, an unknown run or bot).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import typer
from rich.console import Console
from rich.table import Column, Table

from botfleet.archive.reader import ArchivedRunNotFound, run_view, runs_view
from botfleet.archive.restore import BotNotArchived, RestoreRefused, restore_run
from botfleet.archive.writer import Archive, archive_for
from botfleet.cli.common import EXIT_CONFIG, fail, settings_or_exit
from botfleet.config import Settings
from botfleet.store.models import utcnow

app = typer.Typer(no_args_is_help=True, help="List, show and restore archived purges.")
JSON = typer.Option(False, "--json", help="Print JSON.")
EXIT_REFUSED = 1
out = Console()


def _archive() -> tuple[Settings, Archive]:
    settings = settings_or_exit()
    archive = archive_for(settings)
    if archive is None:
        fail("CLEANUP_ARCHIVE_DIR is not set: there is no archive", EXIT_CONFIG)
    return settings, archive


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


@app.command("list")
def list_runs(as_json: bool = JSON) -> None:
    """Every archived run: status, when it ended, files, rows and size."""
    _, archive = _archive()
    runs = runs_view(archive)
    if as_json:
        _print_json(runs)
        return
    table = Table("status", "finished", "files", "bots", "results", "size")
    table.columns.insert(0, Column("run", no_wrap=True, min_width=36))
    for run in runs:
        rows = run.get("rows", {})
        table.add_row(
            run["run_id"],
            str(run.get("status")) + (" (recovered)" if run.get("recovered") else ""),
            str(run.get("finished_at") or "-")[:19].replace("T", " "),
            str(run["files"]),
            str(rows.get("bots", 0)),
            str(rows.get("results", 0)),
            _size(int(run.get("bytes", 0))),
        )
    out.print(table)


@app.command("show")
def show(run_id: str = typer.Argument(..., help="The run's id."), as_json: bool = JSON) -> None:
    """One archived run: its counts, files and sizes."""
    _, archive = _archive()
    try:
        view = run_view(archive, run_id)
    except ArchivedRunNotFound as exc:
        fail(str(exc), EXIT_CONFIG)
    if as_json:
        _print_json(view)
        return
    rows = view.get("rows", {})
    out.print(
        f"run {view['run_id']} {view.get('status')}: {rows.get('bots', 0)} bots, "
        f"{rows.get('results', 0)} results, {_size(int(view.get('bytes', 0)))} in {view['dir']}"
    )
    table = Table(Column("file", no_wrap=True, min_width=24), "bots", "results", "size")
    for f in view["files"]:
        table.add_row(
            f["name"],
            str(f["rows"].get("bots", 0)),
            str(f["rows"].get("results", 0)),
            _size(int(f["bytes"])),
        )
    out.print(table)


@app.command("restore")
def restore(
    run_id: str = typer.Argument(..., help="The run whose purge to restore."),
    bot: str | None = typer.Option(None, "--bot", help="Only this bot (and its results)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and count; write nothing."),
    keep_deleted_at: bool = typer.Option(
        False,
        "--keep-deleted-at",
        help="Keep the archived deleted_at (the next run may purge the bots again at once).",
    ),
    as_json: bool = JSON,
) -> None:
    """Re-insert the run's purged bots as soft-deleted, with their results; refuses, writing
    nothing, when any of them would collide with a row in the store."""
    settings, archive = _archive()
    bot_id = None
    if bot is not None:
        try:
            bot_id = uuid.UUID(bot)
        except ValueError:
            fail(f"--bot takes a bot id (a UUID), got {bot!r}", EXIT_CONFIG)

    async def go() -> dict[str, Any]:
        from botfleet.store.session import create_engine, create_session_factory

        db = create_engine(settings)
        try:
            return await restore_run(
                archive,
                create_session_factory(db),
                run_id,
                now=utcnow(),
                bot_id=bot_id,
                dry_run=dry_run,
                keep_deleted_at=keep_deleted_at,
            )
        finally:
            await db.dispose()

    try:
        answer = asyncio.run(go())
    except (ArchivedRunNotFound, BotNotArchived) as exc:
        fail(str(exc), EXIT_CONFIG)
    except RestoreRefused as exc:
        fail(str(exc), EXIT_REFUSED)
    if as_json:
        _print_json(answer)
        return
    verb = "would restore" if dry_run else "restored"
    out.print(
        f"{verb} {answer['bots']} bot(s) as soft-deleted and {answer['results']} result(s) "
        f"from {len(answer['files'])} file(s) of run {run_id}"
    )
