"""Logs: JSON lines or text, run ids from log_context, and never a token."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from botfleet.logs import (
    configure_logging,
    log_context,
    register_secret,
    register_settings_secrets,
    scrub,
)
from botfleet.store.models import Bot
from tests.conftest import TEST_TOKEN, make_settings, started_app


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_json_lines_carry_the_run_id_of_the_context(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")
    log = logging.getLogger("botfleet.cleanup.test")
    with log_context(run_id="run-1"):
        log.info("deleted %d bots", 3, extra={"kind": "bots"})
        with log_context(stage="containers"):
            log.info("removed container")
    log.info("outside")
    lines = json_lines(capsys.readouterr().err)
    assert lines[0]["msg"] == "deleted 3 bots"
    assert lines[0]["run_id"] == "run-1" and lines[0]["kind"] == "bots"
    assert lines[1]["run_id"] == "run-1" and lines[1]["stage"] == "containers"
    assert "run_id" not in lines[2]
    assert lines[0]["level"] == "info" and str(lines[0]["ts"]).endswith("+00:00")


async def test_tasks_started_in_a_context_keep_its_run_id(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")

    async def stage() -> None:
        await asyncio.sleep(0)
        logging.getLogger("botfleet.cleanup.test").info("in a task")

    with log_context(run_id="run-2"):
        task = asyncio.create_task(stage())
    await task
    assert json_lines(capsys.readouterr().err)[0]["run_id"] == "run-2"


def test_text_format_is_readable_with_extras(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("text", "INFO")
    with log_context(run_id="run-3"):
        logging.getLogger("botfleet.x").warning("breaker open")
    line = capsys.readouterr().err.strip()
    assert " WARNING botfleet.x: breaker open" in line
    assert line.endswith("run_id=run-3")


def test_tokens_never_reach_the_log(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    admin = "admin-" + "A" * 40
    metrics = "metrics-" + "B" * 40
    settings = make_settings(
        admin_token=admin,
        metrics_token=metrics,
        database_url="postgresql://botfleet:pg-" + "C" * 20 + "@127.0.0.1:5432/botfleet",
    )
    register_settings_secrets(settings)
    configure_logging("json", "INFO")
    log = logging.getLogger("botfleet.test")
    log.info("token %s", admin)
    log.info("scrape with %s", metrics, extra={"headers": {"authorization": f"Bearer {metrics}"}})
    log.info("bot env", extra={"env": {"BOT_TOKEN": "bot-secret-value-123456"}})
    log.info("url %s", "http://x/?token=query-secret-99&x=1")
    log.info("connect to %s", settings.database_url)
    try:
        raise RuntimeError(f"failed with Authorization: Bearer {admin}")
    except RuntimeError:
        log.exception("boom")
    out = capsys.readouterr().err
    for secret in (admin, metrics, "bot-secret-value-123456", "query-secret-99", "pg-" + "C" * 20):
        assert secret not in out
    assert out.count("********") >= 6
    assert len(json_lines(out)) == 6


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer ********"),
        ('{"BOT_TOKEN": "s3cr3t-value"}', '{"BOT_TOKEN": "********"}'),
        ("METRICS_TOKEN=abcdef123", "METRICS_TOKEN=********"),
        ("missing or invalid bearer token", "missing or invalid bearer token"),
        ("deleted 5 bots in run 1234", "deleted 5 bots in run 1234"),
        ('{"ADMIN_TOKEN": "********"}', '{"ADMIN_TOKEN": "********"}'),
    ],
)
def test_scrub_masks_credential_shapes(line: str, expected: str) -> None:
    assert scrub(line) == expected


def test_registered_secret_is_masked_anywhere() -> None:
    register_secret("zz-registered-secret-zz")
    assert scrub("x zz-registered-secret-zz y") == "x ******** y"


def test_debug_level_leaves_out_client_libraries_per_call_chatter(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "DEBUG")
    for name in ("aiosqlite", "docker", "urllib3"):
        logging.getLogger(name).debug("executing something")
    logging.getLogger("botfleet.test").debug("ours")
    lines = json_lines(capsys.readouterr().err)
    assert [line["logger"] for line in lines] == ["botfleet.test"]


async def test_every_cleanup_record_of_a_run_carries_its_run_id(
    root_logging: None,
    capsys: pytest.CaptureFixture[str],
    settings_factory: Any,
    admin_headers: dict[str, str],
) -> None:
    """A real run through the API that has something to warn about on the way."""
    settings = settings_factory(docker_hosts="unix:///nonexistent/docker.sock")
    app, ctx = await started_app(settings)
    try:
        async with app.state.services.sessions() as session, session.begin():
            # deleted_at in the future: the selection warns about clock skew, mid-run.
            skewed = datetime.now(UTC) + timedelta(days=1)
            session.add(Bot(name="skew", image="i", token_hash="h", deleted_at=skewed))
        configure_logging("json", "DEBUG")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)
        assert answer.status_code == 200, answer.text
        run_id = answer.json()["run_id"]
    finally:
        await ctx.__aexit__(None, None, None)
    out = capsys.readouterr().err
    cleanup = [
        line for line in json_lines(out) if str(line["logger"]).startswith("botfleet.cleanup")
    ]
    assert any("summary" in str(line["msg"]) or run_id in str(line["msg"]) for line in cleanup)
    assert any("future" in str(line["msg"]) for line in cleanup)
    for line in cleanup:
        assert line.get("run_id") == run_id, line
    assert TEST_TOKEN not in out
