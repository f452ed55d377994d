"""The patterns the OpenAPI document declares and the server checks, one string for both.

JSON Schema's ``pattern`` is not anchored and ``$`` differs between engines (Python's also
matches before a final newline), so each pattern starts with ``^`` and ends with
``(?![\\s\\S])`` — the true end of the text in Python and ECMAScript alike — and the server
checks with :func:`matches` (``re.search``, as JSON Schema validators do). Lookaheads carry
what a character class cannot: reserved names, and the engine's limit on a repository name.
"""

from __future__ import annotations

import re
from functools import cache

from botfleet.cleanup.plan import STAGES
from botfleet.constants import RESERVED_ENV, RESERVED_LABELS

END = r"(?![\s\S])"
# Unicode's Cc: C0 controls, DEL and C1 controls.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
# What PostgreSQL's text and JSONB cannot hold is NUL and lone surrogates; a pattern names NUL
# only: a lone surrogate is no Unicode character (JSON Schema validators built on Rust cannot
# even compile a range of them), and the descriptions say they are refused.
_NUL = r"\x00"


def _literal(text: str) -> str:
    """``text`` (letters, digits, ``._-``) as a pattern valid in every dialect: only ``.`` is
    escaped (``re.escape`` also escapes ``-``, which ECMAScript's unicode mode refuses)."""
    return text.replace(".", r"\.")


def _reserved(names: frozenset[str]) -> str:
    return "|".join(_literal(n) for n in sorted(names))


# A bot's name: no control characters, not blank.
NAME = rf"^[^{_CONTROL}]*[^{_CONTROL}\s][^{_CONTROL}]*{END}"

# https://github.com/distribution/reference/blob/main/reference.go (the grammar docker uses)
# A first component is a registry only if it has a dot or a port, or is localhost. The grammar
# allows upper case in a registry's name, but the engine refuses any in the name it pulls
# ("repository name must be lowercase"), so neither does the API.
_HOST = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_DOMAIN = rf"(?:(?:localhost|{_HOST}(?:\.{_HOST})+)(?::[0-9]+)?/|{_HOST}:[0-9]+/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_DIGEST = r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
# The engine refuses a repository name over 255 characters as it spells it in full
# (schemas.bots.engine_repository_name): `docker.io/library/` before a lone name (so at most
# 237), `docker.io/` before a path without a registry (at most 245).
_LONG_LONE_NAME = r"(?![^/]*/)[a-z0-9._-]{238}"
_LONG_PATH = r"(?=[a-z0-9_-]+/)(?!localhost/)[a-z0-9._/-]{246}"
_LONG_HUB_NAME = r"index\.docker\.io/[a-z0-9._-]{238}"
IMAGE = (
    rf"^(?!{_LONG_LONE_NAME})(?!{_LONG_PATH})(?!{_LONG_HUB_NAME})"
    rf"{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}{END}"
)
COMMAND_ITEM = rf"^[^{_NUL}]*{END}"
# POSIX-portable variable names, as docker run --env expects them; botfleet's own are reserved.
ENV_KEY = rf"^(?!(?:{_reserved(RESERVED_ENV)}){END})[A-Za-z_][A-Za-z0-9_]*{END}"
ENV_VALUE = rf"^[^{_NUL}]*{END}"
# Docker's label-key guideline: lower-case alphanumerics separated by single '.' or '-'.
LABEL_KEY_SYNTAX = r"[a-z0-9]+(?:[.-][a-z0-9]+)*"
DOCKER_RESERVED_LABEL_PREFIXES = ("com.docker.", "io.docker.", "org.dockerproject.")
_DOCKER_PREFIXES = "|".join(_literal(p) for p in DOCKER_RESERVED_LABEL_PREFIXES)
LABEL_KEY = (
    rf"^(?!(?:{_reserved(RESERVED_LABELS)}){END})(?!{_DOCKER_PREFIXES})"
    rf"{LABEL_KEY_SYNTAX}{END}"
)
LABEL_VALUE = rf"^[^{_CONTROL}]*{END}"
# Result data: strings and keys without NUL (nor lone surrogates).
STORABLE_TEXT = rf"^[^{_NUL}]*{END}"

# A swarm placement constraint (docker service create --constraint): a node.* or engine.*
# attribute, == or !=, a value of the characters swarm accepts in one (swarmkit's
# manager/constraint: letters, digits, spaces inside and :-_.*()?+[]\^$|/).
_CONSTRAINT_VALUE = r"[A-Za-z0-9:_.*()?+\[\]\\^$|/-]+"
CONSTRAINT = (
    r"^[ \t]*(?:node|engine)\.[A-Za-z0-9_.-]+[ \t]*(?:==|!=)[ \t]*"
    rf"{_CONSTRAINT_VALUE}(?:[ \t]+{_CONSTRAINT_VALUE})*[ \t]*{END}"
)
# A memory size as docker writes it, from 6M (the engine's floor) to 1T: M, G or T, with an
# optional B, in either case; the range is in the digits, so the pattern says all the server does.
_MEGABYTES = r"(?:[6-9]|[1-9][0-9]{1,5})[mM]"
_GIGABYTES = r"(?:[1-9][0-9]?|[1-9][0-9][0-9]|10[01][0-9]|102[0-4])[gG]"
MEMORY_SIZE = rf"^(?:{_MEGABYTES}|{_GIGABYTES}|1[tT])[bB]?{END}"

# Query parameters.
LABEL_SELECTOR = rf"^(?![\s\S]*[\x00-\x1f]){LABEL_KEY_SYNTAX}="
DRY_RUN = rf"^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01]){END}"
_STAGE = "(?:" + "|".join(STAGES) + ")"
ONLY = rf"^[ \t,]*{_STAGE}(?:[ \t]*,[ \t,]*{_STAGE})*[ \t,]*{END}"


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` as a JSON Schema validator decides it."""
    return _compiled(pattern).search(value) is not None
