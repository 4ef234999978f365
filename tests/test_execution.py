"""The served schema answers every document exactly as plain Strawberry and graphql-core do.

The app's schema runs with one folded extension (`OperationGuard`) and an execution context
that answers a query from its compiled plan (`PlannedExecutionContext`, schema/plans.py),
falling back to the normal path, where plain leaves are answered directly
(`LeafFirstExecutionContext`). The reference here is the same types with graphql-core's own
execution and the seven extensions the guard replaced, as they were. Both run the same
documents against the same data, and their results (data, its JSON text, errors with their
codes, paths and messages, and what the metrics hear) must be equal: generated queries
(hypothesis-graphql) over seeded sessions, a set of written documents, and tiny schemas whose
values are what the plan and the fast path must hand back to graphql-core (each such
document is checked to be answered by the plan, abandoned by it, or never compiled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
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
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.scalars import JSON
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
from schema.execution import LeafFirstExecutionContext, PlannedExecutionContext
from schema.messages import (
    AssistantMessage,
    DeveloperMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from schema.observe import OperationObserver
from schema.plans import PLAN_EVENTS
from schema.scalars import SCALAR_MAP
from schema.subscriptions import Subscription
from storage import Database, MessageStore, SessionStore
from storage.events import EventHub
from storage.message_windows import UNSET_WINDOWS
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
    # The JSON text too: dicts compare equal whatever their key order, response bodies do not.
    outcome: dict[str, Any] = {"data": result.data, "json": orjson.dumps(result.data)}
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
    before = PLAN_EVENTS.copy()

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
    # Most generated queries were answered by their compiled plan, some by the normal path.
    events = PLAN_EVENTS - before
    assert events["answered"] > GENERATED_QUERIES // 2, events
    assert events["abandoned"] > 0, events


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
    (
        """query Plain($id: ID!, $n: Int) {
          session(id: $id) {
            __typename id i2: id name status messageCount createdAt
            messages(first: $n) {
              totalCount pageInfo { hasNextPage endCursor }
              edges { cursor node { __typename seq ...on UserMessage { content } } }
              nodes { id seq role content createdAt metadata }
            }
            first: messages(first: 2) { nodes { seq ... on Node { id } } }
            last: messages(last: 2) { nodes { seq } }
            assistant { name model { provider } metadata }
            customer { number name }
          }
          sessions(first: 3) { totalCount nodes { id messages(last: 1) { nodes { seq } } } }
        }""",
        [{"n": 1}, {"n": 0}, {}],
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
    before = PLAN_EVENTS.copy()

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
    events = PLAN_EVENTS - before
    assert events["answered"] >= 5
    # At most one plan per document (not per request); some documents have none.
    assert events["compiled"] + events["not compiled"] <= len(WRITTEN)


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


@pytest.mark.parametrize("context_class", [LeafFirstExecutionContext, PlannedExecutionContext])
@pytest.mark.parametrize("document", TINY_DOCUMENTS)
async def test_leaves_the_fast_path_cannot_answer_get_graphql_cores_errors(
    document: str, context_class: Any
) -> None:
    before = PLAN_EVENTS.copy()
    served = await _tiny(context_class).execute(document)
    reference = await _tiny(None).execute(document)

    assert _outcome(served) == _outcome(reference)
    assert reference.errors  # every document meets at least one odd value
    if context_class is PlannedExecutionContext:  # the plan met it and gave way
        assert (PLAN_EVENTS - before)["abandoned"] == 1


# What a compiled plan must leave to graphql-core, and when plans are made --------------------


@strawberry.interface
class Shape:
    sides: int


@strawberry.type
class Square(Shape):
    size: int


@strawberry.type
class Circle(Shape):
    radius: float


class Blob:
    """An object whose type the schema does not know."""

    sides = 0


@strawberry.type
class PlanQuery:
    @strawberry.field
    def shapes(self) -> list[Shape]:
        return [Square(sides=4, size=2), Circle(sides=0, radius=1.5)]

    @strawberry.field
    def odd_shapes(self) -> list[Shape]:
        return [Square(sides=4, size=2), Blob()]  # type: ignore[list-item]

    @strawberry.field
    def pick(self, n: int) -> Thing:
        return Thing(**{**GOOD, "count": n})

    @strawberry.field
    async def later_pick(self, n: int) -> Thing | None:
        await asyncio.sleep(0)
        return Thing(**{**GOOD, "count": n})

    @strawberry.field
    def required(self) -> Thing:
        return None  # type: ignore[return-value]

    @strawberry.field
    async def fails(self) -> Thing | None:
        await asyncio.sleep(0)
        raise ValueError("the resolver failed")

    @strawberry.field
    def returns_error(self) -> Thing | None:
        return ValueError("returned, not raised")  # type: ignore[return-value]

    @strawberry.field
    def counted(self, data: JSON) -> JSON:
        values: dict[str, Any] = data  # type: ignore[assignment]
        values["n"] = values.get("n", 0) + 1  # changes its argument in place
        return data

    @strawberry.field
    def shade(self, light: bool) -> Shade:
        return Shade.LIGHT if light else "grey"  # type: ignore[return-value]


@strawberry.type
class PlanMutation:
    @strawberry.mutation
    def touch(self) -> int:
        return 1


@strawberry.type
class PlanSubscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[int, None]:
        yield 1


PLANNED: list[tuple[str, dict[str, Any], str]] = [
    # (document, variables, what the compiled plan does with it)
    (
        "{ shapes { __typename sides ... on Square { size } ... on Circle { radius } } }",
        {},
        "answered",
    ),
    ("{ shapes { ...S } } fragment S on Shape { sides ... on Square { size } }", {}, "answered"),
    ("{ a: pick(n: 1) { count } b: pick(n: 2) { count doubled } }", {}, "answered"),
    (
        "query Q($n: Int!, $m: Int!) { a: laterPick(n: $n) { count } b: laterPick(n: $m) "
        "{ count } pick(n: $n) { doubled } }",
        {"n": 3, "m": 4},
        "answered",
    ),
    ("{ oddShapes { sides } }", {}, "abandoned"),  # a runtime type the plan does not know
    ("{ oddShapes { ... on Square { size } } }", {}, "abandoned"),
    ("{ required { count } }", {}, "abandoned"),  # null in a non-null position
    ("{ pick(n: 1) { count } fails { count } }", {}, "abandoned"),  # a resolver raising
    ("{ returnsError { count } }", {}, "abandoned"),  # an exception as the value
    ("{ light: shade(light: true) dark: shade(light: false) }", {}, "abandoned"),  # enum refuses
    ("{ pick(n: 1) { when } laterPick(n: 2147483647) { count } }", {}, "answered"),
    ("{ things { count } }", {}, "abandoned"),  # an Int refuses a value
    ("query Q($s: Boolean!) { pick(n: 1) { count @skip(if: $s) name } }", {"s": True}, "not"),
    ("query Q($s: Boolean!) { pick(n: 1) { count @include(if: $s) } }", {"s": False}, "not"),
    ("{ __schema { queryType { name } } }", {}, "not"),
]


@strawberry.type
class ThingsQuery(PlanQuery):
    @strawberry.field
    def things(self) -> list[Thing | None]:
        return [Thing(**{**GOOD, "count": 2**40})]


def _planned_schema(execution_context_class: Any) -> strawberry.Schema:
    return strawberry.Schema(
        query=ThingsQuery,
        mutation=PlanMutation,
        subscription=PlanSubscription,
        types=[Square, Circle],
        # One document object per text, as the served schema's parse cache gives.
        extensions=[lambda: ParserCache(maxsize=16)],
        scalar_overrides={datetime: STAMP},
        execution_context_class=execution_context_class,
    )


@pytest.mark.parametrize(("document", "variables", "expected"), PLANNED)
async def test_a_plan_answers_only_what_graphql_core_would_answer_alike(
    document: str, variables: dict[str, Any], expected: str
) -> None:
    served_schema = _planned_schema(PlannedExecutionContext)
    before = PLAN_EVENTS.copy()
    served = await served_schema.execute(document, variables)
    events = PLAN_EVENTS - before
    reference = await _planned_schema(None).execute(document, variables)

    assert _outcome(served) == _outcome(reference)
    if expected == "not":
        assert events == {"not compiled": 1}
    else:
        assert events == {"compiled": 1, expected: 1}
        assert (expected == "answered") == (reference.errors is None)


async def test_a_plan_is_compiled_once_per_document_and_only_for_queries() -> None:
    schema = _planned_schema(PlannedExecutionContext)
    query = "query Q($n: Int!) { pick(n: $n) { count } shapes { sides } }"
    before = PLAN_EVENTS.copy()

    results = [await schema.execute(query, {"n": n}) for n in range(5)]
    mutation = await schema.execute("mutation { touch }")
    ticks = await schema.subscribe("subscription { ticks }")

    assert [result.data["pick"]["count"] for result in results if result.data] == [0, 1, 2, 3, 4]
    assert mutation.data == {"touch": 1}
    assert not isinstance(ticks, strawberry.types.ExecutionResult)
    first = await ticks.__anext__()
    await ticks.aclose()
    assert first.data == {"ticks": 1}
    assert PLAN_EVENTS - before == {"compiled": 1, "answered": 5}


async def test_the_listings_messages_are_loaded_in_one_batch_by_a_plan(
    api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    await seed_sessions(api)
    # Stored without message windows (as before them), so the pages are read, not taken from
    # the session documents (storage/message_windows.py).
    await database.sessions.update_many({}, UNSET_WINDOWS)
    schema = create_schema()
    context = store_context(database, org[0])()
    batches: list[int] = []
    load = context.loaders.messages_by_seq_range.load_fn

    async def counted(keys: list[Any]) -> Any:
        batches.append(len(keys))
        return await load(keys)

    context.loaders.messages_by_seq_range.load_fn = counted
    before = PLAN_EVENTS.copy()
    result = await schema.execute(
        "{ sessions(first: 5) { nodes { id messages(last: 2) { nodes { seq } } } } }",
        context_value=context,
    )

    assert result.errors is None
    assert result.data is not None
    assert len(result.data["sessions"]["nodes"]) > 1
    assert (PLAN_EVENTS - before)["answered"] == 1
    assert batches == [len(result.data["sessions"]["nodes"])]


async def test_literal_arguments_a_resolver_could_change_are_not_shared_by_requests() -> None:
    schema = _planned_schema(PlannedExecutionContext)
    before = PLAN_EVENTS.copy()

    results = [await schema.execute("{ counted(data: {a: 1}) }") for _ in range(3)]

    assert [result.data for result in results] == [{"counted": {"a": 1, "n": 1}}] * 3
    assert PLAN_EVENTS - before == {"compiled": 1, "answered": 3}
