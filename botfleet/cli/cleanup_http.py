"""A minimal client of the cleanup's admin API, for ``botfleet cleanup … --server``."""

from __future__ import annotations

from typing import Any

import httpx

from botfleet.config import Settings


class ServerError(Exception):
    """The server answered with an error (``status`` set) or could not be reached (None)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AdminClient:
    """Bearer-authenticated JSON calls to ``MAIN_SERVER_URL``; the token is never printed."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> AdminClient:
        if settings.admin_token is None:
            raise ServerError("ADMIN_TOKEN must be set to call the server")
        # A run answers when it is done: allow as long as a run may take.
        return cls(
            url or settings.main_server_url,
            settings.admin_token.get_secret_value(),
            timeout=settings.cleanup_max_run_seconds + 60,
        )

    def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with httpx.Client(base_url=self.base_url, timeout=self._timeout) as client:
                answer = client.request(method, path, params=clean, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach {self.base_url}: {type(exc).__name__}") from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code >= 400:
            detail = body.get("detail") if isinstance(body, dict) else answer.text[:200]
            raise ServerError(f"HTTP {answer.status_code}: {detail}", answer.status_code, body)
        return body
