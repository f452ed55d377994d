"""A client generated from the served OpenAPI document drives botfleet end to end.

``openapi-python-client`` (a dev dependency, so nothing is fetched here) generates a package from
``GET /openapi.json`` of a real ``botfleet serve`` into the test's temporary directory, once per
backend; the generator must not warn (a skipped endpoint or model means the document broke for
generated clients). The client raises on any status the document does not declare, and parses
every answer into the document's models, so the README's walkthrough run through it proves the
document describes what the server does: create a bot (the sample image, host network), read its
results, delete and restore it, a dry run and its plan applied by id, the run's detail — and the
refusals a client meets on the way, in the one error shape.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_TOKEN
from tests.reliability._serve import Serve
from tests.support.wait import wait_until

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    instance: str,
    sample_image: str,
    cleanup_containers: None,
) -> Iterator[Serve]:
    """A real server on each backend; its bots post results to it over the host network."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/walkthrough.db"
    else:
        url = request.getfixturevalue("fresh_pg_database")
    serve = Serve(tmp_path, DATABASE_URL=url, BOTFLEET_INSTANCE=instance, CLEANUP_ENABLED="false")
    try:
        serve.ready()
        yield serve
    finally:
        serve.stop()


def generate(url: str, where: Path, name: str) -> ModuleType:
    """Generate the client from ``url`` into ``where`` and import it as ``name``."""
    document = where / "openapi.json"
    document.write_bytes(httpx.get(url, timeout=30).content)
    config = where / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the code is generated, not kept
    package = where / "client"
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(package),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Warning" not in said and "Unable" not in said, said
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Generated:
    """The generated package's modules by their short names (``api.bots.create_bot``)."""

    def __init__(self, package: ModuleType) -> None:
        self.name = package.__name__

    def module(self, dotted: str) -> Any:
        return importlib.import_module(f"{self.name}.{dotted}")

    def unload(self) -> None:
        for key in [k for k in sys.modules if k == self.name or k.startswith(f"{self.name}.")]:
            del sys.modules[key]


def test_the_readme_walkthrough_through_a_generated_client(
    served: Serve, tmp_path: Path, sample_image: str
) -> None:
    package = generate(f"{served.url}/openapi.json", tmp_path, f"gen_{uuid.uuid4().hex[:8]}")
    gen = Generated(package)
    try:
        walkthrough(gen, served.url, sample_image)
    finally:
        gen.unload()


