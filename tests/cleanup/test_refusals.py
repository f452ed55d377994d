"""When a stage must delete nothing (pure): over the deletion cap, or more than its plan had."""

from __future__ import annotations

from botfleet.cleanup.plan import Selection
from botfleet.cleanup.refusals import refusal
from botfleet.cleanup.report import Findings
from botfleet.constants import KIND_BOT_RESULTS, KIND_BOTS, KIND_RESULTS


def found(**counts: int) -> Findings:
    findings = Findings(stages=list(counts))
    findings.selections = {kind: Selection(kind, found=n) for kind, n in counts.items()}
    return findings


def test_within_the_cap_and_the_plan_a_stage_may_go() -> None:
    f = found(results=10)
    assert refusal(KIND_RESULTS, f, cap=10, ceilings={KIND_RESULTS: 10}) is None
    assert f.extra == {}


def test_over_the_cap_refuses_and_marks_the_kind_capped() -> None:
    f = found(results=11)
    message = refusal(KIND_RESULTS, f, cap=10, ceilings={})
    assert (
        message
        == "results: 11 to delete exceeds CLEANUP_MAX_DELETIONS=10; this stage deleted nothing"
    )
    assert f.extra == {KIND_RESULTS: {"capped": True}}


def test_the_bots_stage_counts_its_results_against_the_cap() -> None:
    f = found(bots=3, bot_results=50)
    message = refusal(KIND_BOTS, f, cap=10, ceilings={})
    assert message is not None and message.startswith(f"{KIND_BOT_RESULTS}: 50 to delete")
    assert f.extra == {KIND_BOT_RESULTS: {"capped": True}}


def test_more_than_the_plan_had_is_refused() -> None:
    f = found(results=6)
    message = refusal(KIND_RESULTS, f, cap=None, ceilings={KIND_RESULTS: 5})
    assert message == (
        "results: 6 items match now but the plan had 5; refusing to delete more than planned"
    )
    assert refusal(KIND_RESULTS, found(results=4), cap=None, ceilings={KIND_RESULTS: 5}) is None
