"""GraphQL over HTTP: how POST /graphql answers, as the GraphQL-over-HTTP specification asks.

Requests are made with httpx directly, so every header and status code is the server's own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from sessiongraph.app import create_app
from sessiongraph.settings import Settings
from storage import Database
from tests.operations import LIST_SESSIONS, UPDATE_SESSION
from tests.serving import bound_socket, serve

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"

TYPENAME = "query Typename { __typename }"
UNPARSABLE = "query Broken { sessions(first: 1 { totalCount } }"
INVALID = "query Invalid { noSuchField }"
TWO_OPERATIONS = "query First { __typename } query Second { __typename }"
SUBSCRIPTION = 'subscription Updates { sessionUpdated(id: "any") { id } }'
COUNT_SESSIONS = "query Count { sessions(first: 1) { totalCount } }"

GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client of the running server, with no headers of its own."""
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def bearer(org: tuple[str, str]) -> dict[str, str]:
    """The Authorization header of this test's organization."""
    return {"Authorization": f"Bearer {org[1]}"}


async def post(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    if operation_name is not None:
        body["operationName"] = operation_name
    return await http.post("/graphql", json=body, headers=headers)


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def error_codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


# Content negotiation


async def test_without_accept_the_response_is_application_json(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, bearer, TYPENAME)

    assert response.status_code == 200
    assert media_type(response) == JSON
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_accepting_graphql_response_json_gets_that_media_type(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": GRAPHQL_RESPONSE}, TYPENAME)

    assert response.status_code == 200
    assert media_type(response) == GRAPHQL_RESPONSE
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_q_values_choose_graphql_response_json_when_it_is_preferred(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    accept = f"{JSON};q=0.5, {GRAPHQL_RESPONSE};q=0.9"

    response = await post(http, {**bearer, "Accept": accept}, TYPENAME)

    assert media_type(response) == GRAPHQL_RESPONSE


async def test_q_values_choose_application_json_when_it_is_preferred(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    accept = f"{GRAPHQL_RESPONSE};q=0.2, {JSON};q=0.8"

    response = await post(http, {**bearer, "Accept": accept}, TYPENAME)

    assert media_type(response) == JSON


async def test_accepting_only_text_plain_is_not_acceptable(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": "text/plain"}, TYPENAME)

    assert response.status_code == 406
    assert error_codes(response) == ["NOT_ACCEPTABLE"]
    assert "text/plain" in response.json()["errors"][0]["message"]


# Request errors: 400 with application/graphql-response+json, 200 with application/json


async def test_unparsable_document_is_400_without_data_for_graphql_response_json(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": GRAPHQL_RESPONSE}, UNPARSABLE)

    assert response.status_code == 400
    assert "data" not in response.json()
    assert error_codes(response) == ["GRAPHQL_PARSE_FAILED"]


async def test_invalid_document_is_400_without_data_for_graphql_response_json(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": GRAPHQL_RESPONSE}, INVALID)

    assert response.status_code == 400
    assert "data" not in response.json()
    assert error_codes(response) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "noSuchField" in response.json()["errors"][0]["message"]


async def test_uncoercible_variable_is_400_without_data_for_graphql_response_json(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(
        http, {**bearer, "Accept": GRAPHQL_RESPONSE}, LIST_SESSIONS, {"first": "abc"}
    )

    assert response.status_code == 400
    assert "data" not in response.json()
    assert error_codes(response) == ["BAD_USER_INPUT"]
    assert "$first" in response.json()["errors"][0]["message"]


async def test_unparsable_document_is_200_without_data_for_application_json(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": JSON}, UNPARSABLE)

    assert response.status_code == 200
    assert "data" not in response.json()
    assert error_codes(response) == ["GRAPHQL_PARSE_FAILED"]


async def test_invalid_document_is_200_without_data_for_application_json(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": JSON}, INVALID)

    assert response.status_code == 200
    assert "data" not in response.json()
    assert error_codes(response) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_uncoercible_variable_is_200_without_data_for_application_json(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": JSON}, LIST_SESSIONS, {"first": "abc"})

    assert response.status_code == 200
    assert "data" not in response.json()
    assert error_codes(response) == ["BAD_USER_INPUT"]


async def test_field_error_is_200_with_data_and_the_error(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(
        http,
        {**bearer, "Accept": GRAPHQL_RESPONSE},
        UPDATE_SESSION,
        {"id": "missing", "input": {"name": "x"}},
    )

    assert response.status_code == 200
    body = response.json()
    assert "data" in body
    assert body["data"] is None
    assert error_codes(response) == ["NOT_FOUND"]
    assert body["errors"][0]["path"] == ["updateSession"]


# Malformed requests


async def test_body_that_is_not_json_is_400(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await http.post(
        "/graphql",
        content=b"{query: { __typename }",
        headers={**bearer, "Content-Type": JSON},
    )

    assert response.status_code == 400
    assert error_codes(response) == ["BAD_REQUEST"]
    assert "not valid JSON" in response.json()["errors"][0]["message"]


async def test_batched_json_array_body_is_400(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await http.post(
        "/graphql", json=[{"query": TYPENAME}, {"query": TYPENAME}], headers=bearer
    )

    assert response.status_code == 400
    assert error_codes(response) == ["BAD_REQUEST"]
    assert "Batched" in response.json()["errors"][0]["message"]


async def test_body_without_query_is_400(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await http.post("/graphql", json={"variables": {}}, headers=bearer)

    assert response.status_code == 400
    assert error_codes(response) == ["BAD_REQUEST"]
    assert "query" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", orjson.dumps({"query": TYPENAME})),
        ("application/x-www-form-urlencoded", b"query=%7B__typename%7D"),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\n{__typename}\r\n--x--\r\n"),
    ],
)
async def test_non_json_content_type_is_415_so_browsers_cannot_post_cross_site(
    http: httpx.AsyncClient, bearer: dict[str, str], content_type: str, content: bytes
) -> None:
    response = await http.post(
        "/graphql", content=content, headers={**bearer, "Content-Type": content_type}
    )

    assert response.status_code == 415
    assert error_codes(response) == ["UNSUPPORTED_MEDIA_TYPE"]


async def test_body_larger_than_the_limit_is_413(
    http: httpx.AsyncClient, bearer: dict[str, str], settings: Settings
) -> None:
    body = orjson.dumps({"query": TYPENAME, "variables": {"pad": "x" * settings.max_body_bytes}})

    response = await http.post("/graphql", content=body, headers={**bearer, "Content-Type": JSON})

    assert response.status_code == 413
    assert error_codes(response) == ["PAYLOAD_TOO_LARGE"]


async def test_streamed_body_larger_than_the_limit_is_413(
    http: httpx.AsyncClient, bearer: dict[str, str], settings: Settings
) -> None:
    body = orjson.dumps({"query": TYPENAME, "variables": {"pad": "x" * settings.max_body_bytes}})

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit has to hold while the body is read.
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await http.post(
        "/graphql", content=chunks(), headers={**bearer, "Content-Type": JSON}
    )

    assert response.status_code == 413
    assert error_codes(response) == ["PAYLOAD_TOO_LARGE"]


async def test_subscription_over_post_is_400(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "Accept": JSON}, SUBSCRIPTION)

    assert response.status_code == 400
    assert error_codes(response) == ["BAD_REQUEST"]
    assert "Subscriptions" in response.json()["errors"][0]["message"]


async def test_unknown_operation_name_is_400(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, bearer, TWO_OPERATIONS, operation_name="Third")

    assert response.status_code == 400
    assert error_codes(response) == ["BAD_REQUEST"]
    assert "'Third'" in response.json()["errors"][0]["message"]


async def test_operation_name_picks_one_of_several_operations(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, bearer, TWO_OPERATIONS, operation_name="Second")

    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


# Authentication


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNzd29yZA==",
        "Token sg_something",
        "Bearer sg_not-a-key-anyone-was-given",
        "Bearer not-even-a-key-shape",
    ],
    ids=[
        "missing",
        "empty",
        "scheme-only",
        "basic",
        "other-scheme",
        "unknown-key",
        "malformed-key",
    ],
)
async def test_without_a_valid_key_the_answer_is_401_with_www_authenticate(
    http: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await post(http, headers, TYPENAME)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert error_codes(response) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
async def test_bearer_scheme_is_matched_case_insensitively(
    http: httpx.AsyncClient, org: tuple[str, str], scheme: str
) -> None:
    response = await post(http, {"Authorization": f"{scheme} {org[1]}"}, TYPENAME)

    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_a_key_sees_its_own_organization(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, bearer, COUNT_SESSIONS)

    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


# Request ids


@pytest.mark.parametrize(
    ("method", "headers", "content"),
    [
        ("POST", {"Content-Type": JSON}, orjson.dumps({"query": TYPENAME})),
        ("POST", {"Content-Type": JSON}, orjson.dumps({"query": UNPARSABLE})),
        ("POST", {"Content-Type": JSON, "Authorization": "Bearer nope"}, b"{}"),
        ("POST", {"Content-Type": JSON, "Accept": "text/plain"}, b"{}"),
        ("POST", {"Content-Type": "text/plain"}, b"{}"),
        ("POST", {"Content-Type": JSON}, b"not json"),
        ("GET", {"Accept": "text/html"}, b""),
        ("GET", {"Accept": JSON}, b""),
    ],
    ids=["ok", "parse-error", "401", "406", "415", "bad-json", "graphiql", "405"],
)
async def test_every_graphql_response_carries_a_request_id(
    http: httpx.AsyncClient,
    bearer: dict[str, str],
    method: str,
    headers: dict[str, str],
    content: bytes,
) -> None:
    response = await http.request(
        method, "/graphql", content=content or None, headers={**bearer, **headers}
    )

    assert GENERATED_REQUEST_ID.match(response.headers["x-request-id"])


async def test_a_sane_incoming_request_id_is_echoed_back(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await post(http, {**bearer, "X-Request-ID": "trace-42.abc_DEF"}, TYPENAME)

    assert response.headers["x-request-id"] == "trace-42.abc_DEF"


@pytest.mark.parametrize(
    "incoming",
    ["has spaces", "<script>", "x" * 65, "semi;colon", "../etc"],
    ids=["spaces", "markup", "too-long", "semicolon", "slash"],
)
async def test_a_malformed_incoming_request_id_is_replaced(
    http: httpx.AsyncClient, bearer: dict[str, str], incoming: str
) -> None:
    response = await post(http, {**bearer, "X-Request-ID": incoming}, TYPENAME)

    assert GENERATED_REQUEST_ID.match(response.headers["x-request-id"])


async def test_request_error_carries_the_request_id_of_its_response(
    http: httpx.AsyncClient,
) -> None:
    response = await post(http, {"X-Request-ID": "req-401"}, TYPENAME)

    assert response.json()["errors"][0]["extensions"]["requestId"] == "req-401"


# GET, other methods, health


async def test_browser_get_serves_graphiql_without_a_key(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})

    assert response.status_code == 200
    assert media_type(response) == "text/html"
    assert "graphiql" in response.text.lower()
    assert "<title>sessiongraph</title>" in response.text


async def test_a_query_over_get_is_405_unless_enabled(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await http.get("/graphql", params={"query": TYPENAME}, headers=bearer)

    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert error_codes(response) == ["METHOD_NOT_ALLOWED"]
    assert "SESSIONGRAPH_GRAPHQL_GET" in response.json()["errors"][0]["message"]


async def test_get_without_text_html_is_405_allowing_post(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await http.get("/graphql", headers=bearer)

    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert error_codes(response) == ["METHOD_NOT_ALLOWED"]


async def test_head_is_answered_as_get_not_as_post(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await http.head("/graphql", headers={**bearer, "Content-Type": JSON})

    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


async def test_put_is_405(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await http.put("/graphql", json={"query": TYPENAME}, headers=bearer)

    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["x-request-id"]


async def test_healthz_is_200(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")

    assert response.status_code == 200
    assert response.text == "ok"


async def test_readyz_is_200_when_the_database_answers(http: httpx.AsyncClient) -> None:
    response = await http.get("/readyz")

    assert response.status_code == 200
    assert response.json()["ready"] is True


INTROSPECTION = "{ __schema { queryType { name } } }"


async def test_introspection_can_be_switched_off(
    settings: Settings, database: Database, org: tuple[str, str]
) -> None:
    closed = create_app(settings.model_copy(update={"introspection": False}))
    async with serve(closed, bound_socket()) as url, httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/graphql",
            json={"query": INTROSPECTION},
            headers={"Authorization": f"Bearer {org[1]}"},
        )

    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


PREFLIGHT_HEADERS = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_cross_origin_requests_are_refused_by_default(http: httpx.AsyncClient) -> None:
    response = await http.options("/graphql", headers=PREFLIGHT_HEADERS)

    assert "access-control-allow-origin" not in response.headers


async def test_a_configured_origin_passes_the_cors_preflight(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["https://app.example"]}))
    async with serve(app, bound_socket()) as url, httpx.AsyncClient() as client:
        allowed = await client.options(f"{url}/graphql", headers=PREFLIGHT_HEADERS)
        other = await client.options(
            f"{url}/graphql", headers={**PREFLIGHT_HEADERS, "Origin": "https://evil.example"}
        )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


async def test_graphiql_can_be_switched_off(settings: Settings) -> None:
    quiet = create_app(settings.model_copy(update={"graphiql": False}))
    async with serve(quiet, bound_socket()) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["allow"] == "POST"
    assert "GraphiQL" not in response.json()["errors"][0]["message"]
