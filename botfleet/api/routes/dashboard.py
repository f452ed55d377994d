"""``GET /admin/dashboard``: the operators' web page, static files over the JSON API.

The page itself holds no data, so it is served without a token; it asks for the admin token and
calls the admin API with it. A strict Content-Security-Policy allows only this server's own script
and style, which is why nothing is inline.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(tags=["dashboard"], include_in_schema=False)

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "fleet.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return (resources.files("botfleet") / "web" / name).read_bytes()


def _asset(name: str) -> Response:
    return Response(_read(name), media_type=ASSETS[name], headers=HEADERS)


@router.get("/admin/dashboard")
async def dashboard() -> Response:
    return _asset("index.html")


@router.get("/admin/dashboard/{name}")
async def dashboard_asset(name: str) -> Response:
    if name not in ASSETS or name == "index.html":
        raise HTTPException(404, f"no dashboard file {name!r}")
    return _asset(name)
