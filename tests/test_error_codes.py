"""The error vocabulary is declared once: `ErrorCode` holds every code and its meaning, the
README's table says the same, the wire strings never change, and the one error-body builder
and first-code function behave as the transports rely on."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from graphql import GraphQLError, build_schema

from resolvers.error_codes import ErrorCode, coded_error, error_body, first_error_code
from schema import create_schema
from schema.subscriptions import SUBSCRIPTION_FIELDS

README = (Path(__file__).parent.parent / "README.md").read_text()
ROW = re.compile(r"^\| `([A-Z_]+)` \| (.+) \|$")


def readme_error_table() -> dict[str, str]:
    section = README.split("\n## Error codes\n", 1)[1].split("\n## ", 1)[0]
    rows = [ROW.match(line) for line in section.splitlines()]
    return {row[1]: row[2] for row in rows if row is not None}


def test_every_code_is_its_own_name_on_the_wire() -> None:
    for code in ErrorCode:
        assert code.value == code.name
        assert orjson.loads(orjson.dumps({"code": code})) == {"code": code.name}


def test_every_code_has_its_meaning_written_down() -> None:
    for code in ErrorCode:
        assert len(code.meaning) > 20, code
        assert code.meaning[0].isupper() or code.meaning[0] == "`", code
        assert code.meaning.endswith("."), code


def test_the_readme_lists_every_code_with_its_meaning_and_no_other() -> None:
    assert readme_error_table() == {code.value: code.meaning for code in ErrorCode}


def test_an_error_body_holds_its_errors_each_with_its_code_first() -> None:
    error = coded_error("Slow down.", ErrorCode.RATE_LIMITED, retryAfter=3)

    body = orjson.loads(orjson.dumps(error_body(error)))

    assert body == {
        "errors": [
            {"message": "Slow down.", "extensions": {"code": "RATE_LIMITED", "retryAfter": 3}}
        ]
    }
    assert list(body["errors"][0]["extensions"]) == ["code", "retryAfter"]


def test_the_first_errors_code_is_the_outcome() -> None:
    first = GraphQLError("gone", extensions={"code": ErrorCode.NOT_FOUND})
    second = GraphQLError("bad", extensions={"code": ErrorCode.BAD_USER_INPUT})

    assert first_error_code([first, second]) == "NOT_FOUND"
    assert first_error_code(None) is None
    assert first_error_code([]) is None


def test_an_uncoded_first_error_reports_the_code_asked_for() -> None:
    uncoded = [GraphQLError("no code")]

    assert first_error_code(uncoded) == "INTERNAL_SERVER_ERROR"
    refused = ErrorCode.GRAPHQL_VALIDATION_FAILED
    assert first_error_code(uncoded, uncoded=refused) == "GRAPHQL_VALIDATION_FAILED"


def test_the_subscription_field_names_are_the_schemas() -> None:
    subscription = build_schema(create_schema().as_str()).subscription_type

    assert subscription is not None
    assert tuple(subscription.fields) == SUBSCRIPTION_FIELDS
