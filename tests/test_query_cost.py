from collections.abc import AsyncGenerator, Iterator, Mapping
from enum import Enum
from typing import Annotated, Any

import pytest
import strawberry
from graphql import parse
from strawberry.extensions import ValidationCache

from schema import PAGE_SIZES, create_schema
from schema.cost import operation_cost
from tests.reference_extensions import QueryCostLimiter

CALLS: list[str] = []


@strawberry.enum
class Kind(Enum):
    BOOK = "book"
    TOOL = "tool"


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class Item(Node):
    name: str
    kind: Kind

    @strawberry.field
    def related(self) -> "Item | None":
        return None

    @strawberry.field
    def children(self, first: int | None = None) -> list["Item"]:
        return []


@strawberry.type
class Tag(Node):
    label: str

    @strawberry.field
    def item(self) -> Item:
        return _item()


SearchResult = Annotated[Item | Tag, strawberry.union("SearchResult")]


@strawberry.type
class ItemEdge:
    cursor: str
    node: Item


@strawberry.type
class ItemConnection:
    total_count: int
    edges: list[ItemEdge]


def _item() -> Item:
    return Item(id=strawberry.ID("1"), name="hammer", kind=Kind.TOOL)


@strawberry.type
class Query:
    version: str = "1"

    @strawberry.field
    def featured(self) -> Item:
        return _item()

    @strawberry.field
    def node(self, id: strawberry.ID) -> Node | None:
        return _item()

    @strawberry.field
    def search(self, text: str) -> list[SearchResult]:
        return [_item()]

    @strawberry.field
    def items(self, first: int | None = None, last: int | None = None) -> ItemConnection:
        CALLS.append("items")
        edges = [ItemEdge(cursor="c1", node=_item())]
        return ItemConnection(total_count=1, edges=edges)


@strawberry.type
class Mutation:
    @strawberry.mutation
    def create_items(self, first: int) -> list[Item]:
        CALLS.append("createItems")
        return [_item()]


async def _item_stream() -> AsyncGenerator[Item, None]:
    yield _item()


@strawberry.type
class Subscription:
    @strawberry.subscription
    def item_added(self, first: int) -> AsyncGenerator[Item, None]:
        CALLS.append("itemAdded")
        return _item_stream()


MAX_COST = 11
SCHEMA = strawberry.Schema(
    Query,
    Mutation,
    Subscription,
    extensions=[lambda: QueryCostLimiter(MAX_COST, default_page_size=10)],
)
CACHED_SCHEMA = strawberry.Schema(
    Query,
    extensions=[ValidationCache, lambda: QueryCostLimiter(MAX_COST, default_page_size=10)],
)

