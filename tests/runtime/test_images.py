"""BOT_IMAGE_PULL on a plain engine, against the local registry (127.0.0.1:5000; nothing here
leaves loopback): ``if-not-present`` pulls a missing image and keeps a present one, ``always``
pulls anyway, ``never`` refuses a missing image; a registry that refuses is a 422 naming
``image`` with its reason, one that does not answer a 503. On a swarm, ``always`` pins the
service to the image's digest."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.errors import ImageNotAvailable, ImagePullFailed, RegistryUnavailable
from botfleet.runtime.base import ContainerSpec
from botfleet.runtime.docker import DockerEngine
from botfleet.runtime.swarm import SwarmEngine
from tests.support.swarm import REGISTRY, Swarm, push

pytestmark = pytest.mark.docker


def spec(instance: str, image: str) -> ContainerSpec:
    bot_id = str(uuid.uuid4())
    return ContainerSpec(
        name=f"botfleet-{bot_id}",
        image=image,
        command=["sleep", "600"],
        env={},
        labels={LABEL_MANAGED: "true", LABEL_BOT_ID: bot_id, LABEL_INSTANCE: instance},
        network="none",
    )


def image_id(reference: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", reference],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def pulled_tag(registry_image: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A tag that the registry holds as the sample image while the engine holds it as a
    variant: (reference, the registry's image id, the variant's image id)."""
    tag = f"{REGISTRY}/botfleet/pulled:{uuid.uuid4().hex[:8]}"
    registry_id = image_id(push(registry_image, tag.split("/", 1)[1]))
    (tmp_path / "Dockerfile").write_text(f"FROM {registry_image}\nLABEL variant=local\n")
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(tmp_path)], check=True, capture_output=True
    )
    local_id = image_id(tag)
    assert local_id != registry_id
    yield tag, registry_id, local_id
    remove_image(tag)


def remove_image(tag: str) -> None:
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def service_image(url: str, service_id: str) -> str:
    return subprocess.run(
        [
            "docker",
            "-H",
            url,
            "service",
            "inspect",
            service_id,
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


async def run_image(engine: DockerEngine, instance: str, image: str) -> Any:
    info = await engine.run(spec(instance, image))
    return image_id_of_container(info.id)


def image_id_of_container(container_id: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", "{{.Image}}", container_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


async def test_if_not_present_keeps_what_is_there_and_always_pulls(
    pulled_tag: tuple[str, str, str], instance: str, cleanup_containers: None
) -> None:
    tag, registry_id, local_id = pulled_tag
    lazy, eager = DockerEngine(pull="if-not-present"), DockerEngine(pull="always")
    try:
        assert await run_image(lazy, instance, tag) == local_id
        assert await run_image(eager, instance, tag) == registry_id  # pulled over the local one
        remove_image(tag)
        assert await run_image(lazy, instance, tag) == registry_id  # missing: pulled
    finally:
        await lazy.close()
        await eager.close()


async def test_never_refuses_a_missing_image(
    registry_image: str, instance: str, cleanup_containers: None
) -> None:
    engine = DockerEngine(pull="never")
    missing = f"{REGISTRY}/botfleet/never-pulled:{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(ImageNotAvailable) as refused:
            await engine.run(spec(instance, missing))
        assert not isinstance(refused.value, ImagePullFailed)
    finally:
        await engine.close()


async def test_a_refusing_registry_names_the_image_and_a_silent_one_is_unavailable(
    registry_image: str, instance: str, cleanup_containers: None
) -> None:
    engine = DockerEngine(pull="if-not-present")
    try:
        with pytest.raises(ImagePullFailed) as refused:
            await engine.run(spec(instance, f"{REGISTRY}/botfleet/no-such-image:1"))
        assert str(refused.value).startswith("image: ")
        assert "not found" in refused.value.reason or "unknown" in refused.value.reason
        with pytest.raises(RegistryUnavailable) as silent:
            await engine.run(spec(instance, "127.0.0.1:5999/botfleet/anything:1"))
        assert "connection refused" in silent.value.reason
    finally:
        await engine.close()


async def test_the_api_answers_422_and_503_for_them(
    client: Any, admin_headers: dict[str, str], settings: Any, registry_image: str
) -> None:
    # The app of this test pulls nothing (the test default); one that pulls is built here.
    from tests.conftest import started_app

    pulling = settings.model_copy(update={"bot_image_pull": "if-not-present"})
    app, ctx = await started_app(pulling)
    import httpx

    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50300))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            refused = await api.post(
                "/bots",
                json={"name": "a", "image": f"{REGISTRY}/botfleet/no-such-image:1"},
                headers=admin_headers,
            )
            silent = await api.post(
                "/bots",
                json={"name": "b", "image": "127.0.0.1:5999/botfleet/anything:1"},
                headers=admin_headers,
            )
            listed = (await api.get("/bots", headers=admin_headers)).json()
    finally:
        await ctx.__aexit__(None, None, None)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("image: ")
    assert silent.status_code == 503 and "did not answer" in silent.json()["detail"]
    assert listed["total"] == 0  # nothing half-made


async def test_a_swarm_that_always_pulls_pins_the_digest(
    swarm: Swarm, registry_image: str, instance: str
) -> None:
    engine = SwarmEngine([swarm.manager.url], pull="always")
    try:
        info = await engine.run(spec(instance, registry_image))
        image = service_image(swarm.manager.url, info.id)
        assert image.startswith(registry_image + "@sha256:")
    finally:
        swarm.remove_services(f"{LABEL_INSTANCE}={instance}")
        await engine.close()
