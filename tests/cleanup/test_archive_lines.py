"""Archive lines spelled out column by column (cleanup/archive_lines.py) hold the same JSON as
``row_to_json`` of the row, for every column and awkward values: quotes, backslashes, control
characters, non-ASCII text, NULL in every nullable column, nested JSON, whole-second times."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from botfleet.archive.format import parse_line
from botfleet.cleanup.archive_lines import (
    CHUNK_LINES,
    blocks,
    json_text,
    line,
    row_object,
    with_lines,
)
from botfleet.config import Settings
from botfleet.store.models import Bot, Result
from tests.conftest import postgres_only
from tests.support.store import Store, store

__all__ = ["store"]
BOT_COLUMNS = list(Bot.__table__.c)
RESULT_COLUMNS = list(Result.__table__.c)
AWKWARD = "quote \" backslash \\ newline \n tab \t bell \x07 é ü 日本 \U0001f916 'single'"


async def seed_awkward(store: Store) -> uuid.UUID:
    """A bot whose every column holds something a hand-made JSON encoder could get wrong."""
    bot_id = uuid.uuid4()
    async with store.sessions() as session, session.begin():
        session.add(
            Bot(
                id=bot_id,
                name=AWKWARD[:100],
                image='img:"tag"\\',
                command=["sh", "-c", AWKWARD, {"nested": [1, 2.5, None, True]}],
                env={"K": AWKWARD, "EMPTY": ""},
                labels={"team": 'a"b', "botfleet.hold": "false"},
                status="deleted",
                exit_code=-3,
                container_id=None,
                engine="unix:///var/run/docker.sock",
                node=None,
                status_detail=AWKWARD,
                placement=[],
                resources={"cpu": 0.5, "memory": 2**40},
                token_hash="f" * 64,
                created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no fraction
                updated_at=datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
                deleted_at=datetime(2026, 1, 3, tzinfo=UTC),
                status_at_deletion="failed",
            )
        )
        session.add_all(
            [
                Result(bot_id=bot_id, data={"text": AWKWARD, "list": [{"a": None}]}),
                Result(bot_id=bot_id, data=None),
                Result(bot_id=bot_id, data=[1, "two", 3.25e-7]),
                Result(bot_id=bot_id, data="just a string"),
            ]
        )
    return bot_id


@postgres_only
async def test_rows_spelled_out_are_the_json_of_row_to_json(
    settings: Settings, store: Store
) -> None:
    bot_id = await seed_awkward(store)
    await store.bot(deleted_at=datetime(2026, 1, 1, tzinfo=UTC), results=2)  # plain values too
    bots = await store.rows(
        f"SELECT row_to_json(b)::text AS whole, {row_object('b', BOT_COLUMNS)} AS spelled"
        " FROM bots b"
    )
    results = await store.rows(
        f"SELECT row_to_json(r)::text AS whole, {row_object('r', RESULT_COLUMNS)} AS spelled"
        " FROM results r"
    )
    assert len(bots) == 2 and len(results) == 6
    for row in [*bots, *results]:
        assert json.loads(row.spelled) == json.loads(row.whole)
    awkward = next(json.loads(r.spelled) for r in bots if str(bot_id) in r.spelled)
    assert awkward["name"] == AWKWARD[:100] and awkward["env"]["K"] == AWKWARD
    assert awkward["container_id"] is None and awkward["node"] is None
    assert awkward["created_at"] == "2026-01-02T03:04:05+00:00"
    assert list(awkward) == [c.key for c in BOT_COLUMNS]  # every column, the model's order


@postgres_only
async def test_a_line_carries_its_table_extra_keys_and_row(
    settings: Settings, store: Store
) -> None:
    bot_id = await seed_awkward(store)
    expression = line(
        "bots", "b", BOT_COLUMNS, reason=json_text("CAST(:why AS text)"), results="3::text"
    )
    text = await store.value(f"SELECT {expression} FROM bots b", why='rule "x"\n')
    parsed = parse_line(text)
    assert list(parsed) == ["table", "reason", "results", "row"]
    assert parsed["table"] == "bots" and parsed["reason"] == 'rule "x"\n'
    assert parsed["results"] == 3 and parsed["row"]["id"] == str(bot_id)
    assert "\n" not in text  # one line, whatever the values hold


@postgres_only
async def test_a_batch_hands_its_lines_over_in_rows_of_at_most_chunk_lines_in_part_order(
    settings: Settings, store: Store
) -> None:
    many = 2 * CHUNK_LINES + 3  # three rows of the first part, one of the second
    parts = [
        (
            "'{\"bot\":' || i || '}'",
            f"generate_series(1, {many}) i",
        ),
        ("'{\"result\":' || i || '}'", "generate_series(1, 5) i"),
    ]
    rows = await store.rows(with_lines("SELECT 7 AS counted", parts))
    assert len(rows) == 4 and {r.counted for r in rows} == {7}  # the summary on every row
    assert all(len(r.lines.split(b"\n")) <= CHUNK_LINES for r in rows)
    handed = b"\n".join(blocks(rows)).decode().split("\n")
    assert [json.loads(x) for x in handed[many:]] == [{"result": i} for i in range(1, 6)]
    assert sorted(json.loads(x)["bot"] for x in handed[:many]) == list(range(1, many + 1))

    none = await store.rows(with_lines("SELECT 0 AS counted", [("'x'", "bots WHERE false")]))
    assert len(none) == 1 and none[0].counted == 0 and blocks(none) == []
