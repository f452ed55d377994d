"""The web dashboard in headless Chromium: sign in, status, dry run, confirmed cleanup.

Screenshots go to test-artifacts/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from botfleet.config import Settings
from botfleet.store.models import Bot, CleanupRun, Result
from tests.conftest import ROOT, TEST_TOKEN, in_store
from tests.servers import free_port, live_server
from tests.web.cdp import Page

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def server(settings_factory: Callable[..., Settings]) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings = settings_factory(
        port=port, main_server_url=f"http://127.0.0.1:{port}", container_cleanup_enabled=False
    )
    with live_server(settings) as url:
        yield url, settings


def seed(settings: Settings) -> None:
    """Two expired bots with results, orphaned results, and a week of earlier runs."""

    async def add(session: Any) -> None:
        now = datetime.now(UTC)
        for i in range(2):
            bot = Bot(
                name=f"old-{i}",
                image="i",
                token_hash="h",
                status="deleted",
                deleted_at=now - timedelta(days=20 + i),
            )
            session.add(bot)
            await session.flush()
            session.add_all([Result(bot_id=bot.id, data={"n": j}) for j in range(4)])
        session.add_all([Result(bot_id=uuid.uuid4(), data={}) for _ in range(3)])
        history = [(40, 38), (55, 50), (30, 30), (70, 45), (64, 60), (25, 25)]
        for day, (found, deleted) in enumerate(history):
            at = now - timedelta(days=len(history) - day, hours=3)
            session.add(
                CleanupRun(
                    trigger="schedule",
                    actor="schedule",
                    dry_run=False,
                    status="succeeded",
                    started_at=at,
                    finished_at=at + timedelta(seconds=4),
                    report={
                        "status": "succeeded",
                        "dry_run": False,
                        "errors": [],
                        "resources": {
                            "bots": {
                                "found": found // 5,
                                "deleted": deleted // 5,
                                "bytes_reclaimed": 8192 * deleted,
                            },
                            "bot_results": {"found": found, "deleted": deleted},
                        },
                    },
                )
            )

    in_store(settings, add)


def bots_left(settings: Settings) -> int:
    async def count(session: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(Bot)) or 0)

    return int(in_store(settings, count))


def test_dashboard_sign_in_status_dry_run_and_confirmed_cleanup(
    server: tuple[str, Settings], page: Page, request: pytest.FixtureRequest
) -> None:
    url, settings = server
    seed(settings)
    backend = "sqlite" if settings.is_sqlite else "postgres"
    page.navigate(f"{url}/admin/dashboard")

    # Asked once for the token; a wrong one is refused with a clear message.
    page.wait_for("!document.getElementById('login').hidden")
    page.type_into("token", "not-the-token")
    page.click("login-button")
    page.wait_for("document.getElementById('login-error').innerText.includes('refused')")
    page.type_into("token", TEST_TOKEN)
    page.click("login-button")
    page.wait_for("!document.getElementById('app').hidden")
    page.wait_for(
        f"document.getElementById('status-list').innerText.includes({settings.botfleet_instance!r})"
    )
    assert page.evaluate("sessionStorage.getItem('botfleet.adminToken')") == TEST_TOKEN
    assert page.evaluate("localStorage.length") == 0
    status = page.text("status-list")
    assert "scheduler off" in status and "Next run" in status
    page.wait_for("document.querySelectorAll('#runs-table tbody tr').length === 6")
    page.wait_for("document.querySelectorAll('#trend-chart rect.bar').length === 6")
    page.wait_for("document.querySelectorAll('#recovered-chart rect.bar').length === 6")
    recovered = page.evaluate(
        "[...document.querySelectorAll('#recovered-chart rect.bar title')].map(t => t.textContent)"
    )
    assert recovered[0].endswith("311.3 kB (bots 311.3 kB)"), recovered  # 8192 * 38
    assert "orphaned_results" in page.text("orphans-table")

    # A dry run: its report appears, nothing is deleted.
    page.click("dry-run")
    page.wait_for("document.getElementById('report-title').innerText === 'Dry run report'")
    report = page.text("report-body")
    assert "dry run" in report and "orphaned_results" in report
    page.wait_for("document.querySelectorAll('#runs-table tbody tr').length === 7")
    assert bots_left(settings) == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / f"dashboard-dry-run-{backend}.png")

    # A real cleanup shows the plan, asks, and applies exactly that plan.
    page.click("cleanup")
    page.wait_for("!document.getElementById('confirm').hidden")
    confirm = page.text("confirm")
    assert "This plan deletes 13 resources" in confirm  # 2 bots, 8 of their results, 3 orphans
    plan_id = confirm.split("Apply plan ", 1)[1].split("?", 1)[0]
    assert bots_left(settings) == 2  # nothing deleted before the confirmation
    page.click("confirm-apply")
    page.wait_for("document.getElementById('report-title').innerText === 'Cleanup report'")
    page.wait_for(
        "document.getElementById('action-state').innerText.includes('13 resources deleted')"
    )
    assert plan_id in page.text("report-body")
    assert bots_left(settings) == 0
    if backend == "postgres":  # their heap tuples; SQLite frees no whole page for so few rows
        assert "Storage recovered:" in page.text("storage-recovered")
    page.wait_for("document.querySelectorAll('#recovered-chart rect.bar').length === 7")
    page.screenshot(ARTIFACTS / f"dashboard-cleanup-{backend}.png")

    # The token survives a reload of the tab, and signing out forgets it.
    page.send("Page.reload")
    page.wait_for("document.readyState === 'complete' && !document.getElementById('app').hidden")
    page.click("logout")
    page.wait_for("!document.getElementById('login').hidden")
    assert page.evaluate("sessionStorage.getItem('botfleet.adminToken')") is None
    assert page.problems() == []


def test_dashboard_is_served_with_a_strict_policy(server: tuple[str, Settings]) -> None:
    url, _settings = server
    page = httpx.get(f"{url}/admin/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/admin/dashboard/dashboard.js"' in page.text
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    js = httpx.get(f"{url}/admin/dashboard/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "innerHTML" not in js.text  # server data goes in as text only
    assert httpx.get(f"{url}/admin/dashboard/../config.py").status_code == 404
    assert httpx.get(f"{url}/admin/dashboard/nope.js").status_code == 404
