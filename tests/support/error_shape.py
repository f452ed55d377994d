"""The one error shape (botfleet/api/schemas/errors.py), as tests check an answer against it."""

from __future__ import annotations

from typing import Any

import httpx


def assert_error_shape(answer: httpx.Response, *, extra: frozenset[str] = frozenset()) -> None:
    """``{"detail": "<one line>"}``, plus ``errors`` naming each field on a 422 (only there);
    ``extra`` names keys an operation adds on purpose (``run_id`` on a busy cleanup)."""
    body: Any = answer.json()
    where = f"{answer.request.method} {answer.request.url.path} {answer.status_code}: {body}"
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), where
    assert body["detail"] and "\n" not in body["detail"], where
    if answer.status_code == 422:
        assert set(body) == {"detail", "errors"} | extra, where
        assert body["errors"], where
        for item in body["errors"]:
            assert set(item) == {"field", "message"}, where
            assert all(isinstance(v, str) and v for v in item.values()), where
        assert body["detail"].startswith(f"{body['errors'][0]['field']}:"), where
    else:
        assert set(body) == {"detail"} | extra, where
