"""Schemathesis against the app's own OpenAPI document, on a real ``botfleet serve`` (SQLite
store, the real Docker Engine): every operation, positive and negative data, with the admin and
the bot token where the document says each is needed.

Checks: no 5xx (``not_a_server_error``); schema-violating input answered 400/422
(``negative_data_rejection``); ``ignored_auth`` and ``missing_required_header``; unsupported
methods answered 405 with a correct ``Allow`` (``unsupported_method``,
``allow_header_conformance``). Real identifiers (a bot, a run, the sample image)
are offered to the generator through dictionaries, so that it reaches past the 404s.

The command line it runs is printed; docs/reliability.md quotes the figures.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TEST_TOKEN
from tests.reliability._serve import AUTH, Serve
from tests.support.figures import SOAK, record_figure, scale

CHECKS = (
    "not_a_server_error",
    "negative_data_rejection",
    "ignored_auth",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
)
# Schema-violating input is refused as such: 400 or 422 — or 401 when what is missing or
# malformed is the credential itself (the auth contract: never 403, never a validation error).
REJECTED = ["400", "401", "422"]


def config(path: Path, bot_token: str, bots: list[str], runs: list[str], image: str) -> Path:
    def values(items: list[str]) -> str:
        return json.dumps(items)

    path.write_text(
        f"""
[auth.openapi.AdminToken]
bearer = "{TEST_TOKEN}"

[auth.openapi.BotToken]
bearer = "{bot_token}"

[checks.negative_data_rejection]
expected-statuses = {json.dumps(REJECTED)}

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
"body.image" = {{ dictionary = "images", probability = 0.2 }}
"""
    )
    return path


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
            run = http.post("/admin/cleanup?dry_run=true").json()
        cfg = config(
            tmp_path / "schemathesis.toml",
            made[0]["token"],
            [b["id"] for b in made],
            [run["run_id"]],
            sample_image,
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
            scale("examples,coverage,fuzzing", "examples,coverage,fuzzing,stateful"),
            "--max-examples",
            str(scale(25, 300)),
            "--seed",
            str(scale(20261126, 1)),
            "--workers",
            "1",
            "--request-timeout",
            "30",
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
        done = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=scale(300, 1800)
        )
    finally:
        serve.stop()
    out = done.stdout + done.stderr
    summary = json.loads(report.read_text()) if report.exists() else {}
    cases, failures = _counts(summary, out)
    record_figure(
        "schemathesis",
        operations=_operations(summary, out),
        cases=cases,
        failures=failures,
        checks=list(CHECKS),
        soak=SOAK,
    )
    assert done.returncode == 0 and failures == 0, out[-6000:]
    assert "Traceback" not in serve.log(), serve.log()[-4000:]
    assert cases >= scale(500, 3000), out[-3000:]


def _counts(summary: dict[str, Any], out: str) -> tuple[int, int]:
    """Test cases generated and failures found, from the JSON report (or the summary line)."""
    import re

    stats = summary.get("statistics") or summary.get("summary") or {}
    cases = stats.get("test_cases") or stats.get("total_cases")
    failures = stats.get("failures") or stats.get("unique_failures")
    line = re.search(r"(\d+) generated, (?:(\d+) passed|.*?(\d+) unique failures?)", out)
    if cases is None and line:
        cases = int(line[1])
    if failures is None:
        failures = 0 if line and line[2] else int(line[3]) if line and line[3] else -1
    return int(cases or 0), int(failures)


def _operations(summary: dict[str, Any], out: str) -> int:
    import re

    found = re.search(r"Tested: (\d+)", out)
    return int(found[1]) if found else 0
