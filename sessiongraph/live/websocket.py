"""The websocket side of /graphql: checks the origin, picks the subprotocol, and hands the
connection to graphql-transport-ws or the legacy graphql-ws, tracked while it is open."""

from __future__ import annotations

import uuid

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from sessiongraph.auth import bearer_key
from sessiongraph.live import legacy_ws, transport_ws
from sessiongraph.live.engine import LiveEngine
from sessiongraph.live.origins import OriginPolicy
from sessiongraph.live.tracking import Connection
from sessiongraph.live.websocket_session import WebSocketSession
from sessiongraph.services import State

SESSIONS: dict[str, type[WebSocketSession]] = {
    transport_ws.PROTOCOL: transport_ws.TransportWSSession,
    legacy_ws.PROTOCOL: legacy_ws.LegacyWSSession,
}
"""The subprotocols served, and who speaks each."""

POLICY_VIOLATION = 1008
"""Closing before accepting: uvicorn answers the upgrade request with 403."""


class GraphQLWebSocket:
    """The ASGI endpoint of websockets on /graphql."""

    def __init__(self, engine: LiveEngine, origins: OriginPolicy) -> None:
        self.engine = engine
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = Connection(uuid.uuid4().hex)
        websocket: WebSocket[State] = WebSocket(scope, receive, send)
        if not self.origins.allows(websocket):
            await websocket.close(POLICY_VIOLATION, self.origins.refusal(websocket))
            return
        offered = scope.get("subprotocols") or []
        protocol = next((p for p in offered if p in SESSIONS), None)
        if protocol is None:
            await websocket.accept()
            await websocket.close(4406, "Subprotocol not acceptable")
            return
        services = websocket.state["services"]
        # Non-browser clients may authenticate the upgrade request itself.
        authorization = websocket.headers.get("authorization")
        header_caller = None
        if authorization is not None:
            header_caller = await services.verifier.caller_of(bearer_key(authorization))
        await websocket.accept(subprotocol=protocol)
        connection.protocol = protocol
        session = SESSIONS[protocol](self.engine, services, websocket, connection, header_caller)

        async def close(code: int, reason: str) -> None:
            await session.close(code, reason)

        connection.close = close
        tracker = self.engine.tracker
        tracker.opened(connection)
        try:
            await session.serve()
        finally:
            tracker.closed(connection)
