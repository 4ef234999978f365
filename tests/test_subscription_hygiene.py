"""Subscriptions leave nothing behind: thousands opened and dropped, however they end,
release their feeds and tasks, and the process keeps a single change stream throughout."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed

from storage.events import EventHub
from tests.api_client import ApiClient
from tests.operations import CREATE_SESSION_ID, DELETE_SESSION
from tests.sse_client import sse
from tests.ws_client import DATA, PROTOCOLS, WAIT_SECONDS, WsClient, connected, wait_until

MESSAGE_ADDED = """
subscription MessageAdded($sessionId: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $sessionId, afterSeq: $afterSeq) { seq }
}
"""

SESSION_UPDATED = """
subscription SessionUpdated($id: ID!) { sessionUpdated(id: $id) { messageCount } }
"""

ADD_MESSAGE = """
mutation Add($sessionId: ID!, $messages: [MessageInput!]!) {
  addMessages(sessionId: $sessionId, messages: $messages) { seq }
}
"""

CONNECTIONS = 40
SUBSCRIPTIONS_PER_CONNECTION = 50
SESSIONS = 20
LIVE_SECONDS = 40.0
SETTLE_SECONDS = 10.0

Subscription = tuple[int, str]
"""A connection's index and a subscription id on it."""


def change_stream_tasks() -> int:
    return sum(1 for task in asyncio.all_tasks() if task.get_name() == "change-stream")


async def subscribe_all(client: WsClient, connection: int, session_ids: list[str]) -> None:
    """Ids "0", "1"...: a third each of messageAdded replaying from 0, messageAdded from now
    on, and sessionUpdated, spread over the sessions."""
    for n in range(SUBSCRIPTIONS_PER_CONNECTION):
        session_id = session_ids[(connection * SUBSCRIPTIONS_PER_CONNECTION + n) % SESSIONS]
        if n % 3 == 0:
            variables = {"sessionId": session_id, "afterSeq": 0}
            await client.subscribe(str(n), MESSAGE_ADDED, variables)
        elif n % 3 == 1:
            await client.subscribe(str(n), MESSAGE_ADDED, {"sessionId": session_id})
        else:
            await client.subscribe(str(n), SESSION_UPDATED, {"id": session_id})


async def record_deliveries(connection: int, client: WsClient, silent: set[Subscription]) -> None:
    """Strike each subscription of the connection off `silent` once it delivers a result."""
    with_results = 0
    while with_results < SUBSCRIPTIONS_PER_CONNECTION:
        try:
            message = await client.receive(3600)
        except ConnectionClosed:
            return
        assert message["type"] in DATA, message
        if (connection, message["id"]) in silent:
            silent.discard((connection, message["id"]))
            with_results += 1


async def until_every_subscription_delivers(
    api: ApiClient,
    session_ids: list[str],
    silent: set[Subscription],
    readers: list[asyncio.Task[None]],
) -> None:
    """Append to every session, again and again, until every subscription has delivered:
    then each is live, whether the server runs it alone or shared with identical ones."""
    deadline = time.monotonic() + LIVE_SECONDS
    while silent:
        assert time.monotonic() < deadline, f"{len(silent)} subscriptions never delivered"
        for session_id in session_ids:
            message = {"user": {"content": "hi"}}
            await api.data(ADD_MESSAGE, {"sessionId": session_id, "messages": [message]})
        round_ends = time.monotonic() + 1
        while silent and time.monotonic() < round_ends:
            await asyncio.sleep(0.05)
            for reader in readers:
                if reader.done():
                    reader.result()  # a reader fails on anything but a result


