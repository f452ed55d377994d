"""Extra Docker Engines for tests: a ``dockerd`` of the test's own, started, stopped and removed.

Multi-engine behaviour (placement, an engine going away, cleanup across engines) needs engines a
test may kill without harming anyone else, so each :class:`ExtraEngine` is a separate daemon with
its own socket, data root, exec root, pid file and managed containerd — nothing shared with the
main daemon on ``/var/run/docker.sock``. No bridge network and no iptables, like the main one.

    with extra_engine(images=["botfleet/sample-bot:latest"]) as engine:
        settings = make_settings(docker_hosts=engine.url)
        ...
        engine.stop()      # unreachable now: its socket is gone
        engine.start()     # back, with its containers (stopped) and images

Or through the ``engine_factory`` fixture (tests/conftest.py), which removes all at the end.
Needs root and ``dockerd`` on PATH. Paths live in a short ``/tmp/bfe…`` directory because unix
socket paths are limited to 108 bytes (containerd's socket sits under the exec root).
Processes are only ever signalled by the pid this helper started or read from its own pid file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import docker

from tests.support.wait import WaitTimeout, wait_until

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class EngineStartError(RuntimeError):
    pass


class ExtraEngine:
    """One throw-away ``dockerd``; ``url`` is what goes into ``DOCKER_HOSTS``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="bfe", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log_path = self.root / "dockerd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the daemon (again) and wait until it answers a ping."""
        if self.running:
            return
        if shutil.which("dockerd") is None:
            raise EngineStartError("dockerd is not on PATH")
        command = [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            # Containers are stopped at daemon shutdown; do not wait long for stubborn ones.
            "--shutdown-timeout=2",
            "-H",
            self.url,
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.root / "docker.pid"),
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        proc = self._proc

        def up() -> bool:
            if proc.poll() is not None:
                raise EngineStartError(f"dockerd exited early; see {self.log_path}:\n{self.tail()}")
            return self.answers()

        try:
            wait_until(up, timeout=timeout, message="dockerd to answer a ping", interval=0.1)
        except WaitTimeout as timed_out:
            self.stop()
            raise EngineStartError(
                f"dockerd did not answer in {timeout}s; see {self.log_path}"
            ) from timed_out

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the daemon gracefully (SIGTERM, then SIGKILL after ``timeout``); keep its data."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            self._kill_leftover_containerd()
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        self._kill_leftover_containerd()

    def remove(self) -> None:
        """Stop the daemon and delete everything it owned (mounts, data, sockets)."""
        self.stop()
        self._unmount_all()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- talking to it -----------------------------------------------------------------------
    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with self.client(timeout=2) as client:
                client.ping()
        except Exception:
            return False
        return True

    @contextlib.contextmanager
    def client(self, timeout: int = 30) -> Iterator[docker.DockerClient]:
        """A docker SDK client for this engine, closed on exit."""
        client = docker.DockerClient(base_url=self.url, timeout=timeout)
        try:
            yield client
        finally:
            client.close()

    def load_images(self, images: Sequence[str]) -> None:
        """Copy images from the main daemon: ``docker save | docker -H <this> load``."""
        if not images:
            return
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "-H", self.url, "load", "-q"], stdin=save.stdout, capture_output=True
        )
        if save.stdout is not None:
            save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise EngineStartError(f"loading {images} failed: {load.stderr.decode()[-500:]}")

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # --- leftovers ---------------------------------------------------------------------------
    def _kill_leftover_containerd(self) -> None:
        # dockerd stops the containerd it started; after a SIGKILL it may be left running.
        pid_file = self.root / "exec" / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(self.root).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)

    def _unmount_all(self) -> None:
        # The daemon leaves e.g. exec/netns/default mounted; unmount deepest first.
        prefix = str(self.root) + "/"
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)


@contextlib.contextmanager
def extra_engine(images: Sequence[str] = ()) -> Iterator[ExtraEngine]:
    """A started :class:`ExtraEngine` holding ``images``; removed on exit, whatever happened."""
    engine = ExtraEngine()
    try:
        engine.start()
        engine.load_images(images)
        yield engine
    finally:
        engine.remove()
