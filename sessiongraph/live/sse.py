"""GraphQL over SSE (the graphql-sse protocol's distinct connections mode) on the engine.

One HTTP response carries one operation: `event: next` with the result as `data`, one per
result, and `event: complete` when its stream ends. A `messageAdded` result carries its
message's seq as the event `id`, so a reconnecting EventSource sends it back as
`Last-Event-ID` and resumes after it. While idle, a comment line (`:`) every keep-alive
interval keeps proxies from timing the response out and finds clients that went away. The
response starts only once the operation has passed validation and every limit; a refusal
before that is answered as the JSON path would (see sessiongraph/live/sse_http.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

import orjson
from starlette.responses import StreamingResponse
from strawberry.types.graphql import OperationType

from sessiongraph.live.engine import Ending, LiveEngine, OperationRequest
from sessiongraph.live.sharing import Delivery
from sessiongraph.live.tracking import SSE, Connection
from sessiongraph.services import Services

log = logging.getLogger("sessiongraph.subscriptions")

MEDIA_TYPE = "text/event-stream"
KEEP_ALIVE = ":\n\n"
COMPLETE = "event: complete\ndata:\n\n"
QUEUED_FRAMES = 16
"""Frames a stream holds for a slow client before the engine waits for it to read."""


def next_frame(delivery: Delivery) -> str:
    """The `next` event of a delivery, with its message's seq as the event id."""
    event_id = f"id: {delivery.seq}\n" if delivery.seq is not None else ""
    return f"event: next\n{event_id}data: {delivery.payload}\n\n"


class EventStream:
    """One operation over SSE: runs it on the engine and hands its frames to the response."""

    def __init__(
        self,
        engine: LiveEngine,
        services: Services,
        connection: Connection,
        request: OperationRequest,
        *,
        allowed: Iterable[OperationType] | None,
        resume_after_seq: int | None,
    ) -> None:
        self.engine = engine
        self.connection = connection
        self.frames: asyncio.Queue[str] = asyncio.Queue(QUEUED_FRAMES)
        self.began = asyncio.Event()
        self.refusal: Delivery | None = None
        """The error that refused the operation before it started, if one did."""
        self.task = asyncio.create_task(
            self._run(services, request, allowed, resume_after_seq), name=f"sse-{connection.id}"
        )
        self.expiry = engine.watch_credential(connection, services.verifier)

    async def _run(
        self,
        services: Services,
        request: OperationRequest,
        allowed: Iterable[OperationType] | None,
        resume_after_seq: int | None,
    ) -> Ending:
        ending = await self.engine.run(
            services,
            self.connection,
            self.connection.id,
            request,
            self._send,
            allowed=allowed,
            resume_after_seq=resume_after_seq,
            began=self.began.set,
        )
        if ending == "complete":
            await self.frames.put(COMPLETE)
        return ending

    async def _send(self, delivery: Delivery) -> None:
        if delivery.kind == "error":
            self.refusal = delivery
            return
        await self.frames.put(next_frame(delivery))

    async def started(self) -> bool:
        """Wait until the operation starts executing (True) or ends first, refused or
        failed (False: `refusal` says why, when it was refused)."""
        began = asyncio.ensure_future(self.began.wait())
        try:
            await asyncio.wait({began, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            began.cancel()
        if self.began.is_set():
            return True
        await self.stop()
        return False

    async def stop(self) -> None:
        """Stop the operation (the client went away, or the server ends the stream)."""
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task

    def release(self) -> None:
        """The stream is over: stop watching its caller's expiry, stop tracking it."""
        if self.expiry is not None and self.expiry is not asyncio.current_task():
            self.expiry.cancel()
        self.engine.tracker.closed(self.connection)

    async def body(self, keep_alive_seconds: float) -> AsyncIterator[str]:
        """The response body: frames as they come, comments while idle, until the
        operation ends; stops the operation if the client goes away first."""
        get: asyncio.Future[str] | None = None
        try:
            while True:
                get = asyncio.ensure_future(self.frames.get())
                done, _ = await asyncio.wait(
                    {get, self.task},
                    timeout=keep_alive_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if get in done:
                    yield get.result()
                    continue
                get.cancel()
                if self.task in done:
                    while not self.frames.empty():
                        yield self.frames.get_nowait()
                    return
                yield KEEP_ALIVE
        finally:
            if get is not None:
                get.cancel()
            self.engine.tracker.closing(self.connection)
            await self.stop()
            self.release()


async def open_stream(
    engine: LiveEngine,
    services: Services,
    connection: Connection,
    request: OperationRequest,
    headers: dict[str, str],
    *,
    allowed: Iterable[OperationType] | None = None,
    resume_after_seq: int | None = None,
) -> StreamingResponse | Delivery | None:
    """The SSE response of an operation of an authenticated caller, once it has started;
    else the error delivery that refused it (None if it failed otherwise)."""
    connection.protocol = SSE
    stream = EventStream(
        engine, services, connection, request, allowed=allowed, resume_after_seq=resume_after_seq
    )

    async def close(code: int, reason: str) -> None:
        engine.tracker.closing(connection)
        await stream.stop()

    connection.close = close
    engine.tracker.opened(connection)
    try:
        started = await stream.started()
    except BaseException:
        await stream.stop()
        stream.release()
        raise
    if not started:
        stream.release()
        if not stream.task.cancelled() and stream.task.exception() is not None:
            log.error("SSE operation %s failed", connection.id, exc_info=stream.task.exception())
        return stream.refusal
    return StreamingResponse(
        stream.body(engine.keep_alive_seconds),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
    )


def error_list(delivery: Delivery) -> list[dict[str, object]]:
    """The errors of a refusal, as a response body lists them."""
    errors: list[dict[str, object]] = orjson.loads(delivery.payload)
    return errors
