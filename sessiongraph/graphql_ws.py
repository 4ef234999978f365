"""GraphQL over websockets on /graphql: graphql-transport-ws and the legacy graphql-ws.

Strawberry runs both protocols. This adds what it leaves to the application: the API key
(from `connection_init`'s payload, or the upgrade request's Authorization header for
non-browser clients), server-initiated pings on graphql-transport-ws so that idle
connections stay open through proxies and dead peers are noticed, and the same strictness on
both protocols: a malformed message closes the connection with 4400, a second
`connection_init` with 4429, and a subscription over the limit gets a coded error. Every
connection and subscription is tracked (`sessiongraph/tracking.py`): counted, logged when a
subscription starts and stops, and closed with 1012 at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, cast

import orjson
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from starlette.websockets import WebSocketDisconnected as SocketClosed
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    OperationMessage,
    StartMessage,
)
from strawberry.types.execution import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from resolvers.context import Context
from resolvers.subscriptions import committed_at
from sessiongraph.auth import bearer_key
from sessiongraph.fanout import SharedStreams, group_key
from sessiongraph.metrics import Metrics
from sessiongraph.services import Services
from sessiongraph.tracking import (
    UNCODED_REFUSAL,
    Connection,
    Subscription,
    SubscriptionTracker,
    first_error_code,
)
from storage.scope import ScopedSessionStore

CONNECTION = "sessiongraph.connection"
"""The scope key of the connection's `Connection`."""

_subscription: ContextVar[Subscription | None] = ContextVar("subscription", default=None)
"""The subscription whose task this is (unset in a connection's own tasks)."""


def connection_of(websocket: Any) -> Connection:
    """The `Connection` of a handler's websocket adapter."""
    connection: Connection = websocket.ws.scope[CONNECTION]
    return connection


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


def protocol_violation(message: Any, start: str, stop: str) -> str | None:
    """What makes a client message malformed (`start` and `stop` are the protocol's names
    for subscribing and unsubscribing), or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "A message must be a JSON object with a string `type`."
    if message["type"] in (start, stop) and not isinstance(message.get("id"), str):
        return f"A `{message['type']}` message needs a string `id`."
    if message["type"] == start:
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return f"A `{start}` message needs a `payload` with a string `query`."
        if not isinstance(payload.get("variables"), dict | None):
            return "`payload.variables` must be an object."
        if not isinstance(payload.get("operationName"), str | None):
            return "`payload.operationName` must be a string."
    return None


def subscription_limit_error(limit: int | None) -> dict[str, Any]:
    """The error answering a subscription over the per-connection limit."""
    return {
        "message": f"Subscription limit reached: at most {limit} per connection.",
        "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS"},
    }


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with a `ping` from the server every `interval` seconds, and
    shared execution for subscriptions that many clients run alike."""

    interval: float = 15.0

    @property
    def tracker(self) -> SubscriptionTracker:
        view: GraphQLWebSocket = self.view  # type: ignore[assignment]
        return view.tracker

    async def handle_message(self, message: Message) -> None:
        problem = protocol_violation(message, "subscribe", "complete")
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and not hasattr(self, "_pinger"):
            self._pinger = asyncio.create_task(self._ping_forever())

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and limit is not None
            and len(self.operations) >= limit
        ):
            error = subscription_limit_error(limit)
            await self.websocket.send_json(
                {"id": message["id"], "type": "error", "payload": [error]}
            )
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Run the operation, tracked (counted and logged) when it is a subscription."""
        subscription = self.tracker.start(
            connection_of(self.websocket),
            operation.id,
            self.context.org_id,
            operation.query,
            operation.operation_name,
            operation.variables,
        )
        if subscription is None:
            await self._run_operation(operation, None)
            return
        _subscription.set(subscription)
        failure: BaseException | None = None
        try:
            await self._run_operation(operation, subscription)
        except BaseException as error:
            failure = error
            raise
        finally:
            self.tracker.end(subscription, cancelled=_cancelling(), failure=failure)

    async def _run_operation(
        self, operation: Operation[Context, None], subscription: Subscription | None
    ) -> None:
        """Run the operation, in a shared group when others run the same one."""
        view: GraphQLWebSocket = self.view  # type: ignore[assignment]
        key = group_key(
            self.context.org_id, operation.query, operation.operation_name, operation.variables
        )
        # A shared run reads as the whole organization: a token limited to particular
        # sessions runs its subscriptions on its own scoped context instead.
        if key is None or isinstance(self.context.sessions, ScopedSessionStore):
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
                delivery = await member.queue.get()
                kind = delivery.kind
                if kind == "complete":
                    break
                if kind == "error":
                    operation.completed = True
                    self.forget_id(operation.id)
                await socket.send_text(prefix + kind + '","payload":' + delivery.payload + "}")
                if subscription is not None:
                    self.tracker.sent(subscription, kind, delivery.committed, delivery.error_code)
                if kind == "error":
                    return
        if member.overflowed:
            if subscription is not None:
                subscription.reason = "overflow"
            await socket.close(1013, "Subscriber too slow; reconnect and resume with afterSeq.")
            return
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.send_message({"type": "ping"})

    async def send_message(self, message: Message) -> None:
        await super().send_message(message)
        _sent(self.tracker, cast(dict[str, Any], message))

    async def shutdown(self) -> None:
        self.tracker.closing(connection_of(self.websocket))
        pinger = getattr(self, "_pinger", None)
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pinger
        await super().shutdown()


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws, held to graphql-transport-ws's rules: a malformed message
    closes the connection with 4400, a second `connection_init` with 4429."""

    init_received = False

    @property
    def tracker(self) -> SubscriptionTracker:
        view: GraphQLWebSocket = self.view  # type: ignore[assignment]
        return view.tracker

    async def handle(self) -> None:
        try:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(message)  # type: ignore[arg-type]
            except NonTextMessageReceived:
                await self.websocket.close(4400, "WebSocket message type must be text")
            except NonJsonMessageReceived:
                await self.websocket.close(4400, "WebSocket message must be valid JSON")
        except WebSocketDisconnected:
            pass
        finally:
            self.tracker.closing(connection_of(self.websocket))
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with contextlib.suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def handle_message(self, message: OperationMessage) -> None:
        problem = protocol_violation(message, "start", "stop")
        known = ("connection_init", "connection_terminate", "start", "stop")
        if problem is None and message["type"] not in known:
            problem = f"Unknown message type: {message['type']}"
        if problem is not None:
            await self.websocket.close(4400, problem)
            return
        if message["type"] == "connection_init":
            if self.init_received:
                await self.websocket.close(4429, "Too many initialisation requests")
                return
            self.init_received = True
        await super().handle_message(message)

    async def handle_start(self, message: StartMessage) -> None:
        limit = self.max_subscriptions_per_connection
        running = len(self.tasks) - (message["id"] in self.tasks)
        if self.connection_acknowledged and limit is not None and running >= limit:
            error = subscription_limit_error(limit)
            await self.websocket.send_json({"type": "error", "id": message["id"], "payload": error})
            return
        await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        subscription = self.tracker.start(
            connection_of(self.websocket),
            operation_id,
            self.context.org_id,
            query,
            operation_name,
            variables,
        )
        if subscription is not None:
            _subscription.set(subscription)
        failure: BaseException | None = None
        try:
            await super().handle_async_results(operation_id, query, operation_name, variables)
        except (WebSocketDisconnected, SocketClosed) as error:
            # The socket closed (the client left, or the server closed it) before the last
            # frame, often the final `complete`, went out. Strawberry forgets the finished
            # task, so raising would only surface as "Task exception was never retrieved";
            # the tracker logs the stop as a disconnect.
            failure = error
        except BaseException as error:
            failure = error
            raise
        finally:
            if subscription is not None:
                # Strawberry answers a cancellation with `complete` and returns: ask the task.
                self.tracker.end(subscription, cancelled=_cancelling(), failure=failure)

    async def send_message(self, message: OperationMessage) -> None:
        await super().send_message(message)
        _sent(self.tracker, cast(dict[str, Any], message))


