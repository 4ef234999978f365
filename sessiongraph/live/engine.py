"""The subscription engine: runs operations for every live transport, whatever its wire format.

A transport (graphql-transport-ws, the legacy graphql-ws, SSE) authenticates its caller,
reads its protocol's messages and hands each operation to `LiveEngine.run` with a `send`
that frames one `Delivery` for its wire. The engine does the rest, once for all of them:
it executes through the schema's public `stream` (so parsing, validation and every limit
the HTTP path applies run, cached, through the same extensions), lets identical live
subscriptions share one execution and one encoded payload per event, resumes message
streams after a seq, tracks and logs every subscription, ends the connections of callers
whose credential ends, and drains everything at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
import strawberry
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from resolvers.error_codes import ErrorCode, coded_error
from sessiongraph.auth import Caller, KeyVerifier
from sessiongraph.live.sharing import Delivery, SharedStreams, delivery_of, group_key
from sessiongraph.live.tracking import (
    SHUTDOWN_CODE,
    SHUTDOWN_MESSAGE,
    SSE,
    Connection,
    Subscription,
    SubscriptionTracker,
)
from sessiongraph.metrics import Metrics
from sessiongraph.services import Services
from storage.clock import utc_now

CALLER_ENDED_CODE = 4403
"""The websocket close code of a connection whose caller's credential ended (Forbidden)."""
CREDENTIAL_EXPIRED = "The credential expired; reconnect with a fresh one."
KEY_REVOKED = "The API key behind this credential was revoked."

Send = Callable[[Delivery], Awaitable[None]]
"""Frames one delivery for a transport's wire and writes it."""

Ending = Literal["complete", "error", "overflow"]
"""How an operation ended: its stream completed (send `complete`), it was refused with an
`error` delivery (nothing follows it), or it was a shared subscriber that fell too far
behind (end the connection, or the stream, so the client resumes from storage)."""

INCREMENTAL_UNSUPPORTED = [
    coded_error("Incremental delivery (@defer, @stream) is not supported.", ErrorCode.BAD_REQUEST)
]


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """One operation as a client sent it."""

    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None


