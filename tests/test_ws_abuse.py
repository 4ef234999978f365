"""Websocket abuse: malformed frames, init floods, oversized messages, too many subscriptions,
odd variables and a consumer that never reads, on both protocols, against a server of this
module's own (subscriber buffer 20, at most 3 subscriptions a connection). Whatever a client
sends, the connection ends with a code that says why, the server keeps serving everyone
else, and nothing stays behind: no feeds, no shared groups, no tasks.

The last two tests check the server after all the others have run against it (the module
shares one server; pytest runs a module's tests in order).

What the tests showed, and what was fixed:

* graphql-transport-ws: a frame that was JSON but not an object (`[1, 2]`, `"x"`, `5`), or a
  `subscribe` whose payload was not an object or whose id was not a string, crashed the
  connection's handler (a TypeError in Strawberry: the client saw 1006, the server logged
  "Exception in ASGI application"); a `query` or `variables` of the wrong type left the
  operation registered, unanswered, for the connection's lifetime. Now 4400.
* graphql-ws (legacy): frames that were not JSON, or of an unknown type, were ignored; a
  binary frame closed with 1002; a frame without `type`, not an object, or a `start`/`stop`
  without a proper id or payload crashed the handler. Every `connection_init` was
  acknowledged again and started one more keep-alive task, never cancelled: a flood of inits
  multiplied the server's tasks and writes. The legacy protocol now keeps
  graphql-transport-ws's rules: 4400 for a malformed frame, 4429 for a second init.
  (now sessiongraph/live/legacy_ws.py)
* "Subscription limit reached" carried no `extensions.code`; it now has
  TOO_MANY_SUBSCRIPTIONS on both protocols, its message naming the limit.
  (now sessiongraph/live/websocket_session.py)
* A shareable subscription whose variables held an integer beyond 64 bits was never
  answered: encoding its group key raised in the operation's task. It now runs on its own
  and gets its answer (NOT_FOUND here). (now sessiongraph/live/sharing.py)
* A live subscriber that stopped reading grew the server's memory without bound: once its
  queue was full, every further event queued one more `complete` marker. It now holds at most
  the buffer and one `complete`, and is closed with 1013 once it reads again. A replaying
  subscriber is held to its feed's capacity and, reading again, gets every message from
  storage. (now sessiongraph/live/sharing.py)
* Subscriptions stopped as they start release their feeds. (A subscription cancelled while
  it read the database could run on forever on Python 3.11, whose `asyncio.wait_for` can
  drop a cancellation: seen as a feed left behind by the 4409 test in
  tests/test_subscriptions.py. Its cause in PyMongo's timeouts was removed in
  storage/database.py by another change; event feeds now also honour a pending cancellation
  before they wait, storage/events.py, as their own `wait_for` has the same race.)
* A message over uvicorn's limit (16 MiB, its default `ws_max_size`) closes with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from sessiongraph.live.sharing import SharedStreams
from sessiongraph.settings import Settings
from storage import Database
from storage.events import EventHub
from tests.api_client import ApiClient
from tests.factories import create_session
from tests.keys import new_org_key
from tests.serving import serving
from tests.ws_client import (
    LEGACY_WS,
    PROTOCOLS,
    TRANSPORT_WS,
    WAIT_SECONDS,
    Protocol,
    WsClient,
    connect,
    connected,
    small_window_client,
    wait_until,
    ws_url,
)

CREATE_SESSION = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id } }
"""
ADD_MESSAGES = """
mutation Add($sessionId: ID!, $messages: [MessageInput!]!) {
  addMessages(sessionId: $sessionId, messages: $messages) { seq }
}
"""
COMPLETE_SESSION = """
mutation Complete($id: ID!) { updateSession(id: $id, input: {status: COMPLETED}) { id } }
"""
MESSAGE_ADDED = """
subscription MessageAdded($sessionId: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $sessionId, afterSeq: $afterSeq) { seq content }
}
"""
SESSION_UPDATED = """
subscription SessionUpdated($id: ID!) { sessionUpdated(id: $id) { messageCount } }
"""

