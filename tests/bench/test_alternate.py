"""bench.alternate runs each tree's own benchmark, flips the order every other round, and keeps
each tree's figures on its own side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import alternate

FAKE = """
import json, os, pathlib
tree = pathlib.Path(__file__).resolve().parents[1]
log = pathlib.Path(os.environ["ALTERNATE_ORDER_LOG"])
log.write_text(log.read_text() + tree.name + "\\n" if log.exists() else tree.name + "\\n")
(tree / "bench/results").mkdir(exist_ok=True)
(tree / "bench/results/fake.json").write_text(json.dumps({"speed": len(tree.name)}))
"""


def _tree(root: Path, name: str) -> Path:
    tree = root / name
    (tree / "bench").mkdir(parents=True)
    (tree / "bench/__init__.py").write_text("")
    (tree / "bench/fake.py").write_text(FAKE)
    return tree


def test_rounds_alternate_the_order_and_keep_each_side_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = _tree(tmp_path, "o"), _tree(tmp_path, "newer")
    log = tmp_path / "order.log"
    written: dict[str, Any] = {}
    monkeypatch.setenv("ALTERNATE_ORDER_LOG", str(log))
    monkeypatch.setitem(alternate.FIGURES, "fake", ("speed",))
    monkeypatch.setattr(alternate, "write_result", lambda name, figures: written.update(figures))

    assert alternate.main([str(old), str(new), "--rounds", "3", "--names", "fake"]) == 0

    assert log.read_text().split() == ["o", "newer", "newer", "o", "o", "newer"]
    assert written["medians"]["fake"] == {"old": {"speed": 1}, "new": {"speed": 5}}
    assert [r["fake"]["new"]["speed"] for r in written["rounds"]] == [5, 5, 5]
    json.dumps(written)  # what is written is plain JSON
