"""``botfleet doctor``'s checks, judged: the seed's incident checklist, each with a verdict and a
next step. Pure — each ``judge_*`` takes what :mod:`botfleet.diagnosis.gather` found (and ``now``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from botfleet.backlog import Backlog
from botfleet.constants import (
    RUN_ABANDONED,
    RUN_FAILED,
    RUN_PARTIAL,
    RUN_RUNNING,
    RUN_SUCCEEDED,
)
from botfleet.diagnosis.checks import FAIL, OK, RUNS_SHOWN, SKIP, WARN, Check, LockHolder, RunRow


def judge_database(error: str | None, url: str) -> Check:
    if error is None:
        return Check("database", OK, f"connected ({url})")
    return Check(
        "database",
        FAIL,
        f"cannot connect to {url}: {error}",
        "check DATABASE_URL; for PostgreSQL run `pg_isready -h <host> -p <port>` and read its log",
    )


def judge_migration(current: str | None, head: str | None) -> Check:
    if current == head:
        return Check("migrations", OK, f"schema at head ({head})")
    if current is None:
        return Check(
            "migrations", FAIL, f"schema is empty (head is {head})", "run `botfleet db upgrade`"
        )
    return Check(
        "migrations",
        FAIL,
        f"schema at {current}, this botfleet expects {head}",
        "run `botfleet db upgrade` (or upgrade botfleet if the database is newer)",
    )


def judge_engine(
    name: str,
    version: str | None,
    error: str | None,
    nodes: Sequence[Mapping[str, Any]] = (),
) -> Check:
    if error is None and nodes:
        return judge_swarm(name, version, nodes)
    if error is None:
        return Check(f"engine {name}", OK, f"Docker {version} answers")
    where = f"-H {name} " if "://" in name else ""
    return Check(
        f"engine {name}",
        FAIL,
        f"unreachable: {error}",
        f"check the daemon (`docker {where}info`, `systemctl status docker`) and DOCKER_HOSTS; "
        "its container stage is skipped until it answers",
    )


def judge_swarm(name: str, version: str | None, nodes: Sequence[Mapping[str, Any]]) -> Check:
    """A swarm manager answers; every node should be ready and active."""
    lines = tuple(
        f"{n.get('hostname')} {str(n.get('id'))[:12]} {n.get('role')}"
        f"{' (leader)' if n.get('leader') else ''}: {n.get('state')}, {n.get('availability')}"
        for n in nodes
    )
    unwell = [n for n in nodes if n.get("state") != "ready" or n.get("availability") != "active"]
    detail = f"swarm manager, Docker {version}: {len(nodes)} nodes"
    if not unwell:
        return Check(f"engine {name}", OK, detail + ", all ready and active", lines=lines)
    names = ", ".join(
        f"{n.get('hostname')} ({n.get('state')}, {n.get('availability')})" for n in unwell
    )
    return Check(
        f"engine {name}",
        WARN,
        f"{detail}; not ready or not active: {names}",
        "swarm moves bots off a down or drained node by itself; bring the node back "
        "(`docker node ls`, `docker node update --availability active NODE`) or remove it",
        lines=lines,
    )


def judge_lock(
    holders: Sequence[LockHolder],
    running: Sequence[RunRow],
    *,
    now: datetime,
    max_run: timedelta,
    error: str | None = None,
) -> Check:
    if error is not None:
        return Check("cleanup lock", WARN, f"could not inspect the lock: {error}")
    lines = tuple(
        f"held by pid {h.pid} ({h.who})"
        + (f" since {h.since:%Y-%m-%d %H:%M:%S}Z" if h.since else "")
        for h in holders
    ) + tuple(
        f"run {r.id} running since {r.started_at:%Y-%m-%d %H:%M:%S}Z on {r.owner}" for r in running
    )
    if not holders and not running:
        return Check("cleanup lock", OK, "free: no cleanup is running")
    if holders and not running:
        return Check(
            "cleanup lock",
            WARN,
            "held, but no run is recorded as running",
            "a run may be starting; if it stays like this, find the holder below "
            "(pg_stat_activity / ps) and stop it",
            lines,
        )
    if running and not holders:
        return Check(
            "cleanup lock",
            WARN,
            f"run {running[0].id} is marked running but nobody holds the lock",
            "its process died; the next run marks it abandoned (or restart a replica)",
            lines,
        )
    oldest = min(r.started_at for r in running)
    if now - oldest > max_run:
        return Check(
            "cleanup lock",
            WARN,
            f"run {running[0].id} has been running for {_ago(now - oldest)}, "
            f"over CLEANUP_MAX_RUN_SECONDS",
            "check its progress in the server log (grep the run id); stop the holder if it hangs",
            lines,
        )
    return Check("cleanup lock", OK, f"run {running[0].id} in progress", lines=lines)


def judge_runs(
    runs: Sequence[RunRow], *, now: datetime, gap: timedelta, threshold: int, enabled: bool
) -> Check:
    lines = tuple(_run_line(r) for r in runs[:RUNS_SHOWN])
    finished = [r for r in runs if r.status != RUN_RUNNING]
    if not finished:
        return Check(
            "last runs",
            WARN if enabled else OK,
            "no cleanup has run yet",
            "preview one: `scripts/monitor-cleanup.sh dry-run`",
            lines,
        )
    failures = 0
    for run in finished:
        if run.status not in (RUN_FAILED, RUN_ABANDONED):
            break
        failures += 1
    last = finished[0]
    if failures:
        verdict = FAIL if failures >= threshold else WARN
        why = "; ".join(last.errors[:2]) or "no error recorded"
        return Check(
            "last runs",
            verdict,
            f"{failures} failed run(s) in a row; last: {why}",
            "fix the cause named above, then `scripts/monitor-cleanup.sh dry-run`",
            lines,
        )
    successes = [r for r in finished if r.status == RUN_SUCCEEDED and r.finished_at]
    if enabled and (
        not successes or now - max(r.finished_at for r in successes if r.finished_at) > 2 * gap
    ):
        return Check(
            "last runs",
            WARN,
            "no succeeded run within twice the scheduling gap",
            "look at the errors of the partial runs below; `botfleet doctor` again after a run",
            lines,
        )
    if last.status == RUN_PARTIAL:
        why = "; ".join(last.errors[:2]) or "see the report"
        return Check(
            "last runs",
            WARN,
            f"last run partial: {why}",
            "see the breakers and engines above",
            lines,
        )
    return Check(
        "last runs", OK, f"last run {last.status} {_ago(now - last.started_at)} ago", lines=lines
    )


def judge_breakers(status: Mapping[str, Any] | None, error: str | None, *, url: str) -> Check:
    if status is None:
        if error is None:
            return Check("breakers", SKIP, "not checked (--offline)")
        return Check(
            "breakers",
            WARN,
            f"server at {url} did not answer: {error}",
            "is `botfleet serve` running there? pass --server URL, or --offline",
        )
    breakers = find_breakers(status)
    if breakers is None:
        return Check("breakers", SKIP, "the server reports no scheduler (CLEANUP_ENABLED=false?)")
    bad = {name: b for name, b in breakers.items() if str(b.get("state")) != "closed"}
    if not bad:
        return Check("breakers", OK, f"all closed ({', '.join(sorted(breakers)) or 'none'})")
    lines = tuple(
        f"{name}: {b.get('state')} since {b.get('since')}; last error: {b.get('last_error')}"
        for name, b in sorted(bad.items())
    )
    return Check(
        "breakers",
        FAIL if any(b.get("state") == "open" for b in bad.values()) else WARN,
        f"not closed: {', '.join(sorted(bad))}",
        "fix the dependency named; the breaker closes itself after a successful probe",
        lines,
    )


def judge_backlog(backlog: Backlog | None, error: str | None, *, gap: timedelta) -> Check:
    if backlog is None:
        return Check("backlog", WARN, f"could not measure: {error}")
    parts = [f"{k} {n}" for k, n in backlog.backlog.items() if n]
    orphans = [f"{k} {n}" for k, n in backlog.orphaned.items() if n]
    detail = "eligible: " + (", ".join(parts) or "nothing")
    detail += "; orphaned: " + (", ".join(orphans) or "nothing")
    stale = {k: s for k, s in backlog.oldest_age_seconds.items() if s > 2 * gap.total_seconds()}
    if backlog.engine_errors:
        return Check(
            "backlog",
            WARN,
            detail + f"; engines not listed: {'; '.join(backlog.engine_errors)}",
            "container counts are incomplete until the engines answer",
        )
    if stale:
        worst = max(stale.values())
        return Check(
            "backlog",
            WARN,
            detail + f"; oldest eligible item waits {_ago(timedelta(seconds=worst))}",
            "cleanup is not keeping up: check the last runs; `scripts/monitor-cleanup.sh cleanup`",
        )
    return Check("backlog", OK, detail)


def judge_mode(enabled: bool, dry_run: bool) -> Check:
    """Context, not a fault: a dry-run rollout is deliberate (the alert fires after 3 days)."""
    if not enabled:
        return Check("mode", OK, "scheduler off (CLEANUP_ENABLED=false): manual runs only")
    if dry_run:
        return Check(
            "mode",
            OK,
            "DRY RUN: scheduled runs delete nothing; set CLEANUP_DRY_RUN=false once their plans "
            "look right",
        )
    return Check("mode", OK, "ACTIVE: scheduled runs delete")


def find_breakers(status: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The breakers in a /admin/cleanup/status answer, at the top or under ``scheduler``."""
    for where in (status, status.get("scheduler")):
        if isinstance(where, Mapping) and isinstance(where.get("breakers"), Mapping):
            return {str(k): dict(v) for k, v in where["breakers"].items() if isinstance(v, Mapping)}
    return None


def _run_line(r: RunRow) -> str:
    took = f" in {_ago(r.finished_at - r.started_at)}" if r.finished_at else ""
    mode = "dry run" if r.dry_run else "real"
    errors = f"; errors: {'; '.join(r.errors[:2])}" if r.errors else ""
    return (
        f"{r.started_at:%Y-%m-%d %H:%M}Z {r.status:<9} {r.trigger:<8} {mode:<7}{took}"
        f" {r.counts}{errors}"
    ).rstrip()


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{max(seconds, 0)}s"
