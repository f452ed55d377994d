"""Magic strings in one place: labels, kinds, triggers, statuses."""

from __future__ import annotations

from typing import Final

# Container labels (design: every container botfleet creates carries all three).
LABEL_MANAGED: Final = "botfleet.managed"
LABEL_BOT_ID: Final = "botfleet.bot-id"
LABEL_INSTANCE: Final = "botfleet.instance"
# Labels swarm puts on the containers of its services' tasks (com.docker.swarm.service.id, …).
SWARM_LABEL_PREFIX: Final = "com.docker.swarm."
# A bot label that places it under legal hold: never purged.
LABEL_HOLD: Final = "botfleet.hold"

CONTAINER_NAME_PREFIX: Final = "botfleet-"
# What every bot container finds in its environment; a bot's own env may not override them.
ENV_BOT_ID: Final = "BOT_ID"
ENV_BOT_TOKEN: Final = "BOT_TOKEN"
ENV_MAIN_SERVER_URL: Final = "MAIN_SERVER_URL"
RESERVED_ENV: Final = frozenset({ENV_BOT_ID, ENV_BOT_TOKEN, ENV_MAIN_SERVER_URL})
# Container labels a bot's own labels may not set (LABEL_HOLD is a bot label, so it may).
RESERVED_LABELS: Final = frozenset({LABEL_MANAGED, LABEL_BOT_ID, LABEL_INSTANCE})
# Seconds a bot gets to exit on SIGTERM before the engine kills it.
BOT_STOP_TIMEOUT_SECONDS: Final = 10
# A pending bot older than this has no create in flight any more: the reconciler marks it failed.
PENDING_GRACE_SECONDS: Final = 300
# Request bodies above this get 413; result batches hold at most this many items.
MAX_BODY_BYTES: Final = 1024 * 1024
MAX_RESULTS_PER_POST: Final = 1000
MAX_PAGE_LIMIT: Final = 1000
DEFAULT_PAGE_LIMIT: Final = 100

# Bot statuses.
STATUS_PENDING: Final = "pending"
STATUS_RUNNING: Final = "running"
STATUS_EXITED: Final = "exited"
STATUS_FAILED: Final = "failed"
STATUS_STOPPED: Final = "stopped"
STATUS_DELETED: Final = "deleted"
BOT_STATUSES: Final = (
    STATUS_PENDING,
    STATUS_RUNNING,
    STATUS_EXITED,
    STATUS_FAILED,
    STATUS_STOPPED,
    STATUS_DELETED,
)

# A bot's history (GET /bots/{id}/history): what happened to it, oldest first.
EVENT_CREATED: Final = "created"
EVENT_DELETED: Final = "deleted"
EVENT_RESTORED: Final = "restored"
EVENT_PLANNED: Final = "planned"  # a run's stored plan included it
EVENT_CONTAINER_REMOVED: Final = "container_removed"
HISTORY_EVENTS: Final = (
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_RESTORED,
    EVENT_PLANNED,
    EVENT_CONTAINER_REMOVED,
)

# Cleanup resource kinds (report keys; the first four are a contract).
KIND_BOTS: Final = "bots"
KIND_BOT_RESULTS: Final = "bot_results"
KIND_ORPHANED_RESULTS: Final = "orphaned_results"
KIND_CONTAINERS: Final = "containers"
KIND_RESULTS: Final = "results"
KIND_SERVICES: Final = "services"  # a swarm's services (BOT_RUNTIME=swarm)
KIND_IDLE_BOTS: Final = "idle_bots"  # live bots a policy soft-deletes (idle or failing)
KIND_RESULTS_OVER_QUOTA: Final = "results_over_quota"  # beyond a quota or the store's budget
RESOURCE_KINDS: Final = (
    KIND_BOTS,
    KIND_BOT_RESULTS,
    KIND_ORPHANED_RESULTS,
    KIND_CONTAINERS,
    KIND_RESULTS,
    KIND_SERVICES,
    KIND_IDLE_BOTS,
    KIND_RESULTS_OVER_QUOTA,
)
# The kinds an engine's workloads are cleaned up under.
WORKLOAD_KINDS: Final = (KIND_CONTAINERS, KIND_SERVICES)
# The stages whose batches are archived (CLEANUP_ARCHIVE_DIR): the database's purges (idle_bots
# only soft-deletes: nothing leaves the store).
ARCHIVED_KINDS: Final = frozenset(
    {KIND_BOTS, KIND_RESULTS, KIND_ORPHANED_RESULTS, KIND_RESULTS_OVER_QUOTA}
)

# Cleanup run triggers and statuses.
TRIGGER_SCHEDULE: Final = "schedule"
TRIGGER_MANUAL: Final = "manual"
TRIGGER_CLI: Final = "cli"
RUN_RUNNING: Final = "running"
RUN_SUCCEEDED: Final = "succeeded"
RUN_PARTIAL: Final = "partial"
RUN_FAILED: Final = "failed"
RUN_ABANDONED: Final = "abandoned"
RUN_STATUSES: Final = (RUN_RUNNING, RUN_SUCCEEDED, RUN_PARTIAL, RUN_FAILED, RUN_ABANDONED)

