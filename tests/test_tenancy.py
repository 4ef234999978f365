"""Organizations are walled off: a key sees and changes only its own organization's sessions,
and another organization's session is indistinguishable from one that does not exist."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from storage import ApiKeyStore, Database
from tests.api_client import ApiClient
from tests.operations import (
    ADD_MESSAGES,
    CREATE_SESSION,
    CREATE_SESSION_ID,
    DELETE_SESSION,
    GET_SESSION,
    LIST_SESSIONS,
    UPDATE_SESSION,
)

LIST_ORG_IDS = """
query ListOrgIds { sessions(first: 100) { nodes { id orgId } edges { node { orgId } } } }
"""
UPDATE_ORG_ID = """
mutation Update($id: ID!, $input: UpdateSessionInput!) {
  updateSession(id: $id, input: $input) { id orgId }
}
"""
DELETE_ORG_ID = """
mutation Delete($id: ID!) { deleteSession(id: $id) { id orgId } }
"""


async def create(api: ApiClient, **fields: Any) -> str:
    """A new session of the client's organization, with one message; returns its id."""
    fields.setdefault("messages", [{"user": {"content": "mine"}}])
    created = await api.data(CREATE_SESSION_ID, {"input": fields})
    session_id: str = created["createSession"]["id"]
    return session_id


async def listing(api: ApiClient, **variables: Any) -> dict[str, Any]:
    """The client's `sessions` connection for these variables."""
    connection: dict[str, Any] = (await api.data(LIST_SESSIONS, variables))["sessions"]
    return connection


def listed_ids(connection: dict[str, Any]) -> set[str]:
    return {node["id"] for node in connection["nodes"]}


def with_placeholder(error: dict[str, Any], session_id: str) -> dict[str, Any]:
    """The error with the session id replaced, so two errors compare by shape."""
    replaced: dict[str, Any] = json.loads(json.dumps(error).replace(session_id, "<id>"))
    return replaced


async def test_other_orgs_session_reads_as_null_exactly_like_a_missing_one(
    api: ApiClient, other_api: ApiClient
) -> None:
    theirs = await create(other_api)

    foreign = await api.execute(GET_SESSION, {"id": theirs})
    missing = await api.execute(GET_SESSION, {"id": str(uuid.uuid4())})

    assert foreign == missing == {"data": {"session": None}}


# Each mutation on a session id: (document, the id's variable name, the other variables).
MUTATIONS = [
    pytest.param(UPDATE_SESSION, "id", {"input": {"name": "hijacked"}}, id="update"),
    pytest.param(
        UPDATE_SESSION,
        "id",
        {"input": {"status": "COMPLETED", "expirationSeconds": 60}},
        id="update-status-and-expiry",
    ),
    pytest.param(UPDATE_SESSION, "id", {"input": {}}, id="update-without-changes"),
    pytest.param(DELETE_SESSION, "id", {}, id="delete"),
    pytest.param(
        ADD_MESSAGES, "sessionId", {"messages": [{"user": {"content": "intruder"}}]}, id="append"
    ),
    pytest.param(
        ADD_MESSAGES,
        "sessionId",
        {"messages": [{"user": {"content": "intruder"}}], "key": "retry-1"},
        id="append-with-idempotency-key",
    ),
]


@pytest.mark.parametrize(("document", "id_variable", "variables"), MUTATIONS)
async def test_mutating_other_orgs_session_is_not_found_exactly_like_a_missing_one(
    api: ApiClient,
    other_api: ApiClient,
    document: str,
    id_variable: str,
    variables: dict[str, Any],
) -> None:
    theirs = await create(other_api)
    missing = str(uuid.uuid4())

    foreign = await api.error(document, {id_variable: theirs, **variables})
    absent = await api.error(document, {id_variable: missing, **variables})

    assert foreign["extensions"]["code"] == "NOT_FOUND"
    assert theirs in foreign["message"]
    assert with_placeholder(foreign, theirs) == with_placeholder(absent, missing)


@pytest.mark.parametrize(("document", "id_variable", "variables"), MUTATIONS)
async def test_mutating_other_orgs_session_leaves_it_unchanged(
    api: ApiClient,
    other_api: ApiClient,
    database: Database,
    document: str,
    id_variable: str,
    variables: dict[str, Any],
) -> None:
    theirs = await create(other_api, name="theirs")
    before = await other_api.data(GET_SESSION, {"id": theirs})

    await api.error(document, {id_variable: theirs, **variables})

    assert await other_api.data(GET_SESSION, {"id": theirs}) == before
    assert await database.messages.count_documents({"session_id": theirs}) == 1


