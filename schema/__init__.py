"""The GraphQL schema: Strawberry types that delegate to `resolvers/`."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from resolvers.messages import MESSAGES_PAGE_DEFAULT
from resolvers.nodes import NODES_MAX
from resolvers.sessions import SESSIONS_PAGE_DEFAULT
from schema.cost import CostLimit
from schema.documents import MAX_TOKENS
from schema.execution import PlannedExecutionContext
from schema.guard import Guards, OperationGuard
from schema.messages import (
    AssistantMessage,
    DeveloperMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from schema.observe import OperationObserver
from schema.relay import NodeQueries
from schema.scalars import SCALAR_MAP
from schema.sessions import SessionMutations, SessionQueries
from schema.subscriptions import Subscription
from schema.tokens import TokenMutations

PAGE_SIZES = {
    ("Query", "sessions"): SESSIONS_PAGE_DEFAULT,
    ("Session", "messages"): MESSAGES_PAGE_DEFAULT,
}
"""Default page sizes, which the cost estimate assumes when first/last are not given."""
LIST_ARGUMENTS = {("Query", "nodes"): ("ids", NODES_MAX)}
"""Fields fetching one object per value of a list argument, and the most values it takes."""


class SessionGraphSchema(strawberry.Schema):
    """Strawberry's schema, minus its logging of every error: `OperationGuard` logs the
    unexpected ones with their request id, and client errors are not server faults."""

    guards: Guards
    """The limits, caches and observer its `OperationGuard` uses."""

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
) -> SessionGraphSchema:
    """The schema with its guards: parser and validation caches (bounded), limits on depth,
    tokens, aliases and estimated cost, and error coding and masking. Without introspection,
    field suggestions ("Did you mean ...?") are off too, so they cannot map the schema.
    `observe_operation`, when given, hears of every query and mutation once answered;
    `trace_operations`, when given, makes the extension that traces each operation."""
    # The limiters' rule classes are made once: each QueryDepthLimiter or MaxAliasesLimiter
    # makes a new class, and the validation cache is keyed by the rules, so one made per
    # request would never hit (and would leave a class per request for the garbage collector).
    rules = (
        *(() if introspection else (NoSchemaIntrospectionCustomRule,)),
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=30).validation_rules,
    )
    guards = Guards(
        rules=rules,
        max_tokens=MAX_TOKENS,
        cost=CostLimit(
            max_query_cost,
            default_page_size=SESSIONS_PAGE_DEFAULT,
            field_page_sizes=PAGE_SIZES,
            list_arguments=LIST_ARGUMENTS,
        ),
        observe=observe_operation,
    )
    extensions: list[Callable[[], SchemaExtension]] = [lambda: OperationGuard(guards)]
    if trace_operations is not None:
        extensions.insert(0, trace_operations)
    schema = SessionGraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[SystemMessage, UserMessage, AssistantMessage, ToolMessage, DeveloperMessage],
        extensions=extensions,
        execution_context_class=PlannedExecutionContext,
        config=StrawberryConfig(scalar_map=SCALAR_MAP, disable_field_suggestions=not introspection),
    )
    schema.guards = guards
    return schema


def schema_sdl() -> str:
    """The schema in GraphQL SDL, as kept in schema.graphql."""
    return create_schema().as_str() + "\n"
