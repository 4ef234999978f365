"""graphql-transport-ws (the `graphql-ws` library's protocol) on a Starlette websocket.

The protocol as its reference server keeps it: `connection_init` within the init timeout
(else 4408) and only once (4429), authenticated by the key in its payload or the upgrade
request's Authorization header (else 4403); `subscribe` only after the ack (4401) with an
id not in use (4409); a malformed frame, or a document that does not parse, closes with
4400. Beyond it: the server pings every keep-alive interval so that idle connections stay
open through proxies, and a subscription over the per-connection cap gets a coded error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from sessiongraph.live.sharing import Delivery
from sessiongraph.live.websocket_session import (
    WebSocketSession,
    protocol_violation,
    subscription_limit_error,
)

PROTOCOL = "graphql-transport-ws"
PING = '{"type":"ping"}'
PONG = '{"type":"pong"}'
ACK = '{"type":"connection_ack"}'


class TransportWSSession(WebSocketSession):
    """One graphql-transport-ws connection."""

    def started(self) -> None:
        self.timer(asyncio.create_task(self._init_timeout()))

    async def _init_timeout(self) -> None:
        await asyncio.sleep(self.engine.init_timeout_seconds)
        if not self.init_received:
            await self.close(4408, "Connection initialisation timeout")

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.engine.keep_alive_seconds)
            await self.websocket.send_text(PING)

    async def handle(self, message: Any) -> None:
        problem = protocol_violation(message, "subscribe", "complete")
        if problem is not None:
            await self.close(4400, problem)
            return
        kind = message["type"]
        if kind == "connection_init":
            await self._init(message.get("payload", {}))
        elif kind == "ping":
            await self.websocket.send_text(PONG)
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(message["id"], message["payload"])
        elif kind == "complete":
            await self.stop(message["id"])
        else:
            await self.close(4400, f"Unknown message type: {kind}")

    async def _init(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            await self.close(4400, "Invalid connection init payload")
            return
        if self.init_received:
            await self.close(4429, "Too many initialisation requests")
            return
        self.init_received = True
        caller = await self.authenticate(payload)
        if caller is None:
            await self.close(4403, "Forbidden")
            return
        await self.websocket.send_text(ACK)
        self.accepted(caller)
        self.timer(asyncio.create_task(self._ping_forever()))

    async def _subscribe(self, id: str, payload: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        if id in self.operations:
            await self.close(4409, f"Subscriber for {id} already exists")
            return
        # Queries and mutations in flight count too, as in Strawberry's handler.
        if len(self.operations) >= self.engine.max_subscriptions:
            error = subscription_limit_error(self.engine.max_subscriptions)
            await self.websocket.send_text(
                orjson.dumps({"id": id, "type": "error", "payload": [error]}).decode()
            )
            return
        self.start(id, payload)

    async def send(self, id: str, delivery: Delivery) -> None:
        if delivery.kind == "error":
            if delivery.close_reason is not None:
                # As the reference server does: a document it cannot parse or route.
                self.forget(id)
                await self.close(4400, delivery.close_reason)
                return
            self.forget(id)
        frame = (
            '{"id":' + orjson.dumps(id).decode() + ',"type":"' + delivery.kind + '","payload":'
            + delivery.payload + "}"
        )  # fmt: skip
        await self.websocket.send_text(frame)

    async def complete(self, id: str) -> None:
        await self.websocket.send_text('{"id":' + orjson.dumps(id).decode() + ',"type":"complete"}')
