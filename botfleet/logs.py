"""Logging configured once: readable text by default, JSON lines with LOG_FORMAT=json.

Secrets are never passed to a logger. As a second line of defence every line is scrubbed of the
secrets registered here (admin and metrics tokens, the database password) and of anything shaped
like a credential (``Bearer …``, ``token=…``, ``"BOT_TOKEN": "…"``): bot tokens are hashed on
arrival and never held, so only their shape can give them away.

:func:`log_context` attaches fields such as ``run_id`` to every record logged inside it (and in
tasks started inside it). :func:`track_cleanup_runs` does the same for the cleanup service: every
``botfleet.cleanup.*`` record logged while a run is in progress carries that run's id, without
threading it through every call.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from botfleet.config import Settings

MASK = "********"
_SECRETS: set[str] = set()
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
_CONTEXT: ContextVar[tuple[tuple[str, Any], ...]] = ContextVar("botfleet_log_context", default=())
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_CREDENTIAL = re.compile(
    r"(?i)\b([A-Z0-9_]*(?:token|secret|password|passwd)[A-Z0-9_]*[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\*{8})([^\s\"',;&}]{4,})"
)


def register_secret(value: str) -> None:
    if value:
        _SECRETS.add(value)


def register_settings_secrets(settings: Settings) -> None:
    """Scrub the configured secrets from every line this process logs."""
    for secret in (settings.admin_token, settings.metrics_token, settings.notify_webhook_secret):
        if secret is not None:
            register_secret(secret.get_secret_value())
    match = re.search(r"://[^:/@]+:([^@]+)@", settings.database_url)
    if match:
        register_secret(match[1])


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``run_id``) to every record logged inside the block."""
    token = _CONTEXT.set(tuple({**dict(_CONTEXT.get()), **fields}.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _BEARER.sub(lambda m: m[1] + MASK, text)
    return _CREDENTIAL.sub(lambda m: m[1] + MASK, text)


class RunSource(Protocol):
    current_run_id: str | None


# At most one cleanup runs at a time (safety rule 5), so "the run in progress" is process-wide.
_RUN_SOURCES: weakref.WeakSet[Any] = weakref.WeakSet()
RUN_LOGGERS = "botfleet.cleanup"


def track_cleanup_runs(source: RunSource) -> None:
    """Tag every ``botfleet.cleanup.*`` record with the run ``source`` has in progress."""
    _RUN_SOURCES.add(source)


def _current_run_id() -> str | None:
    for source in list(_RUN_SOURCES):
        run_id = getattr(source, "current_run_id", None)
        if run_id:
            return str(run_id)
    return None


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "run_id") and record.name.startswith(RUN_LOGGERS):
            run_id = _current_run_id()
            if run_id is not None:
                record.run_id = run_id
        return True


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Render once and scrub, so that secrets in args never reach another handler either.
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(out, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        )
        line = super().format(record)
        return scrub(f"{line} {extras}" if extras else line)


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.addFilter(_ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Per-call chatter from client libraries, even at DEBUG. aiosqlite's comes from its worker
    # thread, which may still be logging after the connection's close has returned.
    for name in ("docker", "urllib3", "aiosqlite"):
        logging.getLogger(name).setLevel(logging.WARNING)