def _cancelling() -> bool:
    """Whether the current task has been asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _sent(tracker: SubscriptionTracker, message: dict[str, Any]) -> None:
    """Tell the tracker of a result or an error a subscription's task sent."""
    subscription = _subscription.get()
    if subscription is None or message.get("id") != subscription.id:
        return
    if message["type"] in ("next", "data"):
        code = first_error_code(message["payload"])
        at = committed_at()
        tracker.sent(subscription, "next", at.timestamp() if at else None, code)
    elif message["type"] == "error":
        code = first_error_code(message["payload"], uncoded=UNCODED_REFUSAL)
        tracker.sent(subscription, "error", None, code)


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
        metrics: Metrics | None = None,
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
        self.tracker = SubscriptionTracker(metrics)
        handler = type(
            "ConfiguredTransportWSHandler",
            (TransportWSHandler,),
            {"interval": keep_alive_seconds},
        )
        self.graphql_transport_ws_handler_class = handler
        self.graphql_ws_handler_class = LegacyWSHandler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        connection = Connection(uuid.uuid4().hex)
        scope[CONNECTION] = connection
        accepted = False

        async def receiving() -> AsgiMessage:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                connection.disconnect_code = message.get("code")
            return message

        async def sending(message: AsgiMessage) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                connection.protocol = message.get("subprotocol")
                self.tracker.opened(connection)
            await send(message)

        try:
            await super().__call__(scope, receiving, sending)
        finally:
            self.tracker.closed(connection)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services: Services = request.state.services
        connection: Connection | None = request.scope.get(CONNECTION)
        if connection is not None and isinstance(request, WebSocket):
            connection.socket = request
        # A websocket's id is its connection's: in its log lines and masked errors alike.
        context = services.context("", connection.id if connection is not None else None)
        # Non-browser clients may authenticate the upgrade request itself.
        key = bearer_key(request.headers.get("authorization"))
        caller = await services.verifier.caller_of(key)
        if caller is not None:
            services.authenticate(context, caller)
        context.connection_params = {}
        # The same app-wide services for every connection; kept for the handlers.
        self.services = services
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        authorization = authorization_of(context.connection_params)
        if authorization is not None:
            caller = await self.services.verifier.caller_of(bearer_key(authorization))
            if caller is None:
                raise ConnectionRejectionError
            self.services.authenticate(context, caller)
        elif not context.org_id:
            raise ConnectionRejectionError
        unset: UnsetType = UNSET
        return unset
