"""Results out (admin token): every result matching a filter, streamed as NDJSON or CSV.

The answer is produced a partition of rows at a time from a server-side cursor
(``results_export.py``), so its size never shows in the server's memory. Errors that can be
known before the first byte (a bad filter, an unknown bot) are answers of their own; a failure
mid-stream can only cut the body short, which a client sees as a truncated transfer.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from botfleet.api.deps import AdminDep, ServicesDep
from botfleet.api.params import label_query, parse_time, time_query
from botfleet.api.responses import AUTH, errors
from botfleet.api.routes.bots import parse_label_filters
from botfleet.results_export import MEDIA_TYPES, ExportFilter, export

router = APIRouter(prefix="/results", tags=["results"])
ExportFormat = Literal["ndjson", "csv"]
EXPORT_CONTENT: dict[str, Any] = {
    "application/x-ndjson": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
}


def streamed(services: ServicesDep, flt: ExportFilter, fmt: str, name: str) -> StreamingResponse:
    return StreamingResponse(
        export(services.db, flt, fmt),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        **errors(*AUTH, 422),
        200: {
            "description": "Every matching result, oldest first: one JSON object a line "
            "(`id`, `bot_id`, `created_at`, `data`), or CSV with a header and `data` as JSON.",
            "content": EXPORT_CONTENT,
        },
    },
)
async def export_results(
    services: ServicesDep,
    _admin: AdminDep,
    fmt: ExportFormat = Query("ndjson", alias="format", description="`ndjson` or `csv`."),
    label: list[str] = label_query(
        "`key=value`, repeatable: results of bots carrying every one (none: all "
        "results, orphaned ones too)."
    ),
    since: str | None = time_query("Created at or after (RFC 3339; no zone: UTC)."),
    until: str | None = time_query("Created before (RFC 3339; no zone: UTC)."),
) -> StreamingResponse:
    """Stream results out of the store with constant memory, whatever their number."""
    flt = ExportFilter(
        labels=parse_label_filters(label),
        since=parse_time("since", since),
        until=parse_time("until", until),
    )
    return streamed(services, flt, fmt, "results")