def walkthrough(gen: Generated, url: str, image: str) -> None:
    client_mod = gen.module("client")
    models = gen.module("models")
    bots = {n: gen.module(f"api.bots.{n}") for n in ("create_bot", "list_bots", "get_bot")}
    bots |= {n: gen.module(f"api.bots.{n}") for n in ("delete_bot", "restore_bot")}
    results = {n: gen.module(f"api.results.{n}") for n in ("post_results", "list_results")}
    cleanup = {
        n: gen.module(f"api.cleanup.{n}")
        for n in ("run_cleanup", "cleanup_run", "cleanup_runs", "cleanup_status", "cleanup_orphans")
    }
    health = gen.module("api.health.readyz")
    admin = client_mod.AuthenticatedClient(
        base_url=url, token=TEST_TOKEN, raise_on_unexpected_status=True, timeout=httpx.Timeout(60)
    )

    assert health.sync(client=client_mod.Client(base_url=url)).status == "ok"

    # 1. Create a bot: 201, the bot running and, this once, its token.
    body = models.BotCreate(
        name="hello",
        image=image,
        env=models.BotCreateEnv.from_dict({"RESULT_INTERVAL_SECONDS": "1"}),
        labels=models.BotCreateLabels.from_dict({"team": "demo"}),
    )
    created = bots["create_bot"].sync_detailed(client=admin, body=body)
    assert created.status_code == 201, created.content
    bot = created.parsed
    assert isinstance(bot, models.BotCreated) and bot.token
    assert bot.status.value == "running" and bot.deleted_at is None
    taken = bots["create_bot"].sync_detailed(client=admin, body=body)
    assert taken.status_code == 409 and isinstance(taken.parsed, models.Error)
    assert "hello" in taken.parsed.detail

    listed = bots["list_bots"].sync(client=admin, label=["team=demo"])
    assert [b.id for b in listed.items] == [bot.id] and listed.total == 1

    # 2. Its results arrive (posted by the container with its own token), newest first.
    def arrived() -> Any:
        page = results["list_results"].sync(client=admin, bot_id=bot.id, limit=1)
        return page if page.total >= 2 else None

    page = wait_until(arrived, timeout=60, message="the sample bot's results")
    assert "seq" in page.items[0].data and page.next_cursor
    following = results["list_results"].sync(client=admin, bot_id=bot.id, cursor=page.next_cursor)
    assert following.items and all(item.id < page.items[0].id for item in following.items)

    as_bot = client_mod.AuthenticatedClient(
        base_url=url, token=bot.token, raise_on_unexpected_status=True
    )
    posted = results["post_results"].sync(
        client=as_bot, bot_id=bot.id, body=[models.ResultIn(data={"from": "client"})]
    )
    assert isinstance(posted, models.ResultsAccepted) and posted.accepted == 1
    forbidden = results["post_results"].sync_detailed(
        client=admin, bot_id=bot.id, body=models.ResultIn(data=1)
    )
    assert forbidden.status_code == 403 and "admin token" in forbidden.parsed.detail

    # The refusals a client meets, in the one error shape.
    missing = bots["get_bot"].sync_detailed(client=admin, bot_id=uuid.uuid4())
    assert missing.status_code == 404 and "not found" in missing.parsed.detail
    too_many = bots["list_bots"].sync_detailed(client=admin, limit=0)
    assert too_many.status_code == 422
    assert [e.field for e in too_many.parsed.errors] == ["limit"]
    assert too_many.parsed.detail.startswith("limit: ")
    bad_label = bots["list_bots"].sync_detailed(client=admin, label=["Not A Label"])
    assert bad_label.status_code == 422 and bad_label.parsed.errors[0].field == "label"
    stranger = client_mod.AuthenticatedClient(base_url=url, token="wrong-" + "x" * 30)
    refused = bots["get_bot"].sync_detailed(client=stranger, bot_id=bot.id)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"

    # 3. Delete it: a soft delete; it stays readable, and its posts get 410.
    deleted = bots["delete_bot"].sync(client=admin, bot_id=bot.id)
    assert deleted.deleted_at is not None and deleted.status.value == "deleted"
    assert bots["get_bot"].sync(client=admin, bot_id=bot.id).deleted_at is not None
    gone = results["post_results"].sync_detailed(
        client=as_bot, bot_id=bot.id, body=models.ResultIn(data=2)
    )
    assert gone.status_code == 410 and isinstance(gone.parsed, models.Error)

    # ... and restore it.
    restored = bots["restore_bot"].sync(client=admin, bot_id=bot.id)
    assert isinstance(restored, models.BotRestored) and restored.deleted_at is None

    # 4. A dry run: the plan alone, with its id; then exactly that plan applied.
    plan = cleanup["run_cleanup"].sync(client=admin, dry_run="true")
    assert isinstance(plan, models.CleanupReport) and plan.dry_run and plan.plan_id
    assert plan.status.value == "succeeded" and plan.trigger.value == "manual"
    kinds = plan.resources.additional_properties
    assert {"bots", "bot_results", "orphaned_results", "containers"} <= set(kinds)
    assert all(entry.deleted == 0 for entry in kinds.values())
    applied = cleanup["run_cleanup"].sync(client=admin, dry_run="false", plan_id=plan.plan_id)
    assert isinstance(applied, models.CleanupReport) and not applied.dry_run
    unknown = cleanup["run_cleanup"].sync_detailed(
        client=admin, dry_run="false", plan_id=uuid.uuid4()
    )
    assert unknown.status_code == 404 and "plan" in unknown.parsed.detail
    bad_mode = cleanup["run_cleanup"].sync_detailed(client=admin, dry_run="maybe")
    assert bad_mode.status_code == 422 and bad_mode.parsed.errors[0].field == "dry_run"

    detail = cleanup["cleanup_run"].sync(client=admin, run_id=applied.run_id)
    assert isinstance(detail, models.RunDetail) and detail.report.run_id == applied.run_id
    assert detail.audit.total == 0  # the live bot and its results stay
    history = cleanup["cleanup_runs"].sync(client=admin, limit=10)
    assert [r.id for r in history.items] == [applied.run_id, plan.run_id]
    status = cleanup["cleanup_status"].sync(client=admin)
    assert isinstance(status, models.CleanupStatus) and status.last_run.run_id == applied.run_id
    orphans = cleanup["cleanup_orphans"].sync(client=admin)
    assert isinstance(orphans, models.Orphans)

    # The bot is still there, live, after all of it.
    live = bots["get_bot"].sync(client=admin, bot_id=bot.id)
    assert live.deleted_at is None
    bots["delete_bot"].sync(client=admin, bot_id=bot.id)