MAX_SUBSCRIPTIONS = 3
BUFFER = 20
"""The dedicated server's subscriber buffer: events queued per subscriber."""
WS_MAX_SIZE = 16 * 1024 * 1024
"""uvicorn's default `ws_max_size`: the largest websocket message it accepts."""
BIG_CONTENT = "m" * 10_000
BATCH = 10
"""Messages per append: fewer than BUFFER, so a burst alone never overflows a subscriber."""
MAX_BATCHES = 200
"""Enough 10 kB messages (20 MB) to fill every buffer between the server and a stalled
client: socket buffers take a few MB first."""
STALLED_BATCHES = 10
HASTY_SUBSCRIPTIONS = 40


@dataclass
class Abused:
    """The module's server, its app, and the number of tasks before any abuse."""

    url: str
    app: Starlette
    key: str
    baseline_tasks: int

    @property
    def hub(self) -> EventHub:
        hub: EventHub = self.app.state.services.events
        return hub

    @property
    def shared(self) -> SharedStreams:
        """The live engine's shared streams."""
        shared: SharedStreams = self.app.state.parts.live.shared
        return shared

    async def create_session(self) -> str:
        """A new session of the organization whose key this is."""
        async with ApiClient(self.url, self.key) as api:
            return await create_session(api)


@pytest.fixture(scope="module")
async def abused(settings: Settings, database: Database) -> AsyncIterator[Abused]:
    _, key = await new_org_key(database)
    changes = {"ws_max_subscriptions": MAX_SUBSCRIPTIONS, "subscriber_buffer": BUFFER}
    async with serving(settings, **changes) as (url, app):
        yield Abused(url, app, key, len(asyncio.all_tasks()))


async def append_until_stalled(
    abused: Abused, session_id: str, backlog: Callable[[], int], stalled_at: int
) -> tuple[int, int]:
    """Append batches of 10 kB messages until `backlog()` reaches `stalled_at` (the server's
    writes to the client have blocked and its buffer filled), then STALLED_BATCHES more.
    Returns how many messages were appended and the largest backlog seen meanwhile."""
    messages = [{"user": {"content": BIG_CONTENT}}] * BATCH
    appended = peak = 0
    async with ApiClient(abused.url, abused.key) as api:
        for _ in range(MAX_BATCHES):
            await api.data(ADD_MESSAGES, {"sessionId": session_id, "messages": messages})
            appended += BATCH
            if backlog() >= stalled_at:
                break
        else:
            raise AssertionError(f"no backlog after {appended} messages: the client reads")
        for _ in range(STALLED_BATCHES):
            await api.data(ADD_MESSAGES, {"sessionId": session_id, "messages": messages})
            appended += BATCH
            peak = max(peak, backlog())
    return appended, peak


# Malformed frames ------------------------------------------------------------------------------

SUBSCRIBE = {TRANSPORT_WS: "subscribe", LEGACY_WS: "start"}
UNSUBSCRIBE = {TRANSPORT_WS: "complete", LEGACY_WS: "stop"}
QUERY = 'subscription { sessionUpdated(id: "x") { messageCount } }'

# Frames that break the protocol: (the frame, or a function of the protocol giving it).
MALFORMED: dict[str, Any] = {
    "not-json": "{not json",
    "json-without-type": "{}",
    "json-array": "[1, 2]",
    "json-string": '"connection_init"',
    "json-number": "5",
    "type-not-a-string": '{"type": null}',
    "unknown-type": '{"type": "hello"}',
    "binary-frame": b'{"type": "connection_init"}',
    "payload-not-an-object": lambda p: {"id": "1", "type": SUBSCRIBE[p], "payload": "x"},
    "id-not-a-string": lambda p: {"id": {}, "type": SUBSCRIBE[p], "payload": {"query": QUERY}},
    "query-not-a-string": lambda p: {"id": "1", "type": SUBSCRIBE[p], "payload": {"query": 5}},
    "variables-not-an-object": lambda p: {
        "id": "1",
        "type": SUBSCRIBE[p],
        "payload": {"query": QUERY, "variables": [1]},
    },
    "unsubscribe-without-id": lambda p: {"type": UNSUBSCRIBE[p]},
}


def frame_of(case: str, protocol: Protocol) -> str | bytes:
    frame = MALFORMED[case]
    if callable(frame):
        return json.dumps(frame(protocol))
    assert isinstance(frame, str | bytes)
    return frame


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_frame_closes_with_4400(
    abused: Abused, protocol: Protocol, case: str
) -> None:
    async with connected(abused.url, abused.key, protocol) as client:
        await client.connection.send(frame_of(case, protocol))

        assert await client.close_code() == 4400


