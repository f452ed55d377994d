"""The arrows that must never exist (docs/architecture.md), checked by import-linter on the real
tree — and shown to catch a forbidden import and a cycle when one is added to a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the ``botfleet`` package of ``tree``, with the contracts of ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(
        ROOT / "botfleet", tmp_path / "botfleet", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_every_contract_holds() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_cleanup_importing_the_api_breaks_a_contract(copy: Path) -> None:
    policy = copy / "botfleet/cleanup/run.py"
    policy.write_text(policy.read_text() + "\nfrom botfleet.api import deps  # noqa: E402\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "domain code never imports the web layer or the CLI BROKEN" in result.stdout
    assert "botfleet.cleanup.run -> botfleet.api.deps" in result.stdout


def test_the_policy_reaching_the_store_breaks_its_purity(copy: Path) -> None:
    policy = copy / "botfleet/cleanup/policy.py"
    policy.write_text(policy.read_text() + "\nfrom botfleet.store import models  # noqa: E402\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "the retention policy is pure: no store, no engine BROKEN" in result.stdout


def test_a_cycle_breaks_the_acyclic_contract(copy: Path) -> None:
    # errors -> constants is harmless alone; with constants -> errors it is a cycle. A
    # function-local import counts as much as one at the top.
    errors = copy / "botfleet/errors.py"
    errors.write_text(errors.read_text() + "\nfrom botfleet import constants  # noqa: E402\n")
    constants = copy / "botfleet/constants.py"
    constants.write_text(
        constants.read_text()
        + "\n\ndef _late() -> None:\n    from botfleet import errors  # noqa\n"
    )
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "no package or module of botfleet imports one that imports it back BROKEN" in (
        result.stdout
    )


# A module a reader takes in at one sitting (issue 15). Migrations are history, not design.
MOST_LINES = 400
# About 300 lines at most for one concept; the one engine module may reach MOST_LINES.
USUAL_LINES = 300


def test_no_module_is_longer_than_a_reader_takes_in_at_once() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "botfleet").rglob("*.py")
        if "migrations" not in path.parts
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MOST_LINES
    }
    assert long == {}, f"split these by concept (docs/architecture.md): {long}"


def module_lengths(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for path in (root / "botfleet").rglob("*.py")
        if "migrations" not in path.parts
    }


def longer_than_usual(lengths: dict[str, int]) -> dict[str, int]:
    """Modules over USUAL_LINES, when more than one is: each is a concept too many."""
    over = {name: n for name, n in lengths.items() if n > USUAL_LINES}
    return over if len(over) > 1 else {}


def test_at_most_one_module_is_longer_than_one_concept_takes() -> None:
    over = longer_than_usual(module_lengths(ROOT))
    assert over == {}, f"at most one module over {USUAL_LINES} lines; split these: {over}"


def test_a_second_long_module_breaks_the_rule(copy: Path) -> None:
    long = copy / "botfleet/constants.py"
    long.write_text(long.read_text() + "\n" * (USUAL_LINES + 1))
    over = longer_than_usual(module_lengths(copy))
    assert "botfleet/constants.py" in over and len(over) >= 2
