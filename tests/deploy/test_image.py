"""The server image (deploy/docker/Dockerfile), built on the local Debian base and started for real:
non-root, healthy by its own HEALTHCHECK, strict about ADMIN_TOKEN off loopback, and — against the
test PostgreSQL and the mounted engine socket — running a bot and a dry-run cleanup.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ROOT, SAMPLE_IMAGE, pg_available
from tests.deploy.images import built, docker, inspect, remove_containers, wait_healthy
from tests.servers import free_port
from tests.support.figures import record_figure
from tests.support.wait import wait_until

# The first test waits for the image build (minutes on a cold cache; BENCHMARKS.md).
pytestmark = [pytest.mark.deploy, pytest.mark.docker, pytest.mark.timeout(1200)]
SOCKET = "/var/run/docker.sock"
STRONG = secrets.token_hex(24)


@pytest.fixture(scope="module")
def image() -> str:
    return built("server")


@pytest.fixture
def run_label() -> Iterator[str]:
    """A label on every container the test starts; all of them are removed at the end."""
    label = f"org.botfleet.test={uuid.uuid4().hex[:12]}"
    yield label
    remove_containers(label)


def run(image: str, label: str, *args: str, env: dict[str, str]) -> str:
    flags = [f"-e{key}={value}" for key, value in env.items()]
    started = docker("run", "-d", "--network", "host", "--label", label, *flags, image, *args)
    return started.stdout.strip()


def test_labels_name_version_revision_and_source(image: str) -> None:
    labels = inspect(image)["Config"]["Labels"]
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.revision"] == revision
    assert "org.opencontainers.image.source" in labels
    config = inspect(image)["Config"]
    assert config["Entrypoint"] == ["botfleet"] and config["Cmd"] == ["serve"]
    assert config["User"] == "botfleet:botfleet"


def test_runs_as_non_root_and_becomes_healthy(image: str, run_label: str) -> None:
    port = free_port()
    container = run(
        image,
        run_label,
        env={"PORT": str(port), "ADMIN_TOKEN": STRONG, "CLEANUP_ENABLED": "false"},
    )
    seconds = wait_healthy(container)
    # Checked inside: the server process (pid 1) and a shell started there are not root.
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == ["10001"] * 4, status
    assert docker("exec", container, "id", "-u").stdout.strip() == "10001"
    # The image listens on 0.0.0.0 (so the strong-token rule applies) on PORT.
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
    size_mb = inspect(image)["Size"] / 1e6
    record_figure("server image", size_mb=round(size_mb, 1), seconds_to_healthy=round(seconds, 1))


def test_leaves_pyarrow_out_and_the_cli_says_how_to_get_it(image: str, run_label: str) -> None:
    """pyarrow (the CLI's Parquet export, ``botfleet[parquet]``) is no part of the server image."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PORT": str(port), "ADMIN_TOKEN": STRONG, "CLEANUP_ENABLED": "false"}
    container = run(image, run_label, env={**env, "MAIN_SERVER_URL": base})

    def up() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        return False

    wait_until(up, timeout=120, message="the server's /healthz", interval=0.25)
    export = docker(
        "exec", container, "botfleet", "results", "export", "--format", "parquet", check=False
    )
    assert export.returncode == 2, export
    assert export.stdout == ""
    assert export.stderr.splitlines() == [
        "botfleet: --format parquet needs pyarrow: pip install 'botfleet[parquet]'"
    ]


@pytest.mark.parametrize("token", ["short", "changeme"])
def test_refuses_a_weak_admin_token_with_one_line_and_exit_2(image: str, token: str) -> None:
    done = docker(
        "run", "--rm", "--network", "none", "-e", f"ADMIN_TOKEN={token}", image, check=False
    )
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "botfleet: invalid ADMIN_TOKEN: must be at least 32 characters and not a documented "
        "example when HOST is not a loopback address"
    ]


def test_runs_a_bot_on_the_mounted_socket_against_postgres(
    image: str, run_label: str, sample_image: str, fresh_pg_database: str
) -> None:
    if not pg_available():
        pytest.fail("PostgreSQL is not available")
    port, instance = free_port(), f"img{uuid.uuid4().hex[:8]}"
    base = f"http://127.0.0.1:{port}"
    env = {"DATABASE_URL": fresh_pg_database, "ADMIN_TOKEN": STRONG}
    # The schema first, by the image's own command, as the compose stack's one-shot does.
    done = docker(
        "run", "--rm", "--network", "host", "--label", run_label,
        *[f"-e{k}={v}" for k, v in env.items()], image, "db", "upgrade",
    )  # fmt: skip
    assert done.returncode == 0
    gid = str(os.stat(SOCKET).st_gid)
    server = docker(
        "run", "-d", "--network", "host", "--label", run_label, "--group-add", gid,
        "-v", f"{SOCKET}:{SOCKET}",
        *[f"-e{k}={v}" for k, v in env.items()],
        f"-ePORT={port}", f"-eMAIN_SERVER_URL={base}", f"-eBOTFLEET_INSTANCE={instance}",
        "-eDOCKER_HOSTS=unix:///var/run/docker.sock", "-eBOT_IMAGE_PULL=never",
        "-eCLEANUP_ENABLED=false",
        image, "serve", "--no-migrate",
    ).stdout.strip()  # fmt: skip
    headers = {"Authorization": f"Bearer {STRONG}"}
    try:
        wait_healthy(server)
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            created = client.post(
                "/bots",
                json={
                    "name": "in-image",
                    "image": SAMPLE_IMAGE,
                    "env": {"RESULT_INTERVAL_SECONDS": "1"},
                },
            )
            assert created.status_code == 201, created.text
            bot_id = created.json()["id"]

            def results() -> int:
                answer = client.get(f"/bots/{bot_id}/results")
                assert answer.status_code == 200, answer.text
                return len(answer.json()["items"])

            wait_until(results, timeout=60, message="the bot's first result", interval=0.5)
            bot = client.get(f"/bots/{bot_id}").json()
            assert bot["status"] == "running", bot
            running = docker(
                "ps", "-q", "--filter", f"label=botfleet.instance={instance}"
            ).stdout.split()
            assert len(running) == 1
            report = client.post("/admin/cleanup", params={"dry_run": "true"})
            assert report.status_code == 200, report.text
            assert report.json()["dry_run"] is True
            assert report.json()["status"] == "succeeded", report.json()
            client.delete(f"/bots/{bot_id}")
    finally:
        with contextlib.suppress(AssertionError):
            remove_containers(f"botfleet.instance={instance}")
