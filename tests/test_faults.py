"""Database faults: an outage, failed commands, and a crash under load.

Every test here runs a SecantusDB of its own, whatever MONGODB_URI says, because it stops,
kills or injects failures into it (`configureFailPoint` needs `--enable-test-commands`), and
a server of its own with short database timeouts. Waits are bounded; durations are never
asserted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessiongraph.embedded import EmbeddedDatabase
from sessiongraph.settings import Settings
from storage import ApiKeyStore, Database
from storage.database import Driver
from tests.api_client import ApiClient
from tests.conftest import new_org_key
from tests.ws_client import WAIT_SECONDS, serving

CREATE_SESSION = """
mutation Create($name: String) { createSession(input: {name: $name}) { id } }
"""

SESSION_NAME = """
query Name($id: ID!) { session(id: $id) { name } }
"""

ADD_MESSAGES = """
mutation Add($sessionId: ID!, $messages: [MessageInput!]!, $key: String) {
  addMessages(sessionId: $sessionId, messages: $messages, idempotencyKey: $key) { seq content }
}
"""

TRANSCRIPT = """
query Transcript($id: ID!, $after: String) {
  session(id: $id) {
    messageCount
    messages(first: 500, after: $after) {
      totalCount
      nodes { seq content }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

UNAVAILABLE = "SERVICE_UNAVAILABLE"
MASKED = "INTERNAL_SERVER_ERROR"

OUTAGE_TIMEOUT_MS = 500
"""db_timeout_ms of the server whose database is stopped: how long it waits for it."""
FAULT_TIMEOUT_MS = 1500
"""db_timeout_ms of the servers whose commands fail: also how long they retry them. After a
dropped connection the driver must find the database again, with a check that comes at
least 500 ms after its last one."""


async def new_session(api: ApiClient, name: str | None = None) -> str:
    created = await api.data(CREATE_SESSION, {"name": name})
    session_id: str = created["createSession"]["id"]
    return session_id


def user_messages(*contents: str) -> list[dict[str, Any]]:
    return [{"user": {"content": content}} for content in contents]


async def append(
    api: ApiClient, session_id: str, *contents: str, key: str | None = None
) -> dict[str, Any]:
    """The whole response body of one addMessages call."""
    variables = {"sessionId": session_id, "messages": user_messages(*contents), "key": key}
    return await api.execute(ADD_MESSAGES, variables)


async def appended_seqs(
    api: ApiClient, session_id: str, *contents: str, key: str | None = None
) -> list[int]:
    body = await append(api, session_id, *contents, key=key)
    assert "errors" not in body, body
    return [message["seq"] for message in body["data"]["addMessages"]]


@dataclass
class Transcript:
    """What the API says is stored for one session."""

    message_count: int
    total_count: int
    messages: list[tuple[int, str]]
    """(seq, content) in the order the API returned them."""

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.messages]

    def assert_consistent(self) -> None:
        """messageCount, the number of stored messages and the last seq agree, and the seqs
        run 1..N without gaps or duplicates."""
        assert self.seqs == list(range(1, self.message_count + 1)), self
        assert self.total_count == self.message_count, self


async def transcript(api: ApiClient, session_id: str) -> Transcript:
    messages: list[tuple[int, str]] = []
    after = None
    while True:
        session = (await api.data(TRANSCRIPT, {"id": session_id, "after": after}))["session"]
        page = session["messages"]
        messages += [(node["seq"], node["content"]) for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            return Transcript(session["messageCount"], page["totalCount"], messages)
        after = page["pageInfo"]["endCursor"]


async def eventually_ok(
    request: Callable[[], Awaitable[httpx.Response]], what: str
) -> httpx.Response:
    """Repeat `request()` until it answers 200; fail naming `what` after WAIT_SECONDS."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                response = await request()
                if response.status_code == 200:
                    return response
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"{what} did not succeed within {WAIT_SECONDS:g} s") from None


@asynccontextmanager
async def answered_within(seconds: float = WAIT_SECONDS) -> AsyncIterator[None]:
    """Fail, rather than wait on, a request that does not answer within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise AssertionError(f"no answer within {seconds:g} s") from None


# The database goes away, and comes back.


@dataclass
class Outage:
    """A server whose database was stopped after a session was created and `key` was used
    (so the server has it cached); `fresh_key` belongs to the same organization but was
    never used."""

    url: str
    key: str
    fresh_key: str
    session_id: str
    database: EmbeddedDatabase


@pytest.fixture(scope="module")
async def outage(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Outage]:
    # A data folder, so that the database can come back with its data; the port is chosen
    # once, so that it comes back where the server looks for it.
    database = EmbeddedDatabase(data_dir=tmp_path_factory.mktemp("outage") / "secantus")
    await database.start_async()
    try:
        db = await Database.connect(database.uri, settings.db_name)
        try:
            org_id, key = await new_org_key(db)
            _, fresh_key = await ApiKeyStore(db).create(org_id, "never used")
        finally:
            await db.close()
        async with serving(
            settings,
            mongodb_uri=database.uri,
            db_timeout_ms=OUTAGE_TIMEOUT_MS,
            auth_cache_seconds=3600,
        ) as (url, _):
            async with ApiClient(url, key) as api:
                session_id = await new_session(api, "before the outage")
            await database.stop_async()
            yield Outage(url, key, fresh_key, session_id, database)
    finally:
        await database.stop_async()


@pytest.fixture
async def outage_api(outage: Outage) -> AsyncIterator[ApiClient]:
    async with ApiClient(outage.url, outage.key) as client:
        yield client


@pytest.fixture
async def database_back(outage: Outage) -> AsyncIterator[Outage]:
    """The outage's database started again on the same data folder and port (and stopped
    again afterwards, for the other tests of the outage)."""
    await outage.database.start_async()
    try:
        yield outage
    finally:
        await outage.database.stop_async()


async def test_a_query_while_the_database_is_down_fails_with_service_unavailable(
    outage: Outage, outage_api: ApiClient
) -> None:
    async with answered_within():
        error = await outage_api.error(SESSION_NAME, {"id": outage.session_id})

    assert error["extensions"]["code"] == UNAVAILABLE
    assert error["message"] == "The database is unavailable; try again shortly."


async def test_an_append_while_the_database_is_down_fails_with_service_unavailable(
    outage: Outage, outage_api: ApiClient
) -> None:
    # The driver's own transaction helper would retry this for two minutes.
    async with answered_within():
        body = await append(outage_api, outage.session_id, "hello?")

    assert [error["extensions"]["code"] for error in body["errors"]] == [UNAVAILABLE]
    assert body["data"] is None


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_a_response_holding_only_service_unavailable_has_status_503_and_retry_after(
    outage: Outage, outage_api: ApiClient, accept: str
) -> None:
    async with answered_within():
        response = await outage_api.post(
            SESSION_NAME, {"id": outage.session_id}, headers={"Accept": accept}
        )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == accept
    assert response.json()["data"] == {"session": None}


async def test_an_unknown_key_while_the_database_is_down_gets_http_503(outage: Outage) -> None:
    async with ApiClient(outage.url, outage.fresh_key) as api, answered_within():
        response = await api.post(SESSION_NAME, {"id": outage.session_id})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["errors"][0]["extensions"]["code"] == UNAVAILABLE


async def test_readiness_reports_a_database_that_is_down(outage: Outage) -> None:
    async with httpx.AsyncClient(base_url=outage.url) as http, answered_within():
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert response.json()["database"].startswith("unreachable")


async def test_queries_succeed_again_once_the_database_is_back_without_a_server_restart(
    database_back: Outage, outage_api: ApiClient
) -> None:
    response = await eventually_ok(
        lambda: outage_api.post(SESSION_NAME, {"id": database_back.session_id}),
        "a query after the database came back",
    )

    assert response.json() == {"data": {"session": {"name": "before the outage"}}}


async def test_readiness_recovers_once_the_database_is_back(database_back: Outage) -> None:
    async with httpx.AsyncClient(base_url=database_back.url) as http:
        response = await eventually_ok(lambda: http.get("/readyz"), "/readyz")

    assert response.json()["ready"] is True


# Commands fail: injected with configureFailPoint.


@dataclass
class Faulty:
    """A database whose commands the test can make fail, and a server on it per driver."""

    uri: str
    key: str
    urls: dict[Driver, str]
    db: Database
    """A direct connection, which arms and disarms the failpoints."""


@pytest.fixture(scope="module")
async def faulty(settings: Settings) -> AsyncIterator[Faulty]:
    database = EmbeddedDatabase(data_dir=None, extra_args=("--enable-test-commands",))
    await database.start_async()
    try:
        db = await Database.connect(database.uri, settings.db_name)
        try:
            _, key = await new_org_key(db)
            changes = {"mongodb_uri": database.uri, "db_timeout_ms": FAULT_TIMEOUT_MS}
            async with (
                serving(settings, **changes, driver="pymongo") as (pymongo_url, _),
                serving(settings, **changes, driver="motor") as (motor_url, _),
            ):
                urls: dict[Driver, str] = {"pymongo": pymongo_url, "motor": motor_url}
                yield Faulty(database.uri, key, urls, db)
        finally:
            await db.close()
    finally:
        await database.stop_async()


@pytest.fixture(params=["pymongo", "motor"])
async def faulty_api(faulty: Faulty, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    """A client of the server that uses each driver in turn."""
    async with ApiClient(faulty.urls[request.param], faulty.key) as client:
        yield client


# Error codes to fail commands with. Not the "shutting down" or "not primary" codes (11600,
# 91, 10107...): after one of those the driver forgets the server until its monitor's next
# answer, which a failpoint does not hurry (the server's topologyVersion does not change),
# so the server stays unusable for heartbeatFrequencyMS (10 s).
BAD_VALUE = 2
WRITE_CONFLICT = 112
EXCEEDED_TIME_LIMIT = 262


@asynccontextmanager
async def failing(
    db: Database, command: str, mode: str | dict[str, int], **data: Any
) -> AsyncIterator[None]:
    """`command` fails as `data` says (errorCode, closeConnection, writeConcernError) while
    the block runs: `mode` is "alwaysOn" or {"times": n}."""
    await db.client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": mode,
            "data": {"failCommands": [command], **data},
        }
    )
    try:
        yield
    finally:
        await db.client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


async def session_with_two_messages(api: ApiClient) -> str:
    session_id = await new_session(api)
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


# The database crashes under load.

CRASH_SESSIONS = 3
WRITERS_PER_SESSION = 2
ACKNOWLEDGED_BEFORE_THE_CRASH = 60
"""How many messages' appends have been acknowledged when the database is killed."""


@dataclass
class Writer:
    """Appends batches of 1 to 3 messages to one session until an append fails. Each
    message says which writer and batch it belongs to: "<writer>:<batch>:<part>/<size>"."""

    name: str
    session_id: str
    acknowledged: dict[int, str]
    """seq -> content of every message whose append the API acknowledged."""
    waiting: bool = False
    """Whether an append was sent and not answered yet."""

    async def run(self, api: ApiClient, on_acknowledged: Callable[[], None]) -> None:
        batch = 0
        while True:
            batch += 1
            size = 1 + batch % 3
            contents = [f"{self.name}:{batch}:{part}/{size}" for part in range(1, size + 1)]
            self.waiting = True
            body = await append(api, self.session_id, *contents)
            self.waiting = False
            if body.get("errors"):
                return
            for message in body["data"]["addMessages"]:
                self.acknowledged[message["seq"]] = message["content"]
            on_acknowledged()


async def crash_under_load(
    api: ApiClient, session_ids: list[str], database: EmbeddedDatabase
) -> tuple[list[Writer], int]:
    """Kill the database (SIGKILL) while writers append to `session_ids`, once enough
    appends were acknowledged; return the writers, once each has failed, and how many
    were waiting for an answer at the crash."""
    writers = [
        Writer(f"{session_id}-{n}", session_id, {})
        for session_id in session_ids
        for n in range(WRITERS_PER_SESSION)
    ]
    enough = asyncio.Event()

    def count() -> None:
        if sum(len(writer.acknowledged) for writer in writers) >= ACKNOWLEDGED_BEFORE_THE_CRASH:
            enough.set()

    tasks = [asyncio.create_task(writer.run(api, count)) for writer in writers]
    try:
        async with answered_within():
            await enough.wait()
        database.kill()
        waiting = sum(writer.waiting for writer in writers)
        async with answered_within():
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return writers, waiting


def assert_whole_batches(messages: list[tuple[int, str]]) -> None:
    """Every batch in `messages` is there entirely, its parts in order on consecutive seqs."""
    batches: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for seq, content in messages:
        writer, batch, parts = content.split(":")
        part, of = parts.split("/")
        batches.setdefault((writer, batch), []).append((seq, int(part), int(of)))
    for (writer, batch), stored in batches.items():
        first_seq, _, size = stored[0]
        whole = [(first_seq + part - 1, part, size) for part in range(1, size + 1)]
        assert stored == whole, f"batch {batch} of {writer} is partial: {stored}"


async def test_every_acknowledged_message_survives_a_database_crash(
    settings: Settings, tmp_path: Path
) -> None:
    # SecantusDB ignores a transaction's j:true unless told to sync every commit; without
    # this, a SIGKILL loses the last acknowledged appends now and then.
    database = EmbeddedDatabase(data_dir=tmp_path / "secantus", extra_args=("--sync-on-commit",))
    await database.start_async()
    try:
        db = await Database.connect(database.uri, settings.db_name)
        try:
            _, key = await new_org_key(db)
        finally:
            await db.close()
        changes = {"mongodb_uri": database.uri, "db_timeout_ms": FAULT_TIMEOUT_MS}
        async with serving(settings, **changes) as (url, _), ApiClient(url, key) as api:
            session_ids = [await new_session(api) for _ in range(CRASH_SESSIONS)]
            writers, waiting_at_the_crash = await crash_under_load(api, session_ids, database)
        assert waiting_at_the_crash > 0

        await database.start_async()
        async with serving(settings, **changes) as (url, _), ApiClient(url, key) as api:
            for session_id in session_ids:
                stored = await transcript(api, session_id)
                stored.assert_consistent()
                assert_whole_batches(stored.messages)
                acknowledged = {
                    seq: content
                    for writer in writers
                    if writer.session_id == session_id
                    for seq, content in writer.acknowledged.items()
                }
                lost = acknowledged.items() - set(stored.messages)
                assert not lost, f"acknowledged, then lost in the crash: {sorted(lost)}"
    finally:
        await database.stop_async()