# What happened to one cleanup stage (report: resources[kind].outcome). The first four are
# clean; FAILED sinks the stage; the rest leave work undone on purpose (the run is partial).
OUTCOME_PLANNED: Final = "planned"  # a dry run: selected, nothing deleted
OUTCOME_DONE: Final = "done"
OUTCOME_NOT_SELECTED: Final = "not_selected"  # excluded by only= or by an applied plan
OUTCOME_DISABLED: Final = "disabled"  # CONTAINER_CLEANUP_ENABLED=false, no result retention
OUTCOME_FAILED: Final = "failed"
OUTCOME_PARTIAL: Final = "partial"  # some engines or items failed, the rest went
OUTCOME_REFUSED: Final = "refused"  # CLEANUP_MAX_DELETIONS, or the plan no longer holds
OUTCOME_INTERRUPTED: Final = "interrupted"  # a stop request or a lost lock
# Why a cleanup left something alone or stopped (report: skipped[].reason, errors[].reason).
REASON_BREAKER_OPEN: Final = "breaker open"
REASON_INTERRUPTED: Final = "interrupted"
REASON_REFUSED: Final = "refused"

# Container states that count as "not running" (safety rule 2).
REMOVABLE_STATES: Final = frozenset({"created", "exited", "dead"})

# Tokens that appear in documentation and must never guard a server reachable from outside.
EXAMPLE_ADMIN_TOKENS: Final = frozenset({"admin-secret-token", "changeme", "change-me", "secret"})

# Advisory-lock keys (PostgreSQL bigint); arbitrary but fixed.
MIGRATION_LOCK_KEY: Final = 0x626F74666C656574  # "botfleet"
CLEANUP_LOCK_KEY: Final = 0x626F74636C65616E  # "botclean"
NOTIFY_LOCK_KEY: Final = 0x626F746E6F746966  # "botnotif": one notification sender
M_NOTIFY_DELIVERIES: Final = "botfleet_notify_deliveries_total"
M_NOTIFY_OUTBOX_DEPTH: Final = "botfleet_notify_outbox_pending"
M_NOTIFY_OLDEST: Final = "botfleet_notify_outbox_oldest_pending_age_seconds"

# Prometheus metric names, as exported (deploy/prometheus alerts and deploy/grafana query them).
M_CLEANUP_RUNS: Final = "botfleet_cleanup_runs_total"
M_CLEANUP_DURATION: Final = "botfleet_cleanup_duration_seconds"
M_CLEANUP_LAST_SUCCESS: Final = "botfleet_cleanup_last_success_timestamp_seconds"
M_CLEANUP_CONSECUTIVE_FAILURES: Final = "botfleet_cleanup_consecutive_failures"
M_CLEANUP_FOUND: Final = "botfleet_cleanup_resources_found_total"
M_CLEANUP_DELETED: Final = "botfleet_cleanup_resources_deleted_total"
M_CLEANUP_FAILED: Final = "botfleet_cleanup_resources_failed_total"
M_CLEANUP_BYTES_RECLAIMED: Final = "botfleet_cleanup_bytes_reclaimed_total"
M_CLEANUP_DELETION_LAG: Final = "botfleet_cleanup_deletion_lag_seconds"
M_CLEANUP_DRY_RUN_MODE: Final = "botfleet_cleanup_dry_run_mode"
M_CLEANUP_SCHEDULER_ENABLED: Final = "botfleet_cleanup_scheduler_enabled"
M_CLEANUP_INTERVAL: Final = "botfleet_cleanup_interval_seconds"
M_CLEANUP_NEXT_RUN: Final = "botfleet_cleanup_next_run_timestamp_seconds"
M_CLEANUP_LEADER: Final = "botfleet_cleanup_scheduler_leader"
M_CLEANUP_BREAKER_STATE: Final = "botfleet_cleanup_breaker_state"
M_ORPHANED: Final = "botfleet_orphaned_resources"
M_BACKLOG: Final = "botfleet_cleanup_backlog"
M_BACKLOG_OLDEST: Final = "botfleet_cleanup_backlog_oldest_age_seconds"
M_BOTS: Final = "botfleet_bots"
M_SNAPSHOT_TIMESTAMP: Final = "botfleet_metrics_snapshot_timestamp_seconds"
M_SNAPSHOT_ERRORS: Final = "botfleet_metrics_snapshot_errors_total"
M_HTTP_REQUESTS: Final = "botfleet_http_requests_total"
M_HTTP_DURATION: Final = "botfleet_http_request_duration_seconds"
M_BUILD_INFO: Final = "botfleet_build_info"
# Breaker states as the gauge encodes them (0 = closed is the healthy value).
BREAKER_STATE_VALUES: Final = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}

# Scheduler: breaker states, the database dependency, and why the next run is when it is.
BREAKER_CLOSED: Final = "closed"
BREAKER_OPEN: Final = "open"
BREAKER_HALF_OPEN: Final = "half_open"
DEPENDENCY_DATABASE: Final = "database"
DEPENDENCY_ARCHIVE: Final = "archive"  # CLEANUP_ARCHIVE_DIR: no archive, no delete
REASON_STARTUP: Final = "startup"
REASON_INTERVAL: Final = "interval"
REASON_RETRY: Final = "retry"
REASON_WINDOW: Final = "window"
REASON_ADAPTIVE: Final = "adaptive"
