"""Magic strings in one place: labels, kinds, triggers, statuses."""

from __future__ import annotations

from typing import Final

# Container labels (design: every container botfleet creates carries all three).
LABEL_MANAGED: Final = "botfleet.managed"
LABEL_BOT_ID: Final = "botfleet.bot-id"
LABEL_INSTANCE: Final = "botfleet.instance"
# A bot label that places it under legal hold: never purged.
LABEL_HOLD: Final = "botfleet.hold"

CONTAINER_NAME_PREFIX: Final = "botfleet-"

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

# Cleanup resource kinds (report keys; the first four are a contract).
KIND_BOTS: Final = "bots"
KIND_BOT_RESULTS: Final = "bot_results"
KIND_ORPHANED_RESULTS: Final = "orphaned_results"
KIND_CONTAINERS: Final = "containers"
KIND_RESULTS: Final = "results"
RESOURCE_KINDS: Final = (
    KIND_BOTS,
    KIND_BOT_RESULTS,
    KIND_ORPHANED_RESULTS,
    KIND_CONTAINERS,
    KIND_RESULTS,
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

# Container states that count as "not running" (safety rule 2).
REMOVABLE_STATES: Final = frozenset({"created", "exited", "dead"})

# Tokens that appear in documentation and must never guard a server reachable from outside.
EXAMPLE_ADMIN_TOKENS: Final = frozenset({"admin-secret-token", "changeme", "change-me", "secret"})

# Advisory-lock keys (PostgreSQL bigint); arbitrary but fixed.
MIGRATION_LOCK_KEY: Final = 0x626F74666C656574  # "botfleet"
CLEANUP_LOCK_KEY: Final = 0x626F74636C65616E  # "botclean"
