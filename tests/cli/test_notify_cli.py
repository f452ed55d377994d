"""`botfleet notify test` against the sample receiver of docs/operations.md, run as written (on a
free loopback port): the receiver verifies the signature with `standardwebhooks` and prints the
event; a receiver that is down makes the command exit 1; no receiver configured, exit 2."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

from botfleet.cli.main import app as cli
from tests.cli.test_cleanup_cli import keep_logging
from tests.conftest import ROOT
from tests.servers import free_port
from tests.support.wait import wait_until

__all__ = ["keep_logging"]
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def sample_receiver(port: int) -> str:
    text = (ROOT / "docs" / "operations.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "Webhook(" in b]
    assert '("127.0.0.1", 8080)' in code
    return code.replace('("127.0.0.1", 8080)', f'("127.0.0.1", {port})')


def notify(*args: str, **env: str) -> object:
    return CliRunner().invoke(cli, ["notify", *args], env={"DATABASE_URL": "sqlite:///x", **env})


def test_the_documented_receiver_verifies_a_test_event(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "receiver.py"
    script.write_text(sample_receiver(port))
    log = tmp_path / "receiver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            env={**os.environ, "NOTIFY_WEBHOOK_SECRET": SECRET},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=1) is not None,
            timeout=20,
            message="the sample receiver",
            ignore=(httpx.TransportError,),
        )
        url = f"http://127.0.0.1:{port}/hooks"
        down = f"http://127.0.0.1:{free_port()}/hooks"
        ok = notify("test", NOTIFY_WEBHOOK_URLS=url, NOTIFY_WEBHOOK_SECRET=SECRET)
        assert ok.exit_code == 0, ok.output  # type: ignore[attr-defined]
        assert "HTTP 204" in ok.output  # type: ignore[attr-defined]
        wait_until(
            lambda: "io.botfleet.notify.test" in log.read_text(),
            timeout=10,
            message="the receiver to print the verified event",
        )
        forged = notify(
            "test",
            NOTIFY_WEBHOOK_URLS=f"{url},{down}",
            NOTIFY_WEBHOOK_SECRET="whsec_" + base64.b64encode(b"w" * 32).decode(),
        )
        assert forged.exit_code == 1  # type: ignore[attr-defined]
        assert "HTTP 400" in forged.output and "ConnectError" in forged.output  # type: ignore[attr-defined]
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_receivers_exit_2() -> None:
    result = notify("test")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "NOTIFY_WEBHOOK_URLS is not set" in result.output  # type: ignore[attr-defined]
