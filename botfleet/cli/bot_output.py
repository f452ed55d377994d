"""`botfleet bots logs ID` and `botfleet bots results ID`: what a bot printed and what it posted.

Lines go out as the engine stamped them (``<time> <line>``), stderr lines on stderr as
``docker logs`` does; ``--follow`` reads the server's event stream until the container stops
or Ctrl-C.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from botfleet.cli.bots import JsonOption, ServerOption, _call, _client, _print_json, _when
from botfleet.cli.client import ClientError
from botfleet.cli.common import fail


def _print_line(item: dict[str, Any]) -> None:
    stamp = item.get("at") or "-"
    typer.echo(f"{stamp} {item['line']}", err=item.get("stream") == "stderr")


def logs(
    bot_id: str = typer.Argument(..., metavar="ID"),
    tail: int = typer.Option(100, "--tail", "-n", min=0, max=10_000, help="The last N lines."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    since: str | None = typer.Option(None, "--since", help="From this moment (RFC 3339)."),
    server: str | None = ServerOption,
) -> None:
    """Print a bot's container logs (stdout and stderr, with timestamps)."""
    client = _client(server)
    params = {"tail": tail, "since": since}
    if not follow:
        for item in _call(client, "GET", f"/bots/{bot_id}/logs", params=params)["items"]:
            _print_line(item)
        return
    try:
        with client.stream(f"/bots/{bot_id}/logs", params={**params, "follow": "true"}) as answer:
            event = ""
            for raw in answer.iter_lines():
                if raw.startswith("event:"):
                    event = raw.partition(":")[2].strip()
                elif raw.startswith("data:") and event == "line":
                    _print_line(json.loads(raw.partition(":")[2]))
    except ClientError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def results(
    bot_id: str = typer.Argument(..., metavar="ID"),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Results to show."),
    cursor: str | None = typer.Option(None, "--cursor", help="next_cursor of the last page."),
    width: int = typer.Option(80, "--width", min=10, help="Characters of data to show."),
    server: str | None = ServerOption,
    as_json: bool = JsonOption,
) -> None:
    """A bot's results, newest first, as a table."""
    params = {"limit": limit, "cursor": cursor}
    page = _call(_client(server), "GET", f"/bots/{bot_id}/results", params=params)
    if as_json:
        _print_json(page)
        return
    table = Table(title=f"{len(page['items'])} of {page['total']} results, newest first")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("data", overflow="ellipsis", no_wrap=True, max_width=width)
    for item in page["items"]:
        data = json.dumps(item["data"], separators=(",", ":"), ensure_ascii=False)
        table.add_row(str(item["id"]), _when(item["created_at"]), escape(data))
    console = Console()
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")
