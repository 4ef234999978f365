"""Commands fail, injected with configureFailPoint: retried writes hold, an append commits
whole or reports failure, a database that stops answering is bounded. See tests/faults.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from sessiongraph.settings import Settings
from storage import Database
from storage.database import Driver
from tests.api_client import ApiClient
from tests.factories import create_session, user_messages
from tests.faults import (
    ADD_MESSAGES,
    FAULT_TIMEOUT_MS,
    MASKED,
    SESSION_NAME,
    UNAVAILABLE,
    answered_within,
    append,
    appended_seqs,
    failing,
    failpoint_database,
    transcript,
)
from tests.serving import serving
from tests.windows_check import windows_agree

# Commands fail: injected with configureFailPoint.


@dataclass
class Faulty:
    """A database whose commands the test can make fail, and a server on it per driver."""

    key: str
    urls: dict[Driver, str]
    db: Database
    """A direct connection, which arms and disarms the failpoints."""


@pytest.fixture(scope="module")
async def faulty(settings: Settings) -> AsyncIterator[Faulty]:
    async with failpoint_database(settings.db_name) as (uri, db, key):
        changes = {
            "mongodb_uri": uri,
            "db_timeout_ms": FAULT_TIMEOUT_MS,
            "request_timeout_seconds": REQUEST_TIMEOUT_SECONDS,
            # No change stream, so no background writer (the session event log, the expiry
            # sweep) takes a failure injected for a request's command.
            "events_mode": "local",
        }
        async with (
            serving(settings, **changes, driver="pymongo") as (pymongo_url, _),
            serving(settings, **changes, driver="motor") as (motor_url, _),
        ):
            urls: dict[Driver, str] = {"pymongo": pymongo_url, "motor": motor_url}
            yield Faulty(key, urls, db)


@pytest.fixture(params=["pymongo", "motor"])
async def faulty_api(faulty: Faulty, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    """A client of the server that uses each driver in turn."""
    async with ApiClient(faulty.urls[request.param], faulty.key) as client:
        yield client


REQUEST_TIMEOUT_SECONDS = 4.0
"""The faulty servers' request time bound: past FAULT_TIMEOUT_MS of retries and a commit."""
BLOCK_MS = 30_000
"""How long a blocked command keeps the database from answering: far past the bound."""

# Error codes to fail commands with. Not the "shutting down" or "not primary" codes (11600,
# 91, 10107...): after one of those the driver forgets the server until its monitor's next
# answer, which a failpoint does not hurry (the server's topologyVersion does not change),
# so the server stays unusable for heartbeatFrequencyMS (10 s).
BAD_VALUE = 2
WRITE_CONFLICT = 112
EXCEEDED_TIME_LIMIT = 262


async def session_with_two_messages(api: ApiClient) -> str:
    session_id = await create_session(api)
    assert await appended_seqs(api, session_id, "one", "two") == [1, 2]
    return session_id


@pytest.mark.parametrize(
    ("command", "times", "failure"),
    [
        # The transaction runs again.
        ("insert", 1, {"closeConnection": True}),
        ("insert", 1, {"errorCode": WRITE_CONFLICT}),
        # The driver retries the commit once by itself, then the outcome is unknown and
        # the commit is tried again.
        ("commitTransaction", 2, {"closeConnection": True}),
        ("commitTransaction", 2, {"errorCode": EXCEEDED_TIME_LIMIT}),
    ],
    ids=[
        "insert-connection-closed",
        "insert-write-conflict",
        "commit-connection-closed",
        "commit-exceeded-time-limit",
    ],
)
async def test_an_append_whose_command_fails_for_a_while_is_retried_and_stores_the_batch_once(
    faulty: Faulty, faulty_api: ApiClient, command: str, times: int, failure: dict[str, Any]
) -> None:
    session_id = await session_with_two_messages(faulty_api)

    async with failing(faulty.db, command, {"times": times}, **failure):
        seqs = await appended_seqs(faulty_api, session_id, "three", "four", "five")

    assert seqs == [3, 4, 5]
    stored = await transcript(faulty_api, session_id)
    stored.assert_consistent()
    await windows_agree(faulty.db, session_id)
    assert [content for _, content in stored.messages] == ["one", "two", "three", "four", "five"]


