"""The report guard (tests/support/report_guard.py): a failing test whose report is made while
garbage that parses source on finalization is collected ends as one failure, not as an
INTERNALERROR that ends the session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Garbage that lasts: each cycle's finalizer parses source, as a leaked connection's logging
# does, and leaves a new cycle behind, so that every collection finds one. Collections come every
# hundred allocations: the failure's report parses the test's source, and is collected inside.
FAILING = """
import ast, gc

class Parses:
    left = 20_000

    def __del__(self):
        ast.parse("a + b\\n" * 5)
        if Parses.left > 0:
            Parses.left -= 1
            cycle()

def cycle():
    a, b = Parses(), Parses()
    a.other, b.other = b, a

def test_fails():
    cycle()
    gc.set_threshold(100)
    assert 1 == 2

def test_after():
    pass
"""


def run(tmp_path: Path, *plugins: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_failing.py").write_text(FAILING)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    for plugin in plugins:
        args += ["-p", plugin]
    return subprocess.run(
        [*args, "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the CPython bug is 3.11's")
def test_without_the_guard_the_session_ends_in_an_internal_error(tmp_path: Path) -> None:
    """The condition is real here: without the guard, the same file ends the session."""
    done = run(tmp_path)
    assert "INTERNALERROR" in done.stdout + done.stderr, done.stdout[-2000:]
    assert "AST constructor recursion depth mismatch" in done.stdout + done.stderr


def test_with_the_guard_a_failure_is_one_failure(tmp_path: Path) -> None:
    done = run(tmp_path, "tests.support.report_guard")
    assert "INTERNALERROR" not in done.stdout + done.stderr, done.stdout[-2000:]
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
