"""A small GraphQL-over-websocket client for the tests, speaking both protocols."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

Protocol = Literal["graphql-transport-ws", "graphql-ws"]
TRANSPORT_WS: Protocol = "graphql-transport-ws"
LEGACY_WS: Protocol = "graphql-ws"
PROTOCOLS: tuple[Protocol, ...] = (TRANSPORT_WS, LEGACY_WS)

Message = dict[str, Any]

WAIT_SECONDS = 10.0
"""The longest a test waits for something that should happen; exceeding it fails the test."""

KEEP_ALIVES = frozenset({"ping", "pong", "ka"})
DATA = frozenset({"next", "data"})


class WsClient:
    """One websocket connection to /graphql, in either protocol."""

    def __init__(self, connection: ClientConnection, protocol: Protocol) -> None:
        self.connection = connection
        self.protocol = protocol

    async def send(self, message: Message) -> None:
        await self.connection.send(json.dumps(message))

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def init(self, payload: dict[str, Any] | None = None) -> Message:
        """Send connection_init (with `payload` when given); return the server's answer."""
        message: Message = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.receive()

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.start(id, {"query": query, "variables": variables or {}})

    async def start(self, id: str, payload: dict[str, Any]) -> None:
        """Start operation `id` with `payload` as sent (graphql-ws calls this `start`)."""
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send({"id": id, "type": kind, "payload": payload})

    async def complete(self, id: str) -> None:
        """Stop subscription `id` (graphql-ws calls this `stop`)."""
        await self.send({"id": id, "type": "complete" if self.protocol == TRANSPORT_WS else "stop"})

    async def receive(self, within: float = WAIT_SECONDS, *, keep_alive: bool = False) -> Message:
        """The next message; pings are answered and keep-alives skipped unless `keep_alive`."""
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            try:
                raw = await asyncio.wait_for(self.connection.recv(), max(remaining, 0))
            except TimeoutError:
                raise AssertionError(f"no message within {within:g} s") from None
            message: Message = json.loads(raw)
            if keep_alive or message["type"] not in KEEP_ALIVES:
                return message
            if message["type"] == "ping":
                await self.send({"type": "pong"})

    async def data(self, id: str, within: float = WAIT_SECONDS) -> dict[str, Any]:
        """The `data` of the next result of subscription `id`, which must carry no errors."""
        message = await self.receive(within)
        assert message.get("id") == id, message
        assert message["type"] in DATA, message
        assert "errors" not in message["payload"], message
        result: dict[str, Any] = message["payload"]["data"]
        return result

    async def until_complete(self, id: str, within: float = WAIT_SECONDS) -> list[dict[str, Any]]:
        """The `data` of every result of the only subscription `id` up to its `complete`."""
        results: list[dict[str, Any]] = []
        while True:
            message = await self.receive(within)
            assert message.get("id") == id, message
            if message["type"] == "complete":
                return results
            assert message["type"] in DATA, message
            assert "errors" not in message["payload"], message
            results.append(message["payload"]["data"])

    async def close_code(self, within: float = WAIT_SECONDS) -> int | None:
        """The code the server closes the connection with (reading anything still queued)."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.connection.recv()
        except ConnectionClosed:
            return self.connection.close_code
        except TimeoutError:
            raise AssertionError(f"the server did not close within {within:g} s") from None

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake, as a lost network would."""
        self.connection.transport.abort()


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + "/graphql"


@asynccontextmanager
async def connect(
    base_url: str, protocol: Protocol = TRANSPORT_WS, headers: dict[str, str] | None = None
) -> AsyncIterator[WsClient]:
    """A connection to the server at `base_url`, closed when the block ends."""
    async with ws_connect(
        ws_url(base_url),
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=headers,
        compression=None,
        proxy=None,
        open_timeout=WAIT_SECONDS,
        close_timeout=2,
        # Unbounded, so that unread results never hold back the server's close frame.
        max_queue=None,
    ) as connection:
        yield WsClient(connection, protocol)


SMALL_RECEIVE_BUFFER = 4096
"""The receive buffer of a client meant to stall: the server's writes to it soon block."""


@asynccontextmanager
async def small_window_client(
    base_url: str, key: str, *, close_timeout: float
) -> AsyncIterator[WsClient]:
    """An acknowledged graphql-transport-ws connection with a small receive buffer, which
    reads at most one message ahead (`max_queue=1`): once the test stops reading, or
    pauses the transport, the server's sends to it soon wait."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    async with ws_connect(
        ws_url(base_url),
        sock=sock,
        subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        compression=None,
        proxy=None,
        max_queue=1,
        ping_interval=None,
        close_timeout=close_timeout,
    ) as connection:
        client = WsClient(connection, TRANSPORT_WS)
        ack = await client.init({"authorization": f"Bearer {key}"})
        assert ack["type"] == "connection_ack", ack
        yield client


@asynccontextmanager
async def connected(
    base_url: str, key: str, protocol: Protocol = TRANSPORT_WS
) -> AsyncIterator[WsClient]:
    """A connection whose connection_init, carrying `key`, was acknowledged."""
    async with connect(base_url, protocol) as client:
        ack = await client.init({"authorization": f"Bearer {key}"})
        assert ack["type"] == "connection_ack", ack
        yield client


async def wait_until(
    condition: Callable[[], bool], what: str, within: float = WAIT_SECONDS
) -> None:
    """Poll `condition` until it holds; fail naming `what` when `within` seconds pass first."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting until {what}")
        await asyncio.sleep(0.02)
