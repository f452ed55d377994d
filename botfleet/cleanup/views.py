"""The cleanup's read-only views: status, orphans, run history, one bot explained, a simulation.

Mixed into :class:`~botfleet.cleanup.service.CleanupService`, so the API and the CLI ask the one
service; nothing here takes the lock, records a run or deletes anything.
"""

from __future__ import annotations

import uuid
from typing import Any

from botfleet.cleanup.context import RunContext
from botfleet.cleanup.explain import explain
from botfleet.cleanup.explain_facts import read_facts
from botfleet.cleanup.orphans import orphans_view
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.run_history import run_detail, runs_page, status_view
from botfleet.cleanup.simulate import simulate
from botfleet.config import Settings
from botfleet.pagination import Page, PageRequest


class CleanupViews:
    """What the service reads for its views (set by the service's constructor)."""

    settings: Settings
    policy: Policy
    ctx: RunContext

    async def status(self) -> dict[str, Any]:
        """Mode, retention, limits, the running run and the last report."""
        return await status_view(
            self.ctx.sessions,
            self.settings,
            policy_rules=len(self.policy.rules),
            engines=self.ctx.fleet.names,
        )

    async def orphans(self, *, limit: int = 100) -> dict[str, Any]:
        """What is orphaned now, per kind, with what protects the rest (reason and age)."""
        return await orphans_view(self.ctx, self.policy, limit=limit)

    async def explain(self, bot_id: uuid.UUID) -> dict[str, Any]:
        """Which rule applies to the bot, why, and when each of its resources is due
        (:class:`~botfleet.errors.BotNotFound` if there is no such row)."""
        facts = await read_facts(self.ctx.sessions, bot_id)
        return explain(facts, self.policy, self.ctx.clock())

    async def simulate(self, policy: Policy) -> dict[str, Any]:
        """The plan ``policy`` would make now, for the stages a policy decides; saved nowhere."""
        return await simulate(self.ctx, policy)

    async def runs(self, page: PageRequest, *, status: str | None = None) -> Page[dict[str, Any]]:
        """Run history, newest first."""
        async with self.ctx.sessions() as session:
            return await runs_page(session, page, status=status)

    async def get_run(self, run_id: uuid.UUID, audit: PageRequest) -> dict[str, Any]:
        """One run's report and plan, with a page of its audit records."""
        async with self.ctx.sessions() as session:
            return await run_detail(session, run_id, audit)
