"""The served schema answers every document exactly as plain Strawberry and graphql-core do.

The app's schema runs with one folded extension (`OperationGuard`) and an execution context
that answers plain leaves itself (`LeafFirstExecutionContext`). The reference here is the
same types with graphql-core's own execution and the seven extensions the guard replaced,
as they were. Both run the same documents against the same data, and their results (data,
errors with their codes, paths and messages, and what the metrics hear) must be equal:
generated queries (hypothesis-graphql) over seeded sessions, a set of written documents, and
a tiny schema whose leaves hold every value the fast path must hand back to graphql-core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson
import pytest
import strawberry
from hypothesis import given
from hypothesis_graphql import queries
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from resolvers.context import Context
from schema import (
    LIST_ARGUMENTS,
    PAGE_SIZES,
    Mutation,
    Query,
    SessionGraphSchema,
    create_schema,
)
from schema.execution import LeafFirstExecutionContext
from schema.messages import (
    AssistantMessage,
    DeveloperMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from schema.observe import OperationObserver
from schema.scalars import SCALAR_MAP
from schema.subscriptions import Subscription
from storage import Database, MessageStore, SessionStore
from storage.events import EventHub
from tests.api_client import ApiClient
from tests.factories import seed_sessions
from tests.fuzz_values import SDL, custom_scalars, fuzz_settings
from tests.reference_extensions import (
    ErrorPresenter,
    OperationObserving,
    QueryCostLimiter,
    SafeParserCache,
)
from tests.worker_thread_api import WorkerThreadApi, in_worker_thread

GENERATED_QUERIES = 150
MAX_COST = 50_000

Report = tuple[str | None, str, str]
"""What the metrics hear of an operation: name, type, outcome (the duration left out)."""


def reference_schema(observe: OperationObserver) -> SessionGraphSchema:
    """The app's types with graphql-core's own execution and the extensions as they were
    before they were folded into one."""
    limit_rules = [
        *QueryDepthLimiter(max_depth=12).validation_rules,
        *MaxAliasesLimiter(max_alias_count=30).validation_rules,
    ]
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: OperationObserving(observe),
        SafeParserCache,
        lambda: ValidationCache(maxsize=512),
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=4000),
        lambda: QueryCostLimiter(
            MAX_COST,
            default_page_size=20,
            field_page_sizes=PAGE_SIZES,
            list_arguments=LIST_ARGUMENTS,
        ),
        ErrorPresenter,
    ]
    # SessionGraphSchema only leaves out Strawberry's logging of each error.
    return SessionGraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[SystemMessage, UserMessage, AssistantMessage, ToolMessage, DeveloperMessage],
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )


class Pair:
    """The served schema and the reference, each with the reports its observer heard."""

    def __init__(self) -> None:
        self.served_reports: list[Report] = []
        self.reference_reports: list[Report] = []
        self.served = create_schema(
            max_query_cost=MAX_COST,
            observe_operation=lambda n, t, o, _d: self.served_reports.append((n, t, o)),
        )
        self.reference = reference_schema(
            lambda n, t, o, _d: self.reference_reports.append((n, t, o))
        )


def _outcome(result: Any) -> dict[str, Any]:
    outcome: dict[str, Any] = {"data": result.data}
    if result.errors:
        # Sorted: errors of resolvers that run concurrently arrive in the order they finish,
        # which neither execution fixes (nor does the spec), so only the set is compared.
        formatted = [error.formatted for error in result.errors]
        outcome["errors"] = sorted(formatted, key=lambda error: orjson.dumps(error, default=str))
    return outcome


async def _both(
    pair: Pair,
    context: Callable[[], Any],
    document: str,
    variables: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    outcomes = []
    for schema in (pair.served, pair.reference):
        try:
            result = await schema.execute(document, variables, context())
        except Exception as error:  # refused as a whole: the HTTP layer answers those
            outcomes.append({"raised": type(error).__name__, "message": str(error)})
        else:
            outcomes.append(_outcome(result))
    return outcomes[0], outcomes[1]


def store_context(database: Database, org_id: str) -> Callable[[], Context]:
    sessions, messages, events = SessionStore(database), MessageStore(database), EventHub()
    return lambda: Context(org_id, "req-diff", sessions, messages, events)


async def test_generated_queries_give_the_same_results_as_plain_execution(
    server: str, api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    session_ids = await seed_sessions(api)
    pair = Pair()
    context = store_context(database, org[0])
    answered: list[bool] = []

    with WorkerThreadApi(server, org[1]) as worker:

        @fuzz_settings(GENERATED_QUERIES)
        @given(queries(SDL, custom_scalars=custom_scalars(session_ids)))
        def compare(document: str) -> None:
            served, reference = worker.run(_both(pair, context, document))
            assert served == reference, document
            answered.append("errors" not in served)

        await in_worker_thread(compare)

    assert len(answered) >= GENERATED_QUERIES
    # Both kinds were compared: documents answered in full, and documents with errors.
    assert any(answered)
    assert not all(answered)
    assert pair.served_reports == pair.reference_reports


WRITTEN: list[tuple[str, list[dict[str, Any]]]] = [
    (
        """query Both($id: ID!, $skip: Boolean!, $n: Int) {
          session(id: $id) {
            __typename id i2: id name status messageCount createdAt
            messages(first: $n) @skip(if: $skip) {
              totalCount pageInfo { hasNextPage endCursor }
              edges { cursor node { __typename seq ...on UserMessage { content } } }
              nodes { id seq role content createdAt metadata }
            }
            assistant { name model { provider } metadata }
            customer { number name }
          }
        }""",
        [{"skip": False, "n": 1}, {"skip": True}, {"skip": False, "n": 0}, {"skip": False}],
    ),
    (
        """query List($first: Int, $include: Boolean = true) {
          sessions(first: $first) {
            totalCount
            pageInfo { hasPreviousPage hasNextPage startCursor }
            nodes { ...S messages(last: 1) @include(if: $include) { nodes { seq role } } }
          }
        }
        fragment S on Session { id name status phoneNumber { twilioPhoneNumber } }""",
        [{"first": 3}, {"first": 3, "include": False}, {"first": 0}, {"first": -1}],
    ),
    ('{ session(id: "no such session") { id } }', [{}]),
    ("{ sessions(first: 2) { nodes { id } } __typename }", [{}]),
    # Refused before or while executing: each must be coded (and reported) alike.
    ("{ sessions(first: 2) { nodes { id nope } } }", [{}]),
    ("{ sessions(first: 2) { nodes { id } }", [{}]),
    ("query Q($n: Int) { sessions(first: $n) { nodes { id } } }", [{"n": "x"}, {"n": 2**40}]),
    ("{ sessions(first: 101) { nodes { id } } }", [{}]),
    ('{ sessions(after: "not a cursor") { nodes { id } } }', [{}]),
    (
        "query Big($n: Int) { sessions(first: $n) { nodes { messages(first: $n) "
        "{ nodes { id } } } } }",
        [{"n": 100}, {"n": 500}, {"n": 2}],
    ),
    ("{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }", [{}]),
    ("{ " + "sessions { nodes { " * 7 + "id" + " } }" * 7 + " }", [{}]),
    ("{ " + "__typename " * 4001 + "}", [{}]),
    ("subscription { messageAdded(sessionId: $id) { seq } }", [{}]),
]


async def test_written_documents_give_the_same_results_as_plain_execution(
    api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    session_id = (await seed_sessions(api))[0]
    pair = Pair()
    context = store_context(database, org[0])

    for document, variable_sets in WRITTEN:
        for variables in variable_sets:
            served, reference = await _both(
                pair, context, document, {"id": session_id, **variables}
            )
            assert served == reference, (document, variables)
    assert pair.served_reports == pair.reference_reports
    # Subscriptions are reported by the websocket layer, not by the schema.
    queries_sent = sum(len(sets) for doc, sets in WRITTEN if not doc.startswith("subscription"))
    assert len(pair.served_reports) == queries_sent


# A tiny schema whose leaves hold what the fast path must not answer itself ----------------


@strawberry.enum
class Shade(Enum):
    LIGHT = "light"
    DARK = "dark"


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


STAMP = strawberry.scalar(name="Stamp", serialize=_stamp, parse_value=datetime.fromisoformat)


@strawberry.type
class Thing:
    name: str
    nickname: str | None
    shade: Shade
    count: int
    when: datetime

    @strawberry.field
    def doubled(self) -> int:
        return self.count * 2


GOOD: dict[str, Any] = {
    "name": "a",
    "nickname": None,
    "shade": Shade.DARK,
    "count": 3,
    "when": datetime(2026, 1, 2, tzinfo=UTC),
}
ODD_VALUES: list[dict[str, Any]] = [
    GOOD,
    {**GOOD, "name": None},  # null in a non-null position
    {**GOOD, "shade": "purple"},  # no such enum value
    {**GOOD, "count": "many"},  # not an Int
    {**GOOD, "count": 2**40},  # beyond 32 bits
    {**GOOD, "when": "yesterday"},  # the scalar's serialize fails
    {**GOOD, "nickname": ValueError("an exception as a value")},
    {**GOOD, "nickname": 12},  # String serializes an int
]


def _things() -> list[Thing | None]:
    things: list[Thing | None] = [Thing(**values) for values in ODD_VALUES]
    missing = Thing(**GOOD)
    del missing.nickname  # the attribute is gone: getattr raises
    things.append(missing)
    return things


@strawberry.type
class TinyQuery:
    @strawberry.field
    def things(self) -> list[Thing | None]:
        return _things()

    @strawberry.field
    def strict(self) -> list[Thing]:
        return _things()  # type: ignore[return-value]

    @strawberry.field
    async def later(self) -> list[Thing | None]:
        await asyncio.sleep(0)
        return _things()


def _tiny(execution_context_class: Any) -> strawberry.Schema:
    return strawberry.Schema(
        query=TinyQuery,
        scalar_overrides={datetime: STAMP},
        execution_context_class=execution_context_class,
    )


TINY_DOCUMENTS = [
    "{ things { name nickname shade count when doubled __typename } }",
    "{ things { a: count b: doubled c: count name name } }",
    "{ strict { name } }",
    "{ strict { count doubled } }",
    "{ later { doubled shade nickname when } }",
    "{ things { ...F } } fragment F on Thing { shade ... on Thing { count } }",
]


@pytest.mark.parametrize("document", TINY_DOCUMENTS)
async def test_leaves_the_fast_path_cannot_answer_get_graphql_cores_errors(document: str) -> None:
    served = await _tiny(LeafFirstExecutionContext).execute(document)
    reference = await _tiny(None).execute(document)

    assert _outcome(served) == _outcome(reference)
    assert reference.errors  # every document meets at least one odd value
