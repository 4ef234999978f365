"""GraphQL over HTTP, as the GraphQL-over-HTTP specification describes it.

POST with a JSON body runs an operation. The response is `application/graphql-response+json`
when the client accepts it (request errors then get status 400) and `application/json`
otherwise (200 once the request is well formed). Either way, a result that holds nothing but
the database being unavailable gets 503 with Retry-After, a signal load balancers and
clients act on. GET from a browser serves GraphiQL; GET with `?query=` runs a query when
SESSIONGRAPH_GRAPHQL_GET is on (never a mutation). Authentication and execution are bounded
by SESSIONGRAPH_REQUEST_TIMEOUT_SECONDS. With `Accept: text/event-stream` the operation runs
over SSE instead (sessiongraph/live/sse.py): any operation with POST, subscriptions with GET,
after the same parsing, authentication and limits. Which document runs (a `query`, a
`documentId`, an APQ hash) is `sessiongraph.documents`' decision.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from strawberry.exceptions import MissingQueryError
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.graphql import OperationType

from resolvers.error_codes import ErrorCode, coded_error, error_body
from resolvers.errors import UNAVAILABLE_MESSAGE
from sessiongraph.access_log import REQUEST_ID
from sessiongraph.auth import Caller, bearer_key
from sessiongraph.documents import DocumentProblem, RequestDocument
from sessiongraph.live import sse
from sessiongraph.live.engine import LiveEngine, OperationRequest
from sessiongraph.live.origins import OriginPolicy
from sessiongraph.live.tracking import Connection, shape_of
from sessiongraph.services import Services
from sessiongraph.tokens import AccessTokenRefused, query_access_token
from storage import is_database_unavailable

log = logging.getLogger("sessiongraph.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})
GET_OPERATIONS = frozenset({OperationType.QUERY})
SSE_GET_OPERATIONS = frozenset({OperationType.SUBSCRIPTION})
RETRY_AFTER = {"Retry-After": "5"}

EXAMPLE_OPERATION = """# Welcome to sessiongraph. Put your API key in the Headers tab below:
#   {"Authorization": "Bearer sg_..."}
# then run this (Ctrl-Enter).

