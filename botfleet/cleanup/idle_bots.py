"""The ``idle_bots`` stage: live bots that a rule soft-deletes for idling or failing.

The set-wise twin of :func:`~botfleet.cleanup.eligibility.idle_decision` (tests hold them equal
on both backends): first match wins becomes a ``CASE``; a rule without ``action: soft_delete``
is FALSE for its bots. Idle reads ``ix_results_bot_recent`` (has the bot posted since the
cutoff?), failing reads ``status`` and ``status_changed_at``.

Execution is the ordinary soft delete (safety rule 7): ``deleted_at`` set, the status kept as
the outcome, never a purge — restore works within retention, and the purge comes later by the
ordinary rules. The reconciler stops the container of a deleted bot, as after any delete.
Each batch's UPDATE re-states the condition, so a bot that posted or recovered since the
plan stays; one audit record per bot says why it went, and with NOTIFY_WEBHOOK_URLS one
``io.botfleet.bot.soft_deleted`` event per bot is written in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Uuid, bindparam, insert

from botfleet.cleanup.batches import Batch, BatchLoop, Tally
from botfleet.cleanup.eligibility import IdleDecision, LiveBot, idle_decision
from botfleet.cleanup.plan import SAMPLE_SIZE, SKIPPED_LIMIT, Selection
from botfleet.cleanup.policy import Policy, Rule
from botfleet.cleanup.predicates import Dialect, Fragment
from botfleet.cleanup.sql import Runner, bound_text, scalar
from botfleet.constants import EVENT_DELETED, KIND_IDLE_BOTS, STATUS_DELETED, STATUS_FAILED
from botfleet.notify.events import bot_soft_deleted
from botfleet.store.models import Bot, BotEvent, CleanupAudit, UTCDateTime

_COLUMNS = (
    "SELECT b.id, b.labels, b.status, b.created_at, b.status_changed_at,"
    " (SELECT max(r.created_at) FROM results r WHERE r.bot_id = b.id) AS last_result_at"
    " FROM bots b"
)


def _rule_condition(rule: Rule, now: datetime) -> Fragment:
    parts: list[str] = []
    binds: list[Any] = []
    if rule.idle_after_days is not None:
        name = f"ic{rule.number}"
        parts.append(
            f"(b.created_at < :{name} AND NOT EXISTS (SELECT 1 FROM results r"
            f" WHERE r.bot_id = b.id AND r.created_at >= :{name}))"
        )
        binds.append(bindparam(name, now - timedelta(days=rule.idle_after_days), UTCDateTime()))
    if rule.failing_after_days is not None:
        name = f"fc{rule.number}"
        parts.append(
            f"(b.status = '{STATUS_FAILED}' AND b.status_changed_at IS NOT NULL"
            f" AND b.status_changed_at < :{name})"
        )
        binds.append(bindparam(name, now - timedelta(days=rule.failing_after_days), UTCDateTime()))
    return Fragment("(" + " OR ".join(parts) + ")", binds)


def idle_condition(dialect: Dialect, policy: Policy, now: datetime) -> Fragment:
    """Live bots whose first matching rule finds them idle or failing (hold not applied)."""
    if not policy.idle_stage_enabled:
        return Fragment(dialect.false)
    sql, binds = ["CASE"], []
    for rule in policy.rules:
        cond = dialect.label_match("b", dict(rule.match), f"im{rule.number}")
        then = _rule_condition(rule, now) if rule.soft_deletes else Fragment(dialect.false)
        sql.append(f"WHEN {cond.sql} THEN {then.sql}")
        binds += cond.binds + then.binds
    sql.append(f"ELSE {dialect.false} END")
    return Fragment(f"b.deleted_at IS NULL AND ({' '.join(sql)})", binds)


async def live_bots(runner: Runner, where: Fragment, limit: int) -> list[LiveBot]:
    table = Bot.__table__.c
    stmt = bound_text(
        f"{_COLUMNS} WHERE {where.sql} ORDER BY b.id LIMIT :limit",
        [*where.binds, bindparam("limit", limit)],
    ).columns(
        id=Uuid(),
        labels=table.labels.type,
        created_at=UTCDateTime(),
        status_changed_at=UTCDateTime(),
        last_result_at=UTCDateTime(),
    )
    return [LiveBot.of_row(row) for row in (await runner.execute(stmt)).all()]


async def select_idle_bots(
    runner: Runner, dialect: Dialect, policy: Policy, now: datetime
) -> tuple[Selection, list[dict[str, str]]]:
    """The bots to soft-delete, and the sample's reasons; held ones are reported as skipped."""
    sel = Selection(KIND_IDLE_BOTS)
    cond = idle_condition(dialect, policy, now)
    held = dialect.held("b")
    sel.found = await scalar(
        runner, f"SELECT count(*) FROM bots b WHERE {cond.sql} AND NOT ({held})", cond.binds
    )
    reasons: list[dict[str, str]] = []
    if sel.found:
        eligible = Fragment(f"{cond.sql} AND NOT ({held})", cond.binds)
        for bot in await live_bots(runner, eligible, SAMPLE_SIZE):
            sel.sample.append(bot.id)
            reasons.append({"id": bot.id, "reason": idle_decision(bot, policy, now).reason})
    kept = Fragment(f"{cond.sql} AND ({held})", cond.binds)
    for bot in await live_bots(runner, kept, SKIPPED_LIMIT):
        sel.skip(bot.id, idle_decision(bot, policy, now).reason)
    return sel, reasons


