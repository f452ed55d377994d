"""``botfleet cleanup``: plan, run and inspect cleanups.

In-process by default, against the database and engines of the environment (it works while the
server is down); ``--server`` calls the HTTP API instead. A real run asks first unless ``--yes``:
it shows a dry run's plan and then executes exactly that plan.

Exit codes of ``run``: 0 succeeded, 1 partial, 2 failed, 3 nothing ran (declined, another run in
progress, bad input).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from botfleet.cli.cleanup_backends import EXIT_NOT_RUN, backend_for
from botfleet.cli.common import fail
from botfleet.cli.schedule import schedule as schedule_command
from botfleet.errors import BotfleetError, CleanupInProgress

app = typer.Typer(no_args_is_help=True, help="Plan, run and inspect cleanups.")
# `botfleet cleanup schedule` lives in botfleet/cli/schedule.py and is registered at the end.

EXIT_BY_STATUS = {"succeeded": 0, "partial": 1, "failed": 2}

SERVER = typer.Option(False, "--server", help="Call the HTTP API instead of running in-process.")
URL = typer.Option(None, "--url", help="The server for --server [default: MAIN_SERVER_URL].")
JSON = typer.Option(False, "--json", help="Print JSON.")
err = Console(stderr=True)
out = Console()


@contextmanager
def _errors() -> Iterator[None]:
    """Domain and HTTP errors become one line on stderr and exit 3: nothing ran."""
    from botfleet.cli.client import ClientError

    try:
        yield
    except CleanupInProgress as exc:
        fail(f"{exc}; try again when it is done", EXIT_NOT_RUN)
    except BotfleetError as exc:
        fail(str(exc), EXIT_NOT_RUN)
    except ClientError as exc:
        # The server's 409 detail already names the running run.
        fail(str(exc), EXIT_NOT_RUN)


# --- output ------------------------------------------------------------------------------------
def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _print_report(report: dict[str, Any]) -> None:
    mode = "dry run" if report.get("dry_run") else "run"
    out.print(f"cleanup {mode} {report.get('run_id')}: [bold]{report.get('status')}[/bold]")
    table = Table()
    for column in ("kind", "found", "deleted", "skipped", "outcome"):
        table.add_column(column, justify="right" if column in ("found", "deleted") else "left")
    for kind, stats in (report.get("resources") or {}).items():
        table.add_row(
            kind,
            str(stats.get("found", 0)),
            str(stats.get("deleted", 0)),
            str(stats.get("skipped_count", len(stats.get("skipped", [])))),
            str(stats.get("outcome", "")),
        )
    out.print(table)
    for kind, stats in (report.get("resources") or {}).items():
        for item in stats.get("skipped", [])[:10]:
            out.print(f"  skipped {kind} {item.get('id')}: {item.get('reason')}")
    for error in report.get("errors") or []:
        out.print(f"[red]error[/red] {error.get('stage')}: {error.get('message')}")
    if report.get("dry_run"):
        out.print(
            f"plan {report.get('plan_id')}: `botfleet cleanup run --execute --plan "
            f"{report.get('plan_id')}` deletes exactly this"
        )


class _Bars:
    """A Rich progress bar per stage, fed by the service's progress callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=max(total, 1))
        self.progress.update(self.tasks[stage], completed=done, total=max(total, 1))


