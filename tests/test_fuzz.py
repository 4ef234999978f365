"""Fuzzing: operations generated from the live schema, and generated inputs, never make the
server fail on its own account.

Every case is posted over real HTTP to the running server with a valid key; each response
must be a 200 whose errors all carry a client error code (never INTERNAL_SERVER_ERROR, never
SERVICE_UNAVAILABLE). Generated inputs must be accepted or rejected with BAD_USER_INPUT; a
rejected call must store nothing, and an accepted one must read back without errors.
The strategies are in tests/fuzz_values.py.

How Hypothesis runs here: `@given` cannot drive the event loop that serves the app, so each
test (async) builds its strategies, some from sessions it creates first, then runs a
synchronous `@given` function in a worker thread (`asyncio.to_thread`) that posts with a
synchronous HTTP client and checks the database on the event loop (tests/worker_thread_api.py).
Each test counts its cases and checks that Hypothesis ran as many as asked.

What the tests showed. A run generates 650 cases: 150 queries (about a third succeed, the
rest are refused with a client error), 100 mutations (one root field each), 100 invalid
operations (Hypothesis-graphql's negative mode; all GRAPHQL_VALIDATION_FAILED), and 100 each of
createSession, addMessages and updateSession variables (roughly 15%, 10% and 40% accepted).
Before the fixes they found INTERNAL_SERVER_ERROR, within the first hundred cases or so, for:

* an integer beyond 64 bits in free-form JSON (`metadata`, `config`, `assistantOverrides`,
  ...): BSON cannot hold it, PyMongo raised OverflowError on insert;
* a NUL character in a key of free-form JSON or of `server.headers`: PyMongo's
  InvalidDocument;
* a Float literal beyond a double (`1e400`, parsed as infinity): accepted and stored, after
  which every read of that field failed ("Float cannot represent non numeric value");
* a session cursor holding a timestamp no datetime can hold: OverflowError or ValueError;
* a DateTime literal that does not parse, or leaves years 1..9999 once in UTC: graphql-core
  reports the scalar's exception as a validation error with `original_error` set, which the
  error presenter took for a bug.

Fixed in resolvers/inputs.py (free-form JSON must be storable: 64-bit integers, finite
numbers, no NUL in keys, at most 32 levels deep, as MongoDB refuses documents nested past
100; Float inputs must be finite), resolvers/pagination.py (such a cursor is BAD_USER_INPUT)
and resolvers/errors.py (a literal a scalar cannot parse is GRAPHQL_VALIDATION_FAILED).
With the fixes no case fails.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, mutations, queries

from storage import Database
from tests.api_client import ApiClient
from tests.factories import seed_sessions
from tests.fuzz_values import (
    CREATE_INPUTS,
    IDEMPOTENCY_KEYS,
    MESSAGES,
    SDL,
    UPDATE_INPUT,
    custom_scalars,
    fuzz_settings,
    mostly,
)
from tests.operations import (
    ADD_MESSAGES,
    CREATE_SESSION_ID,
    MESSAGE_FIELDS,
    SESSION_FIELDS,
    UPDATE_SESSION,
)
from tests.worker_thread_api import WorkerThreadApi, in_worker_thread

READ_BACK = (
    """
