"""Shared subscriptions: one execution and one serialized payload for many subscribers.

Strawberry executes a subscription's selection set once per subscriber per event, and each
result is encoded separately. Dashboards watching one session all send the same document
with the same variables, so subscribers of the same organization with the same document and
variables join one group: the group runs the subscription once and hands every member the
same encoded payload, which members only wrap in their own frame.

The group writes each live event to every idle member's transport itself, in one pass:
a member whose socket keeps up is never woken for it. A member still busy with an earlier
frame (its socket is slow, or its own task is sending) gets the event on its queue instead,
which its own task drains in order; the queue's bound keeps a slow member from holding more.

Only live-from-now subscriptions are shared (`sessionUpdated`, and `messageAdded` without
`afterSeq`): a replaying subscriber needs its own history, so it runs on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, cast

import orjson
from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError

from resolvers.error_codes import ErrorCode, first_error_code
from resolvers.subscriptions import committed_at, yielded_seq
from schema.documents import parsed_document
from schema.subscriptions import MESSAGE_ADDED, SESSION_UPDATED

SHAREABLE_FIELDS = {MESSAGE_ADDED: "afterSeq", SESSION_UPDATED: None}
"""Root subscription fields that may be shared, each with the argument that prevents it."""

GroupKey = tuple[str, str, str | None, bytes]
Starter = Callable[[Callable[[], None]], Awaitable[AsyncIterator[ExecutionResult]]]
"""Starts a group's execution; it calls its argument once the operation passed validation."""
Writer = Callable[["Delivery"], Coroutine[Any, Any, None]]
"""Frames one delivery for a member's transport, writes it and reports it (tracking)."""


class Tally:
    """How many of the members handed one event have yet to write it."""

    __slots__ = ("remaining",)

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining

    def written(self) -> bool:
        """One member wrote it; True for the last one."""
        self.remaining -= 1
        return self.remaining == 0


class Delivery(NamedTuple):
    """One frame for every member: its type and encoded payload, and what the members
    report about it."""

    kind: str
    """"next", "error" or "complete"."""
    payload: str
    committed: float | None = None
    """When the event behind it was committed, in seconds since the epoch (None for
    replayed history); a float, as the fan-out measures it once per subscriber."""
    error_code: str | None = None
    """The first error's code, when it carries errors."""
    seq: int | None = None
    """The seq of the message behind a `messageAdded` result (SSE sends it as the event id)."""
    close_reason: str | None = None
    """For an "error": why graphql-transport-ws closes the connection over it (a document
    that does not parse, or names no operation it has) instead of answering it."""
    tally: Tally | None = None
    """For a live event a group hands its members: who has yet to write it (a subscriber on
    its own is the only one: None)."""


COMPLETE = Delivery("complete", "")
FAILED = Delivery("failed", "")
"""Queued for a member whose transport refused a write the group made for it."""