LEAVES = "{ version }"
NESTED_OBJECTS = "{ featured { name related { kind related { id } } } }"
INTERFACE_FIELD = '{ node(id: "1") { id } }'
INTROSPECTION = "{ __typename __schema { types { name } } }"
ITEMS_FIRST_3 = "{ items(first: 3) { totalCount edges { node { id } } } }"
ITEMS_LAST_4 = "{ items(last: 4) { edges { node { id } } } }"
ITEMS_FIRST_2_LAST_6 = "{ items(first: 2, last: 6) { edges { node { id } } } }"
ITEMS_NO_PAGE_SIZE = "{ items { edges { node { id } } } }"
ITEMS_NEGATIVE_FIRST = "{ items(first: -1) { edges { node { id } } } }"
ITEMS_FIRST_0 = "{ items(first: 0) { edges { node { id } } } }"
NESTED_PAGES = "{ items(first: 3) { edges { node { children(first: 4) { related { id } } } } } }"
NESTED_CHILDREN_NO_PAGE_SIZE = "{ featured { children { related { id } } } }"
ITEMS_VARIABLE = "query Items($n: Int) { items(first: $n) { edges { node { id } } } }"
ITEMS_VARIABLE_WITH_DEFAULT = (
    "query Items($n: Int = 4) { items(first: $n) { edges { node { id } } } }"
)
NAMED_FRAGMENT = """
query { featured { ...ItemFields } }
fragment ItemFields on Item { name related { id } children(first: 2) { related { id } } }
"""
INLINE_FRAGMENT_WITHOUT_TYPE = "{ featured { ... { related { id } } } }"
ABSTRACT_INLINE_FRAGMENTS = """
{
  node(id: "1") { id ... on Item { related { id } } ... on Tag { item { id } } }
  search(text: "x") { ... on Item { related { id } } ...TagFields }
}
fragment TagFields on Tag { item { related { id } } }
"""
SKIP_AND_INCLUDE_LITERALS = """
{
  a: featured @skip(if: true) { id }
  b: featured @skip(if: false) { id }
  c: featured @include(if: false) { id }
  d: featured @include(if: true) { related @skip(if: true) { id } }
}
"""
SKIP_AND_INCLUDE_VARIABLES = """
query ($skipA: Boolean!, $includeB: Boolean = false) {
  a: featured @skip(if: $skipA) { id }
  b: featured @include(if: $includeB) { id }
}
"""
FRAGMENT_CYCLE = """
{ featured { ...A } }
fragment A on Item { related { ...B } }
fragment B on Item { related { ...A } }
"""
FRAGMENT_FAN_OUT_DEPTH = 40
FRAGMENT_FAN_OUT = (
    "{ featured { ...F0 } }\n"
    + "\n".join(
        f"fragment F{i} on Item {{ related {{ ...F{i + 1} ...F{i + 1} }} }}"
        for i in range(FRAGMENT_FAN_OUT_DEPTH)
    )
    + f"\nfragment F{FRAGMENT_FAN_OUT_DEPTH} on Item {{ related {{ id }} }}"
)
TWO_OPERATIONS = """
query Cheap { version featured { id } }
query Expensive { items(first: 5) { edges { node { id } } } }
"""
MUTATION_OVER_BUDGET = "mutation { createItems(first: 50) { related { id } } }"
SUBSCRIPTION_OVER_BUDGET = "subscription { itemAdded(first: 50) { related { id } } }"
SUBSCRIPTION_WITHIN_BUDGET = "subscription { itemAdded(first: 5) { related { id } } }"
ITEMS_FIRST_50 = "{ items(first: 50) { edges { node { id } } } }"
ITEMS_FIRST_5 = "{ items(first: 5) { edges { node { id } } } }"
UNKNOWN_FIELD = "{ items(first: 50) { edges { node { unknownField } } } }"


def cost(
    query: str,
    *,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    field_page_sizes: Mapping[tuple[str, str], int] | None = None,
) -> int:
    return operation_cost(
        SCHEMA._schema,
        parse(query),
        operation_name=operation_name,
        variables=variables,
        default_page_size=10,
        field_page_sizes=field_page_sizes,
    )


@pytest.fixture(autouse=True)
def _clear_calls() -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()


def test_leaf_fields_cost_nothing() -> None:
    assert cost(LEAVES) == 0


def test_each_nested_object_costs_one() -> None:
    assert cost(NESTED_OBJECTS) == 3


def test_interface_field_costs_one() -> None:
    assert cost(INTERFACE_FIELD) == 1


def test_typename_is_free_and_introspection_objects_cost_one() -> None:
    assert cost(INTROSPECTION) == 2


def test_first_multiplies_the_selection() -> None:
    assert cost(ITEMS_FIRST_3) == 1 + 3 * (1 + 1)


def test_last_multiplies_the_selection() -> None:
    assert cost(ITEMS_LAST_4) == 1 + 4 * 2


def test_larger_of_first_and_last_is_used() -> None:
    assert cost(ITEMS_FIRST_2_LAST_6) == 1 + 6 * 2


def test_first_zero_makes_the_selection_free() -> None:
    assert cost(ITEMS_FIRST_0) == 1


def test_nested_page_sizes_multiply() -> None:
    assert cost(NESTED_PAGES) == 1 + 3 * (1 + 1 + (1 + 4 * 1))


