"""GraphQL over SSE requests to /graphql: what `sessiongraph.graphql_http` hands over when a
client sends `Accept: text/event-stream`. Any operation with POST, subscriptions with GET,
after the same parsing, authentication, document resolution and time bound as the JSON path;
a request refused before its operation starts gets the status and JSON body of that path."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from strawberry.types.graphql import OperationType

from resolvers.error_codes import ErrorCode, error_body
from sessiongraph.documents_http import request_document
from sessiongraph.http_request import (
    JSON,
    RETRY_AFTER,
    HttpProblem,
    caller_of,
    post_fields,
    query_fields,
    rate_limited_retry,
    respond,
    timed_out,
)
from sessiongraph.live import sse
from sessiongraph.live.engine import LiveEngine, OperationRequest
from sessiongraph.live.origins import OriginPolicy
from sessiongraph.live.tracking import Connection, shape_of
from sessiongraph.services import State

SSE_GET_OPERATIONS = frozenset({OperationType.SUBSCRIPTION})


class SSERequests:
    """Serves the SSE requests of /graphql on the live engine."""

    def __init__(
        self,
        live: LiveEngine,
        origins: OriginPolicy,
        *,
        max_body_bytes: int,
        timeout_seconds: float,
    ) -> None:
        self.live = live
        self.origins = origins
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds

    async def respond(self, request: Request[State], request_id: str) -> Response:
        """GraphQL over SSE: any operation with POST, subscriptions with GET. A request
        refused before its operation starts gets the status and JSON body of the JSON path
        (here: HttpProblem, or 400 with the operation's errors)."""
        live = self.live
        if not self.origins.allows(request):
            raise HttpProblem(403, ErrorCode.FORBIDDEN, self.origins.refusal(request))
        if live.tracker.draining:
            raise HttpProblem(
                503,
                ErrorCode.SERVICE_UNAVAILABLE,
                "The server is shutting down; retry shortly.",
                RETRY_AFTER,
            )
        if request.method == "POST":
            fields = await post_fields(request, self.max_body_bytes)
        else:
            fields = query_fields(request)
        resume_after_seq = _last_event_id(request)
        services = request.state["services"]
        headers = {"X-Request-ID": request_id}
        try:
            async with asyncio.timeout(self.timeout_seconds):
                caller = await caller_of(request, query_token=True)
                document = await request_document(request, caller.org_id, fields[0])
                allowed = _sse_operations(request, document.text, fields[2])
                outcome = await sse.open_stream(
                    live,
                    services,
                    Connection(request_id, caller=caller),
                    OperationRequest(document.text, *fields[1:]),
                    headers,
                    allowed=allowed,
                    resume_after_seq=resume_after_seq,
                )
                if document.register_as is not None and isinstance(outcome, StreamingResponse):
                    await services.documents.remember(caller.org_id, document)
        except TimeoutError:
            raise timed_out(request_id, self.timeout_seconds) from None
        if isinstance(outcome, StreamingResponse):
            return outcome
        if outcome is None:
            raise HttpProblem(
                500,
                ErrorCode.INTERNAL_SERVER_ERROR,
                f"The operation failed unexpectedly (request id {request_id}); it is logged.",
            )
        errors = sse.error_list(outcome)
        retry_after = rate_limited_retry(errors)
        if retry_after is not None:
            retry = {"Retry-After": str(retry_after)}
            return respond(error_body(*errors), 429, JSON, request_id, retry)
        return respond(error_body(*errors), 400, JSON, request_id)


def _sse_operations(
    request: Request[State], query: str, operation_name: str | None
) -> frozenset[OperationType] | None:
    """What an SSE request may run: anything with POST, only subscriptions with GET
    (HttpProblem 405 for a mutation, 400 for a query)."""
    if request.method == "POST":
        return None
    kind = shape_of(query, operation_name).kind
    if kind == "mutation":
        raise HttpProblem(
            405, ErrorCode.METHOD_NOT_ALLOWED, "Mutations are only accepted with POST.",
            {"Allow": "POST"},
        )  # fmt: skip
    if kind == "query":
        raise HttpProblem(
            400,
            ErrorCode.BAD_REQUEST,
            "GET with Accept: text/event-stream runs subscriptions; send queries with POST.",
        )
    return SSE_GET_OPERATIONS


def _last_event_id(request: Request[State]) -> int | None:
    """The seq an SSE client resumes after (`Last-Event-ID`), or HttpProblem 400."""
    value = request.headers.get("last-event-id")
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit():
        raise HttpProblem(
            400,
            ErrorCode.BAD_REQUEST,
            f"Last-Event-ID {value[:40]!r}: must be the id of an event this server sent "
            "(a message seq, 0 or more).",
        )
    return int(value.strip())
