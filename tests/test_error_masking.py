"""Unexpected errors reach clients masked, with a request id the server log also carries."""

from __future__ import annotations

import logging

import pytest
import strawberry

from tests.reference_extensions import ErrorPresenter


@strawberry.type
class Query:
    @strawberry.field
    def broken(self) -> str:
        raise RuntimeError("database password is hunter2")


class RequestScoped:
    request_id = "req-1234"


BROKEN = "{ broken }"
SCHEMA = strawberry.Schema(query=Query, extensions=[ErrorPresenter])


def _execute() -> strawberry.types.ExecutionResult:
    return SCHEMA.execute_sync(BROKEN, context_value=RequestScoped())


def test_an_unexpected_error_is_masked_with_code_and_request_id() -> None:
    result = _execute()

    assert result.errors is not None
    error = result.errors[0].formatted
    assert "hunter2" not in str(error)
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-1234"}
    assert "req-1234" in error["message"]
    assert error["path"] == ["broken"]


def test_the_original_error_is_logged_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="sessiongraph.errors"):
        _execute()

    logged = [r for r in caplog.records if r.name == "sessiongraph.errors"]
    assert len(logged) == 1
    assert "req-1234" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert "hunter2" in str(logged[0].exc_info[1])
