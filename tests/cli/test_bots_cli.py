"""`botfleet bots …` against a real server in a thread, the real engine, both stores."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from botfleet.cli.main import app
from botfleet.config import Settings
from tests.conftest import TEST_TOKEN
from tests.servers import free_port, live_server


@pytest.fixture
def server(settings_factory: Callable[..., Settings]) -> Iterator[str]:
    port = free_port()
    settings = settings_factory(port=port, main_server_url=f"http://127.0.0.1:{port}")
    with live_server(settings) as url:
        yield url


def botfleet(url: str, *args: str, token: str | None = TEST_TOKEN) -> Any:
    env = {"MAIN_SERVER_URL": url, "ADMIN_TOKEN": token, "LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    return CliRunner().invoke(app, ["bots", *args], env=env)


@pytest.mark.docker
def test_create_list_show_delete_restore(
    server: str, sample_image: str, cleanup_containers: None
) -> None:
    created = botfleet(
        server, "create", "cli-bot", "--image", sample_image, "--command", "sleep 600",
        "--label", "team=ops", "--env", "GREETING=hi", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    bot = json.loads(created.output)
    assert bot["status"] == "running" and bot["token"] and bot["command"] == ["sleep", "600"]

    listed = botfleet(server, "list", "--label", "team=ops")
    assert listed.exit_code == 0, listed.output
    assert "cli-bot" in listed.output and "1 of 1 bots" in listed.output
    assert "running" in listed.output and "team=ops" in listed.output

    shown = botfleet(server, "show", bot["id"])
    assert shown.exit_code == 0
    assert bot["id"] in shown.output and bot["container_id"] in shown.output
    assert bot["token"] not in shown.output

    deleted = botfleet(server, "delete", bot["id"], "--json")
    assert deleted.exit_code == 0
    assert json.loads(deleted.output)["deleted_at"] is not None
    assert "cli-bot" not in botfleet(server, "list").output
    assert "cli-bot" in botfleet(server, "list", "--include-deleted").output

    restored = botfleet(server, "restore", bot["id"])
    assert restored.exit_code == 0, restored.output
    assert "running" in restored.output

    table = botfleet(server, "create", "cli-two", "--image", sample_image, "-c", "sleep 600")
    assert table.exit_code == 0, table.output
    assert "token: " in table.output and "shown once" in table.output


def test_create_with_an_image_missing_on_the_engine_is_refused(server: str) -> None:
    missing = botfleet(server, "create", "x", "--image", "botfleet/not-there:1")
    assert missing.exit_code == 1
    assert "HTTP 422" in missing.output and "not-there" in missing.output


def test_errors_are_one_line_with_meaningful_exit_codes(server: str) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    not_found = botfleet(server, "show", unknown)
    assert not_found.exit_code == 1
    assert not_found.output.strip() == f"botfleet: HTTP 404: bot {unknown} not found"

    invalid = botfleet(server, "create", "x", "--image", "BAD IMAGE")
    assert invalid.exit_code == 1
    assert "image:" in invalid.output and len(invalid.output.strip().splitlines()) == 1

    bad_pair = botfleet(server, "create", "x", "--image", "busybox", "--label", "novalue")
    assert bad_pair.exit_code == 1 and "--label takes KEY=VALUE" in bad_pair.output

    wrong_token = botfleet(server, "list", token="not-the-token")
    assert wrong_token.exit_code == 4
    assert "HTTP 401" in wrong_token.output and "ADMIN_TOKEN" in wrong_token.output
    assert "not-the-token" not in wrong_token.output

    down = botfleet(f"http://127.0.0.1:{free_port()}", "list")
    assert down.exit_code == 3
    assert "cannot reach the server" in down.output

    no_token = CliRunner().invoke(
        app, ["bots", "list"], env={"MAIN_SERVER_URL": server, "ADMIN_TOKEN": None}
    )
    assert no_token.exit_code == 2 and "ADMIN_TOKEN is not set" in no_token.output