query ReadBack($id: ID!) {
  session(id: $id) { ...SessionFields messages(last: 500) { nodes { ...MessageFields } } }
}
"""
    + SESSION_FIELDS
    + MESSAGE_FIELDS
)

CLIENT_ERROR_CODES = frozenset(
    {
        "BAD_USER_INPUT",
        "NOT_FOUND",
        "CONFLICT",
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
        "QUERY_TOO_COMPLEX",
    }
)
"""The codes a client can cause with a valid key while the database is up."""

GENERATED_QUERIES = 150
GENERATED_MUTATIONS = 100
MUTATION_FIELDS = ("createSession", "updateSession", "deleteSession", "addMessages")
GENERATED_INVALID_OPERATIONS = 100
GENERATED_INPUTS = 100


def assert_client_errors_only(response: httpx.Response, sent: object) -> dict[str, Any]:
    """The body of a 200 response whose errors, if any, all carry a client error code."""
    assert response.status_code == 200, (response.status_code, response.text, sent)
    body: dict[str, Any] = response.json()
    for error in body.get("errors", []):
        code = error.get("extensions", {}).get("code")
        assert code in CLIENT_ERROR_CODES, (error, sent)
    return body


async def fuzz_documents(
    server: str, key: str, strategy: st.SearchStrategy[str], examples: int
) -> list[str]:
    """Post `examples` generated documents, each checked by `assert_client_errors_only`;
    returns the documents posted."""
    posted: list[str] = []
    with WorkerThreadApi(server, key) as api:

        @fuzz_settings(examples)
        @given(strategy)
        def post_one(document: str) -> None:
            posted.append(document)
            assert_client_errors_only(api.post(document), document)

        await in_worker_thread(post_one)
    return posted


async def test_generated_queries_get_only_client_errors(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_ids = await seed_sessions(api)
    strategy = queries(SDL, custom_scalars=custom_scalars(session_ids))

    posted = await fuzz_documents(server, org[1], strategy, GENERATED_QUERIES)

    assert len(posted) >= GENERATED_QUERIES


async def test_generated_mutations_get_only_client_errors(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_ids = await seed_sessions(api)
    scalars = custom_scalars(session_ids)
    # One root field a document, so that a valid field is not masked by an invalid sibling.
    strategy = st.one_of(
        *(mutations(SDL, fields=[field], custom_scalars=scalars) for field in MUTATION_FIELDS)
    )

    posted = await fuzz_documents(server, org[1], strategy, GENERATED_MUTATIONS)

    assert len(posted) >= GENERATED_MUTATIONS


async def test_generated_invalid_operations_are_rejected_with_a_client_error(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_ids = await seed_sessions(api)
    strategy = from_schema(SDL, custom_scalars=custom_scalars(session_ids), mode=Mode.NEGATIVE)
    rejected: list[str] = []

    with WorkerThreadApi(server, org[1]) as client:

        @fuzz_settings(GENERATED_INVALID_OPERATIONS)
        @given(strategy)
        def post_one(document: str) -> None:
            body = assert_client_errors_only(client.post(document), document)
            assert body.get("errors"), (document, body)
            rejected.append(document)

        await in_worker_thread(post_one)

    assert len(rejected) >= GENERATED_INVALID_OPERATIONS


# Generated inputs (variables) ----------------------------------------------------------------


async def stored_of(database: Database, org_id: str) -> tuple[int, int, int]:
    """How many sessions, messages and idempotency keys the organization has stored."""
    scope = {"org_id": org_id}
    return (
        await database.sessions.count_documents(scope),
        await database.messages.count_documents(scope),
        await database.idempotency.count_documents(scope),
    )


async def stored_session(database: Database, session_id: str) -> dict[str, Any] | None:
    """The session's document as stored."""
    document: dict[str, Any] | None = await database.sessions.find_one({"_id": session_id})
    return document


def accepted_or_bad_user_input(body: dict[str, Any], sent: object) -> bool:
    """True when the call succeeded; else its errors must all be BAD_USER_INPUT, with no
    data."""
    errors = body.get("errors")
    if not errors:
        return True
    assert all(e.get("extensions", {}).get("code") == "BAD_USER_INPUT" for e in errors), (
        errors,
        sent,
    )
    assert all(value is None for value in (body.get("data") or {}).values()), body
    return False


def assert_reads_back(api: WorkerThreadApi, session_id: str, sent: object) -> dict[str, Any]:
    """The session, with every field and its whole transcript, read without errors."""
    body = api.execute(READ_BACK, {"id": session_id})
    assert "errors" not in body, (body, sent)
    session: dict[str, Any] = body["data"]["session"]
    return session