def test_default_page_size_applies_without_page_arguments() -> None:
    assert cost(ITEMS_NO_PAGE_SIZE) == 1 + 10 * 2


def test_per_field_page_size_overrides_the_default() -> None:
    sizes = {("Query", "items"): 3, ("Item", "children"): 5}
    assert cost(ITEMS_NO_PAGE_SIZE, field_page_sizes=sizes) == 1 + 3 * 2
    assert cost(NESTED_CHILDREN_NO_PAGE_SIZE, field_page_sizes=sizes) == 1 + (1 + 5 * 1)


def test_negative_page_size_is_treated_as_the_default() -> None:
    assert cost(ITEMS_NEGATIVE_FIRST) == 1 + 10 * 2


def test_non_integer_page_size_variable_is_treated_as_the_default() -> None:
    assert cost(ITEMS_VARIABLE, variables={"n": "5"}) == 1 + 10 * 2
    assert cost(ITEMS_VARIABLE, variables={"n": True}) == 1 + 10 * 2


def test_given_variable_sets_the_page_size() -> None:
    assert cost(ITEMS_VARIABLE, variables={"n": 2}) == 1 + 2 * 2
    assert cost(ITEMS_VARIABLE_WITH_DEFAULT, variables={"n": 2}) == 1 + 2 * 2


def test_missing_variable_uses_its_declared_default() -> None:
    assert cost(ITEMS_VARIABLE_WITH_DEFAULT, variables={}) == 1 + 4 * 2


def test_missing_variable_without_default_uses_the_default_page_size() -> None:
    assert cost(ITEMS_VARIABLE, variables=None) == 1 + 10 * 2


def test_named_fragments_are_expanded() -> None:
    assert cost(NAMED_FRAGMENT) == 1 + 1 + (1 + 2 * 1)


def test_inline_fragment_without_type_condition_is_expanded() -> None:
    assert cost(INLINE_FRAGMENT_WITHOUT_TYPE) == 2


def test_abstract_type_fragments_are_all_added_up() -> None:
    node = 1 + 1 + 1
    search = 1 + 1 + (1 + 1)
    assert cost(ABSTRACT_INLINE_FRAGMENTS) == node + search


def test_skip_and_include_literals_are_honoured() -> None:
    assert cost(SKIP_AND_INCLUDE_LITERALS) == 2


def test_skip_and_include_variables_are_honoured() -> None:
    assert cost(SKIP_AND_INCLUDE_VARIABLES, variables={"skipA": True}) == 0
    assert cost(SKIP_AND_INCLUDE_VARIABLES, variables={"skipA": False}) == 1
    assert cost(SKIP_AND_INCLUDE_VARIABLES, variables={"skipA": True, "includeB": True}) == 1


def test_fragment_cycle_terminates() -> None:
    assert cost(FRAGMENT_CYCLE) == 1 + 1 + 1


def test_fragment_fan_out_is_costed_without_exponential_work() -> None:
    fragment_cost = 1
    for _ in range(FRAGMENT_FAN_OUT_DEPTH):
        fragment_cost = 1 + 2 * fragment_cost
    assert cost(FRAGMENT_FAN_OUT) == 1 + fragment_cost


def test_operation_name_selects_the_operation() -> None:
    assert cost(TWO_OPERATIONS, operation_name="Cheap") == 1
    assert cost(TWO_OPERATIONS, operation_name="Expensive") == 1 + 5 * 2


def test_ambiguous_or_missing_operation_costs_nothing() -> None:
    assert cost(TWO_OPERATIONS) == 0
    assert cost(TWO_OPERATIONS, operation_name="Missing") == 0


@pytest.mark.asyncio
async def test_over_budget_query_is_rejected_without_running_resolvers() -> None:
    result = await SCHEMA.execute(ITEMS_FIRST_50)

    assert result.data is None
    assert result.errors is not None
    [error] = result.errors
    assert error.message == "Query cost 101 exceeds the limit of 11."
    assert error.extensions == {"code": "QUERY_TOO_COMPLEX", "cost": 101, "maxCost": MAX_COST}
    assert CALLS == []


