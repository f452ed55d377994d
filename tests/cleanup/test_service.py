"""The service: what its observers see, and what it refuses before writing anything."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from botfleet.config import Settings
from tests.support.cleanup import make_service
from tests.support.store import Store, store

__all__ = ["store"]


async def test_observers_see_the_report_and_cannot_fail_the_run(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[dict[str, Any]] = []

    def broken(report: dict[str, Any]) -> None:
        raise RuntimeError("metrics bug")

    def collector(report: dict[str, Any]) -> None:
        seen.append(report)

    service = make_service(settings, store, observers=[broken, collector])
    with caplog.at_level(logging.INFO, logger="botfleet.cleanup.service"):
        report = await service.run(trigger="manual", actor="api:abc@127.0.0.1", dry_run=True)
    assert report["status"] == "succeeded"
    assert seen == [report]
    lines = [r for r in caplog.records if r.getMessage().startswith("cleanup run ")]
    assert len(lines) == 1
    line = lines[0].getMessage()
    assert report["run_id"] in line and "succeeded (dry run)" in line and "\n" not in line
    assert any("observer" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


async def test_trigger_is_checked(settings: Settings, store: Store) -> None:
    from botfleet.errors import InvalidInput

    with pytest.raises(InvalidInput, match="trigger"):
        await make_service(settings, store).run(trigger="cron", actor="x", dry_run=True)
    assert (await store.counts())["cleanup_runs"] == 0  # refused before anything was written
