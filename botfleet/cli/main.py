"""``botfleet``: serve, config, db, bots, results, cleanup, policy, archive, notify, doctor,
openapi."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import typer

from botfleet.cli.common import settings_or_exit
from botfleet.logs import register_secret

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Schema migrations.")
app.add_typer(db_app, name="db")

log = logging.getLogger("botfleet")


def _register_subcommands() -> None:
    from botfleet.cli import archive, bot_output, bots, cleanup, doctor, notify, policy, results

    bots.app.command("logs")(bot_output.logs)
    bots.app.command("results")(bot_output.results)
    app.add_typer(archive.app, name="archive")
    app.add_typer(notify.app, name="notify")
    app.add_typer(bots.app, name="bots")
    app.add_typer(cleanup.app, name="cleanup")
    app.add_typer(policy.app, name="policy")
    app.add_typer(results.app, name="results")
    app.command("doctor")(doctor.doctor)


@app.command()
def serve(
    no_migrate: bool = typer.Option(False, "--no-migrate", help="Do not upgrade the schema."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=64,
        help="Worker processes on the one port (default: WEB_CONCURRENCY, 1).",
    ),
) -> None:
    """Run the main server (REST on HOST:PORT) with its scheduler (one, whatever the workers)."""
    import uvicorn

    from botfleet.app import create_app
    from botfleet.startup import announce

    settings, generated = settings_or_exit().with_admin_token()
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    register_secret(token)
    if generated:
        # Shown once, on stderr, never logged: the operator copies it or sets ADMIN_TOKEN.
        print(
            f"botfleet: ADMIN_TOKEN is not set; generated one for this process: {generated}",
            file=sys.stderr,
            flush=True,
        )
    announce(settings)
    count = workers or settings.web_concurrency
    if count > 1:
        from botfleet.cli.workers import serve_workers

        serve_workers(settings, count, migrate=not no_migrate)
        return
    uvicorn.run(
        create_app(settings, migrate=not no_migrate),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked)."""
    settings = settings_or_exit()
    typer.echo(json.dumps(settings.redacted(), indent=2, default=str))


@app.command("openapi")
def openapi_document(
    path: str = typer.Argument("", help="Write here (docs/openapi.json); omitted: stdout."),
) -> None:
    """Print the OpenAPI document the server serves (nothing is started or read)."""
    import tempfile
    from pathlib import Path

    from botfleet.api.openapi import render
    from botfleet.app import create_app
    from botfleet.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        # Placeholders: the document depends on the code alone, never on the configuration.
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            admin_token="document-only-" + "x" * 32,
            database_url=f"sqlite:///{tmp}/unused.db",
        )
        text = render(create_app(settings, migrate=False).openapi())
    if path:
        Path(path).write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Bring the schema up to date (under a lock)."""
    from botfleet.store.migrate import upgrade_sync

    settings = settings_or_exit()
    upgrade_sync(settings, revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema's current revision and the head."""
    from botfleet.store.migrate import current_revision, head_revision
    from botfleet.store.session import create_engine

    settings = settings_or_exit()

    async def _current() -> str | None:
        engine = create_engine(settings)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    typer.echo(f"current: {asyncio.run(_current())}  head: {head_revision(settings)}")


_register_subcommands()
