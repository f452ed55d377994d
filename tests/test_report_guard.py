"""The report guard (tests/support/report_guard.py): a failing test whose report is made while
garbage that parses source on finalization is collected ends as one failure, not as an
INTERNALERROR that ends the session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, not_here

# While a report is made (inside the guard, which wraps every other hook), each parse of source
# first leaves a cycle of garbage whose finalizer parses source, as a leaked connection's
# logging does, and runs with a collection at every allocation: the failure's report, parsing
# the test's source, collects it inside.
CONFTEST = """
import ast, gc
import pytest

parse = ast.parse

class Parses:
    def __del__(self):
        parse("a + b\\n" * 5)

def parse_with_garbage(*args, **kwargs):
    a, b = Parses(), Parses()
    a.other, b.other = b, a
    del a, b
    threshold = gc.get_threshold()
    gc.set_threshold(1)
    try:
        return parse(*args, **kwargs)
    finally:
        gc.set_threshold(*threshold)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    ast.parse = parse_with_garbage
    try:
        yield
    finally:
        ast.parse = parse
"""
FAILING = """
def test_fails():
    assert 1 == 2

def test_after():
    pass
"""


def run(tmp_path: Path, *plugins: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
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


def test_without_the_guard_the_session_ends_in_an_internal_error(tmp_path: Path) -> None:
    """The condition is real here: without the guard, the same file ends the session. The bug
    is CPython 3.11's, the project's interpreter (CI runs on it: elsewhere it fails, not
    skips)."""
    if sys.version_info[:2] != (3, 11):
        not_here(f"the nested-parse bug is CPython 3.11's; this is {sys.version.split()[0]}")
    done = run(tmp_path)
    assert "INTERNALERROR" in done.stdout + done.stderr, done.stdout[-2000:]
    assert "AST constructor recursion depth mismatch" in done.stdout + done.stderr


def test_with_the_guard_a_failure_is_one_failure(tmp_path: Path) -> None:
    done = run(tmp_path, "tests.support.report_guard")
    assert "INTERNALERROR" not in done.stdout + done.stderr, done.stdout[-2000:]
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
