"""How errors reach clients: every one coded, the unexpected ones masked and logged.

`schema.guard.OperationGuard` applies this to every result the app's schema answers or streams.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from resolvers.errors import present


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
