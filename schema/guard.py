"""The schema's one extension: caches, limits, cost, error presentation and operation reports.

Strawberry enters every hook of every extension as a context manager on every request, so
these guards, once seven extensions, are one, with a hook per phase. What each does is
unchanged: the parse and validation caches (bounded), the token, depth and alias limits
(and no introspection when it is off), the cost limit and the charge of that cost to the
caller's rate-limit budget (reported in `extensions.cost`), error coding and masking, and the
report of each query and mutation to the metrics, and the signal that an operation starts
executing (for SSE, which answers refusals with an HTTP status).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types.graphql import OperationType

from resolvers.context import CostBudget
from resolvers.error_codes import ErrorCode
from resolvers.errors import rate_limited
from schema.cost import CostLimit
from schema.documents import parsed_document
from schema.errors import presented_errors
from schema.observe import OperationObserver, outcome_of, report_operation

Rules = tuple[type[ASTValidationRule], ...]


class Guards:
    """What every request's `OperationGuard` shares: the limits, the caches and the observer,
    made once per schema."""

    def __init__(
        self,
        *,
        rules: Rules,
        max_tokens: int,
        cost: CostLimit,
        observe: OperationObserver | None,
        cache_size: int = 512,
    ) -> None:
        self.rules = rules
        self.max_tokens = max_tokens
        self.cost = cost
        self.observe = observe
        self.validate = lru_cache(maxsize=cache_size)(self._validate)

    def parse(self, query: str) -> DocumentNode:
        """The parsed `query`, from the one document cache the live engine reads too
        (schema/documents.py): a document is parsed once, whoever reads it first."""
        return parsed_document(query, self.max_tokens)

    def _validate(self, schema: GraphQLSchema, query: str, rules: Rules) -> list[GraphQLError]:
        # Keyed by the text rather than the document (hashing a document walks its whole
        # tree); the document is the parse cache's, parsed from that text.
        return validate_document(schema, self.parse(query), rules)


class OperationGuard(SchemaExtension):
    """Guards one operation (see the module docstring); made per request around the
    schema's shared `Guards`."""

    def __init__(self, guards: Guards) -> None:
        super().__init__()
        self.guards = guards

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        guards = self.guards
        context.parse_options["max_tokens"] = guards.max_tokens
        context.validation_rules = context.validation_rules + guards.rules
        observe = guards.observe
        started = time.perf_counter()
        try:
            yield
        except GraphQLError as error:
            if observe is not None:
                report_operation(observe, context, outcome_of([error]), started)
            raise
        except Exception:
            # The operation could not be chosen (no such name, a subscription over POST).
            if observe is not None:
                report_operation(observe, context, ErrorCode.BAD_REQUEST, started, refused=True)
            raise
        result = context.result
        if result is not None and result.errors:
            result.errors = presented_errors(context, result.errors, result)
        if observe is not None:
            errors = result.errors if result is not None else None
            report_operation(observe, context, outcome_of(errors), started)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        # A document that does not parse is left to Strawberry's own parse step, which
        # reports it as a request error (raised here, it would escape `Schema.stream`).
        if isinstance(context.query, str) and context.parse_options == {
            "max_tokens": self.guards.max_tokens
        }:
            with contextlib.suppress(GraphQLError):
                context.graphql_document = self.guards.parse(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if context.pre_execution_errors is None and document is not None:
            schema = context.schema._schema
            rules = context.validation_rules
            if isinstance(context.query, str) and document is self.guards.parse(context.query):
                context.pre_execution_errors = self.guards.validate(schema, context.query, rules)
            else:
                context.pre_execution_errors = validate_document(schema, document, rules)
        if document is not None and not context.pre_execution_errors:
            cost = self.guards.cost.cost(context)
            rejected = self.guards.cost.rejection(cost) or _unaffordable(context.context, cost)
            if rejected:
                context.pre_execution_errors = rejected
        yield

    def on_execute(self) -> Iterator[None]:
        # Parsed, and passed validation and every limit: a transport that must answer a
        # refused operation with an HTTP status (SSE) waits for this or for the refusal.
        started = getattr(self.execution_context.context, "execution_started", None)
        if started is not None:
            started()
        yield

    def get_results(self) -> dict[str, Any]:
        # A query's or mutation's answer reports its charge; a subscription's events do not.
        context = self.execution_context
        budget: CostBudget | None = getattr(context.context, "budget", None)
        report = budget.report() if budget is not None else None
        if report is None or report["requested"] is None:
            return {}
        return {} if context.operation_type is OperationType.SUBSCRIPTION else {"cost": report}

    def on_stream_result(self, result: Any) -> Iterator[None]:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = presented_errors(self.execution_context, errors, result)
        yield


def _unaffordable(context: Any, cost: int) -> list[GraphQLError] | None:
    """The refusal of an operation its caller's budget cannot afford now (charged else)."""
    budget: CostBudget | None = getattr(context, "budget", None)
    wait = budget.charge(cost) if budget is not None else 0
    return [rate_limited(wait, cost)] if wait > 0 else None
