"""The app factory loads what serving needs and nothing else: the server's memory is the
Must show of issue 20 (peak RSS < 150 MB while exporting a million results)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from botfleet.store.migrate import upgrade_sync
from tests.conftest import ROOT, TEST_TOKEN, make_settings

# What a server has no use for: the migration tool when the schema is current (with its
# template engine), the HTTP client (webhooks only, when configured), the terminal's extras
# (which httpx's import pulls in), the Parquet export's library and dataframes.
HEAVY = ("alembic", "mako", "httpx", "rich", "pygments", "typer", "pyarrow", "pandas", "numpy")

# Builds the app, runs its lifespan (migration check included) and reports what it loaded.
PROBE = """
import asyncio, json, sys
from botfleet.app import create_app
from botfleet.config import Settings

async def main():
    app = create_app(Settings(_env_file=None, {settings}))
    async with app.router.lifespan_context(app):
        pass
asyncio.run(main())
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def loaded_by_the_app(settings: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(settings=settings)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("migrated", [True, False])
def test_the_app_loads_no_heavy_module(tmp_path: Path, migrated: bool) -> None:
    url = f"sqlite:///{tmp_path}/botfleet.db"
    if migrated:
        upgrade_sync(make_settings(database_url=url))
    settings = (
        f"database_url={url!r}, admin_token={TEST_TOKEN!r}, botfleet_instance='imports',"
        " cleanup_enabled=False, reconcile_interval_seconds=3600"
    )
    loaded = loaded_by_the_app(settings)
    assert "botfleet" in loaded and "sqlalchemy" in loaded  # the probe did build the app
    if migrated:
        assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    else:
        # A schema behind is brought up to date: only then is Alembic loaded (and the probe
        # sees it: this test can fail).
        assert "alembic" in loaded
