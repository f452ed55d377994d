"""The fleet and bot pages in headless Chromium: counts and filters over seeded bots; a bot
created from the page runs; its page shows its newest result and a line it printed; deleting it
from the page soft-deletes it (its next post is a 410).

Screenshots go to test-artifacts/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from botfleet.config import Settings
from botfleet.store.models import Bot, Result
from tests.conftest import ROOT, TEST_TOKEN, in_store
from tests.servers import free_port, live_server
from tests.web.cdp import Page
from tests.web.test_dashboard_chromium import ARTIFACTS

SEEDED = {"running": 3, "exited": 2, "failed": 1, "deleted": 2}
SAMPLE_BOT = ROOT / "examples" / "sample-bot"


@pytest.fixture(scope="module")
def talking_image(docker_client: Any) -> Iterator[str]:
    """The sample bot as this checkout has it (it says what it posted), under a tag named after
    its content: other suites on the same engine build ``botfleet/sample-bot:latest`` from their
    own checkouts, and the last build wins that tag."""
    content = b"".join((SAMPLE_BOT / name).read_bytes() for name in ("Dockerfile", "bot.sh"))
    tag = f"botfleet/sample-bot:t{hashlib.sha256(content).hexdigest()[:12]}"
    subprocess.run([str(SAMPLE_BOT / "build.sh"), tag], check=True, capture_output=True)
    yield tag
    with contextlib.suppress(Exception):  # still in use by a run of the same checkout: kept
        docker_client.images.remove(tag)


@pytest.fixture
def server(settings_factory: Callable[..., Settings]) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings = settings_factory(
        port=port, main_server_url=f"http://127.0.0.1:{port}", container_cleanup_enabled=False
    )
    with live_server(settings) as url:
        yield url, settings


def seed(settings: Settings) -> dict[str, Any]:
    """Bots of each status, half of them labelled team=ops, one with recent results."""

    async def add(session: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        made: dict[str, Any] = {"ops": 0}
        i = 0
        for status, count in SEEDED.items():
            for _ in range(count):
                team = "ops" if i % 2 == 0 else "dev"
                made["ops"] += team == "ops"
                bot = Bot(
                    name=f"seeded-{status}-{i}",
                    image="botfleet/sample-bot:latest",
                    token_hash=uuid.uuid4().hex,
                    status=status,
                    labels={"team": team},
                    created_at=now - timedelta(hours=i + 1),
                    deleted_at=now - timedelta(minutes=5) if status == "deleted" else None,
                )
                session.add(bot)
                i += 1
                if i == 1:
                    await session.flush()
                    made["busy"] = bot.name
                    session.add_all(
                        Result(bot_id=bot.id, data={"n": n}, created_at=now - timedelta(minutes=n))
                        for n in range(5)
                    )
        return made

    result: dict[str, Any] = in_store(settings, add)
    return result


def sign_in(page: Page, url: str, fragment: str) -> None:
    page.navigate(f"{url}/admin/dashboard#{fragment}")
    page.wait_for("!document.getElementById('login').hidden")
    page.type_into("token", TEST_TOKEN)
    page.click("login-button")
    page.wait_for("!document.getElementById('app').hidden")


def rows(page: Page) -> list[str]:
    return list(
        page.evaluate(
            "[...document.querySelectorAll('#fleet-table tbody tr')].map(r => r.cells[0].innerText)"
        )
    )


def test_fleet_page_counts_and_filters(
    server: tuple[str, Settings],
    page: Page,
) -> None:
    url, settings = server
    made = seed(settings)
    backend = "sqlite" if settings.is_sqlite else "postgres"
    sign_in(page, url, "/fleet")
    page.wait_for("!document.getElementById('fleet-view').hidden")
    assert page.evaluate("document.getElementById('cleanup-view').hidden") is True
    live = sum(n for s, n in SEEDED.items() if s != "deleted")
    page.wait_for(f"document.querySelectorAll('#fleet-table tbody tr').length === {live}")
    counts = page.text("fleet-counts")
    for status, count in SEEDED.items():
        assert f"{status} {count}" in counts, counts
    assert "pending 0" in counts
    assert page.text("fleet-total") == f"1\u2013{live} of {live}"
    table = page.text("fleet-table")
    assert "Results 1 h" in table and "team=ops" in table
    busy = page.evaluate(
        "[...document.querySelectorAll('#fleet-table tbody tr')]"
        f".find(r => r.cells[0].innerText === {made['busy']!r}).innerText"
    )
    assert "\t5\t" in busy and "never" not in busy  # five results in the last hour
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / f"fleet-{backend}.png")

    # A label narrows the list and the counts.
    page.type_into("fleet-label", "team=ops")
    page.click("fleet-apply")
    page.wait_for(
        "[...document.querySelectorAll('#fleet-table tbody tr')].length < "
        f"{live} && document.getElementById('fleet-counts').innerText.includes('running 2')"
    )
    names = rows(page)
    assert 0 < len(names) < live
    counted = json.loads(
        httpx.get(
            f"{url}/fleet",
            params={"label": "team=ops"},
            headers={"Authorization": f"Bearer {TEST_TOKEN}"},
        ).text
    )
    assert sorted(names) == sorted(b["name"] for b in counted["items"])
    assert sum(counted["counts"].values()) == made["ops"]

    # A status chip selects that status (deleted bots are listed under "deleted").
    page.evaluate("document.querySelector('#fleet-counts [data-status=deleted]').click()")
    page.wait_for(
        "[...document.querySelectorAll('#fleet-table tbody tr')]"
        ".every(r => r.innerText.includes('deleted'))"
    )
    # A name search, and an error shown as the API gives it.
    page.evaluate("document.getElementById('fleet-label').value = ''")
    page.evaluate("document.getElementById('fleet-status').value = ''")
    page.type_into("fleet-q", "EXITED")
    page.click("fleet-apply")
    page.wait_for(
        f"document.querySelectorAll('#fleet-table tbody tr').length === {SEEDED['exited']}"
    )
    page.evaluate("document.getElementById('fleet-q').value = ''")
    page.type_into("fleet-label", "no-equals-sign")
    page.click("fleet-apply")
    page.wait_for("document.getElementById('fleet-error').innerText.startsWith('HTTP 422: label')")
    assert page.problems() == [] or all("422" in p for p in page.problems())


@pytest.mark.docker
def test_create_from_the_page_then_bot_page_then_delete(
    server: tuple[str, Settings],
    page: Page,
    talking_image: str,
    docker_client: Any,
    cleanup_containers: None,
) -> None:
    url, settings = server
    backend = "sqlite" if settings.is_sqlite else "postgres"
    sign_in(page, url, "/fleet")
    page.wait_for("!document.getElementById('fleet-view').hidden")
    page.type_into("create-name", "from-the-page")
    page.type_into("create-image", talking_image)
    page.type_into("create-env", "RESULT_INTERVAL_SECONDS=1")
    page.type_into("create-labels", "team=web")
    page.click("create-button")
    page.wait_for("!document.getElementById('create-confirm').hidden")
    assert "from-the-page" in page.text("create-confirm-text")
    page.click("create-apply")
    page.wait_for("document.getElementById('created-token') !== null", timeout=60)
    token = page.text("created-token")
    bot_id = page.evaluate("document.getElementById('created-link').hash.split('/')[2]")
    container = docker_client.containers.get(
        httpx.get(f"{url}/bots/{bot_id}", headers={"Authorization": f"Bearer {TEST_TOKEN}"}).json()[
            "container_id"
        ]
    )
    assert container.status == "running"

    # Its page: fields, the newest result, a line the bot printed, its history.
    page.click("created-link")
    page.wait_for("!document.getElementById('bot-view').hidden")
    page.wait_for(f"document.getElementById('bot-fields').innerText.includes({bot_id!r})")

    def newest_seq() -> int:
        page.click("bot-refresh")
        text = page.text("bot-results")
        return 0 if '"seq"' not in text else int(text.split('"seq": ')[1].split(",")[0])

    from tests.support.wait import wait_until

    seq = wait_until(lambda: newest_seq() >= 2 and newest_seq(), timeout=30, message="results")
    assert seq >= 2
    page.wait_for(
        "document.getElementById('bot-logs').innerText.includes('posted result')", timeout=30
    )
    assert "created" in page.text("bot-history")
    page.screenshot(ARTIFACTS / f"bot-page-{backend}.png")

    # Delete from the page, confirmed: soft-deleted, and its next post is a 410.
    page.click("bot-delete")
    page.wait_for("!document.getElementById('bot-confirm').hidden")
    assert "from-the-page" in page.text("bot-confirm-text")
    page.click("bot-confirm-apply")
    page.wait_for("document.getElementById('bot-state').innerText.startsWith('Deleted at')")
    page.wait_for("document.getElementById('bot-history').innerText.includes('deleted')")
    posted = httpx.post(
        f"{url}/bots/{bot_id}/results",
        headers={"Authorization": f"Bearer {token}"},
        json={"data": {"late": True}},
    )
    assert posted.status_code == 410, posted.text
    assert not page.visible("bot-delete") and page.visible("bot-restore")
    page.screenshot(ARTIFACTS / f"bot-deleted-{backend}.png")

    # Restore it from the page, confirmed: live again, its container running again.
    page.click("bot-restore")
    page.wait_for("!document.getElementById('bot-confirm').hidden")
    page.click("bot-confirm-apply")
    page.wait_for("document.getElementById('bot-state').innerText.startsWith('Restored')")
    page.wait_for("!document.getElementById('bot-delete').hidden")  # live: delete offered again
    container.reload()
    assert container.status == "running"
    assert page.problems() == []
