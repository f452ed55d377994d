"""A few domain exceptions that carry data; ``api/errors.py`` maps them to HTTP in one place."""

from __future__ import annotations

from collections.abc import Sequence


class BotfleetError(Exception):
    """Base class; ``str()`` is a message safe to show to a client."""


class BotNotFound(BotfleetError):
    def __init__(self, bot_id: object) -> None:
        super().__init__(f"bot {bot_id} not found")
        self.bot_id = bot_id


class BotDeleted(BotfleetError):
    """The bot is soft-deleted: it exists for audit and restore, but accepts no results."""

    def __init__(self, bot_id: object) -> None:
        super().__init__(f"bot {bot_id} is deleted")
        self.bot_id = bot_id


class BotNameTaken(BotfleetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a live bot named {name!r} already exists")
        self.name = name


class InvalidInput(BotfleetError):
    """A value the caller sent is unusable; ``field`` names it (an HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ImageNotAvailable(BotfleetError):
    def __init__(self, image: str, engine: str = "") -> None:
        where = f" on engine {engine}" if engine else ""
        super().__init__(f"image: {image!r} is not present{where} and cannot be pulled")
        self.image = image
        self.engine = engine


class ImagePullFailed(ImageNotAvailable):
    """The registry answered, and refused: no such image or tag, or no right to pull it."""

    def __init__(self, image: str, engine: str, reason: str) -> None:
        BotfleetError.__init__(
            self, f"image: {image!r} could not be pulled on engine {engine}: {reason}"
        )
        self.image = image
        self.engine = engine
        self.reason = reason


class RegistryUnavailable(BotfleetError):
    """The image's registry did not answer (an HTTP 503: try again later)."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"image: the registry of {image!r} did not answer: {reason}")
        self.image = image
        self.reason = reason


class ContainerFailed(BotfleetError):
    """The engine answered but refused to create or start the container."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"engine {engine} could not run the container: {reason}")
        self.engine = engine
        self.reason = reason


class BotTokenInvalid(BotfleetError):
    """No bot holds this token (an HTTP 401)."""

    def __init__(self, bot_id: object) -> None:
        super().__init__(f"missing or invalid bearer token for bot {bot_id}")
        self.bot_id = bot_id


class BotTokenForbidden(BotfleetError):
    """A valid token, but not this bot's: another bot's, or the admin token (an HTTP 403)."""

    def __init__(self, bot_id: object, reason: str) -> None:
        super().__init__(f"{reason}; only bot {bot_id}'s own token may post its results")
        self.bot_id = bot_id


class TooManyAuthFailures(BotfleetError):
    """This address failed to authenticate too often lately (an HTTP 429 with Retry-After)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed authentication attempts from this address")
        self.retry_after = retry_after


class RestoreExpired(BotfleetError):
    def __init__(self, bot_id: object) -> None:
        super().__init__(f"bot {bot_id} is past its retention and can no longer be restored")
        self.bot_id = bot_id


class ContainerConflict(Exception):
    """The engine refused an operation because of the container's state (e.g. it is running).
    Not a :class:`BotfleetError`: the cleanup reports it as a skip, and nothing shows it to a
    client as it is."""


class WorkloadGone(BotfleetError):
    """The container (or swarm service) a bot points at no longer exists on its engine."""

    def __init__(self, engine: str, container_id: str, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f"container {container_id[:12]} no longer exists on engine {engine}{why}")
        self.engine = engine
        self.container_id = container_id


class LogsUnreadable(BotfleetError):
    """The engine answers but cannot hand over a workload's logs (e.g. a logging driver that
    keeps none, such as ``none`` or ``syslog``)."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"engine {engine} cannot read the container's logs: {reason}")
        self.engine = engine
        self.reason = reason


class EngineUnavailable(BotfleetError):
    def __init__(self, engine: str, reason: str = "") -> None:
        super().__init__(f"engine {engine} is unavailable" + (f": {reason}" if reason else ""))
        self.engine = engine
        self.reason = reason


class NoEngineAvailable(BotfleetError):
    def __init__(self, engines: Sequence[str], reasons: Sequence[str] = ()) -> None:
        detail = "; ".join(reasons) if reasons else ", ".join(engines)
        super().__init__(f"no container engine is reachable ({detail})")
        self.engines = list(engines)


class CleanupInProgress(BotfleetError):
    def __init__(self, run_id: object | None) -> None:
        super().__init__(f"a cleanup run is already in progress (run {run_id})")
        self.run_id = run_id


class PlanNotFound(BotfleetError):
    def __init__(self, plan_id: object) -> None:
        super().__init__(f"plan {plan_id} not found (plans come from dry runs)")
        self.plan_id = plan_id


class RunNotFound(BotfleetError):
    def __init__(self, run_id: object) -> None:
        super().__init__(f"cleanup run {run_id} not found")
        self.run_id = run_id


class LockLost(BotfleetError):
    """The cleanup lock's session is gone: another replica may run now, so this one stops."""

    def __init__(self) -> None:
        super().__init__("the cleanup lock was lost")
