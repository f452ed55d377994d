"""What a batch of the bots stage reads back from the rows it deletes, on either backend.

The audit keeps a snapshot of each purged bot (what identifies it and explains its purge), the
archive keeps whole rows; both batches (PostgreSQL's one statement, SQLite's plain ones) take
their columns and their keyset from here, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam

from botfleet.store.models import Bot, Result, UTCDateTime

FIRST_TS = datetime(1, 1, 1, tzinfo=UTC)
# A purged bot's audit snapshot: what identifies it and explains its purge (its labels select
# the retention rule; deleted_at starts the clock), not a backup of its row. Never its env or
# token hash: the API never shows those, and an audit record outlives the bot. Not its command,
# status (always "deleted" here), exit code or updated_at either: each field costs every purged
# bot time in the batch's transaction (BENCHMARKS.md, Purge). Its engine is a column of the
# batch's record; its id is listed beside the snapshot.
SNAPSHOT_COLUMNS = (
    "name",
    "image",
    "labels",
    "container_id",
    "created_at",
    "deleted_at",
    "status_at_deletion",
)
# What a batch reads back from the bots it deleted, on either backend: the record's columns and
# the snapshot's (labels also give the reason; deleted_at, SQLite's keyset).
GONE_COLUMNS = [Bot.__table__.c[name] for name in ("id", "engine", *SNAPSHOT_COLUMNS)]
# With an archive, a batch returns whole rows: the archive is a backup, unlike the audit.
BOT_COLUMNS = list(Bot.__table__.c)
RESULT_COLUMNS = list(Result.__table__.c)

# Every row a batch selects is deleted by it (or is no longer eligible), so the next batch may
# start *at* the last deleted_at: ties are safe, and the index scan skips what is gone.
KEYSET = "b.deleted_at >= :after_ts"


def keyset_binds(cursor: Any, size: int) -> list[Any]:
    """The binds of :data:`KEYSET` and the batch's size."""
    return [
        bindparam("after_ts", cursor or FIRST_TS, type_=UTCDateTime()),
        bindparam("batch", size),
    ]