async def test_sessions_lists_only_the_callers_own(api: ApiClient, other_api: ApiClient) -> None:
    mine = {await create(api) for _ in range(2)}
    theirs = {await create(other_api) for _ in range(3)}

    assert listed_ids(await listing(api, first=100)) == mine
    assert listed_ids(await listing(other_api, first=100)) == theirs


async def test_total_count_counts_only_the_callers_own(
    api: ApiClient, other_api: ApiClient
) -> None:
    for _ in range(2):
        await create(api, name="same name")
    for _ in range(3):
        await create(other_api, name="same name")

    assert (await listing(api, first=0))["totalCount"] == 2
    assert (await listing(api, first=0, filter={"name": "same name"}))["totalCount"] == 2
    assert (await listing(other_api, first=0))["totalCount"] == 3


async def test_id_any_filter_with_other_orgs_ids_finds_nothing(
    api: ApiClient, other_api: ApiClient
) -> None:
    theirs = [await create(other_api) for _ in range(2)]

    connection = await listing(api, filter={"idAny": theirs})

    assert (connection["nodes"], connection["totalCount"]) == ([], 0)


async def test_id_any_filter_mixing_orgs_finds_only_the_callers_own(
    api: ApiClient, other_api: ApiClient
) -> None:
    mine = await create(api)
    theirs = [await create(other_api) for _ in range(2)]

    connection = await listing(api, filter={"idAny": [theirs[0], mine, theirs[1]]})

    assert listed_ids(connection) == {mine}
    assert connection["totalCount"] == 1


async def test_every_returned_session_carries_the_callers_org_id(
    api: ApiClient, org: tuple[str, str]
) -> None:
    created = (await api.data(CREATE_SESSION, {"input": {"name": "mine"}}))["createSession"]
    session_id = created["id"]
    await create(api)

    fetched = (await api.data(GET_SESSION, {"id": session_id}))["session"]
    listed = (await api.data(LIST_ORG_IDS))["sessions"]
    updated = (await api.data(UPDATE_ORG_ID, {"id": session_id, "input": {"name": "x"}}))[
        "updateSession"
    ]
    deleted = (await api.data(DELETE_ORG_ID, {"id": session_id}))["deleteSession"]

    returned = [created, fetched, *listed["nodes"], *(e["node"] for e in listed["edges"])]
    assert len(returned) == 6
    assert {s["orgId"] for s in [*returned, updated, deleted]} == {org[0]}


async def test_other_org_sees_its_own_org_id(
    api: ApiClient, other_api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    theirs = await create(other_api)
    stored = await database.sessions.find_one({"_id": theirs})
    assert stored is not None

    fetched = (await other_api.data(GET_SESSION, {"id": theirs}))["session"]

    assert fetched["orgId"] == stored["org_id"] != org[0]


async def test_create_input_cannot_choose_the_org(
    api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    error = await api.error(CREATE_SESSION_ID, {"input": {"orgId": "org-someone-else"}})

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "orgId" in error["message"]
    assert await database.sessions.count_documents({"org_id": "org-someone-else"}) == 0
    assert await database.sessions.count_documents({"org_id": org[0]}) == 0


# Authentication -----------------------------------------------------------------------------


def assert_unauthenticated(status: int, body: dict[str, Any]) -> None:
    assert status == 401
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in body


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Bearer sg_no-such-key-a4e9c0", id="unknown-key"),
        pytest.param("Bearer", id="scheme-without-key"),
        pytest.param("Basic {key}", id="valid-key-wrong-scheme"),
        pytest.param("{key}", id="valid-key-without-scheme"),
    ],
)
async def test_request_without_a_valid_bearer_key_is_unauthenticated(
    server: str, org: tuple[str, str], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.format(key=org[1])}

    async with ApiClient(server, None) as anonymous:
        response = await anonymous.post(LIST_SESSIONS, headers=headers)

    assert_unauthenticated(response.status_code, response.json())
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_revoked_key_is_unauthenticated_and_changes_nothing(
    server: str, org: tuple[str, str], database: Database
) -> None:
    keys = ApiKeyStore(database)
    record, key = await keys.create(org[0], "to be revoked")
    async with ApiClient(server, key) as client:
        await client.data(CREATE_SESSION_ID, {"input": {}})
        await keys.revoke(record["id"])

        response = await client.post(CREATE_SESSION_ID, {"input": {}})

    assert_unauthenticated(response.status_code, response.json())
    assert await database.sessions.count_documents({"org_id": org[0]}) == 1


async def test_other_keys_of_the_org_keep_working_after_one_is_revoked(
    api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    keys = ApiKeyStore(database)
    record, _ = await keys.create(org[0], "to be revoked")

    await keys.revoke(record["id"])

    assert (await listing(api))["totalCount"] == 0
