"""Start-up: settings validated with what they name (the policy file), and what the server says
once at start: the effective configuration and the cleanup mode."""

from __future__ import annotations

import logging
from typing import Any

from botfleet.cleanup.policy_file import check_policy_file
from botfleet.config import Settings, load_settings

log = logging.getLogger("botfleet.startup")


def checked_settings(**overrides: Any) -> Settings:
    """Settings from the environment, the policy file's rules included; a bad value raises
    :class:`~botfleet.config.ConfigError` with the one line to print."""
    settings = load_settings(**overrides)
    check_policy_file(settings)
    return settings


def cleanup_mode(settings: Settings) -> str:
    if not settings.cleanup_enabled:
        return "scheduler off (manual runs only)"
    mode = (
        "DRY RUN (scheduled runs plan only, delete nothing)"
        if settings.cleanup_dry_run
        else ("ACTIVE (scheduled runs delete)")
    )
    containers = "on" if settings.container_cleanup_enabled else "off"
    window = (
        f"window {settings.cleanup_window} {settings.cleanup_timezone}"
        if settings.cleanup_window
        else "any time"
    )
    adaptive = "adaptive" if settings.cleanup_adaptive else "fixed"
    return (
        f"{mode}; container cleanup {containers}; every {settings.cleanup_interval_hours:g}h "
        f"({adaptive}), first run after {settings.cleanup_startup_delay_seconds:g}s, {window}"
    )


def announce(settings: Settings) -> None:
    log.info("effective configuration", extra={"config": settings.redacted()})
    log.info("cleanup mode: %s", cleanup_mode(settings))
    if settings.weak_admin_token:
        log.warning(
            "ADMIN_TOKEN is short or a documented example; accepted only because HOST=%s is "
            "loopback",
            settings.host,
        )
