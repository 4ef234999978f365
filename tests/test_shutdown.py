"""Shutdown: open subscriptions are closed with 1012 (Service Restart, which clients
reconnect from), every one of them stops, logged with reason "shutdown", before the change
stream and the database client close, and nothing is left running or logged as an error.

Each test runs a server of its own and stops it as uvicorn does on SIGTERM
(`should_exit`, which is what leaving `serve` does).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from starlette.applications import Starlette

from sessiongraph.app import create_app
from sessiongraph.live.tracking import SubscriptionTracker
from sessiongraph.settings import Settings
from storage.events import EventHub
from tests.api_client import ApiClient
from tests.log_records import extra, extras
from tests.serving import bound_socket, serve
from tests.sse_client import sse
from tests.ws_client import (
    PROTOCOLS,
    WAIT_SECONDS,
    Protocol,
    WsClient,
    connected,
    small_window_client,
    wait_until,
)

SERVICE_RESTART = 1012
BATCHES = 10
"""Batches of 100 messages of 10 kB that a client which stops reading is sent."""
LOGGER = "sessiongraph.subscriptions"

# Three ways a subscription runs: shared with others (live messageAdded, sessionUpdated) and
# on its own (a replaying messageAdded).
LIVE = "subscription Live($s: ID!) { messageAdded(sessionId: $s) { seq } }"
REPLAY = (
    "subscription Replay($s: ID!, $a: Int) { messageAdded(sessionId: $s, afterSeq: $a) { seq } }"
)
REPLAY_CONTENT = REPLAY.replace("{ seq }", "{ seq content }")
SESSION = "subscription Session($s: ID!) { sessionUpdated(id: $s) { messageCount } }"
CREATE_SESSION = 'mutation { createSession(input: {name: "shutdown"}) { id } }'
ADD_MESSAGE = """
mutation ($s: ID!) { addMessages(sessionId: $s, messages: [{user: {content: "x"}}]) { seq } }
"""
ADD_MESSAGES = """
mutation ($s: ID!, $m: [MessageInput!]!) { addMessages(sessionId: $s, messages: $m) { seq } }
"""


class Server:
    """A server of its own that the test stops."""

    def __init__(self, app: Starlette, url: str, stop: AsyncExitStack) -> None:
        self.app = app
        self.url = url
        self._stop = stop

    @property
    def tracker(self) -> SubscriptionTracker:
        tracker: SubscriptionTracker = self.app.state.parts.live.tracker
        return tracker

    @property
    def hub(self) -> EventHub:
        hub: EventHub = self.app.state.services.events
        return hub

    async def stop(self) -> None:
        """Stop it as SIGTERM does, and wait until it has; fail if that is not bounded."""
        async with asyncio.timeout(WAIT_SECONDS):
            await self._stop.aclose()


@asynccontextmanager
async def own_server(settings: Settings, **changes: object) -> AsyncIterator[Server]:
    sock = bound_socket()
    app = create_app(settings.model_copy(update={**changes, "port": sock.getsockname()[1]}))
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve(app, sock))
        server = Server(app, url, stack.pop_all())
        try:
            yield server
        finally:
            await server.stop()


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every warning or error logged, from any logger."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


def stop_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and hasattr(r, "reason")]


async def until_each_has_the_message(client: WsClient) -> dict[str, int]:
    """Read until each of the three subscriptions has delivered the first message (the
    session's, its creation first, maybe: the change stream may deliver it after it
    subscribed); how many results each delivered."""
    received = {"live": 0, "replay": 0, "session": 0}
    waiting = set(received)
    while waiting:
        message = await client.receive()
        received[message["id"]] += 1
        data = message["payload"]["data"]
        if data.get("messageAdded", {}).get("seq") == 1 or (
            data.get("sessionUpdated", {}).get("messageCount") == 1
        ):
            waiting.discard(message["id"])
    return received


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_shutdown_closes_subscriptions_with_1012_and_stops_them_before_the_database(
    settings: Settings,
    org: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    protocol: Protocol,
) -> None:
    caplog.set_level(logging.INFO)
    async with own_server(settings) as server, AsyncExitStack() as clients:
        async with ApiClient(server.url, org[1]) as api:
            session_id = (await api.data(CREATE_SESSION))["createSession"]["id"]
            client = await clients.enter_async_context(connected(server.url, org[1], protocol))
            await client.subscribe("live", LIVE, {"s": session_id})
            await client.subscribe("replay", REPLAY, {"s": session_id, "a": 0})
            await client.subscribe("session", SESSION, {"s": session_id})
            await wait_until(lambda: server.hub.feed_count == 3, "the three are subscribed")
            await api.data(ADD_MESSAGE, {"s": session_id})
            received = await until_each_has_the_message(client)
        caplog.clear()

        await server.stop()

        assert await client.close_code() == SERVICE_RESTART
        assert not server.tracker.subscriptions
        assert not server.tracker.connections
        assert server.hub.feed_count == 0
        stops = stop_lines(caplog)
        assert sorted(
            extras(r, "subscription_id", "reason", "events_delivered") for r in stops
        ) == [(id, "shutdown", count) for id, count in sorted(received.items())]
        closing = [r for r in caplog.records if r.getMessage().startswith("shutting down")]
        assert len(closing) == 1
        assert all(r.created <= closing[0].created for r in stops)
        assert caplog.records.index(closing[0]) > max(caplog.records.index(r) for r in stops)

    # Nothing was left pending, to be destroyed with a warning.
    gc.collect()
    await asyncio.sleep(0)
    assert problems(caplog) == []


async def test_a_client_told_1012_reconnects_to_the_next_server_and_resumes(
    settings: Settings, org: tuple[str, str]
) -> None:
    async with own_server(settings) as first:
        async with ApiClient(first.url, org[1]) as api:
            session_id = (await api.data(CREATE_SESSION))["createSession"]["id"]
        async with connected(first.url, org[1]) as client:
            await client.subscribe("1", REPLAY, {"s": session_id, "a": 0})
            await wait_until(lambda: first.hub.feed_count == 1, "it is subscribed")
            async with ApiClient(first.url, org[1]) as api:
                await api.data(ADD_MESSAGE, {"s": session_id})
            last_seq = (await client.data("1"))["messageAdded"]["seq"]
            await first.stop()
            assert await client.close_code() == SERVICE_RESTART

    async with own_server(settings) as second, connected(second.url, org[1]) as client:
        await client.subscribe("1", REPLAY, {"s": session_id, "a": last_seq})
        await wait_until(lambda: second.hub.feed_count == 1, "it is subscribed again")
        async with ApiClient(second.url, org[1]) as api:
            await api.data(ADD_MESSAGE, {"s": session_id})
        assert await client.data("1") == {"messageAdded": {"seq": last_seq + 1}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_draining_closes_connections_the_server_left_open_with_1012(
    settings: Settings,
    org: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    protocol: Protocol,
) -> None:
    """What the lifespan's end does for connections still open then (a server that does not
    close websockets itself, or one that gave up waiting on them)."""
    caplog.set_level(logging.INFO)
    async with own_server(settings) as server:
        async with ApiClient(server.url, org[1]) as api:
            session_id = (await api.data(CREATE_SESSION))["createSession"]["id"]
        async with connected(server.url, org[1], protocol) as client:
            await client.subscribe("1", SESSION, {"s": session_id})
            await client.subscribe("2", REPLAY, {"s": session_id, "a": 0})
            await wait_until(lambda: server.hub.feed_count == 2, "both are subscribed")

            await server.tracker.drain(WAIT_SECONDS)

            assert await client.close_code() == SERVICE_RESTART
        assert not server.tracker.subscriptions
        assert sorted(extras(r, "subscription_id", "reason") for r in stop_lines(caplog)) == [
            ("1", "shutdown"),
            ("2", "shutdown"),
        ]
        await wait_until(lambda: not server.tracker.connections, "the connection is gone")
    assert problems(caplog) == []


@asynccontextmanager
async def stalled_subscriber(server: Server, key: str) -> AsyncIterator[WsClient]:
    """A client whose replaying subscription has far more to send than the client reads:
    it stops reading, so the server's buffers fill and its sends wait."""
    async with ApiClient(server.url, key) as api:
        session_id = (await api.data(CREATE_SESSION))["createSession"]["id"]
        async with small_window_client(server.url, key, close_timeout=1) as client:
            connection = client.connection
            await client.subscribe("1", REPLAY_CONTENT, {"s": session_id, "a": 0})
            await wait_until(lambda: server.hub.feed_count == 1, "it is subscribed")
            connection.transport.pause_reading()
            big = [{"user": {"content": "x" * 10_000}} for _ in range(100)]
            for _ in range(BATCHES):
                await api.data(ADD_MESSAGES, {"s": session_id, "m": big})
            await wait_until(
                lambda: server.hub.queued > 0, "the server holds results it cannot send"
            )
            try:
                yield client
            finally:
                connection.transport.resume_reading()


