"""Schemathesis against the app's own OpenAPI document, on a real ``botfleet serve`` (SQLite
store, the real Docker Engine): every operation, positive and negative data, with the admin and
the bot token where the document says each is needed.

Every check (``--checks all``) and every phase, the stateful one included (it follows the
document's links from a created bot to the operations on its ``{bot_id}``, and from a run's
report to the run): every status, header, content type and body as documented, schema-valid
requests accepted and schema-violating ones refused with 400/422 (401 when what is missing is
the credential). Real identifiers (a bot, a run, the sample image) are offered to the generator
through dictionaries, so that it reaches past the 404s.

The command line it runs is printed; docs/reliability.md quotes the figures.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from botfleet.pagination import encode_cursor
from tests.conftest import TEST_TOKEN
from tests.reliability._serve import AUTH, Serve
from tests.support.figures import SOAK, record_figure, scale

CHECKS = ("all",)
# Schema-violating input is refused as such: 400 or 422 — or 401 when what is missing or
# malformed is the credential itself (the auth contract: never 403, never a validation error).
REJECTED = ["400", "401", "422"]


# A state a request may meet, however well formed: 409 (name taken, run busy) and 410 (a result
# for a soft-deleted bot) join Schemathesis' defaults; 5xx are not_a_server_error's.
ACCEPTED = ["2xx", "401", "403", "404", "409", "410", "429", "5xx"]


# The one failure accepted, and why: DELETE /bots/{bot_id} is a soft delete (use_after_free).
BASELINE = Path(__file__).with_name("schemathesis-baseline.json")
PLAIN_ENGINE_HOOK = Path(__file__).with_name("schemathesis_plain_engine.py")


def config(
    path: Path,
    bot_token: str,
    bots: list[str],
    runs: list[str],
    image: str,
    cursors: dict[str, dict[str, str]],
) -> Path:
    """The run's configuration: both tokens, real ids in dictionaries, and the cursors.

    A cursor is opaque: which strings this server issued is no schema's to say, so each list
    operation gets a real one (``cursors``: operation id → parameter → value) instead of
    invented ones, which are rightly refused (422). Likewise which images the engine holds (no
    registry is reachable here): a bot's image is the sample one; others answer 422.
    """

    def values(items: list[str]) -> str:
        return json.dumps(items)

    per_operation: dict[str, list[str]] = {}
    for operation, params in cursors.items():
        pinned = ", ".join(f'"query.{k}" = "{v}"' for k, v in params.items())
        per_operation.setdefault(operation, []).append(f"parameters = {{ {pinned} }}")
    # One table per operation: Schemathesis reads the first that matches.
    operations = "".join(
        f'\n[[operations]]\ninclude-operation-id = "{operation}"\n' + "\n".join(lines) + "\n"
        for operation, lines in per_operation.items()
    )
    path.write_text(
        f"""
[auth.openapi.AdminToken]
bearer = "{TEST_TOKEN}"

[auth.openapi.BotToken]
bearer = "{bot_token}"

[checks.negative_data_rejection]
expected-statuses = {json.dumps(REJECTED)}

[checks.positive_data_acceptance]
expected-statuses = {json.dumps(ACCEPTED)}

[dictionaries.bots]
values = {values(bots)}

[dictionaries.runs]
values = {values(runs)}

[dictionaries.images]
values = {values([image])}

