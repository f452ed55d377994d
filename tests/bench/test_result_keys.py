"""The committed benchmark results carry the figures issue 17 asks for, as numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"

# "<file>.<key>[.<key>…]": bench/results/<file>.json, then the keys inside it.
REQUIRED = (
    "ingest.ratio_single_vs_lean",
    "ingest.server_cpu_ms_single",
    "purge.tuned.ratio_rows_per_s",
    "containers.ratio_vs_floor",
    "scaling.purge_linearity",
)


def lookup(dotted: str, results: Path = RESULTS) -> Any:
    """The value at ``dotted``; KeyError naming what is missing."""
    name, *keys = dotted.split(".")
    path = results / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"{path} does not exist")
    value: Any = json.loads(path.read_text())
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"{path}: no {'.'.join(keys[: depth + 1])}")
        value = value[key]
    return value


@pytest.mark.parametrize("dotted", REQUIRED)
def test_each_required_figure_is_a_finite_positive_number(dotted: str) -> None:
    value = lookup(dotted)
    assert isinstance(value, int | float) and not isinstance(value, bool), (dotted, value)
    assert math.isfinite(value) and value > 0, (dotted, value)


@pytest.mark.parametrize("dotted", REQUIRED)
def test_the_full_size_runs_are_committed(dotted: str) -> None:
    """A figure from a BENCH_SCALE=small run is not the issue's figure."""
    assert lookup(dotted.split(".")[0] + ".scale") in ("full", "large"), dotted


def test_a_missing_key_or_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "purge.json").write_text(json.dumps({"stock": {"ratio_rows_per_s": 0.9}}))
    with pytest.raises(KeyError, match="no tuned"):
        lookup("purge.tuned.ratio_rows_per_s", tmp_path)
    with pytest.raises(KeyError, match="does not exist"):
        lookup("scaling.purge_linearity", tmp_path)
    assert lookup("purge.stock.ratio_rows_per_s", tmp_path) == 0.9
