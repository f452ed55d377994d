"""The plan: what a run deletes, decided before it deletes anything. Pure data.

A run always executes a :class:`Plan`: made fresh (now, the current policy, every stage, no
bound yet) or loaded from a stored dry run by ``plan_id`` (its ``now`` — hence every cutoff —,
its policy, its result-id bound, its stages, the counts it found as ceilings and its exact
container targets). Re-selecting under a stored plan can only find the planned items or fewer.
After selection a run stores the plan it made (:meth:`Plan.selected`), so a dry run's plan can
be applied later, and a crash mid-run still shows what was meant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from botfleet.cleanup.container_scope import (
    ContainerScope,
    ContainerTarget,
    EveryContainer,
    PlannedContainers,
)
from botfleet.cleanup.policy import Policy
from botfleet.constants import (
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_CONTAINERS,
    KIND_IDLE_BOTS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
    KIND_SERVICES,
    WORKLOAD_KINDS,
)
from botfleet.errors import InvalidInput

SAMPLE_SIZE = 20
SKIPPED_LIMIT = 100
PLAN_VERSION = 1
# The order stages run in, and what `only=` accepts (bot_results always go with their bots):
# bots first, so that what they leave behind is not counted as orphaned; engines' workloads
# (containers, a swarm's services) last. Idle bots are soft-deleted after the purge of bots, so
# that none can be purged in the run that soft-deletes it (safety rule 7).
STAGES = (
    KIND_BOTS,
    KIND_IDLE_BOTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
    KIND_ORPHANED_RESULTS,
    KIND_CONTAINERS,
    KIND_SERVICES,
)
DATABASE_STAGES = (
    KIND_BOTS,
    KIND_IDLE_BOTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
    KIND_ORPHANED_RESULTS,
)
# A fresh plan's bound on result ids before selection reads the table's: the largest bigint.
UNBOUNDED = 2**63 - 1


def parse_only(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """``only=bots,containers`` → the stages; :class:`InvalidInput` naming the bad value."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = {item.strip() for item in items if item.strip()}
    if KIND_BOT_RESULTS in out:
        raise InvalidInput("only", f"{KIND_BOT_RESULTS!r} go with their bots; use 'bots'")
    unknown = sorted(out - set(STAGES))
    if unknown or not out:
        bad = repr(unknown[0]) if unknown else "nothing"
        raise InvalidInput(
            "only", f"accepts a comma-separated list of {', '.join(STAGES)}; got {bad}"
        )
    return frozenset(out)


@dataclass
class Selection:
    """One kind's selection: the count, a few ids, and what was left alone on purpose."""

    kind: str
    found: int = 0
    sample: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_count: int = 0
    lag_seconds: list[float] = field(default_factory=list)

    def skip(self, item_id: str, reason: str, **extra: Any) -> None:
        self.skipped_count += 1
        if len(self.skipped) < SKIPPED_LIMIT:
            self.skipped.append({"id": item_id, "reason": reason, **extra})


@dataclass(frozen=True)
class Plan:
    """What a run executes; JSON-storable in ``cleanup_runs.plan`` and re-executable by id.

    ``ceilings``: the most items of a kind the plan allows (a stored plan's counts; none for a
    fresh one). ``workloads``: which containers and services the run considers, by kind (every
    one where a kind is absent).
    """

    id: str
    now: datetime
    instance: str
    policy: Policy
    stages: tuple[str, ...]
    max_result_id: int
    ceilings: Mapping[str, int] = field(default_factory=dict)
    workloads: Mapping[str, ContainerScope] = field(default_factory=dict)
    # The budget's last victim (cleanup/quota_terms.py), as JSON; None: the budget takes none.
    budget_boundary: Mapping[str, Any] | None = None

    def scope(self, kind: str) -> ContainerScope:
        return self.workloads.get(kind) or EveryContainer()

    @classmethod
    def fresh(cls, plan_id: str, *, now: datetime, instance: str, policy: Policy) -> Plan:
        """A plan to be made by selection: every stage, results up to the newest at selection."""
        return cls(plan_id, now, instance, policy, STAGES, UNBOUNDED)

    def selected(
        self,
        *,
        stages: Sequence[str],
        max_result_id: int,
        found: Mapping[str, int],
        workloads: Mapping[str, Sequence[ContainerTarget]],
        budget_boundary: Mapping[str, Any] | None = None,
    ) -> Plan:
        """The plan as selection made it: what a dry run stores and ``plan_id`` applies."""
        return replace(
            self,
            stages=tuple(stages),
            max_result_id=max_result_id,
            ceilings=dict(found),
            workloads={kind: PlannedContainers(tuple(t)) for kind, t in workloads.items()},
            budget_boundary=budget_boundary,
        )

    @property
    def fixes_budget(self) -> bool:
        """A stored plan that selected results over quota: its budget boundary is kept as is."""
        return KIND_RESULTS_OVER_QUOTA in self.ceilings

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "id": self.id,
            "now": self.now.isoformat(),
            "instance": self.instance,
            "policy": self.policy.snapshot(),
            "stages": list(self.stages),
            # A bound no selection has read (no database stage ran) is stored as none: 0.
            "max_result_id": 0 if self.max_result_id == UNBOUNDED else self.max_result_id,
            "found": dict(self.ceilings),
            "budget_boundary": self.budget_boundary,
            # Containers always (the format plans had first); services where there are some.
            **{
                kind: [t.to_json() for t in self.scope(kind).targets]
                for kind in WORKLOAD_KINDS
                if kind == KIND_CONTAINERS or self.scope(kind).targets
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            id=str(data["id"]),
            now=datetime.fromisoformat(data["now"]),
            instance=str(data["instance"]),
            policy=Policy.from_snapshot(data["policy"]),
            stages=tuple(data["stages"]),
            max_result_id=int(data["max_result_id"]),
            ceilings={str(k): int(v) for k, v in data.get("found", {}).items()},
            budget_boundary=data.get("budget_boundary"),
            workloads={
                kind: PlannedContainers(
                    tuple(ContainerTarget.from_json(t) for t in data.get(kind) or [])
                )
                for kind in WORKLOAD_KINDS
            },
        )