@dataclass(frozen=True)
class IdleBotsStage:
    """The ``idle_bots`` stage of one run: soft deletes, batch by batch, in id order."""

    loop: BatchLoop

    async def soft_delete(self, tally: Tally, limit: int) -> None:
        await self.loop.run(KIND_IDLE_BOTS, tally, limit, self._step)

    async def _step(self, runner: Runner, size: int, cursor: Any, archive: str | None) -> Batch:
        """A soft delete: nothing leaves the store, so nothing is archived (``archive`` unused)."""
        stage = self.loop.stage
        dialect, policy, now = stage.run.dialect, stage.policy, stage.now
        cond = idle_condition(dialect, policy, now)
        eligible = f"{cond.sql} AND NOT ({dialect.held('b')})"
        after = bindparam("after", cursor or uuid.UUID(int=0), type_=Uuid())
        victims = await live_bots(
            runner, Fragment(f"{eligible} AND b.id > :after", [*cond.binds, after]), size
        )
        if not victims:
            return Batch(0, 0)
        at = stage.run.clock()
        ids = bindparam("ids", [uuid.UUID(v.id) for v in victims], type_=Uuid(), expanding=True)
        # The condition again: a bot that posted, recovered or was deleted since stays.
        stmt = bound_text(
            f"UPDATE bots SET deleted_at = :at, status_at_deletion = status,"
            f" status = '{STATUS_DELETED}', status_changed_at = :at, updated_at = :at"
            f" WHERE id IN :ids AND id IN (SELECT b.id FROM bots b WHERE {eligible})"
            " RETURNING id, name",
            [*cond.binds, ids, bindparam("at", at, UTCDateTime())],
        ).columns(id=Uuid())
        names = {str(row.id): str(row.name) for row in await runner.execute(stmt)}
        gone = [(bot, idle_decision(bot, policy, now)) for bot in victims if bot.id in names]
        if gone:
            await runner.execute(
                insert(CleanupAudit), [self._audit(bot, why, at) for bot, why in gone]
            )
            # The bot's own history (bot_history.py), as an API delete writes it.
            await runner.execute(
                insert(BotEvent),
                [
                    {
                        "bot_id": uuid.UUID(bot.id),
                        "at": at,
                        "event": EVENT_DELETED,
                        "outcome": bot.status,
                        "detail": f"{KIND_IDLE_BOTS}: {why.reason}",
                        "run_id": self.loop.stage.run_id,
                    }
                    for bot, why in gone
                ],
            )
            await self._notify(runner, [(bot, names[bot.id], why) for bot, why in gone], at)
        return Batch(len(victims), len(gone), cursor=uuid.UUID(victims[-1].id))

    async def _notify(
        self, runner: Runner, gone: list[tuple[LiveBot, str, IdleDecision]], at: datetime
    ) -> None:
        """One ``io.botfleet.bot.soft_deleted`` event per bot, in the batch's transaction: sent
        if and only if its soft delete committed. Per bot rather than per batch: a receiver
        acts on a bot (its ``restore`` link), and the batch is the cleanup's own business."""
        notifier = self.loop.stage.run.notifier
        if notifier is None:
            return
        events = [
            bot_soft_deleted(
                {"id": bot.id, "name": name, "labels": dict(bot.labels)},
                rule=why.rule or "",
                why=why.why or "",
                reason=why.reason,
                source=notifier.source,
                link=notifier.link(f"/bots/{bot.id}/restore"),
                time=at,
            )
            for bot, name, why in gone
        ]
        await notifier.enqueue(runner, events, at)

    def _audit(self, bot: LiveBot, why: IdleDecision, at: datetime) -> dict[str, Any]:
        stage = self.loop.stage
        return {
            "run_id": stage.run_id,
            "kind": KIND_IDLE_BOTS,
            "resource_id": bot.id,
            "reason": f"{KIND_IDLE_BOTS}: soft-deleted, {why.reason}",
            "actor": stage.actor,
            "resource_count": 1,
            "snapshot": {
                "labels": dict(bot.labels),
                "status": bot.status,
                "created_at": bot.created_at.isoformat(),
                "last_result_at": bot.last_result_at.isoformat() if bot.last_result_at else None,
            },
            "deleted_at": at,
        }
