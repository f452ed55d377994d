"""A run's archive (CLEANUP_ARCHIVE_DIR): opened before the first archived purge, sealed at the end.

No archive, no delete (design.md, safety rule 8): when the directory cannot be written, every
database stage fails before it deletes anything, with an error of dependency ``archive``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from botfleet.archive.upkeep import Tidied, tidy
from botfleet.archive.writer import ArchiveUnavailable, RunArchive
from botfleet.cleanup.context import RunContext
from botfleet.cleanup.report import FAILED, Findings
from botfleet.constants import ARCHIVED_KINDS, DEPENDENCY_ARCHIVE

log = logging.getLogger(__name__)


class RunArchiving:
    """One run's use of the archive; ``opened`` is None until :meth:`open` opens one."""

    def __init__(self, ctx: RunContext, run_id: uuid.UUID, actor: str) -> None:
        self.ctx = ctx
        self.run_id = run_id
        self.actor = actor
        self.opened: RunArchive | None = None
        self.tidied: Tidied | None = None

    async def open(self, found: Findings) -> bool:
        """With CLEANUP_ARCHIVE_DIR, open this run's archive before anything is deleted, then
        tidy what earlier runs left. False, with every database stage failed, when it cannot
        be written."""
        archive = self.ctx.archive
        if archive is None or not ARCHIVED_KINDS & set(found.stages):
            return True
        try:
            opened = await asyncio.to_thread(
                archive.open_run, self.run_id, self.actor, self.ctx.clock
            )
        except ArchiveUnavailable as exc:
            for kind in found.stages:
                if kind in ARCHIVED_KINDS:
                    found.outcomes[kind] = FAILED
            found.errors.append(
                {"stage": "archive", "message": str(exc), "dependency": DEPENDENCY_ARCHIVE}
            )
            return False
        self.opened = opened
        try:
            self.tidied = await tidy(
                archive, self.ctx.sessions, current=str(self.run_id), now=self.ctx.clock()
            )
        except Exception as exc:  # tidying is for later runs too: never a reason to stop
            log.warning("cleanup run %s: tidying the archive failed: %s", self.run_id, exc)
            found.errors.append({"stage": "archive", "message": f"tidying failed: {exc}"})
        return True

    def seal(self, status: str) -> dict[str, Any] | None:
        """The run's manifest written; what the report says of the archive (None: none)."""
        if self.opened is None:
            return None
        try:
            self.opened.seal(status=status, finished=self.ctx.clock())
        except OSError as exc:  # the files are durable; only the summary is missing
            log.warning("cleanup run %s: sealing the archive failed: %s", self.run_id, exc)
        summary = self.opened.summary()
        if self.tidied is not None:
            summary |= self.tidied.as_json()
        return summary
