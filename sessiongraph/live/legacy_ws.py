"""The legacy graphql-ws (subscriptions-transport-ws) protocol on a Starlette websocket.

Held to graphql-transport-ws's rules where the old protocol has none: a malformed frame
closes with 4400, a second `connection_init` with 4429, `start` before the ack with 4401.
A refused key gets `connection_error` and a close with 1011; the server sends `ka` on
connecting and every keep-alive interval; a stopped operation answers with `complete`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from sessiongraph.live.sharing import Delivery
from sessiongraph.live.websocket_session import (
    WebSocketSession,
    protocol_violation,
    subscription_limit_error,
)

PROTOCOL = "graphql-ws"
KNOWN = frozenset({"connection_init", "connection_terminate", "start", "stop"})
KA = '{"type":"ka"}'


class LegacyWSSession(WebSocketSession):
    """One graphql-ws connection."""

    async def _keep_alive(self) -> None:
        while True:
            await self.websocket.send_text(KA)
            await asyncio.sleep(self.engine.keep_alive_seconds)

    async def handle(self, message: Any) -> None:
        problem = protocol_violation(message, "start", "stop")
        if problem is None and message["type"] not in KNOWN:
            problem = f"Unknown message type: {message['type']}"
        if problem is not None:
            await self.close(4400, problem)
            return
        kind = message["type"]
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "connection_terminate":
            await self.close(1000, "")
        elif kind == "start":
            await self._start(message["id"], message["payload"])
        else:
            await self._stop(message["id"])

    async def _init(self, payload: Any) -> None:
        if self.init_received:
            await self.close(4429, "Too many initialisation requests")
            return
        self.init_received = True
        if payload is not None and not isinstance(payload, dict):
            await self.websocket.send_text('{"type":"connection_error"}')
            await self.close(1000, "")
            return
        caller = await self.authenticate(payload)
        if caller is None:
            await self.websocket.send_text('{"type":"connection_error","payload":{}}')
            await self.close(1011, "")
            return
        await self.websocket.send_text('{"type":"connection_ack"}')
        self.accepted(caller)
        self.timer(asyncio.create_task(self._keep_alive()))

    async def _start(self, id: str, payload: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        if id in self.operations:
            await self._stop(id)
        if len(self.operations) >= self.engine.max_subscriptions:
            error = subscription_limit_error(self.engine.max_subscriptions)
            await self.websocket.send_text(
                orjson.dumps({"type": "error", "id": id, "payload": error}).decode()
            )
            return
        self.start(id, payload)

    async def _stop(self, id: str) -> None:
        """Stop the operation and wait until it has answered with `complete`."""
        task = self.operations.get(id)
        await self.stop(id)
        if task is not None:
            with contextlib.suppress(BaseException):
                await task

    async def send(self, id: str, delivery: Delivery) -> None:
        prefix = '{"type":"data","id":' + orjson.dumps(id).decode() + ',"payload":'
        if delivery.kind == "error":
            self.forget(id)
            # The old protocol's `error` carries one error, not a list.
            first = orjson.dumps(orjson.loads(delivery.payload)[0]).decode()
            prefix = '{"type":"error","id":' + orjson.dumps(id).decode() + ',"payload":'
            await self.websocket.send_text(prefix + first + "}")
            return
        await self.websocket.send_text(prefix + delivery.payload + "}")

    async def complete(self, id: str) -> None:
        await self.websocket.send_text('{"type":"complete","id":' + orjson.dumps(id).decode() + "}")

    async def cancelled(self, id: str) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                await self.complete(id)
