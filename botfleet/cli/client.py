"""A small HTTP client for CLI commands that talk to a running server (``MAIN_SERVER_URL``).

Every failure becomes a :class:`ClientError` with one line to print and an exit code that says
what kind of failure it was, so scripts can tell "server down" from "bad request":

====  =====================================================
0     success
1     the server refused the request (4xx: 404, 409, 422…)
2     configuration error (see ``cli/common.py``)
3     the server could not be reached
4     authentication failed (401/403: check ADMIN_TOKEN)
5     the server failed (5xx)
====  =====================================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botfleet.config import Settings

if TYPE_CHECKING:
    import httpx

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_SERVER = 5


class ClientError(Exception):
    """``str()`` is the one line to show; ``exit_code`` what the command should exit with."""

    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


class ServerClient:
    """Bearer-authenticated JSON calls; the token never appears in messages."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 60.0) -> None:
        # httpx logs every request at INFO; a command's output is its answer, not a trace.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    @classmethod
    def from_settings(
        cls, settings: Settings, *, url: str | None = None, timeout: float = 60.0
    ) -> ServerClient:
        if settings.admin_token is None:
            raise ClientError("ADMIN_TOKEN is not set; export the server's admin token", 2)
        token = settings.admin_token.get_secret_value()
        return cls(url or settings.main_server_url, token, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """The decoded JSON answer of a 2xx response; :class:`ClientError` otherwise."""
        import httpx  # here, not at the top: `botfleet serve` loads this module too

        clean = {k: v for k, v in (params or {}).items() if v is not None and v != []}
        with self._reaching(), httpx.Client(base_url=self.base_url, timeout=self._timeout) as c:
            answer = c.request(method, path, params=clean, json=json, headers=self._headers)
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.is_success:
            return body
        raise _refusal(answer, body)

    @contextmanager
    def stream(
        self, path: str, *, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """A GET whose 2xx body is read as it comes (``iter_lines``, ``iter_bytes``); the
        same :class:`ClientError` as :meth:`request` otherwise. ``timeout`` bounds the wait
        for each chunk (None: no bound, for a follow)."""
        import httpx

        clean = {k: v for k, v in (params or {}).items() if v is not None and v != []}
        limits = httpx.Timeout(self._timeout, read=timeout)
        with (
            self._reaching(),
            httpx.Client(base_url=self.base_url, timeout=limits) as client,
            client.stream("GET", path, params=clean, headers=self._headers) as answer,
        ):
            if not answer.is_success:
                answer.read()
                try:
                    body = answer.json()
                except ValueError:
                    body = None
                raise _refusal(answer, body)
            yield answer

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Connection failures as the one-line :class:`ClientError` the commands print."""
        import httpx

        try:
            yield
        except httpx.TimeoutException:
            raise ClientError(
                f"{self.base_url} did not answer within {self._timeout:g}s", EXIT_UNREACHABLE
            ) from None
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the server at {self.base_url} ({type(exc).__name__}); "
                "is it running, and is MAIN_SERVER_URL right?",
                EXIT_UNREACHABLE,
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params=params, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _refusal(answer: httpx.Response, body: Any) -> ClientError:
    """A non-2xx answer as the one line to show and the exit code it means."""
    detail = describe_detail(body.get("detail") if isinstance(body, dict) else None)
    detail = detail or answer.text[:200] or answer.reason_phrase
    status = answer.status_code
    if status in (401, 403):
        return ClientError(f"HTTP {status}: {detail} (check ADMIN_TOKEN)", EXIT_AUTH, status)
    code = EXIT_SERVER if status >= 500 else EXIT_REFUSED
    return ClientError(f"HTTP {status}: {detail}", code, status)


def describe_detail(detail: Any) -> str:
    """``detail`` as one line. The server's is always a string (a 422 also lists its fields in
    ``errors``); a list of FastAPI validation errors, as older servers answered, is joined the
    same way (``field: message; …``)."""
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if isinstance(error, dict):
                loc = [str(p) for p in error.get("loc", []) if p not in ("body", "query", "path")]
                parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg', 'invalid')}")
        return "; ".join(parts)
    return "" if detail is None else str(detail)