@pytest.mark.parametrize("offered", [None, ["mqtt"]], ids=["none", "unknown"])
async def test_a_client_without_a_served_subprotocol_is_closed_with_4406(
    abused: Abused, offered: list[Subprotocol] | None
) -> None:
    async with ws_connect(
        ws_url(abused.url), subprotocols=offered, proxy=None, open_timeout=WAIT_SECONDS
    ) as connection:
        assert connection.subprotocol is None
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(connection.recv(), WAIT_SECONDS)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        4406,
        "Subprotocol not acceptable",
    )


# Floods, sizes and caps ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_flood_of_connection_init_closes_with_4429(
    abused: Abused, protocol: Protocol
) -> None:
    init = json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer x"}})
    async with connected(abused.url, abused.key, protocol) as client:
        with contextlib.suppress(ConnectionClosed):  # closed mid-flood, as it should be
            for _ in range(1000):
                await client.send_text(init)

        assert await client.close_code() == 4429


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_message_over_the_size_limit_closes_with_1009(
    abused: Abused, protocol: Protocol
) -> None:
    async with connected(abused.url, abused.key, protocol) as client:
        # The server may close before the whole message is written.
        with contextlib.suppress(ConnectionClosed):
            await client.send_text("x" * (WS_MAX_SIZE + 1))

        assert await client.close_code() == 1009


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscriptions_beyond_the_cap_get_a_coded_error(
    abused: Abused, protocol: Protocol
) -> None:
    session_id = await abused.create_session()
    async with connected(abused.url, abused.key, protocol) as client:
        for n in range(MAX_SUBSCRIPTIONS + 1):
            await client.subscribe(str(n), SESSION_UPDATED, {"id": session_id})

        refusal = await client.receive()

    assert (refusal["type"], refusal["id"]) == ("error", str(MAX_SUBSCRIPTIONS))
    [error] = refusal["payload"] if isinstance(refusal["payload"], list) else [refusal["payload"]]
    assert error["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert str(MAX_SUBSCRIPTIONS) in error["message"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscription_with_an_integer_beyond_64_bits_is_answered(
    abused: Abused, protocol: Protocol
) -> None:
    async with connected(abused.url, abused.key, protocol) as client:
        await client.subscribe("1", SESSION_UPDATED, {"id": 2**70})

        answer = await client.receive()

    assert answer["id"] == "1"
    [error] = answer["payload"]["errors"]
    assert error["extensions"] == {"code": "NOT_FOUND", "id": str(2**70)}


# A consumer that never reads ------------------------------------------------------------------


@asynccontextmanager
async def stalled_client(abused: Abused) -> AsyncIterator[WsClient]:
    """An acknowledged graphql-transport-ws connection that stops reading from its socket
    as soon as one message is waiting, with a small receive buffer, so the server's writes
    soon block."""
    async with small_window_client(abused.url, abused.key, close_timeout=2) as client:
        yield client


async def test_a_live_consumer_that_never_reads_is_held_to_its_buffer_then_closed(
    abused: Abused,
) -> None:
    session_id = await abused.create_session()
    async with stalled_client(abused) as client:
        await client.subscribe("live", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: abused.shared.member_count == 1, "the subscriber joined")

        # Full: BUFFER deliveries and the `complete` that replaces the rest.
        full = BUFFER + 1
        appended, peak = await append_until_stalled(
            abused, session_id, lambda: abused.shared.queued, full
        )

        assert peak == full
        received = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await client.receive()
                assert message["type"] == "next", message
                received.append(message["payload"]["data"]["messageAdded"]["seq"])
        assert client.connection.close_code == 1013
        assert received == list(range(1, len(received) + 1))
        assert len(received) < appended


