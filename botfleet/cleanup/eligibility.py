"""Pure eligibility decisions: may this bot, result or container go now, and if not, why not.

Each takes ``now`` (timezone-aware UTC) and returns a :class:`Decision` whose ``reason`` ends up in
reports, the orphans view and audit records. The SQL in :mod:`botfleet.cleanup.predicates` is the
set-wise form of :func:`bot_purge_decision` and :func:`result_decision`; tests hold the two equal.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botfleet.cleanup.policy import Policy, is_held
from botfleet.constants import LABEL_BOT_ID, LABEL_HOLD, REMOVABLE_STATES, STATUS_FAILED
from botfleet.runtime.base import ContainerInfo


@dataclass(frozen=True)
class Decision:
    eligible: bool
    reason: str
    # False when nothing is amiss (a live bot's own container): such items are not "skipped".
    orphaned: bool = True
    age: timedelta | None = None


@dataclass(frozen=True)
class BotRecord:
    """The columns of a bot row that eligibility depends on."""

    id: str
    deleted_at: datetime | None
    labels: Mapping[str, Any] = field(default_factory=dict)
    outcome: str | None = None  # its status when it was soft-deleted (retention by outcome)

    @classmethod
    def of_row(cls, row: Any) -> BotRecord:
        """From a row with ``id``, ``deleted_at``, ``labels`` and, if the query read it,
        ``status_at_deletion``."""
        outcome = getattr(row, "status_at_deletion", None)
        return cls(str(row.id), row.deleted_at, labels_of(row.labels), outcome)

    @property
    def live(self) -> bool:
        return self.deleted_at is None


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f}d"


def _short(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return _days(delta)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.1f}m"
    return f"{delta.total_seconds():.1f}s"


def _check_now(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")


def bot_purge_decision(bot: BotRecord, policy: Policy, now: datetime) -> Decision:
    """Safety rule 1 first: a bot with ``deleted_at`` NULL is never purged."""
    _check_now(now)
    if bot.deleted_at is None:
        return Decision(False, "bot is live", orphaned=False)
    age = now - bot.deleted_at
    if is_held(bot.labels):
        return Decision(False, f"legal hold ({LABEL_HOLD}=true)", age=age)
    retention = policy.bot_retention(bot.labels, bot.outcome)
    if bot.deleted_at > now:
        return Decision(False, "deleted_at is in the future (clock skew?)", age=age)
    cutoff = retention.cutoff(now)
    if cutoff is None:
        return Decision(False, f"kept forever by {retention.source}", age=age)
    if bot.deleted_at >= cutoff:
        return Decision(
            False, f"within retention ({retention.describe()}, deleted {_days(age)} ago)", age=age
        )
    return Decision(True, f"expired: {retention.describe()}, deleted {_days(age)} ago", age=age)


def result_decision(
    created_at: datetime, bot: BotRecord | None, policy: Policy, now: datetime
) -> Decision:
    """Result retention for live bots (the ``results`` stage); other results follow their bot."""
    _check_now(now)
    age = now - created_at
    if bot is None:
        return Decision(False, "orphaned result (the orphaned_results stage)", age=age)
    if not bot.live:
        return Decision(False, "result of a deleted bot (purged with it)", age=age)
    if is_held(bot.labels):
        return Decision(False, f"legal hold ({LABEL_HOLD}=true)", orphaned=False, age=age)
    retention = policy.result_retention(bot.labels)
    cutoff = retention.cutoff(now)
    if cutoff is None or created_at >= cutoff:
        return Decision(False, f"within retention ({retention.describe()})", False, age)
    return Decision(True, f"expired: {retention.describe()}, {_days(age)} old", age=age)


def container_age(container: ContainerInfo, now: datetime) -> timedelta | None:
    """Exited or dead: since it stopped. Never started: since it was created."""
    if container.state in ("exited", "dead"):
        since = container.finished_at or container.created_at
    elif container.state == "created":
        since = container.created_at
    else:
        since = container.started_at or container.created_at
    return None if since is None else now - since


def container_decision(
    container: ContainerInfo,
    bot: BotRecord | None,
    *,
    instance: str,
    grace: timedelta,
    now: datetime,
) -> Decision:
    """Safety rules 2 and 6: ours, not running, older than the grace period, and no live bot
    owns it; never a swarm service's task alone. For a service, its state and times are its
    tasks' (:mod:`botfleet.runtime.swarm_specs`).

    ``bot`` is the row named by the container's bot-id label, or None if there is no such row.
    """
    _check_now(now)
    age = container_age(container, now)
    if not container.belongs_to(instance):
        return Decision(False, f"not labelled for instance {instance!r}", False, age)
    if container.swarm_task:
        # Its service goes (the services stage), and swarm's task history with it.
        return Decision(False, "a swarm service's task: its service is what goes", False, age)
    if bot is not None and str(bot.id) != container.labels.get(LABEL_BOT_ID):
        return Decision(False, "bot-id label does not match the bot checked", False, age)
    if bot is not None and bot.live:
        return Decision(False, f"bot {bot.id} is live", orphaned=False, age=age)
    if container.state not in REMOVABLE_STATES:
        return Decision(False, f"container is {container.state}", age=age)
    if age is None:
        return Decision(False, "age unknown (no timestamps)", age=age)
    if age < grace:
        return Decision(
            False, f"younger than the grace period ({_short(age)} < {_short(grace)})", age=age
        )
    owner = "no bot row" if bot is None else f"bot {bot.id} is deleted"
    return Decision(True, f"{owner}; {container.state} for {_short(age)}", age=age)


def bot_uuid(label: str | None) -> uuid.UUID | None:
    """The bot row id a container's bot-id label names; a label that is no UUID names none."""
    if not label:
        return None
    try:
        return uuid.UUID(label)
    except (ValueError, TypeError):
        return None