@lru_cache(maxsize=256)
def _shareable_document(query: str, operation_name: str | None) -> tuple[str, ...] | None:
    """The variable names that decide sharing, or None when the document is not shareable."""
    try:
        document = parsed_document(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation is not OperationType.SUBSCRIPTION:
        return None
    selections = operations[0].selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    root = selections[0]
    if root.name.value not in SHAREABLE_FIELDS or root.directives:
        return None
    blocking = SHAREABLE_FIELDS[root.name.value]
    variables: list[str] = []
    for argument in root.arguments or ():
        if argument.name.value == blocking:
            if not isinstance(argument.value, VariableNode):
                return None
            variables.append(argument.value.name.value)
    return tuple(variables)


def group_key(
    org_id: str, query: str, operation_name: str | None, variables: dict[str, Any] | None
) -> GroupKey | None:
    """The group a subscription may join, or None when it must run on its own."""
    blocking = _shareable_document(query, operation_name)
    if blocking is None or not org_id:
        return None
    values = variables or {}
    if any(values.get(name) is not None for name in blocking):
        return None
    try:
        encoded = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: valid JSON, run it alone
        return None
    return (org_id, query, operation_name, encoded)


def encode(result: ExecutionResult) -> Delivery:
    """The frame type and encoded payload of one result."""
    errors = [error.formatted for error in result.errors or ()]
    if isinstance(result, PreExecutionError):
        # Refused before it ran: a document that does not validate, unless coded otherwise.
        refused = ErrorCode.GRAPHQL_VALIDATION_FAILED
        refusal = first_error_code(result.errors, uncoded=refused) or refused
        first = result.errors[0] if result.errors else None
        reason = None
        if isinstance(first, GraphQLSyntaxError):
            reason = first.message
        elif first is not None and isinstance(first.original_error, CannotGetOperationTypeError):
            reason = first.original_error.as_http_error_reason()
        return Delivery(
            "error", orjson.dumps(errors).decode(), error_code=refusal, close_reason=reason
        )
    code = first_error_code(result.errors)
    payload: dict[str, Any] = {"data": result.data}
    if errors:
        payload["errors"] = errors
    if result.extensions:
        payload["extensions"] = result.extensions
    return Delivery("next", orjson.dumps(payload).decode(), error_code=code)


def delivery_of(result: ExecutionResult) -> Delivery:
    """`encode(result)` with what the stream that produced it said of its item (call it in
    the task iterating the stream): when it was committed, and its message's seq."""
    at = committed_at()
    return encode(result)._replace(committed=at.timestamp() if at else None, seq=yielded_seq())


@dataclass(eq=False)
class Member:
    """One subscriber of a group: how to write to it, and the deliveries it has yet to send."""

    limit: int
    write: Writer | None = None
    queue: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    overflowed: bool = False
    busy: bool = False
    """Its own task is sending a delivery from its queue."""
    writing: asyncio.Task[None] | None = None
    """A write the group started for it that had to wait for the socket."""
    failure: BaseException | None = None
    """What a write the group made for it raised (the peer went away)."""

    def idle(self) -> bool:
        """Whether the group may write to it now: nothing of its own in flight or queued."""
        return (
            self.write is not None
            and not self.busy
            and self.writing is None
            and self.failure is None
            and not self.queue.qsize()
        )

    async def settled(self) -> None:
        """Wait until a write the group started for it has finished; raise what it raised."""
        if self.writing is not None:
            await asyncio.wait((self.writing,))
        if self.failure is not None:
            raise self.failure

    def _failed(self, error: BaseException) -> None:
        self.failure = error
        self.queue.put_nowait(FAILED)

    def _written(self, task: asyncio.Task[None]) -> None:
        self.writing = None
        if not task.cancelled() and task.exception() is not None:
            self._failed(cast("BaseException", task.exception()))

    def write_now(self, delivery: Delivery) -> None:
        """Write `delivery` from the calling task: to its end when the transport takes it
        at once (the usual case), else up to where it waits, leaving the rest to a task."""
        assert self.write is not None
        coroutine = self.write(delivery)
        try:
            waiting = coroutine.send(None)
        except StopIteration:
            return
        except Exception as error:
            self._failed(error)
            return
        self.writing = asyncio.ensure_future(_finish(coroutine, waiting))
        self.writing.add_done_callback(self._written)


async def _finish(coroutine: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Run a coroutine that `write_now` started and that waits on `waiting` (what it
    yielded: the future it awaits, or None for a bare yield) to its end."""
    try:
        while True:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait((waiting,))
            waiting = coroutine.send(None)
    except StopIteration:
        return
    except asyncio.CancelledError:
        if asyncio.isfuture(waiting):
            waiting.cancel()
        coroutine.close()
        raise


class SharedStreams:
    """The groups of this process, by organization, document and variables."""

    def __init__(self, member_limit: int = 10_000) -> None:
        self.member_limit = member_limit
        self._groups: dict[GroupKey, _Group] = {}

    @property
    def group_count(self) -> int:
        return len(self._groups)

    @property
    def member_count(self) -> int:
        return sum(len(group.members) for group in self._groups.values())

    @property
    def queued(self) -> int:
        """Deliveries waiting to be sent, all members together; each holds at most
        `member_limit` and a final `complete`."""
        return sum(m.queue.qsize() for group in self._groups.values() for m in group.members)

    @contextlib.asynccontextmanager
    async def join(
        self,
        key: GroupKey,
        start: Starter,
        began: Callable[[], None] | None = None,
        write: Writer | None = None,
    ) -> AsyncIterator[Member]:
        """Membership of the group for `key`; the first member starts it with `start()`.
        `began` is called once the group's operation has passed validation; `write`, when
        given, lets the group write live events to the member itself while it is idle."""
        group = self._groups.get(key)
        if group is None or group.task.done():
            # A finished group may linger until its last member leaves; never join one.
            group = self._groups[key] = _Group(start)
        member = Member(self.member_limit, write)
        group.members.add(member)
        if began is not None:
            if group.began:
                began()
            else:
                group.waiting.append(began)
        try:
            yield member
        finally:
            group.members.discard(member)
            if member.writing is not None:
                member.writing.cancel()
            if not group.members:
                if self._groups.get(key) is group:
                    del self._groups[key]
                await group.stop()


class _Group:
    """One running subscription and the members it delivers to."""

    def __init__(self, start: Starter) -> None:
        self.members: set[Member] = set()
        self.began = False
        self.waiting: list[Callable[[], None]] = []
        self.task = asyncio.create_task(self._run(start))

    def _begin(self) -> None:
        self.began = True
        waiting, self.waiting = self.waiting, []
        for began in waiting:
            began()

    async def _run(self, start: Starter) -> None:
        results: AsyncIterator[ExecutionResult] | None = None
        try:
            results = await start(self._begin)
            async for result in results:
                self._deliver(delivery_of(result))
        finally:
            self._deliver(COMPLETE)
            close = getattr(results, "aclose", None) if results is not None else None
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    def _deliver(self, delivery: Delivery) -> None:
        live = delivery.committed is not None and delivery.kind == "next"
        if live:
            tally = Tally(0)
            delivery = delivery._replace(tally=tally)
        else:
            tally = None
        idle: list[Member] = []
        for member in self.members:
            if member.overflowed or member.failure is not None:
                continue  # its last delivery is the `complete` (or failure) that drops it
            if live and member.idle():
                idle.append(member)
            elif member.queue.qsize() >= member.limit:
                # Too slow: it is dropped and reconnects, resuming from storage.
                member.overflowed = True
                member.queue.put_nowait(COMPLETE)
                continue
            else:
                member.queue.put_nowait(delivery)
            if tally is not None:
                tally.remaining += 1
        # Counted in full first: the tally's last writer may be one of these.
        for member in idle:
            member.write_now(delivery)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