async def test_a_stalled_member_of_a_group_holds_up_none_of_the_others(abused: Abused) -> None:
    # The group writes each event to its idle members itself: a member whose socket has
    # stopped taking frames must fall back to its own queue, not keep the group waiting.
    session_id = await abused.create_session()
    async with (
        stalled_client(abused) as stalled,
        connected(abused.url, abused.key, TRANSPORT_WS) as reader,
    ):
        await stalled.subscribe("live", MESSAGE_ADDED, {"sessionId": session_id})
        await reader.subscribe("live", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: abused.shared.member_count == 2, "both subscribers joined")
        assert abused.shared.group_count == 1

        read: list[int] = []

        async def read_all() -> None:
            while True:
                data = await reader.data("live")
                read.append(data["messageAdded"]["seq"])

        reading = asyncio.create_task(read_all())
        try:
            appended, _ = await append_until_stalled(
                abused, session_id, lambda: abused.shared.queued, BUFFER + 1
            )
            await wait_until(lambda: len(read) >= appended, "the reader has every message")
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        assert read == list(range(1, appended + 1))

        received = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await stalled.receive()
                assert message["type"] == "next", message
                received.append(message["payload"]["data"]["messageAdded"]["seq"])
        assert stalled.connection.close_code == 1013
        assert received == list(range(1, len(received) + 1))
        assert len(received) < appended


async def test_a_replaying_consumer_that_never_reads_is_held_to_its_buffer_and_misses_nothing(
    abused: Abused,
) -> None:
    session_id = await abused.create_session()
    async with stalled_client(abused) as client:
        await client.subscribe("replay", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
        await wait_until(lambda: abused.hub.feed_count == 1, "the subscriber registered")

        appended, peak = await append_until_stalled(
            abused, session_id, lambda: abused.hub.queued, BATCH
        )

        assert peak <= BUFFER
        async with ApiClient(abused.url, abused.key) as api:
            await api.data(COMPLETE_SESSION, {"id": session_id})
        received = await client.until_complete("replay")
        seqs = [result["messageAdded"]["seq"] for result in received]
        assert seqs == list(range(1, appended + 1))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_client_gone_before_its_ack_is_no_server_error(
    abused: Abused, protocol: Protocol, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Its key is not cached: the server looks it up, and the client's close arrives
    # meanwhile, so the ack is written to a closing connection.
    _, key = await new_org_key(database)
    live = abused.app.state.parts.live
    with caplog.at_level(logging.ERROR):
        async with connect(abused.url, protocol) as client:
            await client.send(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}}
            )
            await client.connection.close()
        await wait_until(lambda: not live.tracker.connections, "the connection is gone")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscriptions_stopped_as_soon_as_they_start_release_their_feeds(
    abused: Abused, protocol: Protocol
) -> None:
    session_id = await abused.create_session()
    async with connected(abused.url, abused.key, protocol) as client:
        for n in range(HASTY_SUBSCRIPTIONS):
            variables = {"sessionId": session_id, "afterSeq": 0 if n % 2 else None}
            await client.subscribe(str(n), MESSAGE_ADDED, variables)
            for _ in range(n % 4):  # stop it at different points of its start
                await asyncio.sleep(0)
            await client.complete(str(n))

        await wait_until(lambda: abused.hub.feed_count == 0, "every feed is released")
        await wait_until(lambda: abused.shared.member_count == 0, "every shared member left")


# Afterwards -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_after_the_abuse_the_server_serves_http_and_websockets(
    abused: Abused, protocol: Protocol
) -> None:
    session_id = await abused.create_session()
    async with connected(abused.url, abused.key, protocol) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
        await wait_until(lambda: abused.hub.feed_count >= 1, "the subscription is registered")
        async with ApiClient(abused.url, abused.key) as api:
            messages = [{"user": {"content": "still here"}}]
            await api.data(ADD_MESSAGES, {"sessionId": session_id, "messages": messages})

        assert (await client.data("1"))["messageAdded"] == {"seq": 1, "content": "still here"}


async def test_after_the_abuse_no_feeds_groups_or_tasks_are_left(abused: Abused) -> None:
    async with connect(abused.url) as client:  # one more, closed before it says anything
        client.drop()

    await wait_until(lambda: abused.hub.feed_count == 0, "every feed is released")
    await wait_until(lambda: abused.shared.member_count == 0, "every shared member left")
    assert abused.shared.group_count == 0
    await wait_until(
        lambda: len(asyncio.all_tasks()) <= abused.baseline_tasks,
        f"the number of tasks is back to {abused.baseline_tasks}",
        WAIT_SECONDS,
    )
