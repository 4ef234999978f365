"""Guards against expensive or hostile operations, checked before anything executes."""

from __future__ import annotations

import httpx
from graphql import get_introspection_query

from schema import create_schema
from sessiongraph.app import create_app
from sessiongraph.settings import Settings
from tests.api_client import ApiClient
from tests.serving import bound_socket, serve

HUGE = """
{ sessions(first: 100) { edges { node { messages(first: 500) { edges { node { id } } } } } } }
"""
DASHBOARD = """
{ sessions(first: 20) { nodes { id name messages(last: 5) { nodes { seq content } } } } }
"""
DEEP = "{ sessions { nodes { messages { nodes { ... on AssistantMessage { toolCalls { function { name } } } } } } } }"  # noqa: E501
INTROSPECTION = get_introspection_query(descriptions=True)
MANY_ALIASES = "{ " + " ".join(f"a{i}: sessions {{ totalCount }}" for i in range(31)) + " }"
MANY_TOKENS = "{ sessions { totalCount " + "__typename " * 4000 + "} }"
TYPO = "{ sessions { totalCont } }"


async def test_an_operation_over_the_cost_budget_is_rejected_with_its_cost(api: ApiClient) -> None:
    error = await api.error(HUGE)

    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["cost"] > error["extensions"]["maxCost"] == 50_000
    assert str(error["extensions"]["cost"]) in error["message"]


async def test_a_dashboard_query_is_within_the_budget(api: ApiClient) -> None:
    assert "sessions" in await api.data(DASHBOARD)


async def test_a_nested_fragment_query_within_depth_runs(api: ApiClient) -> None:
    assert "sessions" in await api.data(DEEP)


async def test_too_deep_an_operation_is_rejected(settings: Settings, org: tuple[str, str]) -> None:
    shallow = create_app(settings.model_copy(update={"max_query_depth": 5}))
    async with serve(shallow, bound_socket()) as url, ApiClient(url, org[1]) as api:
        error = await api.error(DEEP)

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in error["message"]


async def test_graphiqls_introspection_query_passes_every_limit(api: ApiClient) -> None:
    data = await api.data(INTROSPECTION)

    assert data["__schema"]["queryType"]["name"] == "Query"


async def test_too_many_aliases_are_rejected(api: ApiClient) -> None:
    error = await api.error(MANY_ALIASES)

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "aliases" in error["message"]


async def test_too_many_tokens_are_rejected(api: ApiClient) -> None:
    body = await api.execute(MANY_TOKENS)

    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "token" in body["errors"][0]["message"].lower()


async def test_field_suggestions_are_given_while_introspection_is_on(api: ApiClient) -> None:
    error = await api.error(TYPO)

    assert "Did you mean" in error["message"]


async def test_field_suggestions_are_off_when_introspection_is(
    settings: Settings, org: tuple[str, str]
) -> None:
    closed = create_app(settings.model_copy(update={"introspection": False}))
    async with serve(closed, bound_socket()) as url, httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/graphql",
            json={"query": TYPO},
            headers={"Authorization": f"Bearer {org[1]}"},
        )

    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "Did you mean" not in error["message"]


async def test_a_repeated_operation_is_validated_once() -> None:
    # Validation (the limits' rules included) is the costliest step before execution; the
    # cache must hit for a document it has seen, whatever the limits are.
    schema = create_schema(max_depth=7)
    document = "query Repeated { __typename t: __typename }"
    validate = schema.guards.validate
    await schema.execute(document)
    before = validate.cache_info()

    for _ in range(3):
        result = await schema.execute(document)
        assert result.errors is None

    after = validate.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (3, 0)


async def test_the_limits_still_apply_to_a_cached_document() -> None:
    schema = create_schema(max_depth=7)
    aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"

    for _ in range(2):
        result = await schema.execute(aliases)
        assert result.errors is not None
        assert "aliases" in result.errors[0].message
