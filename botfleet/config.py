"""One typed settings object, read from the environment and validated at start-up.

Every variable the seed and the design name lives here. A bad value stops the process with one line
that names the variable, the value and what it accepts (see :func:`format_validation_error`).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from botfleet.config_types import (
    ArchiveDir,
    BotNetwork,
    DatabaseUrl,
    ImagePull,
    InstanceName,
    RestartPolicy,
    ResultsBudgetText,
    Runtime,
    StrictBool,
    TimeZone,
    WebhookUrls,
    WholeNumber,
    Window,
    YamlFile,
)
from botfleet.constants import EXAMPLE_ADMIN_TOKENS

DEFAULT_SQLITE_URL = "sqlite:///./data/botfleet.db"


class Settings(BaseSettings):
    """botfleet's configuration; field ``x_y`` is read from the variable ``X_Y``."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # --- server -------------------------------------------------------------------------------
    database_url: DatabaseUrl = DEFAULT_SQLITE_URL
    admin_token: SecretStr | None = None
    main_server_url: str = "http://localhost:3001"
    port: int = Field(3001, ge=1, le=65535)
    host: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: SecretStr | None = None
    # Worker processes of `botfleet serve` (its --workers wins); the name uvicorn and PaaS use.
    web_concurrency: int = Field(1, ge=1, le=64)

    # --- bots and engines ---------------------------------------------------------------------
    bot_runtime: Runtime = "docker"  # docker: plain engines; swarm: a swarm's managers
    docker_hosts: str = ""
    bot_network: BotNetwork = "host"
    bot_image_pull: ImagePull = "if-not-present"
    # Swarm services' restart policy: none, or on-failure with a bounded number of attempts.
    bot_restart_policy: RestartPolicy = "on-failure:3"
    botfleet_instance: InstanceName = "default"
    reconcile_interval_seconds: float = Field(30.0, gt=0)

    # --- cleanup (the seed's four, then the design's) -----------------------------------------
    bot_retention_days: WholeNumber = Field(7, ge=0)
    cleanup_interval_hours: float = Field(6.0, gt=0)
    container_cleanup_enabled: StrictBool = True
    cleanup_dry_run: StrictBool = False
    cleanup_enabled: StrictBool = True
    cleanup_startup_delay_seconds: float = Field(60.0, ge=0)
    cleanup_retry_minutes: float = Field(5.0, gt=0)
    container_cleanup_grace_minutes: float = Field(10.0, ge=0)
    cleanup_batch_size: WholeNumber = Field(1000, ge=1, le=100_000)
    cleanup_policy_file: YamlFile = None
    result_retention_days: int | None = Field(None, ge=0)
    cleanup_max_deletions: int | None = Field(None, ge=1)
    # The results table's budget: rows (50M) or bytes (20GB); over it, the oldest results of
    # the lowest priority go first (cleanup/rules.py, cleanup/quota_terms.py).
    cleanup_results_budget: ResultsBudgetText = None
    cleanup_container_concurrency: int = Field(8, ge=1, le=64)
    # PostgreSQL: walks of the bots table side by side in a purge (each its own connection).
    cleanup_db_concurrency: int = Field(2, ge=1, le=8)
    # Each purge batch written here (compressed JSON Lines, fsynced) before it commits.
    cleanup_archive_dir: ArchiveDir = None
    cleanup_archive_retention_days: float = Field(30.0, gt=0)

    # --- scheduling and resilience ------------------------------------------------------------
    cleanup_window: Window = None
    cleanup_timezone: TimeZone = "UTC"
    cleanup_adaptive: StrictBool = True
    cleanup_max_run_seconds: float = Field(3600.0, gt=0)
    cleanup_min_interval_minutes: float = Field(15.0, gt=0)
    cleanup_max_interval_hours: float = Field(24.0, gt=0)
    cleanup_breaker_threshold: int = Field(3, ge=1)
    cleanup_breaker_cooldown_seconds: float = Field(60.0, gt=0)
    cleanup_lock_timeout_ms: int = Field(5000, ge=0)
    cleanup_statement_timeout_ms: int = Field(60000, ge=0)

    # --- notifications (botfleet/notify/, docs/notifications.md) --------------------------------
    notify_webhook_urls: WebhookUrls = ""
    notify_webhook_secret: SecretStr | None = None  # whsec_ + base64 (Standard Webhooks)
    notify_before_purge_hours: float | None = Field(None, gt=0)

    # --- security -----------------------------------------------------------------------------
    auth_failure_limit: int = Field(20, ge=1)
    auth_failure_window_seconds: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _token_strength(self) -> Settings:
        if self.admin_token is None:
            return self
        token = self.admin_token.get_secret_value()
        if not token or any(ord(c) < 33 or ord(c) > 126 for c in token):
            raise _field_error("admin_token", "accepts printable ASCII without spaces")
        weak = len(token) < 32 or token in EXAMPLE_ADMIN_TOKENS
        if weak and not self.listens_on_loopback:
            raise _field_error(
                "admin_token",
                "must be at least 32 characters and not a documented example "
                "when HOST is not a loopback address",
            )
        return self

    @model_validator(mode="after")
    def _webhook_secret(self) -> Settings:
        """Receivers need a secret to verify what they get; a short one is refused off loopback,
        as ADMIN_TOKEN is."""
        secret = self.notify_webhook_secret
        if secret is None:
            if self.notify_url_list:
                raise _field_error(
                    "notify_webhook_secret", "is required when NOTIFY_WEBHOOK_URLS is set"
                )
            return self
        value = secret.get_secret_value()
        encoded = value.removeprefix("whsec_")
        if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", encoded):
            raise _field_error(
                "notify_webhook_secret", "accepts whsec_ followed by base64 (Standard Webhooks)"
            )
        if len(encoded) < 32 and not self.listens_on_loopback:
            raise _field_error(
                "notify_webhook_secret",
                "must have at least 32 base64 characters after whsec_ when HOST is not a "
                "loopback address",
            )
        return self

    # --- derived values -----------------------------------------------------------------------
    @property
    def notify_url_list(self) -> list[str]:
        return [u.strip() for u in self.notify_webhook_urls.split(",") if u.strip()]

    @property
    def listens_on_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def weak_admin_token(self) -> bool:
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        return len(token) < 32 or token in EXAMPLE_ADMIN_TOKENS

    @property
    def docker_host_list(self) -> list[str]:
        """Engine URLs; an empty entry means the local engine from the environment."""
        hosts = [h.strip() for h in self.docker_hosts.split(",") if h.strip()]
        return hosts or [""]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def async_database_url(self) -> str:
        url = self.database_url
        if url.startswith("postgresql://"):
            return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        return url

    @property
    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.database_url.split(":///", 1)[1])

    @property
    def window_bounds(self) -> tuple[time, time] | None:
        if not self.cleanup_window:
            return None
        start, end = self.cleanup_window.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)

    def with_admin_token(self) -> tuple[Settings, str | None]:
        """Return settings that hold a token, and the token if it had to be generated."""
        if self.admin_token is not None:
            return self, None
        token = secrets.token_urlsafe(32)
        return self.model_copy(update={"admin_token": SecretStr(token)}), token

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, keyed by variable name."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "********"
            elif name == "database_url":
                value = re.sub(r"://([^:/@]+):[^@]+@", r"://\1:********@", str(value))
            elif isinstance(value, Path):
                value = str(value)
            out[name.upper()] = value
        return out


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_error(field: str, message: str) -> _FieldError:
    return _FieldError(field, message)


class ConfigError(Exception):
    """Invalid configuration; ``str()`` is the one line to print."""


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; raise :class:`ConfigError` with a one-line message on bad input."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except _FieldError as exc:
        raise ConfigError(f"invalid {exc.field.upper()}: {exc}") from None


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _FieldError):
            name, message, value = inner.field.upper(), str(inner), None
        else:
            name = str(loc[0]).upper() if loc else "configuration"
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            value = err.get("input")
        secret = name in ("ADMIN_TOKEN", "METRICS_TOKEN", "NOTIFY_WEBHOOK_SECRET")
        shown = "" if secret or value is None or isinstance(value, dict) else f"={value!r}"
        parts.append(f"invalid {name}{shown}: {message}")
    return "; ".join(parts)
