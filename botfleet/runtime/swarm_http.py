"""The calls a cleanup makes once per service (its spec, its tasks, its removal), and the listing
of every service with its tasks (each cleanup's and each reconcile pass's), over the plain HTTP
route of :mod:`botfleet.runtime.docker_http`, for the same reason the plain engines use it:
through docker-py each call costs several times the client CPU (BENCHMARKS.md, "Swarm").

Errors come back as the SDK's, so :class:`~botfleet.runtime.swarm.SwarmEngine` handles one kind:
a connection that fails raises ``requests.exceptions.ConnectionError`` (the manager is passed
over), an error answer raises :class:`docker.errors.APIError` with the engine's status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from docker.errors import APIError

from botfleet.runtime.docker_http import CONNECTION_ERRORS, EngineAnswer, EngineHttp, answer_message

T = TypeVar("T")


def _response(status: int, message: str) -> requests.Response:
    """What ``APIError`` reads its status and text from."""
    response = requests.Response()
    response.status_code, response.reason, response.url = status, message, "docker"
    return response


def sdk_errors(call: Callable[[], T]) -> T:
    try:
        return call()
    except EngineAnswer as exc:
        raise APIError(exc.message, _response(exc.status, exc.message), exc.message) from exc
    except CONNECTION_ERRORS as exc:
        raise requests.exceptions.ConnectionError(f"{type(exc).__name__}: {exc}") from exc


def service(http: EngineHttp, service_id: str) -> dict[str, Any] | None:
    """The service as ``GET /services/{id}`` gives it; None if it is gone."""
    found = sdk_errors(lambda: http.get_json(f"/services/{quote(service_id, safe='')}"))
    return found if isinstance(found, dict) else None


def tasks(http: EngineHttp, service_id: str) -> list[dict[str, Any]]:
    return tasks_where(http, {"service": [service_id]})


def services_where(http: EngineHttp, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """``GET /services`` with ``filters`` (as docker-py's ``services(filters=…)``)."""
    params = {"filters": json.dumps(filters)}
    return list(sdk_errors(lambda: http.get_json("/services", params)) or [])


def tasks_where(http: EngineHttp, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    params = {"filters": json.dumps(filters)}
    return list(sdk_errors(lambda: http.get_json("/tasks", params)) or [])


def tasks_of(http: EngineHttp, service_ids: list[str]) -> list[dict[str, Any]] | None:
    """The tasks of several services in one call; None when one of them is gone (the engine
    answers 404 for the whole call then — never read as "no tasks")."""
    params = {"filters": json.dumps({"service": service_ids})}

    def read() -> list[dict[str, Any]] | None:
        status, body = http.request("GET", "/tasks", params)
        if status == 404:
            return None
        if status >= 400:
            raise EngineAnswer(status, answer_message(body))
        return list(json.loads(body) or [])

    return sdk_errors(read)


def remove(http: EngineHttp, service_id: str) -> None:
    """Remove a service; gone already is fine."""
    sdk_errors(lambda: http.delete(f"/services/{quote(service_id, safe='')}"))
