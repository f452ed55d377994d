"""When a stage must delete nothing: over ``CLEANUP_MAX_DELETIONS``, or more than its plan had.

Pure: decided from what the run's selection found (:class:`~botfleet.cleanup.report.Findings`)
before the stage executes, so a refused stage never starts a batch.
"""

from __future__ import annotations

from collections.abc import Mapping

from botfleet.cleanup.report import Findings
from botfleet.constants import KIND_BOT_RESULTS, KIND_BOTS


def refusal(
    kind: str, found: Findings, *, cap: int | None, ceilings: Mapping[str, int]
) -> str | None:
    """Why ``kind`` must delete nothing (None: it may go). Over the cap marks the capped kind
    in ``found.extra`` (the report says so); the bots stage counts its results too."""
    selections = found.selections
    for k in [kind, KIND_BOT_RESULTS] if kind == KIND_BOTS else [kind]:
        matched = selections[k].found
        if cap is not None and matched > cap:
            found.extra.setdefault(k, {})["capped"] = True
            return (
                f"{k}: {matched} to delete exceeds CLEANUP_MAX_DELETIONS={cap}; "
                "this stage deleted nothing"
            )
    planned = ceilings.get(kind)
    matched = selections[kind].found
    if planned is not None and matched > planned:
        return (
            f"{kind}: {matched} items match now but the plan had {planned}; "
            "refusing to delete more than planned"
        )
    return None