def labels_of(raw: Any) -> Mapping[str, Any]:
    """A bot's labels as stored (JSON object); anything else counts as no labels."""
    return raw if isinstance(raw, Mapping) else {}


@dataclass(frozen=True)
class LiveBot:
    """What the idle and failing rules read of a live bot."""

    id: str
    labels: Mapping[str, Any]
    status: str
    created_at: datetime
    status_changed_at: datetime | None
    last_result_at: datetime | None

    @classmethod
    def of_row(cls, row: Any) -> LiveBot:
        return cls(
            str(row.id),
            labels_of(row.labels),
            str(row.status),
            row.created_at,
            row.status_changed_at,
            row.last_result_at,
        )


@dataclass(frozen=True)
class IdleDecision(Decision):
    """An idle or failing verdict, with what the bot's ``soft_deleted`` event tells
    receivers: ``why`` (``idle`` or ``failing``) and the rule's terms
    (``rule 2 (name): idle_after_days=10``)."""

    why: str | None = None
    rule: str | None = None


def idle_decision(bot: LiveBot, policy: Policy, now: datetime) -> IdleDecision:
    """Safety rule 7: a policy may soft-delete a live bot that has failed for its rule's
    ``failing_after_days``, or posted no result (since creation) for its ``idle_after_days``;
    never one on hold. The first matching rule decides, as for every other rule."""
    _check_now(now)
    rule = policy.rule_for(bot.labels)
    if rule is None or not rule.soft_deletes:
        return IdleDecision(False, "no idle or failing rule applies", orphaned=False)
    if is_held(bot.labels):
        return IdleDecision(False, f"legal hold ({LABEL_HOLD}=true)", orphaned=False)
    if rule.failing_after_days is not None and bot.status == STATUS_FAILED:
        since = bot.status_changed_at
        if since is not None and since < now - timedelta(days=rule.failing_after_days):
            terms = f"{rule.label}: failing_after_days={rule.failing_after_days}"
            return IdleDecision(
                True,
                f"failing since {since.isoformat()} ({terms})",
                age=now - since,
                why="failing",
                rule=terms,
            )
    if rule.idle_after_days is not None:
        cutoff = now - timedelta(days=rule.idle_after_days)
        last = bot.last_result_at
        if bot.created_at < cutoff and (last is None or last < cutoff):
            what = f"last result at {last.isoformat()}" if last else "no result since creation"
            terms = f"{rule.label}: idle_after_days={rule.idle_after_days}"
            return IdleDecision(
                True,
                f"idle: {what} ({terms})",
                age=now - (last or bot.created_at),
                why="idle",
                rule=terms,
            )
    return IdleDecision(False, f"active ({rule.label})", orphaned=False)
