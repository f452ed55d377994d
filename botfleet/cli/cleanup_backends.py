"""Where ``botfleet cleanup`` does its work: in this process (:class:`Local`, the same code path
as the server's, against the environment's database and engines) or on a server through its
admin API (:class:`Remote`, ``--server``). Both answer the same shapes."""

from __future__ import annotations

import asyncio
import getpass
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from botfleet.cli.common import fail, settings_or_exit
from botfleet.config import Settings
from botfleet.constants import TRIGGER_CLI
from botfleet.errors import InvalidInput
from botfleet.pagination import PageRequest

# Exit code of a command that ran nothing (declined, another run in progress, bad input).
EXIT_NOT_RUN = 3
T = TypeVar("T")


class Local:
    """The cleanup service in this process: the same code path as the server's."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.actor = f"cli:{_user()}"

    def _call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async def go() -> T:
            from botfleet.cleanup.service import CleanupService
            from botfleet.runtime.fleet import Fleet
            from botfleet.store.session import create_engine

            db = create_engine(self.settings)
            fleet = Fleet.from_settings(self.settings)
            try:
                service = CleanupService(settings=self.settings, db=db, fleet=fleet)
                return await fn(service)
            finally:
                await fleet.close()
                await db.dispose()

        return asyncio.run(go())

    def run(
        self,
        *,
        dry_run: bool,
        only: str | None,
        plan_id: str | None,
        progress: Callable[[str, int, int], None] | None,
    ) -> dict[str, Any]:
        return self._call(
            lambda s: s.run(
                trigger=TRIGGER_CLI,
                actor=self.actor,
                dry_run=dry_run,
                only=only,
                plan_id=plan_id,
                progress=progress,
            )
        )

    def status(self) -> dict[str, Any]:
        return self._call(lambda s: s.status())

    def orphans(self, limit: int) -> dict[str, Any]:
        return self._call(lambda s: s.orphans(limit=limit))

    def runs(self, limit: int, cursor: str | None, status: str | None) -> dict[str, Any]:
        async def page(service: Any) -> dict[str, Any]:
            result = await service.runs(PageRequest(limit=limit, cursor=cursor), status=status)
            return {"items": result.items, "total": result.total, "next_cursor": result.next_cursor}

        return self._call(page)

    def show(self, run_id: str, audit_limit: int) -> dict[str, Any]:
        try:
            key = uuid.UUID(run_id)
        except ValueError:
            raise InvalidInput("run_id", f"accepts a run id (UUID); got {run_id!r}") from None
        return self._call(lambda s: s.get_run(key, PageRequest(limit=audit_limit)))


class Remote:
    """The same operations through the server's admin API."""

    def __init__(self, settings: Settings, url: str | None) -> None:
        from botfleet.cli.client import ServerClient

        # A run answers when it is done: allow as long as a run may take.
        self.client = ServerClient.from_settings(
            settings, url=url, timeout=settings.cleanup_max_run_seconds + 60
        )

    def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.client.request(method, path, params=params)

    def run(
        self,
        *,
        dry_run: bool,
        only: str | None,
        plan_id: str | None,
        progress: Callable[[str, int, int], None] | None,
    ) -> dict[str, Any]:
        params = {"dry_run": str(dry_run).lower(), "only": only, "plan_id": plan_id}
        result: dict[str, Any] = self.call("POST", "/admin/cleanup", params)
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/admin/cleanup/status")
        return result

    def orphans(self, limit: int) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/admin/cleanup/orphans", {"limit": limit})
        return result

    def runs(self, limit: int, cursor: str | None, status: str | None) -> dict[str, Any]:
        params = {"limit": limit, "cursor": cursor, "status": status}
        result: dict[str, Any] = self.call("GET", "/admin/cleanup/runs", params)
        return result

    def show(self, run_id: str, audit_limit: int) -> dict[str, Any]:
        params = {"audit_limit": audit_limit}
        result: dict[str, Any] = self.call("GET", f"/admin/cleanup/runs/{run_id}", params)
        return result


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def backend_for(server: bool, url: str | None) -> Local | Remote:
    settings = settings_or_exit()
    if not server:
        return Local(settings)
    from botfleet.cli.client import ClientError

    try:
        return Remote(settings, url)
    except ClientError as exc:
        fail(str(exc), EXIT_NOT_RUN)
