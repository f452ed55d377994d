"""What the reliability and security scenarios share beyond the store and the engine: their size
and their figures.

``BOTFLEET_SOAK=1`` (``make soak``) makes every scenario longer and bigger;
``BOTFLEET_FIGURES=path`` appends each scenario's figures to ``path`` as JSON lines (the figures
that docs/reliability.md publishes).
"""

from __future__ import annotations

import json
import os
from typing import Any

SOAK = os.environ.get("BOTFLEET_SOAK", "").strip() == "1"


def scale(default: Any, soak: Any) -> Any:
    """The scenario's size: ``default`` in ``make test``, ``soak`` in ``make soak``."""
    return soak if SOAK else default


def record_figure(scenario: str, **figures: Any) -> None:
    """Print one scenario's figures and, with ``BOTFLEET_FIGURES`` set, append them there."""
    line = {"scenario": scenario, "soak": SOAK, **figures}
    print(f"FIGURES {json.dumps(line, sort_keys=True)}")
    path = os.environ.get("BOTFLEET_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")
