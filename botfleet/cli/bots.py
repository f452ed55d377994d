"""`botfleet bots create|list|show|delete|restore`: manage bots through the server's API.

Talks HTTP to ``MAIN_SERVER_URL`` (or ``--server``) with ``ADMIN_TOKEN``; exit codes are those of
:mod:`botfleet.cli.client`. ``--json`` prints the server's answer for scripts.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from botfleet.cli.client import ClientError, ServerClient
from botfleet.cli.common import fail, settings_or_exit

app = typer.Typer(no_args_is_help=True, help="Create, list, show, delete and restore bots.")

ServerOption = typer.Option(None, "--server", help="Server URL (default: MAIN_SERVER_URL).")
JsonOption = typer.Option(False, "--json", help="Print the server's JSON answer.")


def _client(server: str | None) -> ServerClient:
    try:
        return ServerClient.from_settings(settings_or_exit(), url=server)
    except ClientError as exc:
        fail(str(exc), exc.exit_code)


def _call(client: ServerClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return client.request(method, path, **kwargs)
    except ClientError as exc:
        fail(str(exc), exc.exit_code)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{option} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _print_json(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2, sort_keys=True))


def _short(value: str | None, width: int = 12) -> str:
    return (value or "-")[:width]


def _when(stamp: str | None) -> str:
    """``2026-01-02T03:04:05.123Z`` as ``2026-01-02 03:04`` (UTC)."""
    return stamp[:16].replace("T", " ") if stamp else "-"


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _bot_table(bot: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    status = bot["status"] + (f" ({bot['exit_code']})" if bot.get("exit_code") is not None else "")
    rows = [
        ("id", bot["id"]),
        ("name", bot["name"]),
        ("status", status),
        ("image", bot["image"]),
        ("command", shlex.join(bot["command"]) if bot.get("command") else "-"),
        ("labels", _labels(bot.get("labels") or {})),
        ("engine", bot.get("engine") or "-"),
        ("node", bot.get("node") or "-"),
        ("detail", bot.get("status_detail") or "-"),
        ("container", bot.get("container_id") or "-"),
        ("created", bot["created_at"]),
        ("deleted", bot.get("deleted_at") or "-"),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def _show(bot: dict[str, Any], as_json: bool, note: str = "") -> None:
    if as_json:
        _print_json(bot)
        return
    console = Console()
    console.print(_bot_table(bot))
    if note:
        console.print(note)


@app.command()
def create(
    name: str = typer.Argument(..., help="Unique among live bots."),
    image: str = typer.Option(..., "--image", "-i", help="Image on the engines."),
    command: str | None = typer.Option(None, "--command", "-c", help="Command line (shell words)."),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE, repeatable."),
    label: list[str] = typer.Option([], "--label", "-l", help="KEY=VALUE, repeatable."),
    server: str | None = ServerOption,
    as_json: bool = JsonOption,
) -> None:
    """Start a bot; prints its token once (it is stored only as a hash)."""
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "env": _pairs(env, "--env"),
        "labels": _pairs(label, "--label"),
    }
    if command is not None:
        body["command"] = shlex.split(command)
    bot = _call(_client(server), "POST", "/bots", json=body)
    note = f"token: {bot['token']}\n(shown once; the bot's container already has it as BOT_TOKEN)"
    _show(bot, as_json, note)


@app.command("list")
def list_bots(
    label: list[str] = typer.Option([], "--label", "-l", help="KEY=VALUE filter, repeatable."),
    status: str | None = typer.Option(None, "--status", help="running, exited, failed, ..."),
    include_deleted: bool = typer.Option(False, "--include-deleted", help="Show deleted bots."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="Bots per page."),
    all_pages: bool = typer.Option(False, "--all", help="Follow next_cursor to the end."),
    server: str | None = ServerOption,
    as_json: bool = JsonOption,
) -> None:
    """List bots, newest first."""
    client = _client(server)
    params: dict[str, Any] = {
        "label": label,
        "status": status,
        "include_deleted": include_deleted or None,
        "limit": limit,
    }
    page = _call(client, "GET", "/bots", params=params)
    items, total = list(page["items"]), page["total"]
    while all_pages and page["next_cursor"]:
        page = _call(client, "GET", "/bots", params={**params, "cursor": page["next_cursor"]})
        items += page["items"]
    if as_json:
        _print_json({"items": items, "total": total, "next_cursor": page["next_cursor"]})
        return
    show_deleted = any(bot.get("deleted_at") for bot in items)
    table = Table(title=f"{len(items)} of {total} bots")
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("engine/node", overflow="fold")
    table.add_column("container", no_wrap=True)
    table.add_column("labels", overflow="fold")
    table.add_column("created", no_wrap=True)
    if show_deleted:
        table.add_column("deleted", no_wrap=True)
    for bot in items:
        code = bot.get("exit_code")
        row = [
            _short(bot["id"], 8),
            bot["name"],
            bot["status"] + (f" ({code})" if code is not None else ""),
            bot.get("node") or bot.get("engine") or "-",
            _short(bot.get("container_id")),
            _labels(bot.get("labels") or {}),
            _when(bot["created_at"]),
        ]
        if show_deleted:
            row.append(_when(bot.get("deleted_at")))
        table.add_row(*row)
    console = Console()
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --all, or GET /bots?cursor={page['next_cursor']}")


@app.command()
def show(
    bot_id: str = typer.Argument(..., metavar="ID"),
    server: str | None = ServerOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one bot (deleted ones too, until they are purged)."""
    _show(_call(_client(server), "GET", f"/bots/{bot_id}"), as_json)


@app.command()
def delete(
    bot_id: str = typer.Argument(..., metavar="ID"),
    server: str | None = ServerOption,
    as_json: bool = JsonOption,
) -> None:
    """Soft-delete a bot: its container is stopped and kept; restore works within retention."""
    _show(_call(_client(server), "DELETE", f"/bots/{bot_id}"), as_json)


@app.command()
def restore(
    bot_id: str = typer.Argument(..., metavar="ID"),
    server: str | None = ServerOption,
    as_json: bool = JsonOption,
) -> None:
    """Restore a soft-deleted bot within retention and run it again."""
    bot = _call(_client(server), "POST", f"/bots/{bot_id}/restore")
    note = f"new token: {bot['token']} (the old one no longer works)" if bot.get("token") else ""
    _show(bot, as_json, note)
