"""Persisted documents over real HTTP: Apollo's automatic persisted queries (APQ), trusted
documents named by `documentId`, and a server that runs trusted documents only."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from resolvers.error_codes import ErrorCode
from sessiongraph.app import create_app
from sessiongraph.documents import PERSISTED_QUERY_NOT_FOUND_MESSAGE
from sessiongraph.settings import Settings
from storage import ApiKeyStore, Database
from storage.persisted import MAX_DOCUMENT_BYTES, MAX_REGISTERED_PER_ORG, PersistedDocumentStore
from tests.api_client import ApiClient
from tests.operations import CREATE_SESSION_ID, UPDATE_SESSION
from tests.serving import bound_socket, serve
from tests.ws_client import PROTOCOLS, Protocol, connected, wait_until

COUNT = "query Count { sessions(first: 1) { totalCount } }"
GRAPHQL_RESPONSE = "application/graphql-response+json"


def unique_query() -> str:
    """A query no other test uses, so that what one test stores cannot answer another."""
    return f"query Probe{uuid.uuid4().hex} {{ sessions(first: 1) {{ totalCount }} }}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(text: str, version: Any = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256(text)}}


def client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
async def http(server: str, org: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server, org[1]) as http:
        yield http


@pytest.fixture(scope="module")
async def get_server(settings: Settings) -> AsyncIterator[str]:
    """A second server process's worth of app (its own cache), with GET queries on."""
    app = create_app(settings.model_copy(update={"graphql_get": True}))
    async with serve(app, bound_socket()) as url:
        yield url


@pytest.fixture(scope="module")
async def strict_server(settings: Settings) -> AsyncIterator[str]:
    """A server that runs trusted documents only, GET queries on."""
    strict = settings.model_copy(update={"trusted_documents": "required", "graphql_get": True})
    async with serve(create_app(strict), bound_socket()) as url:
        yield url


async def registered(database: Database, org_id: str) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = await database.registered_documents.find(
        {"org_id": org_id}
    ).to_list(None)
    return documents


async def trusted(database: Database, text: str) -> str:
    await PersistedDocumentStore(database).add_trusted({"sha256:" + sha256(text): text})
    return "sha256:" + sha256(text)


def code(response: httpx.Response) -> str:
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    value: str = errors[0]["extensions"]["code"]
    return value


# Automatic persisted queries


async def test_an_unknown_hash_is_answered_as_apollo_clients_expect(
    http: httpx.AsyncClient, database: Database, org: tuple[str, str]
) -> None:
    response = await http.post("/graphql", json={"extensions": apq(unique_query())})

    # 200 even for graphql-response+json, as Apollo Server answers: older Apollo links
    # stop sending hashes after a 4xx.
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["message"] == PERSISTED_QUERY_NOT_FOUND_MESSAGE
    assert error["extensions"]["code"] == ErrorCode.PERSISTED_QUERY_NOT_FOUND
    assert "data" not in response.json()
    assert await registered(database, org[0]) == []


async def test_a_hash_sent_with_its_query_runs_and_is_kept_for_the_next_request(
    http: httpx.AsyncClient, database: Database, org: tuple[str, str]
) -> None:
    query = unique_query()

    first = await http.post("/graphql", json={"query": query, "extensions": apq(query)})
    second = await http.post("/graphql", json={"extensions": apq(query)})

    assert first.json() == {"data": {"sessions": {"totalCount": 0}}}
    assert second.json() == {"data": {"sessions": {"totalCount": 0}}}
    (stored,) = await registered(database, org[0])
    assert stored["document"] == query


async def test_a_kept_query_is_known_to_every_server_process(
    http: httpx.AsyncClient, get_server: str, org: tuple[str, str]
) -> None:
    query = unique_query()
    await http.post("/graphql", json={"query": query, "extensions": apq(query)})

    async with client(get_server, org[1]) as other:
        response = await other.post("/graphql", json={"extensions": apq(query)})

    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


async def test_a_hash_that_is_not_its_querys_is_refused_and_nothing_is_kept(
    http: httpx.AsyncClient, database: Database, org: tuple[str, str]
) -> None:
    query, other = unique_query(), unique_query()

    response = await http.post(
        "/graphql",
        json={"query": query, "extensions": apq(other)},
        headers={"Accept": GRAPHQL_RESPONSE},
    )
    after = await http.post("/graphql", json={"extensions": apq(other)})

    assert response.status_code == 400
    assert code(response) == ErrorCode.PERSISTED_QUERY_HASH_MISMATCH
    assert sha256(other) in response.json()["errors"][0]["message"]
    assert code(after) == ErrorCode.PERSISTED_QUERY_NOT_FOUND
    assert await registered(database, org[0]) == []


async def test_a_query_that_does_not_validate_is_not_kept(
    http: httpx.AsyncClient, database: Database, org: tuple[str, str]
) -> None:
    query = f"query Bad{uuid.uuid4().hex} {{ noSuchField }}"

    response = await http.post("/graphql", json={"query": query, "extensions": apq(query)})

    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert await registered(database, org[0]) == []


