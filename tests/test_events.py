"""Where subscriptions get their events: the change stream, or a process's own writes, and
delivery across server processes and uvicorn workers."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from starlette.applications import Starlette

from sessiongraph.embedded import EmbeddedDatabase
from sessiongraph.settings import Settings
from storage import Database
from storage.events import EventHub
from tests.api_client import ApiClient
from tests.factories import create_session
from tests.faults import failing, failpoint_database
from tests.keys import new_org_key
from tests.serving import server_process, serving
from tests.ws_client import WsClient, connected

MESSAGE_ADDED = """
subscription MessageAdded($sessionId: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $sessionId, afterSeq: $afterSeq) { seq content }
}
"""

ADD_MESSAGE = """
mutation Add($sessionId: ID!, $messages: [MessageInput!]!) {
  addMessages(sessionId: $sessionId, messages: $messages) { seq }
}
"""

WORKER_CONNECTIONS_MIN = 4
WORKER_CONNECTIONS_MAX = 40


async def add_message(api: ApiClient, session_id: str, content: str) -> int:
    added = await api.data(
        ADD_MESSAGE, {"sessionId": session_id, "messages": [{"user": {"content": content}}]}
    )
    seq: int = added["addMessages"][0]["seq"]
    return seq


async def subscribe_from_start(client: WsClient, session_id: str) -> None:
    await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})


async def live_delivery(api: ApiClient, session_id: str, clients: list[WsClient]) -> None:
    """Check that every client, subscribed to `session_id`, receives an append made with
    `api` while it is live.

    The first message may reach a subscriber by replay, if it registered after the append.
    Once it has arrived the subscription is registered, so the second can only come from
    the event source.
    """
    for expected in (1, 2):
        assert await add_message(api, session_id, f"message {expected}") == expected
        for client in clients:
            added = (await client.data("1"))["messageAdded"]
            assert added == {"seq": expected, "content": f"message {expected}"}


def change_stream_tasks() -> int:
    return sum(1 for task in asyncio.all_tasks() if task.get_name() == "change-stream")


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The fields after the parenthesised command: state, then the parent's pid.
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def processes_with_connections_on(port: int, pids: list[int]) -> set[int]:
    """Which of `pids` hold an established TCP connection on local port `port` (Linux)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == "01":
                inodes.add(fields[9])
    holders = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holders.add(pid)
    return holders


@pytest.fixture(scope="module")
async def standalone_uri() -> AsyncIterator[str]:
    """A SecantusDB server started as a standalone server, which has no change streams."""
    standalone = EmbeddedDatabase(data_dir=None, extra_args=("--standalone",))
    await standalone.start_async()
    try:
        yield standalone.uri
    finally:
        await standalone.stop_async()


async def test_the_shared_server_follows_the_change_stream(app: Starlette, server: str) -> None:
    events: EventHub = app.state.services.events
    assert events.mode == "changestream"
    assert events.running


async def test_a_standalone_database_makes_the_server_fall_back_to_local_events(
    settings: Settings, standalone_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(settings, mongodb_uri=standalone_uri) as (_, app):
        assert app.state.services.events.mode == "local"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "storage.events" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, warnings
    assert "standalone server, which offers no change streams" in warnings[0]


async def test_subscriptions_on_a_standalone_database_see_writes_through_the_same_server(
    settings: Settings, standalone_uri: str
) -> None:
    db = await Database.connect(standalone_uri, settings.db_name)
    try:
        _, key = await new_org_key(db)
    finally:
        await db.close()
    async with (
        serving(settings, mongodb_uri=standalone_uri) as (url, _),
        ApiClient(url, key) as api,
        connected(url, key) as client,
    ):
        session_id = await create_session(api)
        await subscribe_from_start(client, session_id)
        await live_delivery(api, session_id, [client])


async def test_forced_local_events_on_a_replica_set_deliver_writes_through_the_same_server(
    settings: Settings, org: tuple[str, str]
) -> None:
    async with (
        serving(settings, events_mode="local") as (url, app),
        ApiClient(url, org[1]) as api,
        connected(url, org[1]) as client,
    ):
        assert app.state.services.events.mode == "local"
        session_id = await create_session(api)
        await subscribe_from_start(client, session_id)
        await live_delivery(api, session_id, [client])


async def test_forced_local_events_open_no_change_stream(settings: Settings) -> None:
    before = change_stream_tasks()
    async with serving(settings, events_mode="local"):
        assert change_stream_tasks() == before


async def test_a_subscriber_on_one_server_process_receives_appends_made_through_another(
    settings: Settings, mongo_uri: str, org: tuple[str, str], tmp_path: Path
) -> None:
    async with (
        server_process(settings, mongo_uri, tmp_path / "one.log") as (one, _),
        server_process(settings, mongo_uri, tmp_path / "other.log") as (other, _),
        ApiClient(other, org[1]) as api,
        connected(one, org[1]) as client,
    ):
        session_id = await create_session(api)
        await subscribe_from_start(client, session_id)
        await live_delivery(api, session_id, [client])


async def test_subscribers_on_every_uvicorn_worker_receive_an_append(
    settings: Settings, mongo_uri: str, org: tuple[str, str], tmp_path: Path
) -> None:
    async with (
        server_process(settings, mongo_uri, tmp_path / "workers.log", workers=2) as (url, pid),
        ApiClient(url, org[1]) as api,
        AsyncExitStack() as connections,
    ):
        port = int(url.rpartition(":")[2])
        clients: list[WsClient] = []
        # The kernel hands each connection to whichever worker accepts it first.
        while len(clients) < WORKER_CONNECTIONS_MIN or (
            len(processes_with_connections_on(port, children_of(pid))) < 2
            and len(clients) < WORKER_CONNECTIONS_MAX
        ):
            clients.append(await connections.enter_async_context(connected(url, org[1])))
        assert len(processes_with_connections_on(port, children_of(pid))) == 2, (
            f"{len(clients)} connections all landed on one worker"
        )
        session_id = await create_session(api)
        for client in clients:
            await subscribe_from_start(client, session_id)
        await live_delivery(api, session_id, clients)


@pytest.mark.parametrize(
    "failure",
    [
        # PyMongo resumes the stream itself after a dropped connection.
        {"closeConnection": True},
        # A plain command error it does not resume: the hub reopens from its resume token.
        {"errorCode": 2, "errorLabels": []},
    ],
    ids=["connection-dropped", "command-error"],
)
async def test_the_change_stream_resumes_without_losing_events(
    settings: Settings, failure: dict[str, object]
) -> None:
    async with (
        failpoint_database(settings.db_name) as (uri, db, key),
        serving(settings, mongodb_uri=uri) as (url, _),
        ApiClient(url, key) as api,
        connected(url, key) as client,
    ):
        session_id = await create_session(api)
        await subscribe_from_start(client, session_id)
        await live_delivery(api, session_id, [client])
        # The change stream's next three getMore commands fail.
        async with failing(db, "getMore", {"times": 3}, **failure):
            for seq in range(3, 8):
                assert await add_message(api, session_id, f"message {seq}") == seq
            received = [(await client.data("1"))["messageAdded"]["seq"] for _ in range(3, 8)]
        assert received == [3, 4, 5, 6, 7]
