"""What both websocket protocols share: one connection's state, its read loop and its
operations' tasks, reading and checking frames, authentication, and the coded errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from starlette.websockets import WebSocket

from resolvers.error_codes import ErrorCode, coded_error
from resolvers.errors import UNAVAILABLE_MESSAGE
from sessiongraph.auth import Caller, bearer_key
from sessiongraph.documents import DocumentProblem, RequestDocument
from sessiongraph.live.engine import LiveEngine, OperationRequest
from sessiongraph.live.sharing import Delivery
from sessiongraph.live.tracking import Connection, is_disconnect
from sessiongraph.services import Services
from storage import is_database_unavailable

log = logging.getLogger("sessiongraph.subscriptions")

NOT_TEXT = "WebSocket message type must be text"
NOT_JSON = "WebSocket message must be valid JSON"


class Closed(Exception):
    """The peer closed the websocket (or the server did, and the peer answered)."""


class Malformed(Exception):
    """A frame that breaks the protocol: the connection closes with 4400 and this reason."""


async def receive_json(websocket: WebSocket[Any], connection: Connection) -> Any:
    """The next frame, decoded; Closed once the connection is gone, Malformed for a
    binary frame or one that is not JSON."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        connection.disconnect_code = message.get("code")
        raise Closed
    text = message.get("text")
    if text is None:
        raise Malformed(NOT_TEXT)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Malformed(NOT_JSON) from None


def authorization_of(params: Any) -> str | None:
    """The Authorization value in a connection_init payload, at the top level or under
    `headers`, the name matched case-insensitively."""
    if not params or not isinstance(params, dict):
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
        if not isinstance(payload, dict) or not (
            isinstance(payload.get("query"), str) or _names_persisted_document(payload)
        ):
            return (
                f"A `{start}` message needs a `payload` with a string `query` (or a "
                "`documentId`, or a `persistedQuery` extension)."
            )
        if not isinstance(payload.get("variables"), dict | None):
            return "`payload.variables` must be an object."
        if not isinstance(payload.get("operationName"), str | None):
            return "`payload.operationName` must be a string."
    return None


def _names_persisted_document(payload: dict[str, Any]) -> bool:
    """Whether a subscribe payload without a `query` names a persisted document instead."""
    extensions = payload.get("extensions")
    persisted = isinstance(extensions, dict) and isinstance(extensions.get("persistedQuery"), dict)
    return isinstance(payload.get("documentId"), str) or persisted


def subscription_limit_error(limit: int | None) -> dict[str, Any]:
    """The error answering a subscription over the per-connection limit."""
    return coded_error(
        f"Subscription limit reached: at most {limit} per connection.",
        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
    )