async def test_a_query_too_large_to_keep_runs_but_is_not_kept(
    http: httpx.AsyncClient, database: Database, org: tuple[str, str]
) -> None:
    query = "# " + "x" * MAX_DOCUMENT_BYTES + "\n" + unique_query()

    response = await http.post("/graphql", json={"query": query, "extensions": apq(query)})

    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}
    assert await registered(database, org[0]) == []


async def test_an_organization_keeping_the_most_queries_allowed_runs_new_ones_unkept(
    http: httpx.AsyncClient, database: Database, org: tuple[str, str]
) -> None:
    await database.registered_documents.insert_many(
        [
            {"_id": f"{org[0]}/{i}", "org_id": org[0], "document": "{ __typename }"}
            for i in range(MAX_REGISTERED_PER_ORG)
        ]
    )
    query = unique_query()

    response = await http.post("/graphql", json={"query": query, "extensions": apq(query)})

    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}
    assert await database.registered_documents.count_documents({"org_id": org[0]}) == (
        MAX_REGISTERED_PER_ORG
    )


@pytest.mark.parametrize("version", [2, 0, "1", None])
async def test_an_unsupported_apq_version_is_refused(
    http: httpx.AsyncClient, database: Database, org: tuple[str, str], version: Any
) -> None:
    query = unique_query()

    response = await http.post("/graphql", json={"query": query, "extensions": apq(query, version)})

    assert response.status_code == 400
    assert code(response) == ErrorCode.PERSISTED_QUERY_VERSION_UNSUPPORTED
    assert await registered(database, org[0]) == []


@pytest.mark.parametrize("bad_hash", ["abc", "A" * 64, "g" * 64, 12, None])
async def test_a_malformed_apq_hash_is_refused(http: httpx.AsyncClient, bad_hash: Any) -> None:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": bad_hash}}

    response = await http.post("/graphql", json={"extensions": extensions})

    assert response.status_code == 400
    assert code(response) == ErrorCode.INVALID_DOCUMENT_ID
    assert "sha256Hash" in response.json()["errors"][0]["message"]


async def test_a_kept_query_belongs_to_the_organization_that_sent_it(
    http: httpx.AsyncClient, server: str, database: Database
) -> None:
    query = unique_query()
    await http.post("/graphql", json={"query": query, "extensions": apq(query)})
    _, other_key = await ApiKeyStore(database).create(f"org-{uuid.uuid4().hex[:10]}", "test")

    async with client(server, other_key) as other:
        response = await other.post("/graphql", json={"extensions": apq(query)})

    assert code(response) == ErrorCode.PERSISTED_QUERY_NOT_FOUND


async def test_an_apq_hash_runs_over_get(
    get_server: str, org: tuple[str, str], http: httpx.AsyncClient
) -> None:
    query = unique_query()
    await http.post("/graphql", json={"query": query, "extensions": apq(query)})

    async with client(get_server, org[1]) as get_client:
        response = await get_client.get(
            "/graphql",
            params={"extensions": orjson.dumps(apq(query)).decode(), "variables": "{}"},
        )
        unknown = await get_client.get(
            "/graphql", params={"extensions": orjson.dumps(apq(unique_query())).decode()}
        )

    assert response.status_code == 200
    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}
    assert code(unknown) == ErrorCode.PERSISTED_QUERY_NOT_FOUND


# Trusted documents named by documentId


async def test_a_trusted_document_runs_by_its_document_id(
    http: httpx.AsyncClient, database: Database
) -> None:
    document_id = await trusted(database, unique_query())

    response = await http.post("/graphql", json={"documentId": document_id})

    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


async def test_a_trusted_document_runs_by_its_apq_hash(
    http: httpx.AsyncClient, database: Database
) -> None:
    query = unique_query()
    await trusted(database, query)

    response = await http.post("/graphql", json={"extensions": apq(query)})

    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


async def test_an_unknown_document_id_is_refused(http: httpx.AsyncClient) -> None:
    document_id = "sha256:" + sha256(unique_query())

    response = await http.post(
        "/graphql", json={"documentId": document_id}, headers={"Accept": GRAPHQL_RESPONSE}
    )

    assert response.status_code == 400
    assert code(response) == ErrorCode.PERSISTED_DOCUMENT_NOT_FOUND
    assert document_id in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "document_id",
    ["sha256:xyz", "md5:" + "0" * 32, "0" * 64, "sha256:" + "A" * 64, 42, ["sha256:"], ""],
)
async def test_a_malformed_document_id_is_refused(
    http: httpx.AsyncClient, document_id: Any
) -> None:
    response = await http.post("/graphql", json={"documentId": document_id})

    assert response.status_code == 400
    assert code(response) == ErrorCode.INVALID_DOCUMENT_ID
    assert "documentId" in response.json()["errors"][0]["message"]