async def test_thousands_of_dropped_subscriptions_leave_no_feeds_or_tasks_behind(
    app: Starlette, server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    hub: EventHub = app.state.services.events
    await wait_until(lambda: hub.feed_count == 0, "earlier subscriptions are released")
    session_ids = []
    for _ in range(SESSIONS):
        created = await api.data(CREATE_SESSION_ID, {"input": {}})
        session_ids.append(created["createSession"]["id"])
    baseline = len(asyncio.all_tasks())
    streams = change_stream_tasks()

    async with AsyncExitStack() as stack:
        clients: list[WsClient] = []
        for connection in range(CONNECTIONS):
            protocol = PROTOCOLS[connection % len(PROTOCOLS)]
            client = await stack.enter_async_context(connected(server, org[1], protocol))
            await subscribe_all(client, connection, session_ids)
            clients.append(client)
        silent = {
            (connection, str(n))
            for connection in range(CONNECTIONS)
            for n in range(SUBSCRIPTIONS_PER_CONNECTION)
        }
        readers = [
            asyncio.create_task(record_deliveries(connection, client, silent))
            for connection, client in enumerate(clients)
        ]
        try:
            await until_every_subscription_delivers(api, session_ids, silent, readers)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.wait(readers, timeout=WAIT_SECONDS)
        assert hub.feed_count > 0
        assert change_stream_tasks() == streams

        # The server ends these subscriptions itself.
        await api.data(DELETE_SESSION, {"id": session_ids[0]})
        for connection, client in enumerate(clients):
            if connection % 3 == 0:
                client.drop()  # mid-delivery, with no closing handshake
            elif connection % 3 == 1:
                for n in range(SUBSCRIPTIONS_PER_CONNECTION):
                    await client.complete(str(n))
            # The rest close with a close frame as the stack unwinds, without `complete`.
        assert change_stream_tasks() == streams

    await wait_until(lambda: hub.feed_count == 0, "every feed is released", SETTLE_SECONDS)
    await wait_until(
        lambda: len(asyncio.all_tasks()) <= baseline,
        f"the number of tasks is back to {baseline}",
        SETTLE_SECONDS,
    )
    assert change_stream_tasks() == streams == 1


SSE_STREAMS = 60


async def test_hundreds_of_abandoned_sse_streams_leave_no_feeds_or_tasks_behind(
    app: Starlette, server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    """Streams of every kind (replaying, live and shared, sessionUpdated), each abandoned by
    its client mid-stream: the server notices, stops the subscription and frees its feed."""
    hub: EventHub = app.state.services.events
    tracker = app.state.parts.live.tracker
    await wait_until(lambda: hub.feed_count == 0, "earlier subscriptions are released")
    session_ids = []
    for _ in range(SESSIONS):
        created = await api.data(CREATE_SESSION_ID, {"input": {}})
        session_ids.append(created["createSession"]["id"])
    baseline = len(asyncio.all_tasks())
    connections = len(tracker.connections)

    async with AsyncExitStack() as stack:
        readers = []
        for n in range(SSE_STREAMS):
            session_id = session_ids[n % SESSIONS]
            if n % 3 == 0:
                query, variables = MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0}
            elif n % 3 == 1:
                query, variables = MESSAGE_ADDED, {"sessionId": session_id}
            else:
                query, variables = SESSION_UPDATED, {"id": session_id}
            readers.append(await stack.enter_async_context(sse(server, org[1], query, variables)))
        await wait_until(lambda: hub.feed_count > 0, "the streams are subscribed")
        for session_id in session_ids:
            message = {"user": {"content": "hi"}}
            await api.data(ADD_MESSAGE, {"sessionId": session_id, "messages": [message]})
        for reader in readers[::2]:
            assert (await reader.next()).event == "next"
        # The stack closes every response with no more reading: the clients went away.

    await wait_until(lambda: hub.feed_count == 0, "every feed is released", SETTLE_SECONDS)
    await wait_until(
        lambda: len(tracker.connections) == connections, "every stream is gone", SETTLE_SECONDS
    )
    await wait_until(
        lambda: len(asyncio.all_tasks()) <= baseline,
        f"the number of tasks is back to {baseline}",
        SETTLE_SECONDS,
    )
