"""The browser the web tests drive: headless Chromium with a fresh profile per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_service
from tests.web.cdp import CHROMIUM, Page, chromium


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        missing_service("Chromium (/usr/bin/chromium)")
    with chromium(tmp_path / "profile") as p:
        yield p
