"""One log line per HTTP request: method, path, status, duration and the request id.

Every response carries `X-Request-ID`: the one /graphql chose (the client's, when well
formed), or else the client's or a new one added here."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from sessiongraph.metrics import Metrics

log = logging.getLogger("sessiongraph.access")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""What a client's X-Request-ID must look like to be used (and logged) as given."""


class AccessLog:
    """ASGI middleware logging each HTTP request once it has been answered, and counting
    and timing it in `metrics` when given."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = "-"

        async def sending(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                for name, value in headers:
                    if name.lower() == b"x-request-id":
                        request_id = value.decode("latin-1")
                if request_id == "-":
                    request_id = _incoming_request_id(scope) or uuid.uuid4().hex
                    headers.append((b"x-request-id", request_id.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.http_answered(scope, status, seconds)
            if log.isEnabledFor(logging.INFO):
                duration_ms = round(seconds * 1000, 2)
                client = scope.get("client")
                log.info(
                    "%s %s %s %.2f ms request %s",
                    scope["method"],
                    scope["path"],
                    status,
                    duration_ms,
                    request_id,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": duration_ms,
                        "request_id": request_id,
                        "client": client[0] if client else None,
                    },
                )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            return given if REQUEST_ID.match(given) else None
    return None
