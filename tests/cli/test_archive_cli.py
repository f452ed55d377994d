"""`botfleet archive list|show|restore`, in-process against the store and CLEANUP_ARCHIVE_DIR,
after a purge by `botfleet cleanup run` (which archives whenever the directory is set)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from botfleet.cli.main import app as cli
from botfleet.config import Settings
from tests.cli.test_cleanup_cli import bot_ids, botfleet, expired_bots, keep_logging

__all__ = ["keep_logging"]


def archive(settings: Settings, root: Path, *args: str) -> Any:
    values = {
        "DATABASE_URL": settings.database_url,
        "BOTFLEET_INSTANCE": settings.botfleet_instance,
        "CLEANUP_ARCHIVE_DIR": str(root),
    }
    return CliRunner().invoke(cli, ["archive", *args], env=values)


def test_list_show_and_restore_a_purge(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    bots = expired_bots(settings, 3, results=2)
    ran = botfleet(settings, "run", "--execute", "--yes", "--json", CLEANUP_ARCHIVE_DIR=str(root))
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    run_id = report["run_id"]
    assert report["archive"]["rows"] == {"bots": 3, "results": 6}
    assert bot_ids(settings) == set()

    listed = archive(settings, root, "list", "--json")
    assert listed.exit_code == 0, listed.output
    (run,) = json.loads(listed.stdout)
    assert run["run_id"] == run_id and run["rows"] == {"bots": 3, "results": 6}
    assert run_id in archive(settings, root, "list").stdout

    shown = archive(settings, root, "show", run_id, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["files"] == report["archive"]["files"]
    assert "bots-00-000001.jsonl.gz" in archive(settings, root, "show", run_id).stdout

    dry = archive(settings, root, "restore", run_id, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would restore 3 bot(s)" in dry.stdout and bot_ids(settings) == set()

    one = sorted(bots)[0]
    only = archive(settings, root, "restore", run_id, "--bot", str(one))
    assert only.exit_code == 0 and "restored 1 bot(s)" in only.stdout, only.output
    assert bot_ids(settings) == {one}

    refused = archive(settings, root, "restore", run_id)
    assert refused.exit_code == 1, refused.output
    assert f"bot {one}" in refused.output and "nothing was written" in refused.output
    assert bot_ids(settings) == {one}


def test_bad_input_is_one_line_and_exit_2(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    unknown = archive(settings, root, "show", str(uuid.uuid4()))
    assert unknown.exit_code == 2 and "no archived run" in unknown.output
    bad_bot = archive(settings, root, "restore", str(uuid.uuid4()), "--bot", "nope")
    assert bad_bot.exit_code == 2 and "--bot takes a bot id" in bad_bot.output
    unset = CliRunner().invoke(
        cli, ["archive", "list"], env={"DATABASE_URL": settings.database_url}
    )
    assert unset.exit_code == 2 and "CLEANUP_ARCHIVE_DIR is not set" in unset.output
