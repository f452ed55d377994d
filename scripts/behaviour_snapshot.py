"""What botfleet answers on a frozen store, normalised so that two commits can be diffed.

    .venv/bin/python scripts/behaviour_snapshot.py OUT_DIR [--backend sqlite|postgres|both]
    diff -r OLD_DIR NEW_DIR        # empty: same OpenAPI document, same reports

Used to show that a reshaping changed no behaviour: run it on the commit before and the commit
after (``PYTHONPATH=<checkout>`` picks the code), then diff the two directories. It talks to the
app only through its HTTP API (``create_app`` and an ASGI client), so the same script runs on
both sides of a change.

Per backend it seeds a deterministic store (every kind present: expired, retained, held,
future-dated and rule-matched bots, results past a rule's result retention, orphaned results)
and containers on the local Docker Engine (orphaned stopped ones, a running one without a row,
one of a live bot, a foreign one), with a policy file; then records a dry run, the same plan
re-planned and applied by ``plan_id``, the orphans view, the run's audit trail and the status.
Run ids, container ids, timestamps and durations become stable placeholders; ages inside reasons
become ``<age>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "snapshot-admin-token-" + "x" * 24
IMAGE = "botfleet/sample-bot:latest"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
POLICY = """\
rules:
  - name: finance
    match: {team: finance}
    bot_retention_days: never
  - name: scratch
    match: {env: ci}
    bot_retention_days: 1
    result_retention_days: 2
  - name: long
    match: {env: prod}
    bot_retention_days: 60
