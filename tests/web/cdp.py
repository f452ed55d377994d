"""Just enough of the Chrome DevTools Protocol to drive headless Chromium from a test.

Debian's /usr/bin/chromium, a profile of its own, loopback only; stopped by its pid (and its
process group, which holds the renderers it forked).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.support.wait import WaitTimeout, wait_until

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1280,1000",
]


class CdpError(Exception):
    pass


class Page:
    """One page target: send commands, keep the events, evaluate JavaScript, poll conditions."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == msg_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        answer = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise CdpError(f"{expression}: {answer['exceptionDetails']}")
        return answer.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; fail with the page's text if it never is."""
        try:
            return wait_until(
                lambda: self.evaluate(expression), timeout=timeout, message=repr(expression)
            )
        except WaitTimeout as timed_out:
            text = self.evaluate("document.body ? document.body.innerText : ''")
            raise WaitTimeout(f"{timed_out}; page:\n{text}") from None

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def type_into(self, element_id: str, text: str) -> None:
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).focus()")
        self.send("Input.insertText", text=text)

    def click(self, element_id: str) -> None:
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).click()")

    def text(self, element_id: str) -> str:
        return str(self.evaluate(f"document.getElementById({json.dumps(element_id)}).innerText"))

    def visible(self, element_id: str) -> bool:
        return bool(
            self.evaluate(f"!!document.getElementById({json.dumps(element_id)}).offsetParent")
        )

    def screenshot(self, path: Path) -> None:
        """The whole page, not just the viewport."""
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.send(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Uncaught exceptions, console errors and CSP violations seen so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                # A 401 on purpose (the wrong-token step) is logged as a network error: fine.
                if "401" not in entry.get("text", ""):
                    out.append(str(entry.get("text")))
        return out


@contextlib.contextmanager
def chromium(profile: Path, timeout: float = 30.0) -> Iterator[Page]:
    """Start headless Chromium with a fresh profile; yield its first page; stop it by pid."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        raise FileNotFoundError(CHROMIUM)
    profile.mkdir(parents=True, exist_ok=True)
    log = (profile.parent / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"

        def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"Chromium exited {proc.returncode}; see {log.name}")
            return port_file.exists() and port_file.read_text().count("\n") >= 1

        wait_until(started, timeout=timeout, message=f"Chromium to start (see {log.name})")
        port = int(port_file.read_text().splitlines()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(page_url, max_size=None, open_timeout=timeout) as ws:
            page = Page(ws)
            for domain in ("Page", "Runtime", "Log"):
                page.send(f"{domain}.enable")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        # Renderers and helpers Chromium forked share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
