"""GraphQL over HTTP, as the GraphQL-over-HTTP specification describes it.

POST with a JSON body runs an operation. The response is `application/graphql-response+json`
when the client accepts it (request errors then get status 400) and `application/json`
otherwise (200 once the request is well formed). Either way, a result that holds nothing but
the database being unavailable gets 503 with Retry-After, a signal load balancers and
clients act on. GET from a browser serves GraphiQL (sessiongraph/graphiql.py); GET with
`?query=` runs a query when SESSIONGRAPH_GRAPHQL_GET is on (never a mutation).
Authentication and execution are bounded by SESSIONGRAPH_REQUEST_TIMEOUT_SECONDS. With
`Accept: text/event-stream` the operation runs over SSE instead (sessiongraph/live/sse_http.py).
What every request goes through first is sessiongraph/http_request.py; which document runs
(a `query`, a `documentId`, an APQ hash) is sessiongraph/documents_http.py's.

Why this is not a Strawberry view subclass: Strawberry's HTTP view decides the refusals and
their status codes inside its `run` (plain messages, no `extensions.code`), streams
subscriptions as multipart rather than GraphQL over SSE, and knows no persisted documents or
time bound; bending it to this endpoint would mean overriding its private methods, and a
version pin to protect them. This endpoint needs exact status codes (400 for request errors
only with `application/graphql-response+json`, 503 with Retry-After when only the database
failed, 405 with Allow, 406, 413, 415) and a code on every refusal, one time bound around
authentication and execution, callers with API keys or access tokens (in the query string
too, for EventSource), persisted documents resolved before anything is parsed, and SSE on the
same path sharing all of that; the schema's guard applies the same limits to HTTP, SSE and
websockets. So it is a small endpoint on Strawberry's public `Schema.execute`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.graphql import OperationType

from resolvers.error_codes import ErrorCode, coded_error, error_body
from sessiongraph.access_log import REQUEST_ID
from sessiongraph.auth import Caller
from sessiongraph.documents_http import request_document
from sessiongraph.graphiql import graphiql_page
from sessiongraph.http_request import (
    JSON,
    RETRY_AFTER,
    Fields,
    HttpProblem,
    caller_of,
    names_document,
    post_fields,
    query_fields,
    rate_limited_retry,
    respond,
    timed_out,
)
from sessiongraph.live import sse
from sessiongraph.live.engine import LiveEngine
from sessiongraph.live.origins import OriginPolicy
from sessiongraph.live.sse_http import SSERequests
from sessiongraph.services import State

GRAPHQL_RESPONSE = "application/graphql-response+json"
POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})
GET_OPERATIONS = frozenset({OperationType.QUERY})


def _offered(accept: str) -> list[str]:
    """The media types of an Accept header that have q > 0, most preferred first."""
    offered = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            offered.append((q, media.lower()))
    offered.sort(key=lambda item: -item[0])
    return [media for _, media in offered]


def _wants_event_stream(accept: str | None) -> bool:
    """Whether the client asks for GraphQL over SSE (`Accept: text/event-stream`)."""
    return bool(accept) and sse.MEDIA_TYPE in _offered(accept or "")


def _negotiate(accept: str | None) -> str:
    """The response media type for an Accept header, or HttpProblem 406."""
    if not accept:
        return JSON
    for media in _offered(accept):
        if media == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media in (JSON, "application/*", "*/*"):
            return JSON
    raise HttpProblem(
        406,
        ErrorCode.NOT_ACCEPTABLE,
        f"Accept {accept!r}: responses are {GRAPHQL_RESPONSE} or {JSON}.",
    )


def _is_request_error(result: ExecutionResult) -> bool:
    """Whether the result is a request error: nothing executed, so no `data` entry."""
    if isinstance(result, PreExecutionError):
        return True
    errors = result.errors or []
    return result.data is None and bool(errors) and all(not e.path for e in errors)


def _is_unavailable(result: ExecutionResult) -> bool:
    """Whether all the result says is that the database is unavailable: every error is
    SERVICE_UNAVAILABLE and no data came back (null, or null for every field asked for)."""
    errors = result.errors or []
    if not errors or any(
        (error.extensions or {}).get("code") != ErrorCode.SERVICE_UNAVAILABLE for error in errors
    ):
        return False
    return result.data is None or all(value is None for value in result.data.values())


class GraphQLHTTP:
    """The `/graphql` HTTP endpoint."""

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        graphiql: bool,
        max_body_bytes: int,
        get_queries: bool = False,
        timeout_seconds: float = 10.0,
        live: LiveEngine | None = None,
        origins: OriginPolicy | None = None,
    ) -> None:
        self.schema = schema
        self.sse = (
            SSERequests(
                live,
                origins or OriginPolicy([]),
                max_body_bytes=max_body_bytes,
                timeout_seconds=timeout_seconds,
            )
            if live is not None
            else None
        )
        self.graphiql_html = graphiql_page() if graphiql else None
        self.max_body_bytes = max_body_bytes
        self.get_queries = get_queries
        self.timeout_seconds = timeout_seconds
        self.allow = "GET, HEAD, POST" if graphiql or get_queries else "POST"

    async def handle(self, request: Request[State]) -> Response:
        """Serve one request to /graphql."""
        incoming = request.headers.get("x-request-id", "")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        media_type = JSON
        try:
            wants_sse = _wants_event_stream(request.headers.get("accept"))
            if self.sse is not None and request.method in ("GET", "POST") and wants_sse:
                return await self.sse.respond(request, request_id)
            if request.method in ("GET", "HEAD") and not names_document(request):
                return self._ide(request, request_id)
            if request.method not in ("GET", "HEAD", "POST"):
                raise HttpProblem(
                    405,
                    ErrorCode.METHOD_NOT_ALLOWED,
                    f"{request.method} is not supported; use POST.",
                    {"Allow": self.allow},
                )
            media_type = _negotiate(request.headers.get("accept"))
            if request.method == "POST":
                return await self._post(request, request_id, media_type)
            return await self._get(request, request_id, media_type)
        except HttpProblem as problem:
            return respond(
                error_body(coded_error(str(problem), problem.code, requestId=request_id)),
                problem.status,
                media_type,
                request_id,
                problem.headers,
            )

    def _ide(self, request: Request[State], request_id: str) -> Response:
        """GET without a query: GraphiQL for a browser, when it is on."""
        accept = request.headers.get("accept", "")
        if self.graphiql_html is not None and "text/html" in accept:
            return HTMLResponse(self.graphiql_html, headers={"X-Request-ID": request_id})
        uses = ["Send operations with POST and a JSON body"]
        if self.get_queries:
            uses.append("queries also with GET ?query=...&variables=...")
        if self.graphiql_html is not None:
            uses.append("GET without a query serves GraphiQL to browsers")
        raise HttpProblem(
            405, ErrorCode.METHOD_NOT_ALLOWED, "; ".join(uses) + ".", {"Allow": self.allow}
        )

    async def _get(self, request: Request[State], request_id: str, media_type: str) -> Response:
        """A query in the URL (GraphQL over HTTP's GET form), when enabled; never a
        mutation, which GET must not cause."""
        if not self.get_queries:
            raise HttpProblem(
                405,
                ErrorCode.METHOD_NOT_ALLOWED,
                "Queries over GET are turned off on this server (SESSIONGRAPH_GRAPHQL_GET); "
                "send them with POST and a JSON body.",
                {"Allow": self.allow},
            )
        fields = query_fields(request)
        response = await self._run(request, request_id, media_type, fields, GET_OPERATIONS)
        # The answer depends on the key; no shared cache may keep it.
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["Vary"] = "Authorization, Accept"
        return response

    async def _post(self, request: Request[State], request_id: str, media_type: str) -> Response:
        fields = await post_fields(request, self.max_body_bytes)
        return await self._run(request, request_id, media_type, fields, POST_OPERATIONS)

    async def _run(
        self,
        request: Request[State],
        request_id: str,
        media_type: str,
        fields: Fields,
        allowed: frozenset[OperationType],
    ) -> Response:
        """Authenticate and execute, within the request's time bound: a database that
        accepts connections but stops answering costs a client `timeout_seconds`, not
        forever."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                caller = await caller_of(request)
                document = await request_document(request, caller.org_id, fields[0])
                result = await self._execute(
                    request, request_id, caller, (document.text, *fields[1:]), allowed
                )
                if document.register_as is not None and not _is_request_error(result):
                    services = request.state["services"]
                    await services.documents.remember(caller.org_id, document)
        except TimeoutError:
            raise timed_out(request_id, self.timeout_seconds) from None
        status = 400 if media_type == GRAPHQL_RESPONSE and _is_request_error(result) else 200
        headers = None
        if _is_unavailable(result):
            status, headers = 503, RETRY_AFTER
        body: dict[str, Any] = {}
        if not _is_request_error(result):
            body["data"] = result.data
        if result.errors:
            body["errors"] = [_formatted(e) for e in result.errors]
            retry_after = rate_limited_retry(body["errors"])
            if retry_after is not None:
                status, headers = 429, {"Retry-After": str(retry_after)}
        if result.extensions:
            body["extensions"] = result.extensions
        return respond(body, status, media_type, request_id, headers)

    async def _execute(
        self,
        request: Request[State],
        request_id: str,
        caller: Caller,
        fields: tuple[str, dict[str, Any] | None, str | None],
        allowed: frozenset[OperationType],
    ) -> ExecutionResult:
        query, variables, operation_name = fields
        context = request.state["services"].context(caller, request_id)
        try:
            return await self.schema.execute(
                query,
                variables,
                context,
                operation_name=operation_name,
                allowed_operation_types=allowed,
            )
        except InvalidOperationTypeError as error:
            if error.operation_type == OperationType.MUTATION:
                raise HttpProblem(
                    405, ErrorCode.METHOD_NOT_ALLOWED, "Mutations are only accepted with POST.",
                    {"Allow": "POST"},
                ) from None  # fmt: skip
            raise HttpProblem(
                400,
                ErrorCode.BAD_REQUEST,
                "Subscriptions run over a websocket on this path, or over SSE (send "
                "`Accept: text/event-stream`), not as JSON.",
            ) from None
        except (CannotGetOperationTypeError, MissingQueryError):
            raise HttpProblem(
                400,
                ErrorCode.BAD_REQUEST,
                f"No operation named {operation_name!r} in the document.",
            ) from None


def _formatted(error: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    return formatted