query RecentSessions {
  sessions(first: 5) {
    totalCount
    nodes {
      id
      name
      status
      messageCount
      messages(last: 3) { nodes { seq role content } }
    }
  }
}
"""


GRAPHIQL_ASSETS_PATH = "/static/graphiql"
"""Where sessiongraph.console serves the files of sessiongraph/static/graphiql/."""

GRAPHIQL_ASSETS = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": (
        "react-dom.production.min.js"
    ),
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": (
        "plugin-explorer.umd.js"
    ),
}
"""Strawberry's CDN URLs and our unmodified copies of those files (so the page's integrity
hashes still hold): GraphiQL works offline and tells no CDN who uses it."""

_REMOTE_ASSET = re.compile(r"""(?:src|href)\s*=\s*["'](https?://[^"']+)["']""")


def graphiql_page() -> str:
    """Strawberry's GraphiQL page with our title, example and a header template, loading
    its scripts and styles from this server."""
    html = get_graphql_ide_html("graphiql")
    for url in set(_REMOTE_ASSET.findall(html)):
        if url not in GRAPHIQL_ASSETS:
            raise RuntimeError(
                f"GraphiQL's page loads {url}, which has no local copy: vendor it into "
                "sessiongraph/static/graphiql/ (see the README there)."
            )
        html = html.replace(url, f"{GRAPHIQL_ASSETS_PATH}/{GRAPHIQL_ASSETS[url]}")
    start = html.index("const EXAMPLE_QUERY = `") + len("const EXAMPLE_QUERY = `")
    end = html.index("`;", start)
    html = html[:start] + EXAMPLE_OPERATION + html[end:]
    return html.replace(
        "<title>Strawberry GraphiQL</title>", "<title>sessiongraph</title>"
    ).replace(
        "headers: headers,",
        'headers: headers, defaultHeaders: \'{"Authorization": "Bearer YOUR_API_KEY"}\',',
    )


class HttpProblem(Exception):
    """A request rejected before execution, with its status and code."""

    def __init__(
        self, status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


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


Fields = tuple[dict[str, Any], dict[str, Any] | None, str | None]
"""What names the document (for `PersistedDocuments.resolve_request`), variables, operation
name."""


def _body_fields(body: Any) -> Fields:
    if isinstance(body, list):
        raise HttpProblem(
            400,
            ErrorCode.BAD_REQUEST,
            "Batched requests are not supported; send one operation per request.",
        )
    if not isinstance(body, dict):
        raise HttpProblem(400, ErrorCode.BAD_REQUEST, "The body must be a JSON object.")
    query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        raise HttpProblem(400, ErrorCode.BAD_REQUEST, "`variables` must be a JSON object or null.")
    if name is not None and not isinstance(name, str):
        raise HttpProblem(400, ErrorCode.BAD_REQUEST, "`operationName` must be a string or null.")
    document = {
        "query": query,
        "extensions": body.get("extensions"),
        "documentId": body.get("documentId"),
    }
    return document, variables, name


def _last_event_id(request: Request) -> int | None:
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
        self.live = live
        self.origins = origins or OriginPolicy([])
        self.graphiql_html = graphiql_page() if graphiql else None
        self.max_body_bytes = max_body_bytes
        self.get_queries = get_queries
        self.timeout_seconds = timeout_seconds
        self.allow = "GET, HEAD, POST" if graphiql or get_queries else "POST"

    async def handle(self, request: Request) -> Response:
        """Serve one request to /graphql."""
        incoming = request.headers.get("x-request-id", "")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        media_type = JSON
        try:
            wants_sse = _wants_event_stream(request.headers.get("accept"))
            if self.live is not None and request.method in ("GET", "POST") and wants_sse:
                return await self._sse(request, request_id, self.live)
            if request.method in ("GET", "HEAD") and not _names_document(request):
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
            return self._respond(
                error_body(coded_error(str(problem), problem.code, requestId=request_id)),
                problem.status,
                media_type,
                request_id,
                problem.headers,
            )

    def _ide(self, request: Request, request_id: str) -> Response:
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

    async def _get(self, request: Request, request_id: str, media_type: str) -> Response:
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
        fields = _query_fields(request)
        response = await self._run(request, request_id, media_type, fields, GET_OPERATIONS)
        # The answer depends on the key; no shared cache may keep it.
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["Vary"] = "Authorization, Accept"
        return response

    async def _post(self, request: Request, request_id: str, media_type: str) -> Response:
        fields = await self._post_fields(request)
        return await self._run(request, request_id, media_type, fields, POST_OPERATIONS)

    async def _post_fields(self, request: Request) -> Fields:
        """The operation of a POST's JSON body, or HttpProblem 413/415/400."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON:
            # Only JSON bodies: a browser cannot send one cross-site without a CORS preflight.
            raise HttpProblem(
                415,
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be {JSON}, got {content_type!r}.",
            )
        return _body_fields(await self._json_body(request))

    async def _sse(self, request: Request, request_id: str, live: LiveEngine) -> Response:
        """GraphQL over SSE: any operation with POST, subscriptions with GET. A request
        refused before its operation starts gets the status and JSON body of the JSON path."""
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
            fields = await self._post_fields(request)
        else:
            fields = _query_fields(request)
        resume_after_seq = _last_event_id(request)
        services: Services = request.state.services
        headers = {"X-Request-ID": request_id}
        try:
            async with asyncio.timeout(self.timeout_seconds):
                caller = await self._caller(request, query_token=True)
                document = await self._document(request, caller.org_id, fields[0])
                allowed = self._sse_operations(request, document.text, fields[2])
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
            raise self._timed_out(request_id) from None
        if isinstance(outcome, StreamingResponse):
            return outcome
        if outcome is None:
            raise HttpProblem(
                500,
                ErrorCode.INTERNAL_SERVER_ERROR,
                f"The operation failed unexpectedly (request id {request_id}); it is logged.",
            )
        return self._respond(error_body(*sse.error_list(outcome)), 400, JSON, request_id)

    @staticmethod
    def _sse_operations(
        request: Request, query: str, operation_name: str | None
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

    async def _run(
        self,
        request: Request,
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
                caller = await self._caller(request)
                document = await self._document(request, caller.org_id, fields[0])
                result = await self._execute(
                    request, request_id, caller, (document.text, *fields[1:]), allowed
                )
                if document.register_as is not None and not _is_request_error(result):
                    services: Services = request.state.services
                    await services.documents.remember(caller.org_id, document)
        except TimeoutError:
            raise self._timed_out(request_id) from None
        status = 400 if media_type == GRAPHQL_RESPONSE and _is_request_error(result) else 200
        headers = None
        if _is_unavailable(result):
            status, headers = 503, RETRY_AFTER
        body: dict[str, Any] = {}
        if not _is_request_error(result):
            body["data"] = result.data
        if result.errors:
            body["errors"] = [_formatted(e) for e in result.errors]
        return self._respond(body, status, media_type, request_id, headers)

    def _timed_out(self, request_id: str) -> HttpProblem:
        log.warning("request %s did not finish within %g s", request_id, self.timeout_seconds)
        return HttpProblem(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            f"The request did not finish within {self.timeout_seconds:g} s; try again "
            "shortly. A mutation may or may not have been applied: createSession and "
            "addMessages retried with the same idempotencyKey are safe.",
            RETRY_AFTER,
        )

    async def _caller(self, request: Request, *, query_token: bool = False) -> Caller:
        """The caller of the request's API key or access token, or HttpProblem 401/503.
        With `query_token` (SSE), an access token may come in the `access_token` query
        parameter instead, as EventSource cannot set headers (never an API key)."""
        services: Services = request.state.services
        credential = bearer_key(request.headers.get("authorization"))
        if query_token and credential is None:
            try:
                credential = query_access_token(request.method, request.query_params)
            except AccessTokenRefused as refused:
                raise HttpProblem(
                    401,
                    ErrorCode.UNAUTHENTICATED,
                    str(refused),
                    {"WWW-Authenticate": 'Bearer realm="sessiongraph"'},
                ) from None
        try:
            caller = await services.verifier.caller_of(credential)
        except Exception as error:
            if not is_database_unavailable(error):
                raise
            raise HttpProblem(
                503, ErrorCode.SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE, RETRY_AFTER
            ) from None
        if caller is None:
            raise HttpProblem(
                401,
                ErrorCode.UNAUTHENTICATED,
                "A valid API key or unexpired access token is required: send "
                "`Authorization: Bearer <key or token>`.",
                {"WWW-Authenticate": 'Bearer realm="sessiongraph"'},
            )
        return caller

    @staticmethod
    async def _document(request: Request, org_id: str, names: dict[str, Any]) -> RequestDocument:
        """The document the request names, or HttpProblem (before anything is parsed)."""
        services: Services = request.state.services
        try:
            return await services.documents.resolve_request(org_id, names)
        except DocumentProblem as problem:
            raise HttpProblem(problem.status, problem.code, str(problem)) from None
        except Exception as error:
            if not is_database_unavailable(error):
                raise
            raise HttpProblem(
                503, ErrorCode.SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE, RETRY_AFTER
            ) from None

    async def _execute(
        self,
        request: Request,
        request_id: str,
        caller: Caller,
        fields: tuple[str, dict[str, Any] | None, str | None],
        allowed: frozenset[OperationType],
    ) -> ExecutionResult:
        query, variables, operation_name = fields
        services: Services = request.state.services
        context = services.context(caller, request_id)
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

    async def _json_body(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HttpProblem(
                413, ErrorCode.PAYLOAD_TOO_LARGE, f"The body exceeds {self.max_body_bytes} bytes."
            )
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HttpProblem(
                    413,
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"The body exceeds {self.max_body_bytes} bytes.",
                )
            chunks.append(chunk)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as error:
            raise HttpProblem(
                400, ErrorCode.BAD_REQUEST, f"The body is not valid JSON: {error}."
            ) from None

    @staticmethod
    def _respond(
        body: dict[str, Any],
        status: int,
        media_type: str,
        request_id: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return Response(
            orjson.dumps(body),
            status_code=status,
            media_type=media_type,
            headers={"X-Request-ID": request_id, **(headers or {})},
        )


def _query_fields(request: Request) -> Fields:
    """The operation in a GET's query string, or HttpProblem 400."""
    params = request.query_params
    return _body_fields(
        {
            "query": params.get("query"),
            "variables": _json_parameter(params.get("variables"), "variables"),
            "operationName": params.get("operationName"),
            "extensions": _json_parameter(params.get("extensions"), "extensions"),
            "documentId": params.get("documentId"),
        }
    )


def _names_document(request: Request) -> bool:
    """Whether a GET names a document to run (else it asks for GraphiQL)."""
    params = request.query_params
    return "query" in params or "documentId" in params or "extensions" in params


def _json_parameter(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise HttpProblem(
            400, ErrorCode.BAD_REQUEST, f"`{name}` is not valid JSON: {error}."
        ) from None


def _formatted(error: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    return formatted