@pytest.mark.parametrize(
    ("command", "mode", "failure", "code"),
    [
        # Worth retrying, and retried until the server's db_timeout_ms is spent.
        ("insert", "alwaysOn", {"errorCode": WRITE_CONFLICT}, UNAVAILABLE),
        ("commitTransaction", "alwaysOn", {"errorCode": EXCEEDED_TIME_LIMIT}, UNAVAILABLE),
        # Not worth retrying, and not the client's doing.
        ("insert", {"times": 1}, {"errorCode": BAD_VALUE}, MASKED),
        ("commitTransaction", {"times": 1}, {"errorCode": BAD_VALUE}, MASKED),
    ],
    ids=[
        "insert-write-conflict",
        "commit-exceeded-time-limit",
        "insert-bad-value",
        "commit-bad-value",
    ],
)
async def test_a_failed_append_reports_its_code_and_leaves_no_trace(
    faulty: Faulty,
    faulty_api: ApiClient,
    command: str,
    mode: str | dict[str, int],
    failure: dict[str, Any],
    code: str,
) -> None:
    session_id = await session_with_two_messages(faulty_api)

    async with failing(faulty.db, command, mode, **failure), answered_within():
        body = await append(faulty_api, session_id, "lost", "lost too")

    assert [error["extensions"]["code"] for error in body["errors"]] == [code]
    assert (await transcript(faulty_api, session_id)).seqs == [1, 2]
    # The aborted transaction took its change to the session's message windows with it.
    await windows_agree(faulty.db, session_id)
    # No seq was used up: the next append follows on.
    assert await appended_seqs(faulty_api, session_id, "three") == [3]
    (await transcript(faulty_api, session_id)).assert_consistent()


@pytest.mark.parametrize(
    ("command", "failure", "stored_by_the_failed_attempt"),
    [
        # The commit is applied, but its acknowledgement never comes.
        ("commitTransaction", {"writeConcernError": {"code": 64, "errmsg": "timed out"}}, 2),
        ("insert", {"errorCode": WRITE_CONFLICT}, 0),
    ],
    ids=["commit-unacknowledged", "insert-write-conflict"],
)
async def test_a_retry_with_the_idempotency_key_after_a_failed_append_stores_the_batch_once(
    faulty: Faulty,
    faulty_api: ApiClient,
    command: str,
    failure: dict[str, Any],
    stored_by_the_failed_attempt: int,
) -> None:
    session_id = await session_with_two_messages(faulty_api)
    async with failing(faulty.db, command, "alwaysOn", **failure):
        failed = await append(faulty_api, session_id, "three", "four", key="retry-me")
    assert [error["extensions"]["code"] for error in failed["errors"]] == [UNAVAILABLE]
    assert len((await transcript(faulty_api, session_id)).seqs) == 2 + stored_by_the_failed_attempt

    seqs = await appended_seqs(faulty_api, session_id, "three", "four", key="retry-me")

    assert seqs == [3, 4]
    stored = await transcript(faulty_api, session_id)
    stored.assert_consistent()
    assert [content for _, content in stored.messages] == ["one", "two", "three", "four"]


