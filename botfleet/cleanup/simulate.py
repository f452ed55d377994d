"""``botfleet policy simulate FILE``: the plan a candidate policy would make against the live
store, saved nowhere — no run row, no stored plan, no lock (it deletes nothing and writes
nothing). Only the stages a policy decides are selected (bots, idle_bots, results,
results_over_quota); orphans and containers do not depend on the policy file.

The selection is the runs' own (:class:`~botfleet.cleanup.stage_selection.StageSelector`), so
what it shows is what a dry run under that policy would show for those stages.
"""

from __future__ import annotations

import uuid
from typing import Any

from botfleet.cleanup.context import RunContext
from botfleet.cleanup.plan import Plan
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.report import DISABLED, Findings, resources
from botfleet.cleanup.rules import rule_to_json
from botfleet.cleanup.stage_selection import StageSelector
from botfleet.constants import (
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_IDLE_BOTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
)

POLICY_STAGES = (KIND_BOTS, KIND_IDLE_BOTS, KIND_RESULTS, KIND_RESULTS_OVER_QUOTA)


async def simulate(ctx: RunContext, policy: Policy) -> dict[str, Any]:
    now = ctx.clock()
    plan = Plan.fresh(str(uuid.uuid4()), now=now, instance=ctx.limits.instance, policy=policy)
    enabled = {
        KIND_BOTS: True,
        KIND_IDLE_BOTS: policy.idle_stage_enabled,
        KIND_RESULTS: policy.results_stage_enabled,
        KIND_RESULTS_OVER_QUOTA: policy.quota_stage_enabled,
    }
    found = Findings(stages=[k for k in POLICY_STAGES if enabled[k]])
    for kind in POLICY_STAGES:
        if not enabled[kind]:
            found.outcomes[kind] = DISABLED
    selector = StageSelector(ctx, plan, found, uuid.uuid4(), frozenset())
    await selector.select()
    kinds = [KIND_BOTS, KIND_BOT_RESULTS, *(k for k in POLICY_STAGES[1:] if enabled[k])]
    return {
        "simulated": True,
        "now": now.isoformat(),
        "rules": [rule_to_json(rule) for rule in policy.rules],
        "resources": resources(found, kinds=kinds, ceilings={}),
        "errors": found.errors,
    }
