"""`botfleet policy`: check (exit 0 / 2 with the one line), explain, simulate (writes nothing)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from botfleet.cli.main import app as cli
from botfleet.config import Settings
from tests.cli.test_cleanup_cli import keep_logging, with_store
from tests.conftest import TEST_TOKEN
from tests.support.store import Store

__all__ = ["keep_logging"]

POLICY = """
rules:
  - name: ci
    match: {team: ci}
    bot_retention_days: {exited: 1, failed: 30}
    max_results_per_bot: 2
  - name: idle
    match: {}
    idle_after_days: 10
    action: soft_delete
"""


def policy(settings: Settings, *args: str, **extra: str) -> Any:
    env = extra | {
        "DATABASE_URL": settings.database_url,
        "ADMIN_TOKEN": TEST_TOKEN,
        "BOTFLEET_INSTANCE": settings.botfleet_instance,
        "CONTAINER_CLEANUP_ENABLED": "false",
        "DOCKER_HOSTS": "",
    }
    return CliRunner().invoke(cli, ["policy", *args], env=env)


def test_check_prints_the_rules_in_order(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    done = policy(settings, "check", str(path), "--json")
    assert done.exit_code == 0, done.output
    rules = json.loads(done.output)
    assert [r["name"] for r in rules] == ["ci", "idle"]
    assert rules[0]["bot_retention_days"] == {"exited": 1, "failed": 30}


def test_check_refuses_a_bad_file_in_one_line(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("rules:\n  - idle_after_days: 3\n")
    done = policy(settings, "check", str(path))
    assert done.exit_code == 2
    assert "rule 1: field action is required" in done.output
    assert len(done.output.strip().splitlines()) == 1


def test_explain_and_simulate(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    old = datetime.now(UTC) - timedelta(days=40)

    async def seed(store: Store) -> tuple[str, str]:
        busy = await store.bot(labels={"team": "ci"}, results=5)
        quiet = await store.bot(created_at=old)
        return str(busy), str(quiet)

    busy, quiet = with_store(settings, seed)
    done = policy(settings, "explain", busy, "--json", CLEANUP_POLICY_FILE=str(path))
    assert done.exit_code == 0, done.output
    answer = json.loads(done.output)
    assert answer["rule"]["name"] == "ci" and answer["results"]["over_quota"] == 3
    assert policy(settings, "explain", "nope").exit_code == 2
    done = policy(settings, "simulate", str(path), "--json")
    assert done.exit_code == 0, done.output
    plan = json.loads(done.output)
    assert plan["simulated"] is True
    assert plan["resources"]["results_over_quota"]["found"] == 3
    assert plan["resources"]["idle_bots"]["sample"] == [quiet]
    # Saved nowhere: no run row, and every bot still live.
    assert with_store(settings, lambda s: s.runs()) == []
    assert with_store(settings, lambda s: s.bot_ids(live=True)) == {busy, quiet}