class WebSocketSession:
    """One websocket connection: its read loop, its authentication and the tasks of its
    operations. Each protocol subclasses it with its messages and its frames."""

    def __init__(
        self,
        engine: LiveEngine,
        services: Services,
        websocket: WebSocket[Any],
        connection: Connection,
        header_caller: Caller | None,
    ) -> None:
        self.engine = engine
        self.services = services
        self.websocket = websocket
        self.connection = connection
        self.header_caller = header_caller
        """The caller the upgrade request's Authorization header authenticated, if any."""
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.init_received = False
        self.acknowledged = False
        self.closed = False
        self._timers: list[asyncio.Task[None]] = []

    async def serve(self) -> None:
        """Read and handle messages until the connection closes, then stop everything."""
        try:
            self.started()
            while not self.closed:
                try:
                    message = await receive_json(self.websocket, self.connection)
                except Malformed as problem:
                    await self.close(4400, str(problem))
                    break
                await self.handle(message)
        except Closed:
            pass
        except Exception as error:
            # A write of the read loop's own (an ack, a pong, a refusal) found the connection
            # closed by its peer: the client left, which is no server error.
            if not is_disconnect(error):
                raise
        finally:
            await self.shutdown()

    def started(self) -> None:
        """The connection was accepted (a protocol starts its timers here)."""

    async def handle(self, message: Any) -> None:
        """Act on one decoded client message."""
        raise NotImplementedError

    async def close(self, code: int, reason: str) -> None:
        """Close the websocket (once; a peer already gone is no error)."""
        self.closed = True
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)

    async def authenticate(self, payload: Any) -> Caller | None:
        """The caller of a connection_init: the payload's key, else the upgrade request's."""
        authorization = authorization_of(payload)
        if authorization is not None:
            return await self.services.verifier.caller_of(bearer_key(authorization))
        return self.header_caller

    def accepted(self, caller: Caller) -> None:
        """The connection is authenticated as `caller`."""
        self.connection.caller = caller
        self.acknowledged = True
        expiry = self.engine.watch_credential(self.connection, self.services.verifier)
        if expiry is not None:
            self._timers.append(expiry)

    def timer(self, task: asyncio.Task[None]) -> None:
        """A task of the connection's own (keep-alives), cancelled when it ends."""
        self._timers.append(task)

    def start(self, id: str, payload: dict[str, Any]) -> None:
        """Run the operation `id` in a task of its own."""
        task = asyncio.create_task(self._operate(id, payload))
        self.operations[id] = task
        task.add_done_callback(_retrieved)

    async def _document(self, id: str, payload: dict[str, Any]) -> RequestDocument | None:
        """The document a subscribe payload names (its `query`, a `documentId` or an APQ
        hash); None once a refusal has been sent for the operation `id`."""
        assert self.connection.caller is not None
        try:
            return await self.services.documents.resolve_request(
                self.connection.caller.org_id, payload
            )
        except DocumentProblem as problem:
            code, message = problem.code, str(problem)
        except Exception as error:
            if not is_database_unavailable(error):
                raise
            code, message = ErrorCode.SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE
        refusal = [coded_error(message, code)]
        self.forget(id)
        await self.send(id, Delivery("error", orjson.dumps(refusal).decode(), error_code=code))
        return None

    async def _operate(self, id: str, payload: dict[str, Any]) -> None:
        try:
            document = await self._document(id, payload)
            if document is None:
                return
            request = OperationRequest(
                document.text, payload.get("variables"), payload.get("operationName")
            )
            ending = await self.engine.run(
                self.services, self.connection, id, request, lambda d: self.send(id, d)
            )
            if document.register_as is not None and ending != "error":
                assert self.connection.caller is not None
                await self.services.documents.remember(self.connection.caller.org_id, document)
            if ending == "complete":
                self.forget(id)
                await self.complete(id)
            elif ending == "overflow":
                self.forget(id)
                await self.close(1013, "Subscriber too slow; reconnect and resume with afterSeq.")
        except asyncio.CancelledError:
            await self.cancelled(id)
            raise
        except Exception as error:
            # The socket closed (the client left, or the server closed it) before a frame
            # went out: the tracker logs the stop as a disconnect.
            if not is_disconnect(error):
                log.exception("operation %s of connection %s failed", id, self.connection.id)
        finally:
            if self.operations.get(id) is asyncio.current_task():
                del self.operations[id]

    def forget(self, id: str) -> None:
        """De-register the operation `id` (before its last frame: the id may be reused)."""
        if self.operations.get(id) is asyncio.current_task():
            del self.operations[id]

    async def send(self, id: str, delivery: Delivery) -> None:
        """Frame and write one result (or refusal) of the operation `id`."""
        raise NotImplementedError

    async def complete(self, id: str) -> None:
        """Tell the client the operation `id` has ended."""
        raise NotImplementedError

    async def cancelled(self, id: str) -> None:
        """The operation `id` was stopped (by its client, or as the connection ended)."""

    async def stop(self, id: str) -> None:
        """Stop the operation `id`, if it runs."""
        task = self.operations.pop(id, None)
        if task is not None:
            task.cancel()

    async def shutdown(self) -> None:
        self.closed = True
        self.engine.tracker.closing(self.connection)
        tasks = [*self._timers, *self.operations.values()]
        self.operations.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _retrieved(task: asyncio.Task[None]) -> None:
    """Retrieve a finished operation task's exception (it has been logged or is expected)."""
    if not task.cancelled():
        task.exception()
