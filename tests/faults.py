"""What the database-fault tests share: operations, transcript checks and bounded waits.

The fault tests (test_outage, test_failpoints, test_crash) each run a SecantusDB of their
own, whatever MONGODB_URI says, because they stop, kill or inject failures into it
(`configureFailPoint` needs `--enable-test-commands`), and a server of their own with short
database timeouts. Waits are bounded; durations are never asserted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from sessiongraph.embedded import EmbeddedDatabase
from storage import Database
from tests.api_client import ApiClient
from tests.factories import user_messages
from tests.keys import new_org_key
from tests.ws_client import WAIT_SECONDS

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


@asynccontextmanager
async def failpoint_database(db_name: str) -> AsyncIterator[tuple[str, Database, str]]:
    """A SecantusDB of its own with test commands on (`configureFailPoint`), whatever
    MONGODB_URI says: its URI, a direct connection to it (which arms the failpoints) and
    the API key of a new organization in database `db_name`."""
    database = EmbeddedDatabase(data_dir=None, extra_args=("--enable-test-commands",))
    await database.start_async()
    try:
        db = await Database.connect(database.uri, db_name)
        try:
            _, key = await new_org_key(db)
            yield database.uri, db, key
        finally:
            await db.close()
    finally:
        await database.stop_async()


@asynccontextmanager
async def failing(
    db: Database, command: str, mode: str | dict[str, int], **data: Any
) -> AsyncIterator[None]:
    """`command` fails as `data` says (errorCode, closeConnection, writeConcernError,
    blockConnection) while the block runs: `mode` is "alwaysOn" or {"times": n}."""
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