"""
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX64 = re.compile(r"(?<![\w-])[0-9a-f]{64}(?![\w-])")
_HEX12 = re.compile(r"(?<![\w-])[0-9a-f]{12}(?![\w-])")
_AGE = re.compile(r"(?<![\w-])\d+(\.\d+)?[smhd](?![\w-])")
_TIMES = {"started_at", "finished_at", "deleted_at", "created_at", "now", "at", "measured_at"}
_NUMBERS = {
    "duration_seconds",
    "age_seconds",
    "lag_seconds",
    "size_bytes",
    "bytes_reclaimed",
    "store_bytes_before",
    "store_bytes_after",
}


def bot_id(n: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"botfleet-snapshot-{n}")


class Normaliser:
    """Stable names for what differs run to run: run ids, container ids, times, ages."""

    def __init__(self, containers: dict[str, str], instance: str) -> None:
        self.names: dict[str, str] = {}
        self.containers = containers
        self.instance = instance

    def _name(self, value: str, kind: str) -> str:
        if value not in self.names:
            self.names[value] = f"<{kind}-{sum(1 for v in self.names.values() if kind in v)}>"
        return self.names[value]

    def text(self, value: str) -> str:
        value = value.replace(self.instance, "<instance>")
        for cid, name in self.containers.items():
            value = value.replace(cid, name).replace(cid[:12], name)
        value = _UUID.sub(lambda m: m[0] if m[0] in KNOWN else self._name(m[0], "uuid"), value)
        value = _HEX64.sub(lambda m: self._name(m[0], "hex"), value)
        value = _HEX12.sub(lambda m: self._name(m[0], "hex12"), value)
        return _AGE.sub("<age>", value)

    def __call__(self, data: Any, key: str = "") -> Any:
        if isinstance(data, dict):
            return {k: self(v, k) for k, v in sorted(data.items())}
        if isinstance(data, list):
            items = [self(v, key) for v in data]
            if key == "items":  # audit records are numbered in the order things went
                items = [{**v, "id": "<n>"} if isinstance(v, dict) else v for v in items]
            if key in ("sample", "skipped", "items"):
                return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
            return items
        if key == "owner" and isinstance(data, str):
            return "<host:pid>"
        if key in _TIMES and isinstance(data, str):
            return "<time>"
        if key in _NUMBERS and isinstance(data, int | float):
            return "<number>"
        if key == "lag_seconds":
            return "<number>"
        if isinstance(data, str):
            return self.text(data)
        return data


KNOWN: set[str] = {str(bot_id(n)) for n in range(200)}


async def seed(settings: Any) -> None:
    from botfleet.store.models import Bot, Result
    from botfleet.store.session import create_engine, create_session_factory

    now = datetime.now(UTC)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    rows: list[tuple[int, datetime | None, dict[str, str], int, datetime | None]] = []
    n = 0
    # (id, deleted_at, labels, results, result age)
    for days in (8, 9, 30, 45):  # expired under the default 7 days
        rows.append((n, now - timedelta(days=days), {}, days % 4, None))
        n += 1
    for days in (1, 3, 6):  # retained
        rows.append((n, now - timedelta(days=days), {}, 1, None))
        n += 1
    rows.append((n, now - timedelta(days=30), {"botfleet.hold": "true"}, 2, None))  # held
    n += 1
    rows.append((n, now + timedelta(hours=2), {}, 1, None))  # deleted "in the future"
    n += 1
    rows.append((n, now - timedelta(days=90), {"team": "finance"}, 1, None))  # kept forever
    n += 1
    rows.append((n, now - timedelta(days=2), {"env": "ci"}, 3, None))  # rule: 1 day
    n += 1
    rows.append((n, now - timedelta(days=30), {"env": "prod"}, 2, None))  # rule: 60 days
    n += 1
    for _ in range(3):  # live, with results past the ci rule's result retention
        rows.append((n, None, {"env": "ci"}, 4, now - timedelta(days=5)))
        n += 1
    for _ in range(3):  # live, plain
        rows.append((n, None, {}, 2, None))
        n += 1
    async with sessions() as session, session.begin():
        for i, deleted_at, labels, results, result_at in rows:
            bot = Bot(
                id=bot_id(i),
                name=f"snap-{i}",
                image=IMAGE,
                token_hash=f"{i:064x}",
                labels=labels,
                env={},
                status="deleted" if deleted_at else "running",
                deleted_at=deleted_at,
                created_at=now - timedelta(days=100),
            )
            session.add(bot)
            await session.flush()
            for k in range(results):
                extra = {"created_at": result_at} if result_at else {}
                session.add(Result(bot_id=bot.id, data={"k": k}, **extra))
        for k in range(5):  # orphaned results
            session.add(Result(bot_id=bot_id(150 + k % 2), data={"orphan": k}))
    await engine.dispose()


def make_containers(instance: str) -> dict[str, str]:
    """Containers on the local engine; returns id -> stable name."""
    import docker

    client = docker.from_env()
    made: dict[str, str] = {}

    def create(name: str, labels: dict[str, str], run: bool, command: list[str]) -> None:
        c = client.containers.create(
            IMAGE, command=command, labels=labels, network_mode="none", name=f"{instance}-{name}"
        )
        if run:
            c.start()
        made[str(c.id)] = f"<container-{name}>"

    def ours(bot: uuid.UUID) -> dict[str, str]:
        return {
            "botfleet.managed": "true",
            "botfleet.bot-id": str(bot),
            "botfleet.instance": instance,
        }

    for i in (0, 1, 2):  # expired bots' containers
        create(f"expired-{i}", ours(bot_id(i)), True, ["true"])
    create("no-row", ours(bot_id(160)), True, ["true"])
    create("never-started", ours(bot_id(161)), False, ["true"])
    create("live-owner", ours(bot_id(14)), True, ["true"])
    create("running-no-row", ours(bot_id(162)), True, ["sleep", "300"])
    create("foreign", {"botfleet.managed": "true"}, True, ["true"])
    for cid in made:  # until the short ones have exited
        for _ in range(100):
            state = client.api.inspect_container(cid)["State"]["Status"]
            if state != "running" or "running-no-row" in made[cid]:
                break
            asyncio.run(asyncio.sleep(0.05))
    client.close()
    return made


def remove_containers(ids: list[str]) -> None:
    import docker
    from docker.errors import NotFound

    client = docker.from_env()
    for cid in ids:
        with contextlib.suppress(NotFound):
            client.api.remove_container(cid, force=True)
    client.close()


async def record(settings: Any, normalise: Normaliser) -> dict[str, Any]:
    from botfleet.app import create_app

    app = create_app(settings, migrate=False)
    out: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def call(method: str, path: str, **params: Any) -> Any:
                response = await client.request(method, path, params=params, headers=headers)
                return {"status": response.status_code, "body": response.json()}

            out["openapi"] = (await client.get("/openapi.json")).json()
            dry = await call("POST", "/admin/cleanup", dry_run="true")
            plan_id = dry["body"]["plan_id"]
            out["1_dry_run"] = dry
            out["2_orphans"] = await call("GET", "/admin/cleanup/orphans")
            out["3_dry_run_of_plan"] = await call(
                "POST", "/admin/cleanup", dry_run="true", plan_id=plan_id
            )
            out["4_only_bots"] = await call("POST", "/admin/cleanup", dry_run="true", only="bots")
            out["5_apply_plan"] = await call(
                "POST", "/admin/cleanup", dry_run="false", plan_id=plan_id
            )
            run_id = out["5_apply_plan"]["body"]["run_id"]
            out["6_run_detail"] = await call("GET", f"/admin/cleanup/runs/{run_id}")
            out["7_runs"] = await call("GET", "/admin/cleanup/runs")
            status = await call("GET", "/admin/cleanup/status")
            for key in ("next_run_at", "last_tick", "engines"):
                status["body"].pop(key, None)
            out["8_status"] = status
            out["9_bad_plan"] = await call(
                "POST", "/admin/cleanup", dry_run="false", plan_id=str(uuid.uuid4())
            )
            out["10_bad_only"] = await call("POST", "/admin/cleanup", only="nope")
    openapi = out.pop("openapi")
    return {"openapi": openapi, "answers": normalise(out)}


def pg_exec(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def snapshot(backend: str, out_dir: Path) -> None:
    from botfleet.config import Settings
    from botfleet.store.migrate import upgrade_sync

    instance = f"snap{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        database = None
        if backend == "sqlite":
            url = f"sqlite:///{tmp}/botfleet.db"
        else:
            database = f"botfleet_snapshot_{secrets.token_hex(4)}"
            pg_exec(f'CREATE DATABASE "{database}"')
            url = PG_ADMIN.rsplit("/", 1)[0] + "/" + database
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=url,
            admin_token=TOKEN,
            botfleet_instance=instance,
            cleanup_enabled=False,
            cleanup_policy_file=str(policy),
            container_cleanup_grace_minutes=0,
            reconcile_interval_seconds=3600,
        )
        containers: dict[str, str] = {}
        try:
            upgrade_sync(settings)
            asyncio.run(seed(settings))
            containers = make_containers(instance)
            result = asyncio.run(record(settings, Normaliser(containers, instance)))
        finally:
            remove_containers(list(containers))
            if database is not None:
                pg_exec(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "openapi.json").write_text(json.dumps(result["openapi"], indent=1, sort_keys=True))
    (out_dir / f"answers-{backend}.json").write_text(
        json.dumps(result["answers"], indent=1, sort_keys=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    subprocess.run([str(ROOT / "examples/sample-bot/build.sh"), IMAGE], check=True)
    import botfleet

    print(f"botfleet from {Path(botfleet.__file__).parent}", file=sys.stderr)
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        snapshot(backend, args.out)
        print(f"{backend}: written to {args.out}", file=sys.stderr)
    os.sync()


if __name__ == "__main__":
    main()
