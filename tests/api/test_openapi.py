"""The OpenAPI document is valid, committed, and describes every answer in the one error shape.

The rules hold for every operation found in the served document, so an endpoint added later is
held to them without touching this file: each error status declared with the ``Error`` body,
401 with ``WWW-Authenticate`` and 429 with ``Retry-After`` wherever a token is needed, 422 wherever
there is input, 400 and 413 wherever there is a body; ids as UUIDs, pages bounded, cursors
non-empty. ``docs/openapi.json`` must equal the served document (``make openapi`` writes it).
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any, get_args

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from botfleet.api.openapi import render
from botfleet.api.schemas.bots import BOT_EXAMPLE, BotStatus
from botfleet.api.schemas.cleanup import REPORT_EXAMPLE, RunStatus, Trigger
from botfleet.api.schemas.results import RESULT_EXAMPLE
from botfleet.constants import (
    BOT_STATUSES,
    RUN_STATUSES,
    TRIGGER_CLI,
    TRIGGER_MANUAL,
    TRIGGER_SCHEDULE,
)
from tests.conftest import ROOT
from tests.support.error_shape import assert_error_shape

COMMITTED = ROOT / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# The document does not depend on the backend; the answers are checked on both elsewhere.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    served: dict[str, Any] = answer.json()
    return served


def operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def schema_of(doc: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref", "")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else ref_or_schema


def validator(doc: dict[str, Any], name: str) -> OAS31Validator:
    """A validator of component ``name``, with the document's components to resolve refs."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return OAS31Validator(schema)


@sqlite_only
async def test_the_document_is_valid_openapi_3_and_is_the_committed_one(
    document: dict[str, Any],
) -> None:
    validate(copy.deepcopy(document))
    assert document["openapi"].startswith("3.")
    assert COMMITTED.read_text(encoding="utf-8") == render(document), (
        "docs/openapi.json differs from the served document: run `make openapi` and commit it"
    )


@sqlite_only
async def test_every_operation_declares_its_answers_in_the_one_error_shape(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"AdminToken", "BotToken", "MetricsToken"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["detail"] and error["properties"]["detail"]["type"] == "string"
    ops = operations(document)
    assert len(ops) >= 15
    for label, op in ops:
        responses = op["responses"]
        assert any(code.startswith("2") for code in responses), label
        for code, answer in responses.items():
            if code.startswith(("4", "5")):
                body = answer["content"]["application/json"]["schema"]
                shape = schema_of(document, body)
                assert shape["properties"]["detail"]["type"] == "string", (label, code)
                assert "detail" in shape["required"], (label, code)
        security = op.get("security", [])
        if security:
            assert {"WWW-Authenticate"} <= set(responses["401"].get("headers", {})), label
        if security and {} not in security:  # required, not optional (METRICS_TOKEN)
            assert "Retry-After" in responses["429"]["headers"], label
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in responses, label
        if op.get("requestBody"):
            assert {"400", "413", "422"} <= set(responses), label
        for param in op.get("parameters", []):
            check_parameter(document, label, param)


def check_parameter(doc: dict[str, Any], label: str, param: dict[str, Any]) -> None:
    name, schema = param["name"], param["schema"]
    plain = next((s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"), schema)
    if name.endswith("_id"):
        assert plain.get("format") == "uuid", (label, name)
    if name.endswith("limit"):
        assert plain["minimum"] == 1 and plain["maximum"] == 1000, (label, name)
    if name == "offset":
        assert plain["minimum"] == 0 and "maximum" in plain, (label, name)
    if name.endswith("cursor"):
        assert plain["minLength"] == 1 and plain["maxLength"], (label, name)
    if name == "status":
        assert plain["enum"], (label, name)


@sqlite_only
async def test_protected_operations_name_their_token(document: dict[str, Any]) -> None:
    for label, op in operations(document):
        security = op.get("security")
        if label == "POST /bots/{bot_id}/results":
            assert security == [{"BotToken": []}]
        elif label.split()[1].startswith(("/bots", "/admin", "/results", "/fleet")):
            assert security == [{"AdminToken": []}], label
        elif label == "GET /metrics":
            assert security == [{}, {"MetricsToken": []}]
        else:
            assert not security, label


@sqlite_only
async def test_our_422s_and_fastapis_answer_the_same_documented_shape(
    client: httpx.AsyncClient, admin_headers: dict[str, str], document: dict[str, Any]
) -> None:
    error = validator(document, "Error")
    answers = {
        # FastAPI's own validation: a range, a UUID, a missing body field, an unreadable body.
        "fastapi range": await client.get("/bots?limit=0", headers=admin_headers),
        "fastapi uuid": await client.get("/admin/cleanup/runs/nope", headers=admin_headers),
        "fastapi body": await client.post("/bots", json={"name": "x"}, headers=admin_headers),
        # Ours (InvalidInput, naming the field): a pattern, a stage list, a forged cursor.
        "ours label": await client.get("/bots?label=Bad", headers=admin_headers),
        "ours only": await client.post("/admin/cleanup?only=everything", headers=admin_headers),
        "ours cursor": await client.get("/bots?cursor=abc", headers=admin_headers),
    }
    fields = {"range": "limit", "uuid": "run_id", "body": "image", "label": "label"}
    fields |= {"only": "only", "cursor": "cursor"}
    for case, answer in answers.items():
        assert answer.status_code == 422, (case, answer.text)
        assert_error_shape(answer)
        error.validate(answer.json())
        assert answer.json()["errors"][0]["field"] == fields[case.split()[1]], (case, answer.text)
    for answer in (
        await client.get("/bots"),  # 401
        await client.get(f"/bots/{uuid.uuid4()}", headers=admin_headers),  # 404
        await client.patch("/bots", headers=admin_headers),  # 405
        await client.get("/nowhere"),  # 404 of no route
    ):
        assert_error_shape(answer)
        error.validate(answer.json())


@sqlite_only
async def test_many_refused_fields_make_one_line_and_every_one_is_listed(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    items = [{"data": "x", "extra": n} for n in range(8)]
    answer = await client.post(f"/bots/{uuid.uuid4()}/results", json=items, headers=admin_headers)
    assert answer.status_code == 422
    body = answer.json()
    assert len(body["errors"]) == 8 and body["detail"].endswith("and 3 more")
    assert body["errors"][0]["field"] == "0.extra"  # the list's branch name is left out


@sqlite_only
async def test_the_examples_are_real_shapes(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name, example in (
        ("BotOut", BOT_EXAMPLE),
        ("ResultOut", RESULT_EXAMPLE),
        ("CleanupReport", REPORT_EXAMPLE),
    ):
        assert example in schemas[name]["examples"], name
        validator(document, name).validate(json.loads(json.dumps(example)))
    create = schemas["BotCreate"]["examples"][0]
    validator(document, "BotCreate").validate(create)


def test_the_documented_enums_are_the_constants() -> None:
    assert get_args(BotStatus) == BOT_STATUSES
    assert get_args(RunStatus) == RUN_STATUSES
    assert set(get_args(Trigger)) == {TRIGGER_SCHEDULE, TRIGGER_MANUAL, TRIGGER_CLI}


def test_botfleet_openapi_writes_the_committed_document(tmp_path: Any) -> None:
    """``make openapi`` (``botfleet openapi PATH``) regenerates ``docs/openapi.json`` exactly."""
    from typer.testing import CliRunner

    from botfleet.cli.main import app

    written = tmp_path / "openapi.json"
    result = CliRunner().invoke(app, ["openapi", str(written)])
    assert result.exit_code == 0, result.output
    assert written.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")
