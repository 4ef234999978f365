"""Queries over GET, on a server that enables them (SESSIONGRAPH_GRAPHQL_GET): the
GraphQL-over-HTTP GET form runs queries, and never mutations or subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from sessiongraph.app import create_app
from sessiongraph.settings import Settings
from tests.serving import bound_socket, serve

SESSION = "query One($id: ID!) { session(id: $id) { id name } }"
CREATE = 'mutation Create { createSession(input: {name: "over GET"}) { id } }'
COUNT = "query Count { sessions(first: 1) { totalCount } }"
SUBSCRIPTION = 'subscription Updates { sessionUpdated(id: "any") { id } }'


@pytest.fixture(scope="module")
async def get_server(settings: Settings) -> AsyncIterator[str]:
    app = create_app(settings.model_copy(update={"graphql_get": True}))
    async with serve(app, bound_socket()) as url:
        yield url


@pytest.fixture
async def http(get_server: str, org: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {org[1]}"}
    async with httpx.AsyncClient(base_url=get_server, headers=headers, timeout=30) as client:
        yield client


async def get(http: httpx.AsyncClient, query: str, **params: Any) -> httpx.Response:
    return await http.get("/graphql", params={"query": query, **params})


async def created_session(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post(
        "/graphql",
        json={"query": f'mutation {{ createSession(input: {{name: "{name}"}}) {{ id }} }}'},
    )
    session_id: str = response.json()["data"]["createSession"]["id"]
    return session_id


async def test_a_query_with_variables_runs_over_get(http: httpx.AsyncClient) -> None:
    session_id = await created_session(http, "read over GET")

    response = await get(http, SESSION, variables=orjson.dumps({"id": session_id}).decode())

    assert response.status_code == 200
    assert response.json() == {"data": {"session": {"id": session_id, "name": "read over GET"}}}


async def test_a_get_answer_is_kept_out_of_shared_caches(http: httpx.AsyncClient) -> None:
    response = await get(http, COUNT)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    assert "Authorization" in response.headers["vary"]


async def test_a_mutation_over_get_is_405_and_changes_nothing(http: httpx.AsyncClient) -> None:
    before = (await get(http, COUNT)).json()["data"]["sessions"]["totalCount"]

    response = await get(http, CREATE)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert "data" not in response.json()
    assert (await get(http, COUNT)).json()["data"]["sessions"]["totalCount"] == before


async def test_a_mutation_picked_by_operation_name_over_get_is_405(
    http: httpx.AsyncClient,
) -> None:
    response = await get(http, f"{COUNT} {CREATE}", operationName="Create")

    assert response.status_code == 405


async def test_a_subscription_over_get_is_a_bad_request(http: httpx.AsyncClient) -> None:
    response = await get(http, SUBSCRIPTION)

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_variables_that_are_not_json_are_a_bad_request(http: httpx.AsyncClient) -> None:
    response = await get(http, SESSION, variables="{id:")

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "variables" in error["message"]


async def test_variables_that_are_not_an_object_are_a_bad_request(
    http: httpx.AsyncClient,
) -> None:
    response = await get(http, SESSION, variables="[1]")

    assert response.status_code == 400


async def test_a_query_over_get_needs_a_key(get_server: str) -> None:
    async with httpx.AsyncClient(base_url=get_server) as anonymous:
        response = await get(anonymous, COUNT)

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_graphiql_is_still_served_to_browsers(get_server: str) -> None:
    async with httpx.AsyncClient(base_url=get_server) as browser:
        response = await browser.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert "<title>sessiongraph</title>" in response.text
