"""The plan: it round-trips through the JSON a dry run stores, and ``only=`` is parsed strictly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from botfleet.cleanup.container_scope import ContainerTarget, PlannedContainers
from botfleet.cleanup.plan import Plan, parse_only
from botfleet.cleanup.policy import Policy, Rule
from botfleet.errors import InvalidInput

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(
    bot_retention_days=7,
    result_retention_days=20,
    rules=(Rule(number=1, match={"env": "prod"}, bot_retention_days=30, result_retention_days=60),),
)


def test_a_plan_round_trips_through_json() -> None:
    plan = Plan(
        id=str(uuid.uuid4()),
        now=NOW,
        instance="prod",
        policy=POLICY,
        stages=("bots", "containers"),
        max_result_id=42,
        ceilings={"bots": 3, "containers": 1},
        workloads={
            "containers": PlannedContainers(
                (ContainerTarget("c1", "local", str(uuid.uuid4()), "no bot row", 600.0),)
            ),
            "services": PlannedContainers(
                (ContainerTarget("s1", "swarm", str(uuid.uuid4()), "bot deleted", 60.0, None, 7),)
            ),
        },
    )
    assert Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("bots", {"bots"}),
        ("bots, containers", {"bots", "containers"}),
        (["orphaned_results", "results"], {"orphaned_results", "results"}),
    ],
)
def test_parse_only(value: object, expected: set[str] | None) -> None:
    parsed = parse_only(value)  # type: ignore[arg-type]
    assert parsed == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize("value", ["", "everything", "bots,nope", "bot_results"])
def test_parse_only_refuses(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_only(value)
    assert caught.value.field == "only"