# --- commands ----------------------------------------------------------------------------------
@app.command()
def run(
    dry_run: bool = typer.Option(
        True, "--dry-run/--execute", help="Plan only (default), or delete."
    ),
    only: str = typer.Option(
        None, "--only", help="Comma-separated stages: bots, results, orphaned_results, containers."
    ),
    plan: str = typer.Option(None, "--plan", help="Execute exactly this dry run's plan."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before deleting."),
    server: bool = SERVER,
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Run a cleanup: a dry run by default; --execute deletes (after asking, unless --yes)."""
    backend = backend_for(server, url)
    with _errors():
        if not dry_run and not yes:
            # The plan to confirm: a new dry run's, or a stored one as it matches now (the
            # server checks the id and re-selects within the plan).
            preview = backend.run(dry_run=True, only=only, plan_id=plan, progress=None)
            if not as_json:
                _print_report(preview)
            found = {k: int(v["found"]) for k, v in preview["resources"].items()}
            plan = str(preview["plan_id"])
            total = sum(found.values())
            if total == 0:
                err.print("nothing to delete")
                raise typer.Exit(0)
            if not typer.confirm(
                f"Delete these {total} items (plan {plan})?", default=False, err=True
            ):
                err.print("nothing deleted")
                raise typer.Exit(EXIT_NOT_RUN)
        with Progress(
            TextColumn("{task.description:>18}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=as_json or server,
        ) as progress:
            report = backend.run(dry_run=dry_run, only=only, plan_id=plan, progress=_Bars(progress))
    if as_json:
        _print_json(report)
    else:
        _print_report(report)
    raise typer.Exit(EXIT_BY_STATUS.get(str(report.get("status")), 2))


@app.command()
def status(server: bool = SERVER, url: str = URL, as_json: bool = JSON) -> None:
    """The service's state: mode, retention, the running run, the last report."""
    backend = backend_for(server, url)
    with _errors():
        data = backend.status()
    if as_json:
        _print_json(data)
        return
    last = data.get("last_run") or {}
    table = Table(show_header=False)
    for key, value in data.items():
        if key == "last_run":
            value = f"{last.get('run_id')} {last.get('status')}" if last else None
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)


@app.command()
def orphans(
    limit: int = typer.Option(100, "--limit", help="Items listed per kind."),
    server: bool = SERVER,
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """What is orphaned right now, and what still protects it (grace, running, retention)."""
    backend = backend_for(server, url)
    with _errors():
        data = backend.orphans(limit)
    if as_json:
        _print_json(data)
        return
    for kind, counts in (data.get("summary") or {}).items():
        out.print(f"[bold]{kind}[/bold]: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    table = Table()
    for column in ("kind", "id", "eligible", "age", "reason"):
        table.add_column(column)
    for item in data.get("items", []):
        age = item.get("age_seconds")
        table.add_row(
            item["kind"],
            str(item["id"])[:36],
            "yes" if item.get("eligible") else "no",
            "-" if age is None else f"{age / 3600:.1f}h",
            str(item.get("reason", "")),
        )
    out.print(table)
    for error in data.get("errors") or []:
        out.print(
            f"[red]error[/red] {error.get('engine') or error.get('stage')}: {error.get('message')}"
        )


@app.command()
def runs(
    limit: int = typer.Option(20, "--limit"),
    cursor: str = typer.Option(None, "--cursor", help="next_cursor of the previous page."),
    status_: str = typer.Option(None, "--status", help="Only runs with this status."),
    server: bool = SERVER,
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Run history, newest first."""
    backend = backend_for(server, url)
    with _errors():
        data = backend.runs(limit, cursor, status_)
    if as_json:
        _print_json(data)
        return
    table = Table(title=f"{data['total']} runs")
    for column in ("id", "started", "trigger", "actor", "mode", "status", "deleted"):
        table.add_column(column)
    for item in data["items"]:
        table.add_row(
            item["id"],
            str(item["started_at"])[:19],
            item["trigger"],
            item["actor"],
            "dry" if item["dry_run"] else "real",
            item["status"],
            ", ".join(f"{k} {v}" for k, v in item["deleted"].items() if v) or "-",
        )
    out.print(table)
    if data.get("next_cursor"):
        out.print(f"more: --cursor {data['next_cursor']}")


@app.command()
def show(
    run_id: str = typer.Argument(..., help="A run id (from `botfleet cleanup runs`)."),
    audit_limit: int = typer.Option(100, "--audit-limit"),
    server: bool = SERVER,
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """One run: its report and what it deleted (the audit records)."""
    backend = backend_for(server, url)
    with _errors():
        data = backend.show(run_id, audit_limit)
    if as_json:
        _print_json(data)
        return
    out.print(
        f"run {data['id']}: {data['status']} ({data['trigger']} by {data['actor']}, "
        f"{'dry run' if data['dry_run'] else 'real'}) {data['started_at']} → {data['finished_at']}"
    )
    if data.get("report"):
        _print_report(data["report"])
    audit = data.get("audit") or {}
    if audit.get("total"):
        table = Table(title=f"{audit['total']} audit records")
        for column in ("kind", "resource", "reason", "deleted at"):
            table.add_column(column)
        for record in audit.get("items", []):
            table.add_row(
                record["kind"],
                record["resource_id"],
                record["reason"],
                str(record["deleted_at"])[:19],
            )
        out.print(table)


# One scheduled cycle for cron (--once), or the scheduler alone: botfleet/cli/schedule.py.
app.command("schedule")(schedule_command)
