"""The server image's size budget (BENCHMARKS.md, "Deploy images"): what botfleet adds over its
base must leave the image under 200 MB on python:3.11-slim — so no ``.pyc`` in the environment
and every compiled extension stripped, the two things that, put back, cost 31 MB and 36 MB.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.deploy.elf import section_names, unstripped_sections
from tests.deploy.images import built, docker, inspect, local_base
from tests.support.figures import record_figure

pytestmark = [pytest.mark.deploy, pytest.mark.docker, pytest.mark.timeout(1200)]

GOAL_MB = 200
# python:3.11-slim as `docker image inspect` sizes it, assumed: no public registry is reachable
# here to measure it (BENCHMARKS.md, "Deploy images", says where the figure comes from).
SLIM_BASE_MB = 150
ADDED_BUDGET_MB = GOAL_MB - SLIM_BASE_MB
VENV = "/opt/botfleet"
# An extension of the dependencies that its wheel ships unstripped, with debug information.
UVLOOP = "lib/python3.11/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so"


@pytest.fixture(scope="module")
def image() -> str:
    return built("server")


@pytest.fixture(scope="module")
def venv(image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's virtual environment, copied out of a container that never ran."""
    target = tmp_path_factory.mktemp("image")
    container = docker("create", image).stdout.strip()
    try:
        docker("cp", f"{container}:{VENV}", str(target))
    finally:
        docker("rm", container, check=False)
    return target / Path(VENV).name


def test_what_botfleet_adds_over_its_base_fits_the_budget(image: str) -> None:
    base = local_base("python")
    mine, theirs = inspect(image), inspect(base)
    base_layers = theirs["RootFS"]["Layers"]
    assert mine["RootFS"]["Layers"][: len(base_layers)] == base_layers, f"not built on {base}"
    added_mb = (mine["Size"] - theirs["Size"]) / 1e6
    record_figure(
        "server image size",
        image_mb=round(mine["Size"] / 1e6, 1),
        base_mb=round(theirs["Size"] / 1e6, 1),
        added_mb=round(added_mb, 1),
        budget_mb=ADDED_BUDGET_MB,
    )
    layers = docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    assert added_mb < ADDED_BUDGET_MB, f"{added_mb:.1f} MB over the base; layers:\n{layers}"


def test_the_environment_holds_no_pyc(venv: Path) -> None:
    assert (venv / "bin/botfleet").is_file()
    compiled = [p.relative_to(venv) for p in venv.rglob("*") if p.suffix == ".pyc"]
    caches = [p.relative_to(venv) for p in venv.rglob("__pycache__")]
    assert compiled == [] and caches == [], (compiled[:5], caches[:5])


def test_every_compiled_extension_is_stripped(venv: Path) -> None:
    extensions = [p for p in venv.rglob("*.so*") if p.is_file()]
    # The compiled dependencies are all there: uvloop, asyncpg, pydantic-core, SQLAlchemy's …
    assert len(extensions) >= 10, extensions
    assert all(section_names(p) for p in extensions)
    unstripped = {str(p.relative_to(venv)): unstripped_sections(p) for p in extensions}
    assert {path: names for path, names in unstripped.items() if names} == {}


def test_the_strip_check_tells_the_wheel_from_the_image(venv: Path) -> None:
    """The check above fails on an unstripped build: the same module, as its wheel ships it."""
    spec = importlib.util.find_spec("uvloop")
    assert spec is not None and spec.origin is not None
    wheel = Path(spec.origin).parent / Path(UVLOOP).name
    assert {".symtab", ".debug_info"} <= set(unstripped_sections(wheel))
    assert unstripped_sections(venv / UVLOOP) == []
