"""The patterns the document declares and the checks the server makes agree, value by value.

Each row is a value at an edge (a length limit, a reserved name, a final newline, upper case,
a control character); the document's pattern (``re.search``, as a JSON Schema validator reads
it) and the server's answer must both accept it or both refuse it.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from botfleet.api.routes.bots import parse_label_filters
from botfleet.api.routes.cleanup import check_only, parse_dry_run
from botfleet.api.schemas import patterns
from botfleet.api.schemas.bots import BotCreate
from botfleet.app import create_app
from botfleet.cleanup.plan import parse_only
from botfleet.config import Settings
from botfleet.errors import InvalidInput


def accepted_by_bot_create(**fields: Any) -> bool:
    try:
        BotCreate.model_validate({"name": "n", "image": "busybox", **fields})
    except ValidationError:
        return False
    return True


IMAGES = [
    ("busybox", True),
    ("botfleet/sample-bot:latest", True),
    ("busybox:Tag_1.0", True),
    ("a" * 237, True),  # docker.io/library/ + 237 = 255
    ("a" * 238, False),
    ("library/" + "a" * 237, True),  # docker.io/ + 245
    ("library/" + "a" * 238, False),
    ("index.docker.io/" + "a" * 237, True),
    ("index.docker.io/" + "a" * 238, False),
    ("localhost/" + "a" * 245, True),
    ("registry.example.com:5000/team/bot@sha256:" + "a" * 64, True),
    ("Registry.example.com/bot", False),  # the engine refuses upper case anywhere in the name
    ("busybox\n", False),
    ("busybox:tâg", False),
    ("BusyBox", False),
]


@pytest.mark.parametrize(("image", "ok"), IMAGES)
def test_image(image: str, ok: bool) -> None:
    assert patterns.matches(patterns.IMAGE, image) is ok
    assert accepted_by_bot_create(image=image) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [("hello", True), (" x ", True), ("   ", False), ("a\n", False), ("a\x85", False), ("é", True)],
)
def test_name(name: str, ok: bool) -> None:
    assert patterns.matches(patterns.NAME, name) is ok
    assert accepted_by_bot_create(name=name) is ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("FOO", True),
        ("_x1", True),
        ("BOT_ID", False),
        ("BOT_ID2", True),
        ("A\n", False),
        ("1A", False),
        ("MAIN_SERVER_URL", False),
        ("A-B", False),
    ],
)
def test_env_key(key: str, ok: bool) -> None:
    assert patterns.matches(patterns.ENV_KEY, key) is ok
    assert accepted_by_bot_create(env={key: "v"}) is ok


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("team", "ops", True),
        ("botfleet.hold", "true", True),
        ("botfleet.managed", "true", False),
        ("botfleet.managed-x", "y", True),
        ("com.docker.x", "y", False),
        ("a..b", "y", False),
        ("team\n", "y", False),
        ("team", "x\n", False),
        ("team", "x\x85", False),
        ("team", "", True),
    ],
)
def test_label(key: str, value: str, ok: bool) -> None:
    both = patterns.matches(patterns.LABEL_KEY, key) and patterns.matches(
        patterns.LABEL_VALUE, value
    )
    assert both is ok
    assert accepted_by_bot_create(labels={key: value}) is ok


@pytest.mark.parametrize("field", ["env", "labels"])
def test_a_lone_surrogate_is_refused_though_no_pattern_names_it(field: str) -> None:
    # The descriptions say it; Rust-built validators cannot hold a surrogate in a pattern.
    assert not accepted_by_bot_create(**{field: {"a": "x\udfff"}})


def server_accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
    except InvalidInput:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("team=ops", True),
        ("team=", True),
        ("team=a=b", True),
        ("Team=x", False),
        ("team", False),
        ("team=x\n", False),
        ("team=x\x7f", True),
        ("=x", False),
    ],
)
def test_label_selector(value: str, ok: bool) -> None:
    assert patterns.matches(patterns.LABEL_SELECTOR, value) is ok
    assert server_accepts(lambda v: parse_label_filters([v]), value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("true", True),
        ("FALSE", True),
        ("1", True),
        ("0", True),
        (" true", False),
        ("true\n", False),
        ("yes", False),
        ("", False),
    ],
)
def test_dry_run(value: str, ok: bool) -> None:
    assert patterns.matches(patterns.DRY_RUN, value) is ok
    assert server_accepts(parse_dry_run, value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("bots", True),
        ("bots, containers", True),
        ("bots,", True),
        (",results,,", True),
        ("bot_results", False),
        ("", False),
        (",", False),
        ("bots containers", False),
        ("bots\n", False),
        ("everything", False),
    ],
)
def test_only(value: str, ok: bool) -> None:
    assert patterns.matches(patterns.ONLY, value) is ok
    assert server_accepts(lambda v: parse_only(check_only(v)), value) is ok


@pytest.mark.parametrize(
    ("constraint", "ok"),
    [
        ("node.labels.zone==eu", True),
        ("node.role != manager", True),
        ("engine.labels.gpu==true", True),
        (" node.hostname==h1 ", True),
        ("node.labels.zone=eu", False),  # one '=' is no operator
        ("labels.zone==eu", False),  # neither node.* nor engine.*
        ("node.labels.zone==", False),
        ("node.labels.zone==e u", True),  # swarm takes spaces inside a value
        ("node.role==manager==worker", False),  # swarm refuses an operator in the value
        ("node.labels.zone==eu!", False),
        ("node.labels.x==[ab]+", True),
        ("node.labels.zone==eu\n", False),
        ("node.labels.zone==eu\x85", False),
    ],
)
def test_placement_constraint(constraint: str, ok: bool) -> None:
    assert patterns.matches(patterns.CONSTRAINT, constraint) is ok
    assert accepted_by_bot_create(placement=[constraint]) is ok


@pytest.mark.parametrize(
    ("size", "ok"),
    [
        ("6M", True),
        ("5M", False),  # under the engine's floor
        ("999999M", True),
        ("1000000M", False),
        ("1G", True),
        ("1g", True),
        ("512MB", True),
        ("512mb", True),
        ("1024G", True),
        ("1025G", False),
        ("1T", True),
        ("2T", False),
        ("06M", False),
        ("1K", False),  # under the floor in any number the pattern would allow
        ("", False),
        ("1G\n", False),
        ("1.5G", False),
    ],
)
def test_memory_size(size: str, ok: bool) -> None:
    assert patterns.matches(patterns.MEMORY_SIZE, size) is ok
    assert accepted_by_bot_create(resources={"memory_limit": size}) is ok


@pytest.mark.parametrize(
    ("resources", "ok"),
    [
        ({"memory_limit": 6 * 1024**2}, True),
        ({"memory_limit": 6 * 1024**2 - 1}, False),
        ({"memory_limit": 1024**4}, True),
        ({"memory_limit": 1024**4 + 1}, False),
        ({"cpu_limit": 0.001}, True),
        ({"cpu_limit": 5e-324}, False),  # a limit that would round to no limit at all
        ({"cpu_limit": 1024}, True),
        ({"cpu_limit": 1024.5}, False),
        ({"memory_limit": True}, False),
    ],
)
def test_resource_bounds_are_the_documents(resources: dict[str, Any], ok: bool) -> None:
    """The numbers the document states (minimum, maximum) are the ones the server holds to."""
    schema = create_app(Settings(admin_token="t" * 40)).openapi()["components"]["schemas"]
    props = schema["ResourcesIn"]["properties"]
    for key, value in resources.items():
        declared = props[key]["anyOf"][0]
        if key.startswith("memory"):
            declared = declared["anyOf"][0]
        if isinstance(value, bool):
            continue
        inside = declared["minimum"] <= value <= declared["maximum"]
        assert inside is ok, (key, value, declared)
    assert accepted_by_bot_create(resources=resources) is ok
