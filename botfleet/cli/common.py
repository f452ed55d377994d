"""What every command shares: settings that fail in one line, logging set up once."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from botfleet.config import ConfigError, Settings
from botfleet.logs import configure_logging
from botfleet.startup import checked_settings

EXIT_CONFIG = 2


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"botfleet: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """Settings from the environment; on a bad value print one line and exit 2."""
    try:
        settings = checked_settings()
    except ConfigError as exc:
        print(f"botfleet: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_CONFIG) from None
    configure_logging(settings.log_format, settings.log_level)
    return settings
