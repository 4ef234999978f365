"""The GraphQL schema: Strawberry types that delegate to `resolvers/`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.errors import ErrorPresenter
from schema.messages import (
    AssistantMessage,
    DeveloperMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from schema.scalars import SCALAR_MAP
from schema.sessions import SessionMutations, SessionQueries
from schema.subscriptions import Subscription


class SessionGraphSchema(strawberry.Schema):
    """Strawberry's schema, minus its logging of every error: `ErrorPresenter` logs the
    unexpected ones with their request id, and client errors are not server faults."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None


@strawberry.type(description="Read sessions and their transcripts.")
class Query(SessionQueries):
    pass


@strawberry.type(description="Create, change and delete sessions; append messages.")
class Mutation(SessionMutations):
    pass


def create_schema(
    extra_extensions: Sequence[Callable[[], SchemaExtension]] = (),
) -> strawberry.Schema:
    """The schema with its guards: parser and validation caches (bounded), limits on depth,
    tokens and aliases, and error coding and masking."""
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
        lambda: QueryDepthLimiter(max_depth=12),
        lambda: MaxTokensLimiter(max_token_count=4000),
        lambda: MaxAliasesLimiter(max_alias_count=30),
        *extra_extensions,
        ErrorPresenter,
    ]
    return SessionGraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[SystemMessage, UserMessage, AssistantMessage, ToolMessage, DeveloperMessage],
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )


def schema_sdl() -> str:
    """The schema in GraphQL SDL, as kept in schema.graphql."""
    return create_schema().as_str() + "\n"