async def test_a_client_that_stopped_reading_does_not_hold_up_shutdown(
    settings: Settings, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Its socket cannot take the close frame, so uvicorn waits for it until its
    `timeout_graceful_shutdown` (tests/serving.py); the subscription itself stops at once."""
    caplog.set_level(logging.INFO)
    async with own_server(settings) as server, stalled_subscriber(server, org[1]) as client:
        await server.stop()

        # Once it reads again, it finds the close after the results it had not read.
        client.connection.transport.resume_reading()
        assert await client.close_code() == SERVICE_RESTART

    stops = stop_lines(caplog)
    assert [extras(r, "subscription_id", "reason") for r in stops] == [("1", "shutdown")]
    assert extra(stops[0], "events_delivered") < BATCHES * 100
    closing = [r for r in caplog.records if r.getMessage().startswith("shutting down")]
    assert caplog.records.index(stops[0]) < caplog.records.index(closing[0])
    assert problems(caplog) == []
    assert not server.tracker.subscriptions
    assert server.hub.feed_count == 0


async def test_draining_a_client_that_stopped_reading_is_bounded(
    settings: Settings, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with own_server(settings) as server, stalled_subscriber(server, org[1]):
        async with asyncio.timeout(WAIT_SECONDS):
            await server.tracker.drain(0.5)

        assert not server.tracker.subscriptions
        assert [extras(r, "subscription_id", "reason") for r in stop_lines(caplog)] == [
            ("1", "shutdown")
        ]


async def test_a_stopped_server_accepts_no_more_connections(
    settings: Settings, org: tuple[str, str]
) -> None:
    async with own_server(settings) as server:
        url = server.url

    with pytest.raises(ConnectionRefusedError):
        await connected(url, org[1]).__aenter__()


async def test_shutdown_ends_sse_streams_at_once_without_complete(
    settings: Settings, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn waits for HTTP responses to finish; an SSE stream never does by itself, so
    the server ends it as shutdown begins (no `complete`: its clients retry elsewhere)."""
    caplog.set_level(logging.INFO)
    async with own_server(settings) as server:
        async with ApiClient(server.url, org[1]) as api:
            session_id = (await api.data(CREATE_SESSION))["createSession"]["id"]
        async with sse(server.url, org[1], LIVE, {"s": session_id}) as reader:
            await wait_until(lambda: server.hub.feed_count == 1, "it is subscribed")
            caplog.clear()

            await server.stop()

            events = await reader.ended()
        assert [e for e in events if not e.comment] == []
        stops = stop_lines(caplog)
        assert [extras(r, "protocol", "reason") for r in stops] == [("sse", "shutdown")]
        assert not server.tracker.connections
        assert server.hub.feed_count == 0
    assert problems(caplog) == []


async def test_draining_ends_sse_streams(
    settings: Settings, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with own_server(settings) as server:
        async with ApiClient(server.url, org[1]) as api:
            session_id = (await api.data(CREATE_SESSION))["createSession"]["id"]
        async with sse(server.url, org[1], REPLAY, {"s": session_id, "a": 0}) as reader:
            await wait_until(lambda: server.hub.feed_count == 1, "it is subscribed")

            await server.tracker.drain(WAIT_SECONDS)

            assert [e for e in await reader.ended() if not e.comment] == []
        assert [extras(r, "protocol", "reason") for r in stop_lines(caplog)] == [
            ("sse", "shutdown")
        ]
        await wait_until(lambda: not server.tracker.connections, "the stream is gone")