@pytest.mark.parametrize(
    "failure",
    [{"closeConnection": True}, {"errorCode": EXCEEDED_TIME_LIMIT}],
    ids=["connection-closed", "exceeded-time-limit"],
)
async def test_an_append_whose_commit_never_gets_through_leaves_no_open_transaction(
    faulty: Faulty, faulty_api: ApiClient, failure: dict[str, Any]
) -> None:
    # The commit never reaches the database, so its transaction stays open there, holding
    # the session's document, until the server gives up on it or the database expires it.
    session_id = await session_with_two_messages(faulty_api)
    async with failing(faulty.db, "commitTransaction", "alwaysOn", **failure):
        failed = await append(faulty_api, session_id, "lost")
    assert [error["extensions"]["code"] for error in failed["errors"]] == [UNAVAILABLE]

    # Right away, not after the database's transaction lifetime (60 s).
    async with answered_within():
        seqs = await appended_seqs(faulty_api, session_id, "three")

    assert seqs == [3]
    stored = await transcript(faulty_api, session_id)
    stored.assert_consistent()
    assert [content for _, content in stored.messages] == ["one", "two", "three"]


async def test_a_query_to_a_database_that_stops_answering_fails_within_the_request_bound(
    faulty: Faulty, faulty_api: ApiClient
) -> None:
    session_id = await session_with_two_messages(faulty_api)
    block = {"blockConnection": True, "blockTimeMS": BLOCK_MS}

    async with failing(faulty.db, "find", {"times": 1}, **block), answered_within():
        response = await faulty_api.post(SESSION_NAME, {"id": session_id})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == UNAVAILABLE
    assert "did not finish within 4 s" in error["message"]
    # The server is not stuck on the unanswered command.
    assert (await transcript(faulty_api, session_id)).seqs == [1, 2]


async def test_an_append_to_a_database_that_stops_answering_fails_whole_within_the_bound(
    faulty: Faulty, faulty_api: ApiClient
) -> None:
    session_id = await session_with_two_messages(faulty_api)
    block = {"blockConnection": True, "blockTimeMS": BLOCK_MS}

    async with failing(faulty.db, "insert", {"times": 1}, **block), answered_within():
        response = await faulty_api.post(
            ADD_MESSAGES,
            {"sessionId": session_id, "messages": user_messages("lost", "lost too")},
        )

    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == UNAVAILABLE
    async with answered_within():
        assert await appended_seqs(faulty_api, session_id, "three") == [3]
    stored = await transcript(faulty_api, session_id)
    stored.assert_consistent()
    assert [content for _, content in stored.messages] == ["one", "two", "three"]


CREATE_WITH_KEY = """
mutation Create($name: String, $key: String) {
  createSession(input: {name: $name, messages: [{user: {content: "hi"}}]}, idempotencyKey: $key) {
    id messageCount
  }
}
"""
NAMED = "query Named($name: String) { sessions(filter: {name: $name}) { nodes { id } } }"


@pytest.mark.parametrize(
    ("command", "failure", "stored_by_the_failed_attempt"),
    [
        # The commit is applied, but its acknowledgement never comes.
        ("commitTransaction", {"writeConcernError": {"code": 64, "errmsg": "timed out"}}, 1),
        ("insert", {"errorCode": WRITE_CONFLICT}, 0),
    ],
    ids=["commit-unacknowledged", "insert-write-conflict"],
)
async def test_a_retry_with_the_idempotency_key_after_a_failed_create_creates_one_session(
    faulty: Faulty,
    faulty_api: ApiClient,
    command: str,
    failure: dict[str, Any],
    stored_by_the_failed_attempt: int,
) -> None:
    name = f"{command}-{faulty_api.http.base_url.port}"
    variables = {"name": name, "key": f"create-{name}"}
    async with failing(faulty.db, command, "alwaysOn", **failure):
        failed = await faulty_api.execute(CREATE_WITH_KEY, variables)
    assert [error["extensions"]["code"] for error in failed["errors"]] == [UNAVAILABLE]
    stored = (await faulty_api.data(NAMED, {"name": name}))["sessions"]["nodes"]
    assert len(stored) == stored_by_the_failed_attempt

    retried = (await faulty_api.data(CREATE_WITH_KEY, variables))["createSession"]

    assert retried["messageCount"] == 1
    assert (await faulty_api.data(NAMED, {"name": name}))["sessions"]["nodes"] == [
        {"id": retried["id"]}
    ]
    assert stored in ([], [{"id": retried["id"]}])
