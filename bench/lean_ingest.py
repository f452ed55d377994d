"""The lean anchor of ``bench.ingest``: the leanest correct result endpoint one could write.

    python -m bench.lean_ingest DATABASE_URL PORT

A bare Starlette route on the server stack ``botfleet serve`` runs on (uvicorn with uvloop and
httptools, one worker): ``POST /bots/{bot_id}/results`` with ``{"data": …}`` and the bot's bearer
token, stored with one asyncpg statement that inserts only if the token's hash is the live bot's.
No framework validation, no ORM, no middleware, no metrics, and no reset of a pooled
connection on release (the same ``StatelessConnection`` botfleet's writer uses): the ceiling of
what the stack allows on this machine, measured in the same run as botfleet.
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfleet.auth import hash_token
from botfleet.result_writer import StatelessConnection

INSERT = """
INSERT INTO results (bot_id, created_at, data)
SELECT id, $3, $4::jsonb FROM bots WHERE id = $1 AND token_hash = $2 AND deleted_at IS NULL
"""


def build(url: str) -> Starlette:
    pool: list[asyncpg.Pool] = []

    async def post(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return JSONResponse({"detail": "missing bearer token"}, status_code=401)
        body = json.loads(await request.body())
        status = await pool[0].execute(
            INSERT,
            uuid.UUID(request.path_params["bot_id"]),
            hash_token(header[7:]),
            datetime.now(UTC),
            json.dumps(body["data"]),
        )
        if status != "INSERT 0 1":
            return JSONResponse({"detail": "refused"}, status_code=401)
        return JSONResponse({"accepted": 1}, status_code=201)

    async def ready(_request: Request) -> Response:
        return JSONResponse({"ready": True})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool.append(
            await asyncpg.create_pool(
                url, min_size=0, max_size=10, connection_class=StatelessConnection
            )
        )
        try:
            yield
        finally:
            await pool[0].close()

    return Starlette(
        routes=[
            Route("/bots/{bot_id}/results", post, methods=["POST"]),
            Route("/readyz", ready),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    url, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(build(url), host="127.0.0.1", port=port, log_config=None)


if __name__ == "__main__":
    main()
