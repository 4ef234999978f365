"""The schema extensions that `schema.guard.OperationGuard` folded into one, each on its own as
it was: the reference schema of tests/test_execution.py and the small schemas of
tests/test_error_masking.py and tests/test_query_cost.py are built with them.

Each does its job with the product's own functions (`presented_errors`, `CostLimit`,
`report_operation`, `outcome_of`), so a test comparing the app's schema with these compares
the folding, not two copies of the logic.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from resolvers.error_codes import ErrorCode
from schema.cost import CostLimit
from schema.documents import parsed_document
from schema.errors import presented_errors
from schema.observe import OperationObserver, outcome_of, report_operation


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
    refusal and each of its events)."""

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


class QueryCostLimiter(SchemaExtension):
    """Reject operations whose `schema.cost.operation_cost` exceeds `max_cost` before
    execution (see `CostLimit`). Pass it as a factory (`lambda: QueryCostLimiter(1000)`)
    and, if `ValidationCache` is used, list it before this extension.
    """

    def __init__(
        self,
        max_cost: int,
        default_page_size: int = 20,
        field_page_sizes: Mapping[tuple[str, str], int] | None = None,
        list_arguments: Mapping[tuple[str, str], tuple[str, int]] | None = None,
    ) -> None:
        super().__init__()
        self.limit = CostLimit(max_cost, default_page_size, field_page_sizes, list_arguments)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # Strawberry checks pre_execution_errors before the code after this hook's yield runs, so
        # validation is run here (as ValidationCache does; Strawberry then skips its own run).
        if context.pre_execution_errors is None and context.validation_rules and document:
            context.pre_execution_errors = validate_document(
                context.schema._schema, document, context.validation_rules
            )
        if document is not None and not context.pre_execution_errors:
            rejected = self.limit.errors(context)
            if rejected:
                context.pre_execution_errors = rejected
        yield


class OperationObserving(SchemaExtension):
    """Reports every query and mutation to `observe` once it is answered. List it first, so
    that it sees errors as the other extensions leave them (coded)."""

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
            report_operation(self.observe, context, ErrorCode.BAD_REQUEST, started, refused=True)
            raise
        result = context.result
        report_operation(
            self.observe,
            context,
            outcome_of(result.errors if result is not None else None),
            started,
        )