async def test_generated_create_inputs_are_stored_or_rejected_as_bad_user_input(
    server: str, org: tuple[str, str], database: Database
) -> None:
    outcomes: list[bool] = []

    with WorkerThreadApi(server, org[1]) as api:

        @fuzz_settings(GENERATED_INPUTS)
        @given(CREATE_INPUTS)
        def create_one(create_input: Any) -> None:
            variables = {"input": create_input}
            before = api.run(stored_of(database, org[0]))
            body = assert_client_errors_only(api.post(CREATE_SESSION_ID, variables), variables)
            accepted = accepted_or_bad_user_input(body, variables)
            after = api.run(stored_of(database, org[0]))
            if accepted:
                session = assert_reads_back(api, body["data"]["createSession"]["id"], variables)
                count = session["messageCount"]
                assert after == (before[0] + 1, before[1] + count, before[2]), variables
                assert len(session["messages"]["nodes"]) == count, variables
            else:
                assert after == before, variables
            outcomes.append(accepted)

        await in_worker_thread(create_one)

    assert len(outcomes) >= GENERATED_INPUTS
    assert any(outcomes), "no generated input was accepted"
    assert not all(outcomes), "no generated input was rejected"


async def test_generated_messages_are_appended_or_rejected_as_bad_user_input(
    server: str, api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    session_id = (await api.data(CREATE_SESSION_ID, {"input": {}}))["createSession"]["id"]
    outcomes: list[bool] = []
    fresh = itertools.count()

    with WorkerThreadApi(server, org[1]) as client:

        @fuzz_settings(GENERATED_INPUTS)
        @given(mostly(MESSAGES), IDEMPOTENCY_KEYS)
        def append_some(messages: Any, key: Any) -> None:
            if isinstance(key, str):
                key = f"{next(fresh)}:{key}"  # a key reused with other messages is a CONFLICT
            variables = {"sessionId": session_id, "messages": messages, "key": key}
            before = client.run(stored_of(database, org[0]))
            body = assert_client_errors_only(client.post(ADD_MESSAGES, variables), variables)
            accepted = accepted_or_bad_user_input(body, variables)
            after = client.run(stored_of(database, org[0]))
            if accepted:
                seqs = [message["seq"] for message in body["data"]["addMessages"]]
                assert seqs == list(range(before[1] + 1, after[1] + 1)), variables
                assert after[2] == before[2] + isinstance(key, str), variables
                session = assert_reads_back(client, session_id, variables)
                assert session["messageCount"] == after[1], variables
            else:
                assert after == before, variables
            outcomes.append(accepted)

        await in_worker_thread(append_some)

    assert len(outcomes) >= GENERATED_INPUTS
    assert any(outcomes), "no generated batch was accepted"
    assert not all(outcomes), "no generated batch was rejected"


async def test_generated_updates_are_applied_or_rejected_as_bad_user_input(
    server: str, api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    session_id = (await api.data(CREATE_SESSION_ID, {"input": {}}))["createSession"]["id"]
    outcomes: list[bool] = []

    with WorkerThreadApi(server, org[1]) as client:

        @fuzz_settings(GENERATED_INPUTS)
        @given(mostly(UPDATE_INPUT))
        def update_once(update_input: Any) -> None:
            variables = {"id": session_id, "input": update_input}
            before = client.run(stored_session(database, session_id))
            body = assert_client_errors_only(client.post(UPDATE_SESSION, variables), variables)
            accepted = accepted_or_bad_user_input(body, variables)
            after = client.run(stored_session(database, session_id))
            if accepted:
                updated = body["data"]["updateSession"]
                sent = {k: v for k, v in update_input.items() if k in updated}
                assert {k: updated[k] for k in sent} == sent, variables
            else:
                assert after == before, variables
            outcomes.append(accepted)

        await in_worker_thread(update_once)

    assert len(outcomes) >= GENERATED_INPUTS
    assert any(outcomes), "no generated update was accepted"
    assert not all(outcomes), "no generated update was rejected"
