"""The API's error vocabulary: every `extensions.code` a client can get and what it means, the
shape of an error and of a response that holds only errors, and which code a result reports.

It imports nothing of ours, so every layer above `storage/` uses it (storage raises its own
exceptions, which resolvers/errors.py maps to these codes). The README's "Error codes" table
repeats each meaning; tests/test_error_codes.py keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from graphql import GraphQLError


class ErrorCode(StrEnum):
    """A stable `extensions.code`: its value is the string on the wire, `meaning` says when a
    client gets it."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    # The request, before any GraphQL runs.
    BAD_REQUEST = (
        "BAD_REQUEST",
        "The request is malformed (its body, parameters or document fields, or an operation "
        "the transport does not run): HTTP 400, and the message says what to change.",
    )
    METHOD_NOT_ALLOWED = (
        "METHOD_NOT_ALLOWED",
        "HTTP 405 with `Allow`: a method /graphql does not take, a mutation over GET, or a "
        "query over GET when SESSIONGRAPH_GRAPHQL_GET is off.",
    )
    NOT_ACCEPTABLE = (
        "NOT_ACCEPTABLE",
        "HTTP 406: the `Accept` header admits neither application/graphql-response+json nor "
        "application/json.",
    )
    UNSUPPORTED_MEDIA_TYPE = (
        "UNSUPPORTED_MEDIA_TYPE",
        "HTTP 415: a POST body whose `Content-Type` is not application/json.",
    )
    PAYLOAD_TOO_LARGE = (
        "PAYLOAD_TOO_LARGE",
        "HTTP 413: the body is larger than SESSIONGRAPH_MAX_BODY_BYTES.",
    )
    RATE_LIMITED = (
        "RATE_LIMITED",
        "HTTP 429 with `Retry-After` (and `retryAfter`, in seconds): the API key (with its "
        "access tokens) has used up its request ceiling or cannot afford the operation's cost "
        "in points (see Rate limits); nothing was applied.",
    )
    UNAUTHENTICATED = (
        "UNAUTHENTICATED",
        "HTTP 401 (or refused over a websocket): no valid API key or unexpired access token.",
    )
    FORBIDDEN = (
        "FORBIDDEN",
        "The credential may not do this (a read-only or session-limited access token, minting "
        "with a token), or HTTP 403 for a page whose origin may not open a live stream.",
    )
    # Which document runs (sessiongraph/documents.py).
    PERSISTED_QUERY_NOT_FOUND = (
        "PERSISTED_QUERY_NOT_FOUND",
        "An automatic persisted query's hash is not known here (message "
        "`PersistedQueryNotFound`, HTTP 200): send it again with its `query` text.",
    )
    PERSISTED_QUERY_HASH_MISMATCH = (
        "PERSISTED_QUERY_HASH_MISMATCH",
        "`extensions.persistedQuery.sha256Hash` is not the SHA-256 of the `query` sent with it.",
    )
    PERSISTED_QUERY_VERSION_UNSUPPORTED = (
        "PERSISTED_QUERY_VERSION_UNSUPPORTED",
        "`extensions.persistedQuery.version` is not 1.",
    )
    PERSISTED_DOCUMENT_NOT_FOUND = (
        "PERSISTED_DOCUMENT_NOT_FOUND",
        "No persisted document on this server has the `documentId` sent.",
    )
    INVALID_DOCUMENT_ID = (
        "INVALID_DOCUMENT_ID",
        "A `documentId` or `sha256Hash` that is not a SHA-256 in the expected form.",
    )
    TRUSTED_DOCUMENT_REQUIRED = (
        "TRUSTED_DOCUMENT_REQUIRED",
        "The server runs trusted documents only (SESSIONGRAPH_TRUSTED_DOCUMENTS=required) and "
        "this document is not one.",
    )
    # The document itself, before it executes.
    GRAPHQL_PARSE_FAILED = (
        "GRAPHQL_PARSE_FAILED",
        "The document does not parse, or has more tokens than allowed.",
    )
    GRAPHQL_VALIDATION_FAILED = (
        "GRAPHQL_VALIDATION_FAILED",
        "The document does not validate against the schema or the depth and alias limits.",
    )
    QUERY_TOO_COMPLEX = (
        "QUERY_TOO_COMPLEX",
        "The operation's estimated `cost` exceeds `maxCost` (SESSIONGRAPH_MAX_QUERY_COST); it "
        "did not run.",
    )
    TOO_MANY_SUBSCRIPTIONS = (
        "TOO_MANY_SUBSCRIPTIONS",
        "The websocket already runs as many subscriptions as one connection may "
        "(SESSIONGRAPH_WS_MAX_SUBSCRIPTIONS).",
    )
    # Execution.
    BAD_USER_INPUT = (
        "BAD_USER_INPUT",
        "An argument or variable is invalid: the message names each field path and value "
        "(secrets hidden), `fields` lists the paths; nothing was changed.",
    )
    NOT_FOUND = (
        "NOT_FOUND",
        "No session with this `id` in the caller's organization (ids are never reused).",
    )
    CONFLICT = (
        "CONFLICT",
        "The stored state refuses it: a completed or expired session takes no messages, or "
        "an `idempotencyKey` came back with a different request.",
    )
    CURSOR_EXPIRED = (
        "CURSOR_EXPIRED",
        "A `sessionEvents(after:)` cursor older than the event log keeps: subscribe without "
        "`after` and reload the sessions.",
    )
    FEED_UNAVAILABLE = (
        "FEED_UNAVAILABLE",
        "`sessionEvents` needs MongoDB change streams, which this deployment does not have.",
    )
    TOKENS_NOT_CONFIGURED = (
        "TOKENS_NOT_CONFIGURED",
        "Access tokens are not configured on this server (SESSIONGRAPH_TOKEN_SECRET).",
    )
    SERVICE_UNAVAILABLE = (
        "SERVICE_UNAVAILABLE",
        "The database is unavailable, the request ran out of time or the server is stopping: "
        "retry shortly (HTTP 503 with `Retry-After` when nothing else came back).",
    )
    INTERNAL_SERVER_ERROR = (
        "INTERNAL_SERVER_ERROR",
        "An unexpected failure, masked: its `requestId` is in the server log and the "
        "`X-Request-ID` header.",
    )


def coded_error(message: str, code: ErrorCode, **extensions: Any) -> dict[str, Any]:
    """One error as a GraphQL response lists it: its message, and `extensions` with its code
    first and then `extensions`."""
    return {"message": message, "extensions": {"code": code, **extensions}}


def error_body(*errors: Mapping[str, Any]) -> dict[str, Any]:
    """A GraphQL response that holds nothing but `errors` (no `data`: nothing executed)."""
    return {"errors": list(errors)}


def first_error_code(
    errors: Sequence[GraphQLError] | None, uncoded: ErrorCode = ErrorCode.INTERNAL_SERVER_ERROR
) -> str | None:
    """The code a result with `errors` reports (its first error's `extensions.code`, or
    `uncoded` when that has none), or None without errors: the outcome metrics, traces and
    subscription logs record."""
    if not errors:
        return None
    code = (errors[0].extensions or {}).get("code")
    return code if isinstance(code, str) else uncoded