@pytest.mark.asyncio
async def test_query_at_exactly_the_limit_executes() -> None:
    result = await SCHEMA.execute(ITEMS_FIRST_5)

    assert result.errors is None
    assert result.data == {"items": {"edges": [{"node": {"id": "1"}}]}}
    assert CALLS == ["items"]


def test_extension_honours_variables() -> None:
    result = SCHEMA.execute_sync(ITEMS_VARIABLE, variable_values={"n": 50})

    assert result.errors is not None
    assert result.errors[0].extensions == {
        "code": "QUERY_TOO_COMPLEX",
        "cost": 101,
        "maxCost": MAX_COST,
    }
    assert CALLS == []


def test_over_budget_mutation_is_rejected_without_running_resolvers() -> None:
    result = SCHEMA.execute_sync(MUTATION_OVER_BUDGET)

    assert result.data is None
    assert result.errors is not None
    assert result.errors[0].extensions == {
        "code": "QUERY_TOO_COMPLEX",
        "cost": 51,
        "maxCost": MAX_COST,
    }
    assert CALLS == []


@pytest.mark.asyncio
async def test_over_budget_subscription_is_rejected_without_running_resolvers() -> None:
    results = await SCHEMA.subscribe(SUBSCRIPTION_OVER_BUDGET)
    result = await anext(results)

    assert result.data is None
    assert result.errors is not None
    assert result.errors[0].extensions == {
        "code": "QUERY_TOO_COMPLEX",
        "cost": 51,
        "maxCost": MAX_COST,
    }
    assert CALLS == []


@pytest.mark.asyncio
async def test_subscription_within_budget_runs() -> None:
    results = await SCHEMA.subscribe(SUBSCRIPTION_WITHIN_BUDGET)
    result = await anext(results)

    assert result.errors is None
    assert result.data == {"itemAdded": {"related": None}}
    assert CALLS == ["itemAdded"]


def test_validation_errors_are_reported_instead_of_the_cost() -> None:
    result = SCHEMA.execute_sync(UNKNOWN_FIELD)

    assert result.errors is not None
    [error] = result.errors
    assert "unknownField" in error.message
    assert CALLS == []


def test_limiter_after_validation_cache_rejects_over_budget_query() -> None:
    result = CACHED_SCHEMA.execute_sync(ITEMS_FIRST_50)

    assert result.errors is not None
    assert result.errors[0].extensions is not None
    assert result.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert CALLS == []


PAGES_AND_CONDITIONS = """
query Pages($n: Int, $m: Int = 4, $skip: Boolean = false, $id: String) {
  sessions(first: $n, after: $id) {
    nodes { id messages(last: $m) @skip(if: $skip) { nodes { seq } } }
  }
}
"""


async def test_an_estimate_is_reused_only_while_page_sizes_and_conditions_are_the_same() -> None:
    # A budget of 0 rejects every operation with its estimate in the error.
    schema = create_schema(max_query_cost=0)
    requests: list[dict[str, Any]] = [
        {"n": 2, "m": 3},
        {"n": 2, "m": 3, "id": "a"},  # another cursor: the same estimate, reused
        {"n": 2, "m": 3, "id": "b"},
        {"n": 5, "m": 3},
        {"n": 2, "m": 3, "skip": True},
        {"n": 2, "m": True},  # True == 1 in Python, but it is no page size
        {"n": 2, "m": 1},
        {"n": 2},
        {},
        {"n": 2, "m": 3},
    ]
    for variables in requests:
        result = await schema.execute(PAGES_AND_CONDITIONS, variables)

        assert result.errors is not None
        assert result.errors[0].extensions is not None
        assert result.errors[0].extensions["cost"] == operation_cost(
            schema._schema,
            parse(PAGES_AND_CONDITIONS),
            operation_name=None,
            variables=variables,
            default_page_size=20,
            field_page_sizes=PAGE_SIZES,
        ), variables
    assert (schema.guards.cost.hits, schema.guards.cost.misses) == (3, 7)
