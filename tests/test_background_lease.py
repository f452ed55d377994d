"""One worker of several runs the background loops; another takes them over when it stops."""

from __future__ import annotations

from pathlib import Path

from botfleet.background_lease import LeaderOnly, Lease
from tests.support.wait import wait_until_async


class Loop:
    def __init__(self, name: str, events: list[str]) -> None:
        self.name, self.events = name, events

    async def start(self) -> None:
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")


async def test_only_the_lease_holder_runs_the_loops_and_another_takes_over(tmp_path: Path) -> None:
    path = tmp_path / "background.lock"
    first_events: list[str] = []
    second_events: list[str] = []
    first = LeaderOnly(Lease(path), [Loop("a", first_events), Loop("b", first_events)], retry=0.01)
    second = LeaderOnly(Lease(path), [Loop("a", second_events)], retry=0.01)
    await first.start()
    await second.start()
    assert first.leading and not second.leading
    assert first_events == ["start a", "start b"]
    assert second_events == []
    await first.stop()
    assert first_events == ["start a", "start b", "stop b", "stop a"]  # in reverse
    await wait_until_async(lambda: second.leading, timeout=5, message="the takeover")
    assert second_events == ["start a"]
    await second.stop()
    assert second_events == ["start a", "stop a"]


async def test_a_waiting_worker_stops_cleanly_without_ever_leading(tmp_path: Path) -> None:
    path = tmp_path / "background.lock"
    holder = Lease(path)
    assert holder.try_take()
    events: list[str] = []
    waiting = LeaderOnly(Lease(path), [Loop("a", events)], retry=0.01)
    await waiting.start()
    await waiting.stop()
    holder.release()
    assert events == []
    assert Lease(path).try_take()  # nothing left holding it