async def test_a_document_id_with_a_query_too_is_refused(
    http: httpx.AsyncClient, database: Database
) -> None:
    query = unique_query()
    document_id = await trusted(database, query)

    response = await http.post("/graphql", json={"documentId": document_id, "query": query})

    assert response.status_code == 400
    assert code(response) == "BAD_REQUEST"


async def test_a_request_naming_no_document_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"variables": {}})

    assert response.status_code == 400
    assert code(response) == "BAD_REQUEST"
    assert "documentId" in response.json()["errors"][0]["message"]


# SESSIONGRAPH_TRUSTED_DOCUMENTS=required


async def test_required_refuses_an_untrusted_document_before_parsing_it(
    strict_server: str, org: tuple[str, str]
) -> None:
    async with client(strict_server, org[1]) as strict:
        response = await strict.post("/graphql", json={"query": "{ this does not parse"})

    assert response.status_code == 400
    assert code(response) == ErrorCode.TRUSTED_DOCUMENT_REQUIRED


async def test_required_runs_a_trusted_document_by_id_by_hash_and_by_its_text(
    strict_server: str, org: tuple[str, str], database: Database
) -> None:
    query = unique_query()
    document_id = await trusted(database, query)

    async with client(strict_server, org[1]) as strict:
        answers = [
            await strict.post("/graphql", json={"documentId": document_id}),
            await strict.post("/graphql", json={"extensions": apq(query)}),
            await strict.post("/graphql", json={"query": query}),
            await strict.get("/graphql", params={"documentId": document_id}),
        ]

    for response in answers:
        assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


async def test_required_turns_apq_registration_off(
    strict_server: str, org: tuple[str, str], database: Database
) -> None:
    query = unique_query()

    async with client(strict_server, org[1]) as strict:
        register = await strict.post("/graphql", json={"query": query, "extensions": apq(query)})
        by_hash = await strict.post("/graphql", json={"extensions": apq(query)})

    assert code(register) == ErrorCode.TRUSTED_DOCUMENT_REQUIRED
    assert code(by_hash) == ErrorCode.PERSISTED_QUERY_NOT_FOUND
    assert await registered(database, org[0]) == []


async def test_required_does_not_run_queries_registered_with_apq(
    strict_server: str, http: httpx.AsyncClient, org: tuple[str, str]
) -> None:
    query = unique_query()
    await http.post("/graphql", json={"query": query, "extensions": apq(query)})

    async with client(strict_server, org[1]) as strict:
        response = await strict.post("/graphql", json={"extensions": apq(query)})

    assert code(response) == ErrorCode.PERSISTED_QUERY_NOT_FOUND


# Live transports: the same resolution for websocket subscribe payloads and SSE requests

WATCH_UPDATES = "subscription Watch($id: ID!) { sessionUpdated(id: $id) { id name } }"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_subscribes_by_apq_hash_and_by_document_id(
    app: Starlette, server: str, database: Database, org: tuple[str, str], protocol: Protocol
) -> None:
    document_id = await trusted(database, WATCH_UPDATES)
    async with ApiClient(server, org[1]) as api:
        session_id = (await api.data(CREATE_SESSION_ID, {"input": {}}))["createSession"]["id"]
        async with connected(server, org[1], protocol) as ws:
            variables = {"id": session_id}
            await ws.start("1", {"documentId": document_id, "variables": variables})
            await ws.start("2", {"extensions": apq(WATCH_UPDATES), "variables": variables})
            tracker = app.state.parts.live.tracker
            await wait_until(
                lambda: sum(s.org_id == org[0] for s in tracker.subscriptions) == 2,
                "both subscriptions started",
            )
            await api.data(UPDATE_SESSION, {"id": session_id, "input": {"name": "renamed"}})
            frames = [await ws.receive(), await ws.receive()]
    assert sorted(frame["id"] for frame in frames) == ["1", "2"]
    for frame in frames:
        assert frame["payload"]["data"]["sessionUpdated"]["name"] == "renamed", frame


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_subscription_by_unknown_hash_is_refused_with_its_code(
    server: str, org: tuple[str, str], protocol: Protocol
) -> None:
    async with connected(server, org[1], protocol) as ws:
        await ws.start("1", {"extensions": apq(unique_query())})
        refusal = await ws.receive()
    assert refusal["type"] == "error"
    payload = refusal["payload"]
    first = payload[0] if isinstance(payload, list) else payload
    assert first["extensions"]["code"] == ErrorCode.PERSISTED_QUERY_NOT_FOUND


async def test_an_sse_request_runs_a_trusted_document_by_id(
    server: str, database: Database, org: tuple[str, str]
) -> None:
    document_id = await trusted(database, COUNT)
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        response = await http.post(
            "/graphql",
            json={"documentId": document_id},
            headers={"Authorization": f"Bearer {org[1]}", "Accept": "text/event-stream"},
        )
    assert response.status_code == 200
    assert "event: next" in response.text
    assert '"totalCount"' in response.text
    assert "event: complete" in response.text
