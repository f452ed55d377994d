"""`botfleet results export` and `botfleet bots results|logs` against a real server in a thread."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from botfleet.cli.main import app
from botfleet.config import Settings
from tests.conftest import TEST_TOKEN
from tests.servers import free_port, live_server
from tests.support.store import Store


@pytest.fixture
def server(settings_factory: Callable[..., Settings]) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings = settings_factory(port=port, main_server_url=f"http://127.0.0.1:{port}")
    with live_server(settings) as url:
        yield url, settings


def botfleet(url: str, *args: str) -> Any:
    env = {"MAIN_SERVER_URL": url, "ADMIN_TOKEN": TEST_TOKEN, "LOG_LEVEL": "WARNING",
           "COLUMNS": "200"}  # fmt: skip
    return CliRunner().invoke(app, list(args), env=env)


async def _seed(settings: Settings) -> dict[str, Any]:
    store = Store(settings)
    try:
        ops = await store.bot(labels={"team": "ops"}, results=7, name="ops")
        await store.bot(labels={"team": "dev"}, results=3, name="dev")
        ids = await store.rows(
            "SELECT id FROM results WHERE bot_id = :b ORDER BY id", b=store._bind(ops)
        )
    finally:
        await store.close()
    return {"ops": ops, "ops_ids": [int(r[0]) for r in ids]}


async def test_export_in_three_formats_with_nothing_extra_when_piped(
    server: tuple[str, Settings],
) -> None:
    url, settings = server
    seeded = await _seed(settings)
    ndjson = botfleet(url, "results", "export", "--format", "ndjson", "--label", "team=ops")
    assert ndjson.exit_code == 0, ndjson.output
    assert ndjson.stderr == ""  # no progress bar off a terminal
    rows = [json.loads(line) for line in ndjson.stdout_bytes.decode().splitlines()]
    assert [r["id"] for r in rows] == seeded["ops_ids"]
    assert {r["bot_id"] for r in rows} == {str(seeded["ops"])}

    as_csv = botfleet(url, "results", "export", "--format", "csv")
    assert as_csv.exit_code == 0 and as_csv.stderr == ""
    records = list(csv.DictReader(io.StringIO(as_csv.stdout_bytes.decode(), newline="")))
    assert len(records) == 10 and list(records[0]) == ["id", "bot_id", "created_at", "data"]

    import pyarrow.parquet as pq

    parquet = botfleet(url, "results", "export", "--format", "parquet", "--label", "team=ops")
    assert parquet.exit_code == 0, parquet.stderr
    table = pq.read_table(io.BytesIO(parquet.stdout_bytes))
    assert table.column("id").to_pylist() == seeded["ops_ids"]
    assert [json.loads(d) for d in table.column("data").to_pylist()] == [{"n": n} for n in range(7)]
    assert str(table.schema.field("created_at").type) == "timestamp[us, tz=UTC]"

    bad = botfleet(url, "results", "export", "--format", "xml")
    assert bad.exit_code == 1 and "--format accepts" in bad.stderr
    refused = botfleet(url, "results", "export", "--since", "whenever")
    assert refused.exit_code == 1 and "since" in refused.stderr


async def test_bots_results_table(server: tuple[str, Settings]) -> None:
    url, settings = server
    seeded = await _seed(settings)
    shown = botfleet(url, "bots", "results", str(seeded["ops"]), "--limit", "5")
    assert shown.exit_code == 0, shown.output
    assert "5 of 7 results, newest first" in shown.stdout
    assert str(seeded["ops_ids"][-1]) in shown.stdout and '{"n":6}' in shown.stdout
    assert "more: --cursor" in shown.stdout


@pytest.mark.docker
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bots_logs_tail_and_follow(
    server: tuple[str, Settings], sample_image: str, cleanup_containers: None
) -> None:
    url, _settings = server
    script = "echo first; echo oops >&2; sleep 1; echo last"
    created = botfleet(
        url, "bots", "create", "talker", "--image", sample_image, "--command",
        f"sh -c '{script}'", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    bot = json.loads(created.stdout)
    # Follow to the end: the stream ends when the container stops.
    followed = botfleet(url, "bots", "logs", bot["id"], "--follow")
    assert followed.exit_code == 0, followed.output
    out = followed.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in out] == ["first", "last"]
    assert followed.stderr.split(" ", 1)[1].strip() == "oops"
    assert datetime.fromisoformat(out[0].split(" ")[0]).tzinfo is not None
    tail = botfleet(url, "bots", "logs", bot["id"], "--tail", "1")
    assert tail.exit_code == 0 and tail.stdout.rstrip().endswith(" last")
    missing = botfleet(url, "bots", "logs", "00000000-0000-0000-0000-000000000000")
    assert missing.exit_code == 1 and "HTTP 404" in missing.stderr


async def test_progress_on_a_terminal_only(
    server: tuple[str, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, settings = server
    await _seed(settings)
    piped = botfleet(url, "results", "export", "--format", "csv")
    assert piped.exit_code == 0 and piped.stderr == ""
    monkeypatch.setattr("botfleet.cli.results._on_terminal", lambda: True)
    shown = botfleet(url, "results", "export", "--format", "csv")
    assert shown.exit_code == 0, shown.output
    assert "10 rows" in shown.stderr and "rows/s" in shown.stderr
    assert shown.stdout_bytes == piped.stdout_bytes  # the file is the same either way
