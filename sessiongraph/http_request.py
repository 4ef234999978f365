"""What every GraphQL request over HTTP goes through before it runs, whether it is answered
with JSON or over SSE: its operation read from a POST body or GET's parameters, its caller,
its time bound, and `HttpProblem`, a request refused with its status and code."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from resolvers.error_codes import ErrorCode
from resolvers.errors import UNAVAILABLE_MESSAGE
from sessiongraph.auth import Caller, bearer_key
from sessiongraph.services import State
from sessiongraph.tokens import AccessTokenRefused, query_access_token
from storage import is_database_unavailable

log = logging.getLogger("sessiongraph.http")

JSON = "application/json"
RETRY_AFTER = {"Retry-After": "5"}


class HttpProblem(Exception):
    """A request rejected before execution, with its status and code."""

    def __init__(
        self, status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


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


async def post_fields(request: Request[State], max_body_bytes: int) -> Fields:
    """The operation of a POST's JSON body, or HttpProblem 413/415/400."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON:
        # Only JSON bodies: a browser cannot send one cross-site without a CORS preflight.
        raise HttpProblem(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type must be {JSON}, got {content_type!r}.",
        )
    return _body_fields(await _json_body(request, max_body_bytes))


async def _json_body(request: Request[State], max_body_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise HttpProblem(
            413, ErrorCode.PAYLOAD_TOO_LARGE, f"The body exceeds {max_body_bytes} bytes."
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise HttpProblem(
                413, ErrorCode.PAYLOAD_TOO_LARGE, f"The body exceeds {max_body_bytes} bytes."
            )
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as error:
        raise HttpProblem(
            400, ErrorCode.BAD_REQUEST, f"The body is not valid JSON: {error}."
        ) from None


def query_fields(request: Request[State]) -> Fields:
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


def names_document(request: Request[State]) -> bool:
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


@contextmanager
def unavailable_as_problem() -> Iterator[None]:
    """Within the block, a database that cannot be reached is HttpProblem 503 with
    Retry-After; every other error passes through."""
    try:
        yield
    except Exception as error:
        if not is_database_unavailable(error):
            raise
        raise HttpProblem(
            503, ErrorCode.SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE, RETRY_AFTER
        ) from None


async def caller_of(request: Request[State], *, query_token: bool = False) -> Caller:
    """The caller of the request's API key or access token, or HttpProblem 401/503.
    With `query_token` (SSE), an access token may come in the `access_token` query
    parameter instead, as EventSource cannot set headers (never an API key)."""
    services = request.state["services"]
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
    with unavailable_as_problem():
        caller = await services.verifier.caller_of(credential)
    if caller is None:
        raise HttpProblem(
            401,
            ErrorCode.UNAUTHENTICATED,
            "A valid API key or unexpired access token is required: send "
            "`Authorization: Bearer <key or token>`.",
            {"WWW-Authenticate": 'Bearer realm="sessiongraph"'},
        )
    return caller


def timed_out(request_id: str, timeout_seconds: float) -> HttpProblem:
    """The problem of a request that did not finish within its time bound (logged)."""
    log.warning("request %s did not finish within %g s", request_id, timeout_seconds)
    return HttpProblem(
        503,
        ErrorCode.SERVICE_UNAVAILABLE,
        f"The request did not finish within {timeout_seconds:g} s; try again "
        "shortly. A mutation may or may not have been applied: createSession and "
        "addMessages retried with the same idempotencyKey are safe.",
        RETRY_AFTER,
    )


def respond(
    body: dict[str, Any],
    status: int,
    media_type: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON response carrying the request's id."""
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=media_type,
        headers={"X-Request-ID": request_id, **(headers or {})},
    )


def rate_limited_retry(errors: list[dict[str, Any]]) -> int | None:
    """The seconds to retry after (HTTP 429), when the operation was refused for its key's
    rate (schema/guard.py); None for any other errors."""
    extensions = errors[0].get("extensions") if len(errors) == 1 else None
    if not isinstance(extensions, dict) or extensions.get("code") != ErrorCode.RATE_LIMITED:
        return None
    retry_after = extensions.get("retryAfter")
    return retry_after if isinstance(retry_after, int) else None
