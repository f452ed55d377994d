"""The run report (design.md's JSON): per-kind entries, the run's status, the one-line summary.

Pure: built from what a run found and did (:class:`Findings`: selections, what the policies
found; tallies, what was really removed, only ever counted after a commit), so a dry run and a
real run report through the same code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botfleet.cleanup.batches import Tally
from botfleet.cleanup.plan import SKIPPED_LIMIT, Selection
from botfleet.constants import (
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_CONTAINERS,
    KIND_IDLE_BOTS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
    KIND_SERVICES,
    OUTCOME_DISABLED,
    OUTCOME_DONE,
    OUTCOME_FAILED,
    OUTCOME_INTERRUPTED,
    OUTCOME_NOT_SELECTED,
    OUTCOME_PARTIAL,
    OUTCOME_PLANNED,
    OUTCOME_REFUSED,
    RUN_FAILED,
    RUN_PARTIAL,
    RUN_SUCCEEDED,
)

PLANNED = OUTCOME_PLANNED
DONE = OUTCOME_DONE
NOT_SELECTED = OUTCOME_NOT_SELECTED
DISABLED = OUTCOME_DISABLED
FAILED = OUTCOME_FAILED
PARTIAL = OUTCOME_PARTIAL
REFUSED = OUTCOME_REFUSED
INTERRUPTED = OUTCOME_INTERRUPTED
CLEAN = frozenset({PLANNED, DONE, NOT_SELECTED, DISABLED})
IDLE = frozenset({NOT_SELECTED, DISABLED})

# Always present in a report, in this order (design.md); "results" only when enabled.
CONTRACT_KINDS = (KIND_BOTS, KIND_BOT_RESULTS, KIND_ORPHANED_RESULTS, KIND_CONTAINERS)


@dataclass
class Findings:
    """What a run found and did, stage by stage: the report's raw material."""

    stages: list[str]
    selections: dict[str, Selection] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


def entry(
    selection: Selection,
    *,
    outcome: str,
    tally: Tally | None = None,
    related: bool = False,
    duration: float | None = None,
) -> dict[str, Any]:
    """One kind's report entry. ``related``: this is bot_results, deleted as the tally's
    ``related`` count of the bots stage."""
    deleted = 0
    skipped = list(selection.skipped)
    skipped_count = selection.skipped_count
    failed = 0
    out: dict[str, Any] = {}
    if tally is not None:
        deleted = tally.related if related else tally.deleted
        if not related:
            failed = tally.failed
            skipped_count += tally.unlisted_skips
            for item_id, reason, engine in tally.skipped:
                skipped_count += 1
                if len(skipped) < SKIPPED_LIMIT:
                    item = {"id": item_id, "reason": reason}
                    skipped.append(item | {"engine": engine} if engine else item)
            out["bytes_reclaimed"] = tally.bytes_reclaimed
    lag = selection.lag_seconds if tally is None else (tally.lag_seconds or selection.lag_seconds)
    return {
        "found": selection.found,
        "deleted": deleted,
        "sample": list(selection.sample),
        "skipped": skipped,
        "skipped_count": skipped_count,
        "failed": failed,
        "outcome": outcome,
        "duration_seconds": None if duration is None else round(duration, 3),
        "lag_seconds": lag if deleted else [],
        **out,
    }


def empty(kind: str, outcome: str) -> dict[str, Any]:
    return entry(Selection(kind), outcome=outcome)


def report_kinds(
    *, results: bool, services: bool, idle: bool = False, quota: bool = False
) -> list[str]:
    """The kinds a report lists, in order: the contract's four, ``results`` when a result
    retention is set, ``services`` on a swarm, ``idle_bots`` and ``results_over_quota`` when
    a rule (or the budget) asks for them."""
    kinds = list(CONTRACT_KINDS)
    if results:
        kinds.insert(2, KIND_RESULTS)
    if services:
        kinds.append(KIND_SERVICES)
    if idle:
        kinds.append(KIND_IDLE_BOTS)
    if quota:
        kinds.append(KIND_RESULTS_OVER_QUOTA)
    return kinds


def resources(
    found: Findings, *, kinds: Sequence[str], ceilings: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """The report's ``resources`` for ``kinds``, each with its outcome; against a stored
    plan's ``ceilings``, what changed since."""
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        stage = KIND_BOTS if kind == KIND_BOT_RESULTS else kind
        outcome = found.outcomes.get(stage, INTERRUPTED if stage in found.stages else NOT_SELECTED)
        selection = found.selections.get(kind, Selection(kind))
        item = entry(
            selection,
            outcome=outcome,
            tally=found.tallies.get(stage),
            related=kind == KIND_BOT_RESULTS,
            duration=found.durations.get(stage),
        )
        item.update(found.extra.get(kind, {}))
        if kind in ceilings:
            item["planned"] = ceilings[kind]
            item["changed_since_plan"] = max(0, ceilings[kind] - selection.found)
        out[kind] = item
    return out


def run_report(
    *,
    run_id: uuid.UUID,
    plan_id: str | None,
    dry_run: bool,
    trigger: str,
    actor: str,
    started: datetime,
    finished: datetime,
    instance: str,
    resources: dict[str, dict[str, Any]],
    errors: list[dict[str, Any]],
    fatal: bool,
) -> dict[str, Any]:
    """A finished run's report; ``fatal``: it ended early (a lost lock, a cancellation)."""
    return {
        "run_id": str(run_id),
        "plan_id": plan_id,
        "dry_run": dry_run,
        "trigger": trigger,
        "actor": actor,
        "status": status_of((r["outcome"] for r in resources.values()), fatal=fatal),
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "instance": instance,
        "resources": resources,
        "errors": errors,
    }


def bare_report(
    *,
    run_id: uuid.UUID,
    dry_run: bool,
    trigger: str,
    actor: str,
    started: datetime,
    finished: datetime,
    error: dict[str, Any],
) -> dict[str, Any]:
    """A run that could not begin (database down): failed, with the reason, never stored."""
    return {
        "run_id": str(run_id),
        "plan_id": None,
        "dry_run": dry_run,
        "trigger": trigger,
        "actor": actor,
        "status": RUN_FAILED,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "resources": {k: empty(k, FAILED) for k in CONTRACT_KINDS},
        "errors": [error],
        "stored": False,
    }


def status_of(outcomes: Iterable[str], *, fatal: bool = False) -> str:
    """succeeded: every stage clean. failed: nothing attempted went well. Else partial."""
    outcomes = list(outcomes)
    attempted = [o for o in outcomes if o not in IDLE]
    good = [o for o in attempted if o in CLEAN]
    if not fatal and all(o in CLEAN for o in outcomes):
        return RUN_SUCCEEDED
    if attempted and not good and all(o in (FAILED, INTERRUPTED) for o in attempted):
        return RUN_FAILED if fatal or FAILED in attempted else RUN_PARTIAL
    if fatal and not good:
        return RUN_FAILED
    return RUN_PARTIAL


def summary_line(report: Mapping[str, Any]) -> str:
    """``bots 1/1 bot_results 4/4 …`` (deleted/found): the one log line's body."""
    parts = []
    for kind, stats in (report.get("resources") or {}).items():
        parts.append(f"{kind} {stats.get('deleted', 0)}/{stats.get('found', 0)}")
    errors = report.get("errors") or []
    tail = (
        f"; {len(errors)} error(s): "
        + "; ".join(str(e.get("message", ""))[:120] for e in errors[:3])
        if errors
        else ""
    )
    return " ".join(parts) + tail
