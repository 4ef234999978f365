"""How errors reach clients: every one coded, the unexpected ones masked and logged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from resolvers.errors import present
from schema.documents import parsed_document


def presented_errors(
    context: ExecutionContext, errors: list[GraphQLError], result: Any
) -> list[GraphQLError]:
    """`errors` of `result` as clients get them: coded, masked when unexpected, and logged
    with the request id, by the phase (parse, validate, execute) that raised them."""
    if context.graphql_document is None:
        phase = "parse"
    elif isinstance(result, PreExecutionError):
        phase = "validate"
    else:
        phase = "execute"
    request_id = getattr(context.context, "request_id", "-")
    return [
        present(error, request_id, phase=phase, variables=context.variables) for error in errors
    ]


class SafeParserCache(SchemaExtension):
    """Parses through the shared document cache (schema/documents.py), except documents
    that do not parse: those are left to Strawberry's own parse step, which reports them as
    a request error. (Strawberry's ParserCache lets the exception escape `Schema.stream`.)"""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            with contextlib.suppress(GraphQLError):
                context.graphql_document = parsed_document(
                    context.query, context.parse_options.get("max_tokens")
                )
        yield


class ErrorPresenter(SchemaExtension):
    """Codes client errors, masks internal ones, and logs those with the request id: in
    a query's or mutation's result, and in every result a stream sends (a subscription's
    refusal and each of its events). On its own, for a schema of a few extensions; the
    app's schema does the same in `schema.guard.OperationGuard`."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = presented_errors(self.execution_context, result.errors, result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = presented_errors(self.execution_context, errors, result)
        yield
