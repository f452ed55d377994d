"""Whole ``botfleet serve`` processes and a seeded store, for scheduler tests that need real
processes (two replicas on one database, SIGTERM mid-run). Processes are stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from botfleet.config import Settings
from tests.conftest import TEST_TOKEN
from tests.servers import free_port
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
_SETTINGS_VARS = {name.upper() for name in Settings.model_fields}


def clean_env(**env: Any) -> dict[str, str]:
    """The process environment without any botfleet variable of the developer's, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    base.update(ADMIN_TOKEN=TEST_TOKEN, LOG_LEVEL="INFO", RECONCILE_INTERVAL_SECONDS="3600")
    # Only loopback traffic here: a server under test never pulls an image from a registry.
    base.update(BOT_IMAGE_PULL="never")
    base.update({k.upper(): str(v) for k, v in env.items()})
    return base


class Serve:
    """One ``python -m botfleet.cli serve`` with an environment of the test's own."""

    def __init__(self, workdir: Path, *, command: list[str] | None = None, **env: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.log"
        # Bots it starts (host network) post their results to where it really listens.
        env = {"MAIN_SERVER_URL": self.url, **env}
        base = clean_env(PORT=self.port, HOST="127.0.0.1", **env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command or [sys.executable, "-m", "botfleet.cli", "serve"],
                cwd=workdir,
                env=base,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def ready(self, timeout: float = 60) -> Serve:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log()}")
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200

        wait_until(
            up,
            timeout=timeout,
            message=f"serve on {self.url}",
            interval=0.1,
            ignore=(httpx.TransportError,),
        )
        return self

    def status(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/admin/cleanup/status", headers=AUTH, timeout=10)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Whatever the test did: SIGTERM, then SIGKILL; never leave the process behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
