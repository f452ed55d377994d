"""Bots' images come from registries: ``BOT_IMAGE_PULL`` says when an engine pulls one
(``if-not-present``, ``always``, ``never`` — as Kubernetes' ``imagePullPolicy``).

The engine pulls with its own credentials: docker-py reads the usual Docker config
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``) and sends them to the engine. A
registry that answers with a refusal (no such image, not allowed) is the image's fault (a 422
naming ``image``); one that does not answer at all is a dependency that is down (a 503).
Blocking calls: run them in the engine's threads.
"""

from __future__ import annotations

from typing import Any

import docker
from docker.errors import APIError, ImageNotFound
from docker.utils import parse_repository_tag

from botfleet.errors import ImagePullFailed, RegistryUnavailable

PULL_IF_NOT_PRESENT = "if-not-present"
PULL_ALWAYS = "always"
PULL_NEVER = "never"
# How an engine says it could not reach a registry at all (as opposed to a registry's answer).
_UNREACHABLE = (
    "dial tcp",
    "no such host",
    "connection refused",
    "i/o timeout",
    "tls handshake timeout",
    "network is unreachable",
    "context deadline exceeded",
    "server misbehaving",
)


def ensure_image(client: docker.DockerClient, image: str, policy: str, engine: str) -> None:
    """Pull ``image`` on the engine as ``policy`` says; with ``never`` a missing image is left
    for the create to refuse."""
    if policy == PULL_NEVER:
        return
    if policy == PULL_IF_NOT_PRESENT:
        try:
            client.images.get(image)
            return
        except ImageNotFound:
            pass
    pull(client, image, engine)


def pull(client: docker.DockerClient, image: str, engine: str) -> None:
    repository, tag = parse_repository_tag(image)
    try:
        for line in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            error = _error_of(line)
            if error:
                raise classify(image, engine, error)
    except APIError as exc:
        raise classify(image, engine, str(exc.explanation or exc)) from exc


def classify(image: str, engine: str, reason: str) -> ImagePullFailed | RegistryUnavailable:
    reason = reason.strip()[:300]
    if any(marker in reason.lower() for marker in _UNREACHABLE):
        return RegistryUnavailable(image, reason)
    return ImagePullFailed(image, engine, reason)


def _error_of(line: Any) -> str | None:
    if not isinstance(line, dict):
        return None
    detail = line.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    return str(line["error"]) if line.get("error") else None