class LiveEngine:
    """Runs the operations of every live connection of the app."""

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        subscriber_buffer: int,
        max_subscriptions: int,
        keep_alive_seconds: float,
        init_timeout_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.schema = schema
        self.max_subscriptions = max_subscriptions
        self.keep_alive_seconds = keep_alive_seconds
        self.init_timeout_seconds = init_timeout_seconds
        self.shared = SharedStreams(member_limit=subscriber_buffer)
        self.tracker = SubscriptionTracker(metrics)
        self._endings: set[asyncio.Task[int]] = set()

    async def run(
        self,
        services: Services,
        connection: Connection,
        id: str,
        request: OperationRequest,
        send: Send,
        *,
        allowed: Iterable[OperationType] | None = None,
        resume_after_seq: int | None = None,
        began: Callable[[], None] | None = None,
    ) -> Ending:
        """Run one operation of an authenticated connection, sending each result with
        `send`, until it ends; tracked (counted and logged) when it is a subscription.
        `began` is called once it has passed validation and starts executing."""
        caller = connection.caller
        if caller is None:
            raise RuntimeError("LiveEngine.run needs an authenticated connection")
        subscription = self.tracker.start(
            connection,
            id,
            caller.org_id,
            request.query,
            request.operation_name,
            request.variables,
        )
        failure: BaseException | None = None
        try:
            key = None
            # A shared run reads as the whole organization: a token limited to particular
            # sessions runs its subscriptions on its own scoped context instead.
            if resume_after_seq is None and caller.session_ids is None:
                key = group_key(
                    caller.org_id, request.query, request.operation_name, request.variables
                )
            if key is None:
                context = services.context(caller, connection.id)
                context.resume_after_seq = resume_after_seq
                context.execution_started = began
                results = await self.schema.stream(
                    request.query,
                    variable_values=request.variables,
                    context_value=context,
                    operation_name=request.operation_name,
                    allowed_operation_types=allowed,
                )
                return await self._alone(results, send, subscription)
            return await self._shared(services, caller, key, request, send, subscription, began)
        except BaseException as error:
            failure = error
            raise
        finally:
            if subscription is not None:
                self.tracker.end(subscription, cancelled=_cancelling(), failure=failure)

    async def _alone(
        self, results: AsyncIterator[Any], send: Send, subscription: Subscription | None
    ) -> Ending:
        """Deliver an operation that runs for this subscriber only."""
        close = getattr(results, "aclose", None)
        try:
            async for result in results:
                if isinstance(result, ExecutionResult):
                    delivery = delivery_of(result)
                else:
                    payload = orjson.dumps(INCREMENTAL_UNSUPPORTED).decode()
                    delivery = Delivery("error", payload, error_code=ErrorCode.BAD_REQUEST)
                await self._send(send, delivery, subscription)
                if delivery.kind == "error":
                    return "error"
            return "complete"
        finally:
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    async def _shared(
        self,
        services: Services,
        caller: Caller,
        key: Any,
        request: OperationRequest,
        send: Send,
        subscription: Subscription | None,
        began: Callable[[], None] | None,
    ) -> Ending:
        """Deliver a live subscription that identical ones share: one execution, one
        encoded payload per event, which this member only frames."""

        async def start(started: Callable[[], None]) -> AsyncIterator[ExecutionResult]:
            context = services.context(caller)
            context.execution_started = started
            results = await self.schema.stream(
                request.query,
                variable_values=request.variables,
                context_value=context,
                operation_name=request.operation_name,
            )
            # A subscription's stream yields execution results only (no incremental ones).
            return cast("AsyncIterator[ExecutionResult]", results)

        async def write(delivery: Delivery) -> None:
            await self._send(send, delivery, subscription)

        # The group writes live events to this member itself while it keeps up; this task
        # sends only what queued up behind a write that had to wait, in order.
        async with self.shared.join(key, start, began, write) as member:
            while True:
                delivery = await member.queue.get()
                member.busy = True
                try:
                    await member.settled()
                    if delivery.kind == "complete":
                        break
                    await self._send(send, delivery, subscription)
                finally:
                    member.busy = False
                if delivery.kind == "error":
                    return "error"
        return "overflow" if member.overflowed else "complete"

    async def _send(
        self, send: Send, delivery: Delivery, subscription: Subscription | None
    ) -> None:
        await send(delivery)
        if subscription is not None:
            self.tracker.sent(subscription, delivery.kind, delivery.committed, delivery.error_code)
            metrics = self.tracker.metrics
            committed = delivery.committed
            # Once per event: by its last writer when a group shares it.
            if (
                metrics is not None
                and committed is not None
                and delivery.error_code is None
                and (delivery.tally is None or delivery.tally.written())
            ):
                metrics.event_written(subscription.shape.field, committed)

    # Connections

    def watch_credential(
        self, connection: Connection, verifier: KeyVerifier
    ) -> asyncio.Task[None] | None:
        """A task that, while the connection is open, has the verifier re-check its
        caller's key for revocation (see `end_revoked`) and ends the connection when the
        caller's credential expires; cancel it when the connection ends first."""
        caller = connection.caller
        if caller is None:
            return None
        expires_at = caller.expires_at

        async def watch() -> None:
            with verifier.holding(caller):
                if expires_at is None:
                    await asyncio.Event().wait()  # until cancelled
                    return
                await asyncio.sleep(max(0.0, (expires_at - utc_now()).total_seconds()))
                if connection.close is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(CALLER_ENDED_CODE, CREDENTIAL_EXPIRED)

        return asyncio.create_task(watch(), name=f"credential-{connection.id}")

    def end_revoked(self, key_ids: frozenset[str]) -> None:
        """The verifier found these API keys revoked: end every connection and stream
        authenticated by one of them or by a token minted from one."""
        task = asyncio.create_task(
            self.end_where(lambda caller: caller.key_id in key_ids, KEY_REVOKED)
        )
        self._endings.add(task)
        task.add_done_callback(self._endings.discard)

    async def end_where(self, predicate: Callable[[Caller], bool], reason: str) -> int:
        """End every open connection and stream whose caller meets `predicate` (websockets
        close with 4403 and `reason`; SSE streams end); how many there were."""
        ending = [
            c
            for c in list(self.tracker.connections)
            if c.caller is not None and c.close is not None and predicate(c.caller)
        ]
        closes = [c.close(CALLER_ENDED_CODE, reason) for c in ending if c.close is not None]
        await asyncio.gather(*closes, return_exceptions=True)
        return len(ending)

    async def shutting_down(self) -> None:
        """Shutdown begins: refuse new SSE streams and end those open. (uvicorn closes
        websockets itself, with 1012, but waits for HTTP responses to finish, which an
        SSE stream never does by itself.)"""
        self.tracker.draining = True
        streams = [c for c in list(self.tracker.connections) if c.protocol == SSE]
        for connection in streams:
            connection.ending = "shutdown"
        closes = [c.close(SHUTDOWN_CODE, SHUTDOWN_MESSAGE) for c in streams if c.close is not None]
        await asyncio.gather(*closes, return_exceptions=True)

    async def drain(self, grace_seconds: float) -> None:
        """At shutdown: end every connection and wait (bounded) for every subscription."""
        await self.tracker.drain(grace_seconds)


def _cancelling() -> bool:
    """Whether the current task has been asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
