"""Live connections (websockets, SSE streams) and their subscriptions: counted, logged, and
closed at shutdown.

Each subscription logs one line when it starts and one when it stops (logger
`sessiongraph.subscriptions`), with the connection id, the operation name, the session id
argument and the organization, and at the stop the reason, the duration and the number of
results delivered. The reasons: `complete` (the stream ended: the session completed, expired
or was deleted), `client_stop` (the client stopped it), `disconnect` (the connection closed),
`shutdown` (the server is stopping), `overflow` (a shared subscriber fell too far behind and
was asked to reconnect), or the error code that ended it (NOT_FOUND, BAD_USER_INPUT...).

At shutdown uvicorn closes every websocket with 1012 (Service Restart), which clients of
graphql-transport-ws reconnect from; `drain` does the same for any connection still open
when the app's lifespan ends (an SSE stream ends without `complete`, which its clients
retry), and waits (bounded) until every subscription has stopped, so that none outlives the
event hub and the database client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    StringValueNode,
    VariableNode,
)
from starlette.websockets import WebSocketDisconnect

from resolvers.error_codes import ErrorCode
from schema.documents import parsed_document
from sessiongraph.auth import Caller
from sessiongraph.metrics import Metrics, error_code

log = logging.getLogger("sessiongraph.subscriptions")

SHUTDOWN_CODE = 1012
"""Service Restart: graphql-transport-ws clients reconnect after it."""
SHUTDOWN_MESSAGE = "Server restarting; reconnect and resume with afterSeq."
SSE = "sse"
"""The protocol name of an SSE stream (websockets carry their subprotocol's)."""
CANCEL_GRACE_SECONDS = 2.0
"""How long `drain` waits for subscriptions it had to cancel."""
NOT_ERRORS = frozenset({"complete", "client_stop", "disconnect", "shutdown", "overflow"})
SESSION_ARGUMENTS = ("sessionId", "id")
MAX_LOGGED = 100
"""Client-chosen strings (ids, names) are cut to this many characters in the log."""


@dataclass(frozen=True, slots=True)
class Shape:
    """What the tracker needs of a document: the chosen operation's type and name, its
    root field, and where the session id argument comes from."""

    kind: str | None = None
    name: str | None = None
    field: str | None = None
    session_variable: str | None = None
    session_literal: str | None = None


@lru_cache(maxsize=256)
def shape_of(query: str, operation_name: str | None) -> Shape:
    """The shape of the operation `operation_name` of `query` (empty when it cannot be told)."""
    try:
        document = parsed_document(query)
    except GraphQLError:
        return Shape()
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return Shape()
    operation = operations[0]
    name = operation.name.value if operation.name else None
    roots = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    roots = [r for r in roots if r.name.value != "__typename"]
    if not roots:
        return Shape(operation.operation.value, name)
    root = roots[0]
    variable = literal = None
    for argument in root.arguments or ():
        if argument.name.value in SESSION_ARGUMENTS:
            if isinstance(argument.value, VariableNode):
                variable = argument.value.name.value
            elif isinstance(argument.value, StringValueNode):
                literal = argument.value.value
            break
    return Shape(operation.operation.value, name, root.name.value, variable, literal)


def _cut(value: object) -> str | None:
    """A client-chosen value as logged: a string, cut short, printable (no forged lines)."""
    if value is None:
        return None
    text = (value if isinstance(value, str) else str(value))[:MAX_LOGGED]
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


Closer = Callable[[int, str], Awaitable[None]]
"""Ends a connection with a websocket close code and reason (an SSE stream just ends)."""


@dataclass(eq=False)
class Connection:
    """One websocket connection, or one SSE stream."""

    id: str
    protocol: str | None = None
    caller: Caller | None = None
    """Who it is authenticated as, once it is."""
    close: Closer | None = None
    disconnect_code: int | None = None
    """The code of the `websocket.disconnect` the server received, if it did."""
    ending: str | None = None
    """Why its subscriptions stop, once the connection is going: disconnect or shutdown."""


@dataclass(eq=False)
class Subscription:
    """One running subscription of a connection."""

    connection: Connection
    id: str
    org_id: str
    shape: Shape
    operation: str | None
    session_id: str | None
    task: asyncio.Task[Any] | None
    started: float = field(default_factory=time.monotonic)
    delivered: int = 0
    error_code: str | None = None
    reason: str | None = None
    """Set when the server ends it for a reason of its own (overflow)."""

    def fields(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection.id,
            "subscription_id": _cut(self.id),
            "protocol": self.connection.protocol,
            "operation": _cut(self.operation),
            "field": self.shape.field,
            "session_id": _cut(self.session_id),
            "org_id": self.org_id,
        }


class SubscriptionTracker:
    """The app's open live connections and running subscriptions."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.connections: set[Connection] = set()
        self.subscriptions: set[Subscription] = set()
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    # Connections

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        if self.metrics is not None and connection.protocol != SSE:
            self.metrics.websocket_connections.inc()

    def closed(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            if self.metrics is not None and connection.protocol != SSE:
                self.metrics.websocket_connections.dec()

    def closing(self, connection: Connection) -> None:
        """The connection is going: its subscriptions stop for this reason from now on."""
        if connection.ending is None:
            shutdown = self.draining or connection.disconnect_code == SHUTDOWN_CODE
            connection.ending = "shutdown" if shutdown else "disconnect"

    # Subscriptions

    def start(
        self,
        connection: Connection,
        id: str,
        org_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> Subscription | None:
        """Track the operation `id` as it starts; None unless it is a subscription (the
        schema's extension accounts for the rest: queries, mutations, documents that do not
        parse or have no such operation)."""
        shape = shape_of(query, operation_name)
        if shape.kind != "subscription":
            return None
        session_id = shape.session_literal
        if shape.session_variable is not None and isinstance(variables, dict):
            session_id = _cut(variables.get(shape.session_variable))
        subscription = Subscription(
            connection=connection,
            id=id,
            org_id=org_id,
            shape=shape,
            operation=operation_name or shape.name,
            session_id=session_id,
            task=asyncio.current_task(),
        )
        self.subscriptions.add(subscription)
        self._idle.clear()
        if self.metrics is not None:
            self.metrics.subscription_started(shape.field)
        fields = subscription.fields()
        log.info(
            "subscription %s started: %s %s",
            fields["subscription_id"],
            fields["operation"] or "(anonymous)",
            fields["session_id"] or "-",
            extra=fields,
        )
        return subscription

    def sent(
        self,
        subscription: Subscription,
        kind: str,
        committed: float | None,
        error_code: str | None,
    ) -> None:
        """A frame of the subscription went out: a result ("next"), or an "error"."""
        if error_code is not None:
            if subscription.error_code is None:
                subscription.error_code = error_code
            return
        if kind == "next":
            subscription.delivered += 1
            if self.metrics is not None:
                self.metrics.event_delivered(subscription.shape.field, committed)

    def end(
        self, subscription: Subscription, *, cancelled: bool, failure: BaseException | None
    ) -> None:
        """The subscription's task is done: log why, and count it."""
        if subscription not in self.subscriptions:
            return
        self.subscriptions.discard(subscription)
        if not self.subscriptions:
            self._idle.set()
        connection = subscription.connection
        if subscription.reason is not None:
            reason = subscription.reason
        elif cancelled or isinstance(failure, asyncio.CancelledError):
            reason = connection.ending or "client_stop"
        elif failure is not None:
            # A send that found the socket closed; anything else the transport has logged.
            reason = connection.ending or (
                "disconnect" if is_disconnect(failure) else ErrorCode.INTERNAL_SERVER_ERROR
            )
        else:
            reason = subscription.error_code or "complete"
        seconds = time.monotonic() - subscription.started
        if self.metrics is not None:
            self.metrics.subscription_ended(subscription.shape.field, _reason_label(reason))
            outcome = "ok" if reason in NOT_ERRORS else reason
            self.metrics.observe_operation(subscription.operation, "subscription", outcome, None)
        fields = subscription.fields()
        log.info(
            "subscription %s stopped (%s) after %.1f s and %d results",
            fields["subscription_id"],
            reason,
            seconds,
            subscription.delivered,
            extra={
                **fields,
                "reason": reason,
                "duration_ms": round(seconds * 1000, 1),
                "events_delivered": subscription.delivered,
            },
        )

    # Shutdown

    async def drain(self, grace_seconds: float) -> None:
        """Close every connection still open with 1012 and wait until every subscription
        has stopped: at most `grace_seconds`, then cancel those left and wait for them."""
        self.draining = True
        for connection in self.connections:
            connection.ending = "shutdown"
        # Each close in a task of its own: a client that reads nothing can hold one up.
        closes = [asyncio.create_task(self._close(c)) for c in list(self.connections)]
        try:
            async with asyncio.timeout(grace_seconds):
                await asyncio.gather(*closes)
                await self._idle.wait()
        except TimeoutError:
            for subscription in list(self.subscriptions):
                if subscription.task is not None:
                    subscription.task.cancel()
            if not await self._stopped_within(CANCEL_GRACE_SECONDS):
                log.warning("%d subscriptions did not stop at shutdown", len(self.subscriptions))
        finally:
            for close in closes:
                close.cancel()
            await asyncio.gather(*closes, return_exceptions=True)

    @staticmethod
    async def _close(connection: Connection) -> None:
        if connection.close is not None:
            with contextlib.suppress(Exception):
                await connection.close(SHUTDOWN_CODE, SHUTDOWN_MESSAGE)

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


def is_disconnect(error: BaseException) -> bool:
    """Whether `error` is a send or receive that found the connection closed."""
    return isinstance(error, WebSocketDisconnect | OSError) or (
        isinstance(error, RuntimeError) and "close" in str(error).lower()
    )


def _reason_label(reason: str) -> str:
    return reason if reason in NOT_ERRORS else error_code(reason)
