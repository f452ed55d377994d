"""``botfleet policy``: check a policy file, explain what it does to a bot, simulate a change.

``check`` reads nothing but the file (exit 0 valid, 2 invalid, with the one-line error).
``explain`` and ``simulate`` run in-process against the environment's database, like
``botfleet cleanup``; ``simulate`` writes nothing (no run row, no stored plan).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from botfleet.cleanup.policy import Policy, PolicyError, load_policy_file
from botfleet.cleanup.rules import Rule, rule_to_json
from botfleet.cli.common import fail, settings_or_exit
from botfleet.errors import BotfleetError

app = typer.Typer(no_args_is_help=True, help="Check, explain and simulate retention policies.")
out = Console()
EXIT_INVALID = 2
JSON = typer.Option(False, "--json", help="Print JSON.")
T = TypeVar("T")


def _load(path: Path) -> tuple[Rule, ...]:
    try:
        return load_policy_file(path)
    except PolicyError as exc:
        fail(f"{path}: {exc}", EXIT_INVALID)


def _describe(rule: Rule) -> str:
    fields = rule_to_json(rule)
    return ", ".join(f"{k}={v}" for k, v in fields.items() if k not in ("number", "name", "match"))


@app.command()
def check(
    path: Path = typer.Argument(..., help="The policy file (YAML)."), as_json: bool = JSON
) -> None:
    """Validate a policy file and print its rules in the order they are matched."""
    rules = _load(path)
    if as_json:
        typer.echo(json.dumps([rule_to_json(r) for r in rules], indent=2))
        return
    table = Table(title=f"{path}: {len(rules)} rule(s), first match wins")
    for column in ("#", "name", "match", "sets"):
        table.add_column(column)
    for rule in rules:
        match = ", ".join(f"{k}={v}" for k, v in rule.match.items()) or "(every bot)"
        table.add_row(str(rule.number), rule.name or "", match, _describe(rule))
    out.print(table)


def _service_call(fn: Callable[[Any], Awaitable[T]], policy: Policy | None = None) -> T:
    settings = settings_or_exit()

    async def go() -> T:
        from botfleet.cleanup.service import CleanupService
        from botfleet.runtime.fleet import Fleet
        from botfleet.store.session import create_engine

        db = create_engine(settings)
        fleet = Fleet.from_settings(settings)
        try:
            service = CleanupService(settings=settings, db=db, fleet=fleet, policy=policy)
            return await fn(service)
        finally:
            await fleet.close()
            await db.dispose()

    try:
        return asyncio.run(go())
    except BotfleetError as exc:
        fail(str(exc), 1)


@app.command()
def explain(bot_id: str = typer.Argument(..., help="The bot's id."), as_json: bool = JSON) -> None:
    """Which rule applies to a bot, why, and when each of its resources becomes due."""
    try:
        key = uuid.UUID(bot_id)
    except ValueError:
        fail(f"bot_id accepts a bot id (UUID); got {bot_id[:60]!r}", EXIT_INVALID)
    answer = _service_call(lambda s: s.explain(key))
    if as_json:
        typer.echo(json.dumps(answer, indent=2, default=str))
        return
    out.print(f"bot {answer['bot_id']} ({answer['name']}): {answer['why']}")
    bot = answer["bot"]
    out.print(f"  bot: {bot['retention']}; purge at {bot.get('purge_at') or '-'}; {bot['detail']}")
    res = answer["results"]
    line = f"  results: {res['count']}, {res['retention']}"
    if res.get("max_results_per_bot") is not None:
        line += f"; quota {res['max_results_per_bot']} ({res['over_quota']} over)"
    if res.get("oldest_due_at"):
        line += f"; oldest due at {res['oldest_due_at']}"
    out.print(line)
    if answer["idle"]:
        idle = answer["idle"]
        out.print(
            f"  idle: at {idle['idle_at'] or '-'}; failing: at {idle['failing_at'] or '-'};"
            f" {idle['detail']}"
        )


@app.command()
def simulate(
    path: Path = typer.Argument(..., help="The candidate policy file (YAML)."),
    as_json: bool = JSON,
) -> None:
    """A dry-run plan of a candidate policy against the live store, saved nowhere."""
    rules = _load(path)
    settings = settings_or_exit()
    policy = replace(
        Policy.from_settings(settings.model_copy(update={"cleanup_policy_file": None})), rules=rules
    )
    answer = _service_call(lambda s: s.simulate(policy), policy)
    if as_json:
        typer.echo(json.dumps(answer, indent=2, default=str))
        return
    table = Table(title=f"simulated {path} at {answer['now']} (nothing saved)")
    for column in ("kind", "found", "sample"):
        table.add_column(column)
    for kind, stats in answer["resources"].items():
        table.add_row(kind, str(stats["found"]), ", ".join(stats["sample"][:3]))
    out.print(table)
    for error in answer["errors"]:
        out.print(f"[red]error[/red] {error.get('stage')}: {error.get('message')}")
    if answer["errors"]:
        raise typer.Exit(1)
