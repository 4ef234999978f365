"""The GraphQL schema: Strawberry types that delegate to `resolvers/`."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from resolvers.nodes import NODES_MAX
from schema.cost import QueryCostLimiter
from schema.documents import MAX_TOKENS
from schema.errors import ErrorPresenter, SafeParserCache
from schema.messages import (
    AssistantMessage,
    DeveloperMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from schema.observe import OperationObserver, OperationObserving
from schema.relay import NodeQueries
from schema.scalars import SCALAR_MAP
from schema.sessions import SessionMutations, SessionQueries
from schema.streaming import ExecutionStarts
from schema.subscriptions import Subscription
from schema.tokens import TokenMutations

PAGE_SIZES = {("Query", "sessions"): 20, ("Session", "messages"): 50}
"""Default page sizes, which the cost estimate assumes when first/last are not given."""
LIST_ARGUMENTS = {("Query", "nodes"): ("ids", NODES_MAX)}
"""Fields fetching one object per value of a list argument, and the most values it takes."""


class SessionGraphSchema(strawberry.Schema):
    """Strawberry's schema, minus its logging of every error: `ErrorPresenter` logs the
    unexpected ones with their request id, and client errors are not server faults."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None


@strawberry.type(description="Read sessions and their transcripts.")
class Query(SessionQueries, NodeQueries):
    pass


@strawberry.type(
    description="Create, change and delete sessions; append messages; mint access tokens."
)
class Mutation(SessionMutations, TokenMutations):
    pass


def create_schema(
    *,
    max_query_cost: int = 50_000,
    max_depth: int = 12,
    introspection: bool = True,
    observe_operation: OperationObserver | None = None,
    trace_operations: Callable[[], SchemaExtension] | None = None,
) -> strawberry.Schema:
    """The schema with its guards: parser and validation caches (bounded), limits on depth,
    tokens, aliases and estimated cost, and error coding and masking. Without introspection,
    field suggestions ("Did you mean ...?") are off too, so they cannot map the schema.
    `observe_operation`, when given, hears of every query and mutation once answered;
    `trace_operations`, when given, makes the extension that traces each operation."""
    # The limiters' rule classes are made once: each QueryDepthLimiter or MaxAliasesLimiter
    # makes a new class, and ValidationCache is keyed by the rules, so one made per request
    # would never hit (and would leave a class per request for the garbage collector).
    limit_rules = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=30).validation_rules,
    ]
    extensions: list[Callable[[], SchemaExtension]] = [
        SafeParserCache,
        lambda: ValidationCache(maxsize=512),
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: QueryCostLimiter(
            max_query_cost,
            default_page_size=20,
            field_page_sizes=PAGE_SIZES,
            list_arguments=LIST_ARGUMENTS,
        ),
        ErrorPresenter,
        ExecutionStarts,
    ]
    if not introspection:
        extensions.insert(2, DisableIntrospection)
    if observe_operation is not None:
        observer = observe_operation
        # First, so that it sees the errors as ErrorPresenter codes them.
        extensions.insert(0, lambda: OperationObserving(observer))
    if trace_operations is not None:
        extensions.insert(0, trace_operations)
    return SessionGraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[SystemMessage, UserMessage, AssistantMessage, ToolMessage, DeveloperMessage],
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALAR_MAP, disable_field_suggestions=not introspection),
    )


def schema_sdl() -> str:
    """The schema in GraphQL SDL, as kept in schema.graphql."""
    return create_schema().as_str() + "\n"
