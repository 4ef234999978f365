"""The extension that gives every error a code and masks the unexpected ones."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import PreExecutionError

from resolvers.errors import present


class ErrorPresenter(SchemaExtension):
    """Codes client errors, masks internal ones, and logs those with the request id."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        try:
            yield
        except GraphQLError as error:
            # ParserCache parses in its own hook, so a syntax error leaves the operation as an
            # exception rather than a result; Strawberry then reports this same error object.
            present(error, getattr(context.context, "request_id", "-"), phase="parse")
            raise
        result = context.result
        if result is None or not result.errors:
            return
        if context.graphql_document is None:
            phase = "parse"
        elif isinstance(result, PreExecutionError):
            phase = "validate"
        else:
            phase = "execute"
        request_id = getattr(context.context, "request_id", "-")
        result.errors = [
            present(error, request_id, phase=phase, variables=context.variables)
            for error in result.errors
        ]
