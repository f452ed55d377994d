"""`botfleet serve` on the embedded default: migrates, prints a generated token once, answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.servers import free_port
from tests.support.wait import wait_until


def test_serve_on_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ADMIN_TOKEN")}
    env.update(PORT=str(port), CLEANUP_ENABLED="false", DOCKER_HOSTS="unix:///nonexistent.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "botfleet.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        healthz = wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2),
            timeout=30,
            message="serve to answer",
            interval=0.1,
            ignore=(httpx.TransportError,),
        )
        assert healthz.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        assert (tmp_path / "data" / "botfleet.db").exists()
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    token_lines = [line for line in err.splitlines() if "generated one" in line]
    assert len(token_lines) == 1
    token = token_lines[0].rsplit(" ", 1)[1]
    assert len(token) >= 32
    assert err.count(token) == 1  # printed once, never logged
    # uvicorn re-raises SIGTERM after a graceful shutdown, as systemd expects.
    assert proc.returncode in (0, -15)
    assert "Application shutdown complete" in err
