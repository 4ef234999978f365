"""How each operation's name, type, outcome and duration is reported.

What is done with the report (metrics) is the application's business: it passes a callback
to `create_schema`, whose `schema.guard.OperationGuard` reports through `report_operation`.
Subscriptions are left to the websocket layer, which knows when and why they end; this
reports queries, mutations, and operations whose type is unknown (a document that does not
parse, an operation name that is not in it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from graphql import GraphQLError
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from resolvers.error_codes import first_error_code

OperationObserver = Callable[[str | None, str, str, float | None], None]
"""Called once per operation with its name (None when anonymous), its type ("query",
"mutation" or "unknown"), its outcome ("ok" or the first error's code) and its duration in
seconds."""


def outcome_of(errors: list[GraphQLError] | None) -> str:
    """ "ok" without errors, else the first error's `extensions.code`."""
    code = first_error_code(errors)
    return "ok" if code is None else code


def report_operation(
    observe: OperationObserver,
    context: ExecutionContext,
    outcome: str,
    started: float,
    *,
    refused: bool = False,
) -> None:
    """Tell `observe` of the operation of `context`, begun at `started` (perf_counter);
    a subscription only when it was refused (the websocket layer reports the others)."""
    try:
        kind = context.operation_type
    except Exception:
        kind = None
    if kind is OperationType.SUBSCRIPTION and not refused:
        return
    kind_name = kind.value if kind is not None else "unknown"
    observe(context.operation_name, kind_name, outcome, time.perf_counter() - started)
