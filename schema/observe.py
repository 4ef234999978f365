"""The extension that reports each operation's name, type, outcome and duration.

What is done with the report (metrics) is the application's business: it passes a callback
to `create_schema`. Subscriptions are left to the websocket layer, which knows when and why
they end; this reports queries, mutations, and operations whose type is unknown (a document
that does not parse, an operation name that is not in it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

OperationObserver = Callable[[str | None, str, str, float | None], None]
"""Called once per operation with its name (None when anonymous), its type ("query",
"mutation" or "unknown"), its outcome ("ok" or the first error's code) and its duration in
seconds."""

BAD_REQUEST = "BAD_REQUEST"


def outcome_of(errors: list[GraphQLError] | None) -> str:
    """ "ok" without errors, else the first error's `extensions.code`."""
    if not errors:
        return "ok"
    code = (errors[0].extensions or {}).get("code")
    return code if isinstance(code, str) else "INTERNAL_SERVER_ERROR"


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


class OperationObserving(SchemaExtension):
    """Reports every query and mutation to `observe` once it is answered. List it first, so
    that it sees errors as the other extensions leave them (coded). On its own, for a schema
    of a few extensions; the app's schema does the same in `schema.guard.OperationGuard`."""

    def __init__(self, observe: OperationObserver) -> None:
        super().__init__()
        self.observe = observe

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        started = time.perf_counter()
        try:
            yield
        except GraphQLError as error:
            report_operation(self.observe, context, outcome_of([error]), started)
            raise
        except Exception:
            # The operation could not be chosen (no such name, a subscription over POST).
            report_operation(self.observe, context, BAD_REQUEST, started, refused=True)
            raise
        result = context.result
        report_operation(
            self.observe,
            context,
            outcome_of(result.errors if result is not None else None),
            started,
        )
