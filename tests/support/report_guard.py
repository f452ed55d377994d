"""A pytest plugin: no garbage collection while a test's report is made.

Formatting a failure parses source (``ast``). A collection inside that parse may finalize a
connection a failed test left behind, whose finalizer logs, and formatting that log parses
source again. On CPython 3.11 the nested parse trips the AST constructor's recursion check
(``SystemError: AST constructor recursion depth mismatch``, python/cpython#106905): an
INTERNALERROR that ends the whole session and hides every failure after it. One failing test
must not cost the report of the others (tests/test_report_guard.py).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
