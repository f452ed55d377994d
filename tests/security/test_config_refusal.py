"""``botfleet serve`` refuses to start off loopback with a weak ``ADMIN_TOKEN``: shorter than 32
characters, or one of the tokens the documentation shows. Tested through the real CLI process;
nothing is ever bound to a non-loopback address (the accepted cases use ``botfleet config``,
which validates the same settings and binds nothing).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from botfleet.constants import EXAMPLE_ADMIN_TOKENS
from tests.reliability._serve import ROOT, clean_env
from tests.servers import free_port

STRONG = "s" * 32
# Where operators read example commands; a token literal there is an "example token".
DOC_FILES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").rglob("*.*")),
    *sorted((ROOT / "scripts").glob("*.sh")),
]
# The seed document's curl commands use this one (the seed lives outside the repository).
SEED_TOKEN = "admin-secret-token"
_LITERAL = re.compile(r"(?:ADMIN_TOKEN=|Bearer\s+)([A-Za-z0-9._~+/=-]{4,})")


def documented_tokens() -> set[str]:
    found = set()
    for path in DOC_FILES:
        if path.is_file():
            found.update(_LITERAL.findall(path.read_text(errors="replace")))
    return found - {"token", "tokens"}  # prose: "Bearer token for admin endpoints"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botfleet.cli", *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_documented_example_tokens_are_known() -> None:
    """Every token literal in README, docs, examples and scripts, and the seed's, is on the list
    that config.py refuses off loopback — a new example in the docs must be added there."""
    found = documented_tokens() | {SEED_TOKEN}
    assert found <= EXAMPLE_ADMIN_TOKENS, found - EXAMPLE_ADMIN_TOKENS


HOSTS = ("0.0.0.0", "::", "10.1.2.3", "bots.example.internal")
WEAK = ["x" * 31, "short", *sorted(EXAMPLE_ADMIN_TOKENS)]


@pytest.mark.parametrize(
    ("token", "host"),
    [(token, HOSTS[i % len(HOSTS)]) for i, token in enumerate(WEAK)],
    ids=[
        f"{'31 chars' if t == 'x' * 31 else t}@{HOSTS[i % len(HOSTS)]}" for i, t in enumerate(WEAK)
    ],
)
def test_serve_refuses_a_weak_token_off_loopback(
    token: str, host: str, tmp_path: Path, instance: str
) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "serve", "--no-migrate"],
        env=clean_env(ADMIN_TOKEN=token, HOST=host, PORT=str(port), BOTFLEET_INSTANCE=instance),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, naming the variable and what it accepts
    assert lines[0].startswith("botfleet: invalid ADMIN_TOKEN:"), lines
    assert "32 characters" in lines[0] and "loopback" in lines[0]
    assert token not in done.stderr + done.stdout
    assert nothing_listens(port)
    assert not (tmp_path / "data").exists()  # refused before touching the store


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_weak_token_is_accepted_on_loopback(host: str) -> None:
    done = cli("config", ADMIN_TOKEN="admin-secret-token", HOST=host)
    assert done.returncode == 0, done.stderr
    assert "admin-secret-token" not in done.stdout + done.stderr


def test_a_strong_token_is_accepted_off_loopback() -> None:
    done = cli("config", ADMIN_TOKEN=STRONG, HOST="0.0.0.0")
    assert done.returncode == 0, done.stderr
    assert STRONG not in done.stdout and '"ADMIN_TOKEN": "********"' in done.stdout


def test_serve_warns_about_a_weak_token_on_loopback(tmp_path: Path, instance: str) -> None:
    from tests.reliability._serve import Serve

    serve = Serve(
        tmp_path,
        ADMIN_TOKEN="admin-secret-token",
        BOTFLEET_INSTANCE=instance,
        CLEANUP_ENABLED="false",
        DOCKER_HOSTS="unix:///nonexistent.sock",
    )
    try:
        serve.ready()
    finally:
        serve.stop()
    log = serve.log()
    assert "ADMIN_TOKEN is short or a documented example" in log
    assert "admin-secret-token" not in log