[parameters]
"path.bot_id" = {{ dictionary = "bots", probability = 0.5 }}
"path.run_id" = {{ dictionary = "runs", probability = 0.5 }}
"query.plan_id" = {{ dictionary = "runs", probability = 0.3 }}
"body.image" = {{ dictionary = "images" }}
{operations}"""
    )
    return path


def issued_cursors(http: httpx.Client, bot: str) -> dict[str, dict[str, str]]:
    """A real next page's cursor of each list (two bots, two results, two runs exist)."""

    def next_cursor(path: str, **params: Any) -> str:
        cursor: str = http.get(path, params={"limit": 1, **params}).json()["next_cursor"]
        assert cursor, path
        return cursor

    return {
        "list_bots": {"cursor": next_cursor("/bots", include_deleted="true")},
        "list_results": {"cursor": next_cursor(f"/bots/{bot}/results")},
        "cleanup_runs": {"cursor": next_cursor("/admin/cleanup/runs")},
        # The fleet pages bots as /bots does (one of the two is deleted: /fleet lists one).
        "get_fleet": {"cursor": next_cursor("/bots", include_deleted="true")},
        # An audit position (record 0, item 0): issued for any run, the first page after it.
        "cleanup_run": {"audit_cursor": encode_cursor([0, 0])},
    }


@pytest.mark.timeout(scale(420, 5400))
def test_schemathesis_finds_nothing(
    tmp_path: Path, instance: str, docker_client: Any, sample_image: str, cleanup_containers: None
) -> None:
    serve = Serve(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path}/fuzz.db",
        BOTFLEET_INSTANCE=instance,
        CLEANUP_ENABLED="false",
        BOT_NETWORK="none",
        CONTAINER_CLEANUP_GRACE_MINUTES="0",
        # Auth probes fail on purpose, hundreds of times, from one address.
        AUTH_FAILURE_LIMIT="100000000",
    )
    report = tmp_path / "schemathesis.json"
    try:
        serve.ready()
        with httpx.Client(base_url=serve.url, headers=AUTH, timeout=30) as http:
            made = [
                http.post("/bots", json={"name": f"fuzz-{n}", "image": sample_image}).json()
                for n in range(2)
            ]
            http.delete(f"/bots/{made[1]['id']}")
            posted = http.post(
                f"/bots/{made[0]['id']}/results",
                json=[{"data": n} for n in range(2)],
                headers={"Authorization": f"Bearer {made[0]['token']}"},
            )
            assert posted.status_code == 201, posted.text
            runs = [http.post("/admin/cleanup?dry_run=true").json() for _ in range(2)]
            cursors = issued_cursors(http, made[0]["id"])
        cfg = config(
            tmp_path / "schemathesis.toml",
            made[0]["token"],
            [b["id"] for b in made],
            [r["run_id"] for r in runs],
            sample_image,
            cursors,
        )
        command = [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(cfg),
            "run",
            f"{serve.url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--mode",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(scale(25, 1000)),
            "--seed",
            str(scale(20261126, 1)),
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--baseline",
            str(BASELINE),
            "--generation-database",
            "none",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ]
        printable = [c if c != TEST_TOKEN else "$ADMIN_TOKEN" for c in command]
        print("$ " + shlex.join(printable))
        # The server runs on plain engines: the hook tells the fuzzer swarm's fields are refused.
        env = {**os.environ, "SCHEMATHESIS_HOOKS": str(PLAIN_ENGINE_HOOK)}
        print(f"SCHEMATHESIS_HOOKS={PLAIN_ENGINE_HOOK.name}")
        done = subprocess.run(
            command,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=scale(360, 5000),
        )
    finally:
        serve.stop()
    out = done.stdout + done.stderr
    summary = json.loads(report.read_text()) if report.exists() else {}
    cases = summary.get("test_cases", {})
    known = summary.get("baseline", {})
    failures = int(cases.get("unique_failures", -1))
    record_figure(
        "schemathesis",
        operations=summary.get("operations", {}).get("tested", 0),
        cases=cases.get("generated", 0),
        failures=failures,
        accepted_by_baseline=known.get("known", 0),
        checks=list(CHECKS),
        max_examples=scale(25, 1000),
        soak=SOAK,
    )
    assert done.returncode == 0 and failures == 0, out[-6000:]
    assert "Traceback" not in serve.log(), serve.log()[-4000:]
    assert summary["operations"]["tested"] == summary["operations"]["total"], out[-3000:]
    assert cases["generated"] >= scale(800, 10000), out[-3000:]
    assert known.get("new", 0) == 0 and not known.get("expired_ids"), known
