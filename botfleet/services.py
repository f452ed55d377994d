"""Everything a request handler or a background task may need, built once per app, in order, and
passed in — never global.

:func:`build_services` builds the store, the engines, the metrics, the cleanup service (the
metrics observe it), the scheduler, then the background components in the order they start; the
app's lifespan stops them in reverse, so the scheduler (last) stops first and a run in progress
ends after its batch before anything it needs goes away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.archive.writer import archive_for
from botfleet.auth_failures import AuthFailureLimiter
from botfleet.background_lease import LeaderOnly, Lease
from botfleet.cleanup.lock import lock_for
from botfleet.cleanup.scheduler import Scheduler
from botfleet.cleanup.service import CleanupService
from botfleet.cleanup.timing import governor_for
from botfleet.config import Settings
from botfleet.constants import NOTIFY_LOCK_KEY
from botfleet.logs import register_settings_secrets, track_cleanup_runs
from botfleet.metrics import Metrics
from botfleet.notify.outbox import Notifier, notifier_for
from botfleet.reconcile import Reconciler
from botfleet.result_writer import ResultWriter
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import utcnow
from botfleet.store.session import SessionFactory, create_engine, create_session_factory

if TYPE_CHECKING:
    from botfleet.notify.sender import Sender


class Component(Protocol):
    """Background work owned by the app (reconciler, scheduler): started and stopped with it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: AsyncEngine
    sessions: SessionFactory
    fleet: Fleet
    registry: CollectorRegistry
    metrics: Metrics
    cleanup: CleanupService
    scheduler: Scheduler
    # Failed admin-token attempts, and bot-token ones: a budget each, so that a wrong admin
    # token in a script on a bot host cannot stop that host's bots from posting results.
    notifier: Notifier | None  # NOTIFY_WEBHOOK_URLS, or None
    sender: Sender | None
    auth_limiter: AuthFailureLimiter
    bot_auth_limiter: AuthFailureLimiter
    # The ingest's fast lane (PostgreSQL only; on SQLite every post takes the full route).
    result_writer: ResultWriter | None
    components: tuple[Component, ...]  # started in this order, stopped in reverse


def build_services(settings: Settings, *, background_lease: Path | None = None) -> Services:
    """``background_lease``: with several workers, the file whose lock elects the one that runs
    the reconciler and the scheduler (``background_lease.LeaderOnly``); without it, this
    process runs them."""
    db = create_engine(settings)
    sessions = create_session_factory(db)
    fleet = Fleet.from_settings(settings)
    registry = CollectorRegistry(auto_describe=True)
    metrics = Metrics(registry, settings=settings, sessions=sessions, fleet=fleet)
    # Built here, so a bad CLEANUP_POLICY_FILE stops the app before it serves anything.
    notifier = notifier_for(settings)
    cleanup = CleanupService(
        settings=settings,
        db=db,
        fleet=fleet,
        observers=[metrics.observe],
        governor=governor_for(settings),
        archive=archive_for(settings),
        notifier=notifier,
    )
    # Always built (its status explains "off"); started only with CLEANUP_ENABLED.
    scheduler = Scheduler(settings=settings, service=cleanup, engines=fleet.names)
    metrics.watch(scheduler.status)
    # Logs carry the run id of every cleanup action and never a configured secret.
    track_cleanup_runs(cleanup)
    register_settings_secrets(settings)
    reconciler = Reconciler(sessions=sessions, fleet=fleet, settings=settings)
    writer = None if settings.is_sqlite else ResultWriter(settings.database_url)
    # Each worker keeps its own metrics snapshot (it answers its own /metrics) and its pool;
    # the loops that act on the fleet run once per host (one worker) and per replica.
    components: list[Component] = [metrics.refresher]
    if writer is not None:
        components.append(writer)
    background: list[Component] = [reconciler]
    sender = None
    if notifier is not None:
        # Imported here: httpx (and the command-line extras its import pulls in) is for a
        # server that sends webhooks, not for every one.
        from botfleet.notify.sender import Sender

        # Every replica runs one (in one of its workers); the one holding the sender's lock
        # delivers.
        sender = Sender(
            sessions=sessions,
            notifier=notifier,
            lock=lock_for(settings, key=NOTIFY_LOCK_KEY, name="notify"),
            observer=metrics.notify,
            clock=utcnow,
        )
        cleanup.observers.append(lambda _report: sender.wake())
        background.append(sender)
    if settings.cleanup_enabled:
        background.append(scheduler)
    if background_lease is None:
        components.extend(background)
    else:
        components.append(LeaderOnly(Lease(background_lease), background))
    return Services(
        settings=settings,
        db=db,
        sessions=sessions,
        fleet=fleet,
        registry=registry,
        metrics=metrics,
        cleanup=cleanup,
        scheduler=scheduler,
        notifier=notifier,
        sender=sender,
        auth_limiter=_limiter(settings),
        bot_auth_limiter=_limiter(settings),
        result_writer=writer,
        components=tuple(components),
    )


def _limiter(settings: Settings) -> AuthFailureLimiter:
    return AuthFailureLimiter(
        limit=settings.auth_failure_limit, window=settings.auth_failure_window_seconds
    )
