"""GraphQL over websockets on /graphql: graphql-transport-ws and the legacy graphql-ws.

Strawberry runs both protocols. This adds what it leaves to the application: the API key
(from `connection_init`'s payload, or the upgrade request's Authorization header for
non-browser clients), and server-initiated pings on graphql-transport-ws so that idle
connections stay open through proxies and dead peers are noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.types.execution import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from resolvers.context import Context
from sessiongraph.auth import bearer_key
from sessiongraph.fanout import SharedStreams, group_key
from sessiongraph.services import Services


def authorization_of(params: dict[str, Any] | None) -> str | None:
    """The Authorization value in a connection_init payload, at the top level or under
    `headers`, the name matched case-insensitively."""
    if not params:
        return None
    for scope in (params, params.get("headers")):
        if isinstance(scope, dict):
            for name, value in scope.items():
                if name.lower() == "authorization" and isinstance(value, str):
                    return value
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with a `ping` from the server every `interval` seconds, and
    shared execution for subscriptions that many clients run alike."""

    interval: float = 15.0

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and not hasattr(self, "_pinger"):
            self._pinger = asyncio.create_task(self._ping_forever())

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Run the operation, in a shared group when others run the same one."""
        view: GraphQLWebSocket = self.view  # type: ignore[assignment]
        key = group_key(
            self.context.org_id, operation.query, operation.operation_name, operation.variables
        )
        if key is None:
            await super().run_operation(operation)
            return
        org_context = view.services.context(self.context.org_id)

        async def start() -> AsyncIterator[ExecutionResult]:
            return await self.schema.stream(  # type: ignore[return-value]
                operation.query,
                variable_values=operation.variables,
                context_value=org_context,
                operation_name=operation.operation_name,
            )

        prefix = '{"id":' + orjson.dumps(operation.id).decode() + ',"type":"'
        socket: WebSocket = self.websocket.ws  # type: ignore[attr-defined]
        async with view.shared.join(key, start) as member:
            while True:
                kind, payload = await member.queue.get()
                if kind == "complete":
                    break
                if kind == "error":
                    operation.completed = True
                    self.forget_id(operation.id)
                await socket.send_text(prefix + kind + '","payload":' + payload + "}")
                if kind == "error":
                    return
        if member.overflowed:
            await socket.close(1013, "Subscriber too slow; reconnect and resume with afterSeq.")
            return
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        pinger = getattr(self, "_pinger", None)
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pinger
        await super().shutdown()


class GraphQLWebSocket(GraphQL[Context, None]):
    """The websocket side of /graphql."""

    services: Services

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        init_timeout_seconds: float,
        keep_alive_seconds: float,
        max_subscriptions: int,
        subscriber_buffer: int,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            allow_queries_via_get=False,
            keep_alive=True,
            keep_alive_interval=keep_alive_seconds,
            connection_init_wait_timeout=timedelta(seconds=init_timeout_seconds),
            max_subscriptions_per_connection=max_subscriptions,
        )
        self.shared = SharedStreams(member_limit=subscriber_buffer)
        handler = type(
            "ConfiguredTransportWSHandler",
            (TransportWSHandler,),
            {"interval": keep_alive_seconds},
        )
        self.graphql_transport_ws_handler_class = handler

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services: Services = request.state.services
        context = services.context("")
        # Non-browser clients may authenticate the upgrade request itself.
        key = bearer_key(request.headers.get("authorization"))
        org_id = await services.verifier.organization_of(key)
        if org_id is not None:
            context.org_id = org_id
            context.fresh_loaders()
        context.connection_params = {}
        # The same app-wide services for every connection; kept for the handlers.
        self.services = services
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        authorization = authorization_of(context.connection_params)
        if authorization is not None:
            org_id = await self.services.verifier.organization_of(bearer_key(authorization))
            if org_id is None:
                raise ConnectionRejectionError
            context.org_id = org_id
            context.fresh_loaders()
        elif not context.org_id:
            raise ConnectionRejectionError
        unset: UnsetType = UNSET
        return unset
