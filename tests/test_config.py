"""Settings: every bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from botfleet.config import ConfigError, load_settings
from tests.conftest import make_settings

BAD_VALUES = [
    ("BOT_RETENTION_DAYS", "-1"),
    ("BOT_RETENTION_DAYS", "1.5"),
    ("CLEANUP_DRY_RUN", "maybe"),
    ("CLEANUP_DRY_RUN", "yes"),
    ("CLEANUP_INTERVAL_HOURS", "0"),
    ("CLEANUP_INTERVAL_HOURS", "-2"),
    ("CONTAINER_CLEANUP_ENABLED", "sometimes"),
    ("DATABASE_URL", "mysql://root@localhost/db"),
    ("CLEANUP_BATCH_SIZE", "0"),
    ("CLEANUP_DB_CONCURRENCY", "0"),
    ("CLEANUP_DB_CONCURRENCY", "9"),
    ("CLEANUP_CONTAINER_CONCURRENCY", "0"),
    ("CLEANUP_CONTAINER_CONCURRENCY", "65"),
    ("CLEANUP_CONTAINER_CONCURRENCY", "many"),
    ("PORT", "70000"),
    ("CLEANUP_WINDOW", "25:00-03:00"),
    ("CLEANUP_TIMEZONE", "Mars/Olympus"),
    ("BOTFLEET_INSTANCE", "Has Spaces"),
    ("BOT_NETWORK", "bridge"),
    ("CLEANUP_ARCHIVE_DIR", "/etc/hostname"),  # a file, not a directory
    ("CLEANUP_ARCHIVE_RETENTION_DAYS", "0"),
    ("CLEANUP_ARCHIVE_RETENTION_DAYS", "forever"),
    ("NOTIFY_WEBHOOK_URLS", "ftp://127.0.0.1/hooks"),
    ("NOTIFY_WEBHOOK_SECRET", "whsec_not base64!"),
    ("NOTIFY_BEFORE_PURGE_HOURS", "-1"),
]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    env.update(extra)
    return env


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_bad_value_exits_with_one_line(variable: str, value: str, tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "serve"],
        env=_clean_env(
            **{variable: value, "DATABASE_URL": "sqlite:////nonexistent/x.db"}
            if variable != "DATABASE_URL"
            else {variable: value}
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert variable in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_booleans_accept_exactly_true_false_1_0(text: str, expected: bool) -> None:
    assert make_settings(cleanup_dry_run=text).cleanup_dry_run is expected


@pytest.mark.parametrize("text", ["yes", "on", "t", "", "2"])
def test_booleans_refuse_everything_else(text: str) -> None:
    with pytest.raises(ConfigError, match="CLEANUP_DRY_RUN"):
        load_settings(admin_token="x" * 40, cleanup_dry_run=text)


def test_retention_zero_is_allowed_and_fractional_interval_too() -> None:
    s = make_settings(bot_retention_days=0, cleanup_interval_hours="0.25")
    assert s.bot_retention_days == 0
    assert s.cleanup_interval_hours == 0.25


def test_database_url_picks_async_driver() -> None:
    assert make_settings(database_url="postgresql://u@h:5432/d").async_database_url == (
        "postgresql+asyncpg://u@h:5432/d"
    )
    assert make_settings(database_url="sqlite:///./data/x.db").async_database_url == (
        "sqlite+aiosqlite:///./data/x.db"
    )
    assert make_settings().database_url == "sqlite:///./data/botfleet.db"


def test_weak_token_refused_off_loopback_only() -> None:
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        load_settings(host="0.0.0.0", admin_token="admin-secret-token")
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        load_settings(host="0.0.0.0", admin_token="short-but-not-example")
    assert load_settings(host="127.0.0.1", admin_token="admin-secret-token").weak_admin_token
    assert not load_settings(host="0.0.0.0", admin_token="y" * 32).weak_admin_token


def test_missing_token_is_generated_and_secrets_are_masked() -> None:
    settings, generated = make_settings(admin_token=None).with_admin_token()
    assert generated and len(generated) >= 32
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == generated
    shown = settings.redacted()
    assert generated not in str(shown)
    assert shown["ADMIN_TOKEN"] == "********"
    masked = make_settings(database_url="postgresql://u:pw@h/d").redacted()["DATABASE_URL"]
    assert "pw" not in masked


def test_config_command_prints_masked_configuration() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "config"],
        env=_clean_env(ADMIN_TOKEN="a-very-secret-token-value-1234567890", BOT_RETENTION_DAYS="9"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"BOT_RETENTION_DAYS": 9' in proc.stdout
    assert "a-very-secret-token-value" not in proc.stdout + proc.stderr


def test_archive_dir_may_be_missing_or_unset(tmp_path: object) -> None:
    """Made by the first run that purges; an empty value means no archive."""
    assert load_settings(cleanup_archive_dir=f"{tmp_path}/new/archive").cleanup_archive_dir
    assert load_settings(cleanup_archive_dir="").cleanup_archive_dir is None
    assert load_settings().cleanup_archive_retention_days == 30


def test_a_short_webhook_secret_is_refused_off_loopback_only() -> None:
    short = "whsec_" + "A" * 24
    urls = "https://hooks.example.internal/botfleet"
    assert load_settings(notify_webhook_urls=urls, notify_webhook_secret=short)
    with pytest.raises(ConfigError, match="NOTIFY_WEBHOOK_SECRET: must have at least 32"):
        load_settings(
            host="0.0.0.0",
            admin_token="t" * 40,
            notify_webhook_urls=urls,
            notify_webhook_secret=short,
        )
    with pytest.raises(ConfigError, match="NOTIFY_WEBHOOK_SECRET: is required"):
        load_settings(notify_webhook_urls=urls)
