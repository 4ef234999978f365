"""Errors are part of the API: every failure a client can cause has a stable code.

Resolvers raise `ApiError` subclasses (or storage errors, translated here). Anything else is
a bug: it is logged with the request id and reaches the client as INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from graphql import GraphQLError
from graphql.pyutils import inspect
from pydantic import ValidationError

import storage
from resolvers.error_codes import ErrorCode
from resolvers.inputs import SECRET_NAMES

log = logging.getLogger("sessiongraph.errors")

MAX_ECHOED_VALUE = 80


class ApiError(GraphQLError):
    """A failure the client caused or can act on, with its stable `extensions.code`."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **extensions})


class BadUserInput(ApiError):
    code = ErrorCode.BAD_USER_INPUT


class NotFound(ApiError):
    code = ErrorCode.NOT_FOUND


class Conflict(ApiError):
    code = ErrorCode.CONFLICT


class Forbidden(ApiError):
    code = ErrorCode.FORBIDDEN


class ServiceUnavailable(ApiError):
    code = ErrorCode.SERVICE_UNAVAILABLE


class TokensNotConfigured(ApiError):
    code = ErrorCode.TOKENS_NOT_CONFIGURED


class CursorExpired(ApiError):
    code = ErrorCode.CURSOR_EXPIRED


class FeedUnavailable(ApiError):
    code = ErrorCode.FEED_UNAVAILABLE


class RateLimited(ApiError):
    code = ErrorCode.RATE_LIMITED


def rate_limited(wait: float, cost: int | None = None) -> RateLimited:
    """The refusal of a request (or, with its `cost`, an operation) its API key cannot
    afford for `wait` seconds; `retryAfter` is that in whole seconds, at least 1."""
    retry_after = max(1, math.ceil(wait))
    if cost is None:
        message = "Too many requests for this API key"
    else:
        message = f"This operation costs {cost} points, more than this API key has left"
    return RateLimited(f"{message}; retry in {retry_after} s.", retryAfter=retry_after)


def _echo(value: Any, path: str) -> str:
    if any(path.endswith(name) or f".{name}." in path for name in SECRET_NAMES):
        return "(hidden)"
    text = repr(value)
    return text if len(text) <= MAX_ECHOED_VALUE else text[: MAX_ECHOED_VALUE - 3] + "..."


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def bad_input(error: ValidationError, prefix: str = "") -> BadUserInput:
    """One BAD_USER_INPUT error naming every failing field, its value and what was wrong."""
    problems = []
    fields = []
    for detail in error.errors(include_url=False):
        # Pydantic adds the variant's name to the path of union members; drop what is noise.
        loc = [part for part in detail["loc"] if not str(part).startswith("function-")]
        path = _path(prefix, loc)
        fields.append(path)
        reason = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "missing":
            problems.append(f"{path} is required")
        else:
            problems.append(f"{path} = {_echo(detail['input'], path)}: {reason}")
    return BadUserInput("Invalid input: " + "; ".join(problems) + ".", fields=fields)


def from_storage(error: storage.StorageError) -> ApiError:
    """The API error a storage error stands for."""
    if isinstance(error, storage.SessionNotFound):
        return NotFound(str(error), id=error.session_id)
    if isinstance(error, storage.SessionClosed):
        return Conflict(str(error), id=error.session_id, reason=error.reason)
    if isinstance(error, storage.CursorExpired):
        return CursorExpired(str(error), cursor=error.cursor)
    if isinstance(error, storage.IdempotencyKeyReused):
        return Conflict(str(error), idempotencyKey=error.key)
    if isinstance(error, storage.IdempotencyKeyPending):
        return ServiceUnavailable(str(error), idempotencyKey=error.key)
    if isinstance(error, storage.SessionScopeExceeded):
        return Forbidden(str(error))
    return ApiError(str(error))


UNAVAILABLE_MESSAGE = "The database is unavailable; try again shortly."


def present(
    error: GraphQLError,
    request_id: str,
    *,
    phase: str,
    variables: Mapping[str, Any] | None = None,
) -> GraphQLError:
    """The error as the client sees it: coded, and masked unless the client caused it.

    `phase` is "parse", "validate" or "execute", the step that produced the error;
    `variables` are the request's, whose write-only values an error must not repeat.
    """
    original = error.original_error
    if isinstance(error, ApiError) or isinstance(original, ApiError):
        return error
    if original is None and error.extensions and "code" in error.extensions:
        return error  # presented already (a streamed result, then the operation's)
    if isinstance(original, storage.StorageError):
        return _relocated(from_storage(original), error)
    if original is None and phase == "parse":
        return _coded(error, ErrorCode.GRAPHQL_PARSE_FAILED)
    if phase == "validate" and (
        original is None or isinstance(original, ValueError | OverflowError)
    ):
        # graphql-core keeps the exception of a scalar that could not parse a literal.
        return _coded(error, ErrorCode.GRAPHQL_VALIDATION_FAILED)
    if not error.path and (original is None or isinstance(original, GraphQLError)):
        # Raised by graphql-core before resolving: variables that failed to coerce. Its
        # messages quote the values sent ("found: {...}"), secrets included.
        error.message = _without_secrets(error.message, variables)
        return _coded(error, ErrorCode.BAD_USER_INPUT)
    if original is not None and storage.is_database_unavailable(original):
        log.warning("database unavailable (request %s): %s", request_id, original)
        return _relocated(ServiceUnavailable(UNAVAILABLE_MESSAGE), error)
    log.error(
        "unexpected error (request %s) at %s",
        request_id,
        error.path,
        exc_info=original or error,
    )
    return GraphQLError(
        f"Internal server error (request id {request_id}).",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR, "requestId": request_id},
    )


def _without_secrets(message: str, variables: Mapping[str, Any] | None) -> str:
    """`message` with every write-only value of `variables` replaced by "(hidden)"."""
    printed: set[str] = set()

    def collect(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                collect(item, secret or key in SECRET_NAMES)
        elif isinstance(value, list):
            for item in value:
                collect(item, secret)
        elif secret and value is not None:
            printed.update((inspect(value), repr(value)))

    collect(variables or {}, secret=False)
    for text in sorted(printed, key=len, reverse=True):
        message = message.replace(text, "(hidden)")
    return message


def _coded(error: GraphQLError, code: ErrorCode) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    error.extensions = {**(error.extensions or {}), "code": code}
    return error


def _relocated(replacement: ApiError, located: GraphQLError) -> GraphQLError:
    replacement.nodes = located.nodes
    replacement.path = located.path
    replacement.locations = located.locations
    return replacement
