"""deploy/systemd/botfleet.service passes ``systemd-analyze verify`` without a word of complaint.

verify also checks that ExecStart's program exists, so it runs against a throw-away root: the
host's own units, the unit as shipped, and a stand-in executable where the unit expects botfleet
(/opt/botfleet/bin/botfleet, which a test machine does not have).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.deploy.images import need

pytestmark = pytest.mark.deploy
UNIT = ROOT / "deploy/systemd/botfleet.service"
SYSTEM_UNITS = Path("/lib/systemd/system")


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def verify(root: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze --root=root verify`` of ``unit_text`` installed under ``root``."""
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    program = root / directives(unit_text)["ExecStart"][0].split()[0].lstrip("/")
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    target = root / "etc/systemd/system/botfleet.service"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(unit_text)
    return subprocess.run(
        [need("systemd-analyze"), f"--root={root}", "verify", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    done = verify(tmp_path, UNIT.read_text())
    assert done.returncode == 0, done.stderr
    # verify only warns about an unknown key or a bad value; a clean unit draws no output at all.
    assert done.stdout + done.stderr == ""


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes")
    done = verify(tmp_path, broken + "ProtectSystm=strict\n")
    assert "sometimes" in done.stderr and "ProtectSystm" in done.stderr


def test_dedicated_user_environment_file_restart_and_hardening() -> None:
    found = directives(UNIT.read_text())
    assert found["User"] == ["botfleet"] and found["Group"] == ["botfleet"]
    assert found["EnvironmentFile"] == ["/etc/botfleet/botfleet.env"]
    assert found["Restart"] == ["on-failure"]
    # A bad variable exits 2: restarting would only repeat the same one-line error.
    assert found["RestartPreventExitStatus"] == ["2"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert found[key] == [value], key
