"""CLEANUP_POLICY_FILE: validated up front, first match wins, errors name rule, field and value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from botfleet.cleanup.policy import Policy, PolicyError, is_held, load_policy_file, parse_rules
from botfleet.config import ConfigError, load_settings
from botfleet.startup import checked_settings
from tests.conftest import TEST_TOKEN

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

GOOD = """
rules:
  - name: keep-prod
    match: {env: prod}
    bot_retention_days: 30
    result_retention_days: 90
  - match: {team: research, env: staging}
    bot_retention_days: never
  - match: {team: research}
    result_retention_days: never
  - match: {tier: 2}
    bot_retention_days: 0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_a_good_file_loads_in_order(tmp_path: Path) -> None:
    rules = load_policy_file(write(tmp_path, GOOD))
    assert [r.number for r in rules] == [1, 2, 3, 4]
    assert rules[0].name == "keep-prod" and rules[0].match == {"env": "prod"}
    assert rules[1].keeps_bots and rules[1].bot_retention_days is None
    assert rules[2].keeps_results and not rules[2].keeps_bots
    assert rules[3].match == {"tier": "2"}  # YAML numbers compare as label text


@pytest.mark.parametrize(
    ("labels", "days", "source"),
    [
        ({"env": "prod", "team": "research"}, 30, "rule 1 (keep-prod)"),  # first match wins
        ({"env": "staging", "team": "research"}, None, "rule 2"),  # never
        ({"team": "research"}, 7, "rule 3"),  # sets only results: bots use the default
        ({"tier": "2"}, 0, "rule 4"),
        ({"env": "dev"}, 7, "default"),
        ({}, 7, "default"),
    ],
)
def test_first_match_wins(
    tmp_path: Path, labels: dict[str, str], days: int | None, source: str
) -> None:
    policy = Policy(bot_retention_days=7, rules=load_policy_file(write(tmp_path, GOOD)))
    retention = policy.bot_retention(labels)
    assert (retention.days, retention.source) == (days, source)


def test_result_retention_falls_back_to_the_setting(tmp_path: Path) -> None:
    rules = load_policy_file(write(tmp_path, GOOD))
    policy = Policy(bot_retention_days=7, result_retention_days=14, rules=rules)
    assert policy.result_retention({"env": "prod"}).days == 90
    assert policy.result_retention({"team": "research"}).days is None  # never
    assert policy.result_retention({"env": "dev"}).days == 14
    assert policy.results_stage_enabled
    assert not Policy(bot_retention_days=7).results_stage_enabled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  - match: {a: b}\n    bot_retention_days: -3\n",
            "rule 1: field bot_retention_days",
        ),
        ("rules:\n  - bot_retention_days: 1\n  - bot_retention_days: soon\n", "got 'soon'"),
        ("rules:\n  - bot_retention_days: 1.5\n", "got 1.5"),
        ("rules:\n  - bot_retention_days: true\n", "got True"),
        ("rules:\n  - match: {a: b}\n", "rule 1: sets none of"),
        ("rules:\n  - bot_retention_days: 1\n    colour: red\n", "unknown field 'colour'"),
        ("rules:\n  - match: [a, b]\n    bot_retention_days: 1\n", "field match accepts a mapping"),
        ("rules:\n  - match: {'bad key': x}\n    bot_retention_days: 1\n", "invalid label key"),
        ("rules:\n  - match: {a: {b: c}}\n    bot_retention_days: 1\n", "field match.a"),
        ("rules:\n  - result_retention_days: -1\n", "field result_retention_days"),
        ("rules: {a: 1}\n", "'rules' accepts a list"),
        ("- 1\n", "accepts a mapping with one key"),
        ("rules: [\n", "not valid YAML at line"),
        ("rules:\n  - 7\n", "rule 1: accepts a mapping"),
    ],
)
def test_bad_files_name_rule_field_and_value(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy_file(write(tmp_path, text))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_an_empty_file_has_no_rules(tmp_path: Path) -> None:
    assert load_policy_file(write(tmp_path, "")) == ()
    assert parse_rules({"rules": []}) == ()


def test_a_bad_file_stops_the_start_up_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  - match: {a: b}\n  - bot_retention_days: -3\n")
    with pytest.raises(ConfigError) as caught:
        checked_settings(_env_file=None, admin_token=TEST_TOKEN, cleanup_policy_file=str(path))
    message = str(caught.value)
    assert message.startswith("invalid CLEANUP_POLICY_FILE=")
    assert "rule 1: sets none of" in message
    assert "\n" not in message


def test_a_good_file_passes_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        _env_file=None, admin_token=TEST_TOKEN, cleanup_policy_file=str(write(tmp_path, GOOD))
    )
    assert len(Policy.from_settings(settings).rules) == 4


def test_the_snapshot_round_trips(tmp_path: Path) -> None:
    policy = Policy(
        bot_retention_days=5,
        result_retention_days=3,
        container_grace_minutes=1.5,
        rules=load_policy_file(write(tmp_path, GOOD)),
    )
    assert Policy.from_snapshot(policy.snapshot()) == policy


@pytest.mark.parametrize(
    ("labels", "held"),
    [
        ({"botfleet.hold": "true"}, True),
        ({"botfleet.hold": "TRUE"}, True),
        ({"botfleet.hold": True}, True),
        ({"botfleet.hold": "false"}, False),
        ({"botfleet.hold": "yes"}, False),
        ({}, False),
    ],
)
def test_legal_hold(labels: dict[str, object], held: bool) -> None:
    assert is_held(labels) is held


def test_retention_cutoff() -> None:
    policy = Policy(bot_retention_days=7)
    assert policy.bot_retention({}).cutoff(NOW) == NOW - timedelta(days=7)
