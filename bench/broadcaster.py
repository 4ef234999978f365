"""A bare broadcaster: the floor `bench.fanout --baseline broadcaster` measures the server against.

A Starlette websocket endpoint that speaks just enough graphql-transport-ws for the fan-out
client (`connection_init` → `connection_ack`, `subscribe` → results), reads the same change
stream as the server, and sends each inserted message to every socket as one pre-built `next`
frame. No GraphQL, no authentication, no tracking, no metrics: what is left is the change
stream, JSON encoding once per event and one websocket write per subscriber.

    python -m bench.broadcaster serve --port 8001   # MONGODB_URI, SESSIONGRAPH_DB_NAME
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from storage import Database

INSERTS = [{"$match": {"operationType": "insert", "ns.coll": "messages"}}]


class Broadcaster:
    """Sockets that subscribed, and the change stream that feeds them."""

    def __init__(self) -> None:
        self.sockets: set[WebSocket] = set()

    async def endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="graphql-transport-ws")
        try:
            while True:
                message = await websocket.receive_json()
                if message.get("type") == "connection_init":
                    await websocket.send_text('{"type":"connection_ack"}')
                elif message.get("type") == "subscribe":
                    self.sockets.add(websocket)
                elif message.get("type") == "ping":
                    await websocket.send_text('{"type":"pong"}')
        except WebSocketDisconnect:
            pass
        finally:
            self.sockets.discard(websocket)

    async def run(self, db: Database) -> None:
        stream: Any = db.db.watch(INSERTS)
        if asyncio.iscoroutine(stream):
            stream = await stream
        async for change in stream:
            doc = change["fullDocument"]
            created = doc["created_at"]
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            added = {"seq": doc["seq"], "createdAt": created.isoformat()}
            frame = json.dumps(
                {"id": "1", "type": "next", "payload": {"data": {"messageAdded": added}}}
            )
            for websocket in list(self.sockets):
                with contextlib.suppress(Exception):
                    await websocket.send_text(frame)


def create_app() -> Starlette:
    broadcaster = Broadcaster()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await Database.connect(os.environ["MONGODB_URI"], os.environ["SESSIONGRAPH_DB_NAME"])
        task = asyncio.create_task(broadcaster.run(db))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await db.close()

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/healthz", healthz), WebSocketRoute("/graphql", broadcaster.endpoint)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
