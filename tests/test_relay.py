"""Relay's object identification: `node(id:)` and `nodes(ids:)` over the public API."""

from __future__ import annotations

import uuid
from typing import Any

from graphql import parse

from resolvers.nodes import NODES_MAX
from schema import LIST_ARGUMENTS, PAGE_SIZES, create_schema
from schema.cost import operation_cost
from sessiongraph.settings import Settings
from tests.api_client import ApiClient
from tests.command_log import counted

CREATE = """
mutation Create($name: String!) {
  createSession(input: {
    name: $name
    messages: [{system: {content: "be brief"}}, {user: {content: "hello"}}]
  }) {
    id messages { nodes { id } }
  }
}
"""
NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Session { name messageCount }
    ... on Message { sessionId seq role content }
  }
}
"""
NODES = """
query Nodes($ids: [ID!]!) {
  nodes(ids: $ids) {
    __typename id
    ... on Session { name }
    ... on UserMessage { content }
  }
}
"""
HEAVY_NODES = """
query Heavy($ids: [ID!]!) {
  nodes(ids: $ids) { id ... on Session { messages(first: 500) { nodes { id } } } }
}
"""


async def session_with_messages(api: ApiClient, name: str) -> tuple[str, list[str]]:
    """A session called `name` with two messages: its id and its messages' ids."""
    created = (await api.data(CREATE, {"name": name}))["createSession"]
    return created["id"], [m["id"] for m in created["messages"]["nodes"]]


async def test_a_session_is_fetched_again_by_its_id(api: ApiClient) -> None:
    session_id, _ = await session_with_messages(api, "refetched")

    node = (await api.data(NODE, {"id": session_id}))["node"]

    assert node == {
        "__typename": "Session",
        "id": session_id,
        "name": "refetched",
        "messageCount": 2,
    }


async def test_a_message_is_fetched_again_by_its_id_as_its_role_type(api: ApiClient) -> None:
    session_id, (system_id, user_id) = await session_with_messages(api, "messages")

    system = (await api.data(NODE, {"id": system_id}))["node"]
    user = (await api.data(NODE, {"id": user_id}))["node"]

    assert system == {
        "__typename": "SystemMessage",
        "id": system_id,
        "sessionId": session_id,
        "seq": 1,
        "role": "SYSTEM",
        "content": "be brief",
    }
    assert user["__typename"] == "UserMessage"
    assert (user["seq"], user["content"]) == (2, "hello")


async def test_another_organizations_session_and_message_read_as_null(
    api: ApiClient, other_api: ApiClient
) -> None:
    session_id, message_ids = await session_with_messages(other_api, "theirs")

    for node_id in (session_id, *message_ids):
        assert (await api.data(NODE, {"id": node_id}))["node"] is None
    theirs = (await other_api.data(NODE, {"id": session_id}))["node"]
    assert theirs["name"] == "theirs"


async def test_unknown_and_malformed_ids_read_as_null(api: ApiClient) -> None:
    session_id, _ = await session_with_messages(api, "known")
    for node_id in (str(uuid.uuid4()), "not-an-id", "", session_id.upper(), f"{{{session_id}}}"):
        assert (await api.data(NODE, {"id": node_id}))["node"] is None, node_id


async def test_nodes_answers_each_id_in_order_with_null_where_there_is_none(
    api: ApiClient, other_api: ApiClient
) -> None:
    session_id, (_, user_id) = await session_with_messages(api, "mine")
    theirs, _ = await session_with_messages(other_api, "theirs")
    unknown = str(uuid.uuid4())

    ids = [user_id, unknown, session_id, theirs, "garbage", session_id]
    nodes = (await api.data(NODES, {"ids": ids}))["nodes"]

    assert nodes == [
        {"__typename": "UserMessage", "id": user_id, "content": "hello"},
        None,
        {"__typename": "Session", "id": session_id, "name": "mine"},
        None,
        None,
        {"__typename": "Session", "id": session_id, "name": "mine"},
    ]


async def test_nodes_with_no_ids_is_an_empty_list(api: ApiClient) -> None:
    assert (await api.data(NODES, {"ids": []}))["nodes"] == []


async def test_more_ids_than_allowed_are_refused_naming_the_argument(api: ApiClient) -> None:
    ids = [str(uuid.uuid4()) for _ in range(NODES_MAX + 1)]

    error = await api.error(NODES, {"ids": ids})

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"] == ["ids"]
    assert f"ids has {NODES_MAX + 1} values; at most {NODES_MAX}" in error["message"]


async def test_nodes_of_one_type_are_read_with_one_command_whatever_their_number(
    api: ApiClient, settings: Settings
) -> None:
    created = [await session_with_messages(api, f"batch {n}") for n in range(10)]
    session_ids = [session_id for session_id, _ in created]
    message_ids = [ids[1] for _, ids in created]

    def nodes(ids: list[str]) -> str:
        return "{ nodes(ids: [" + ", ".join(f'"{i}"' for i in ids) + "]) { id } }"

    one_session = await counted(api, settings.db_name, nodes(session_ids[:1]))
    ten_sessions = await counted(api, settings.db_name, nodes(session_ids))
    one_message = await counted(api, settings.db_name, nodes(message_ids[:1]))
    ten_messages = await counted(api, settings.db_name, nodes(message_ids))
    mixed = await counted(api, settings.db_name, nodes(session_ids + message_ids))

    assert ten_sessions == one_session, (dict(one_session), dict(ten_sessions))
    assert one_session["find sessions"] == 1
    assert one_session["find messages"] == 0
    # Message ids are looked for among sessions first (ids do not say their type).
    assert ten_messages == one_message == mixed, (dict(one_message), dict(ten_messages))
    assert (one_message["find sessions"], one_message["find messages"]) == (1, 1)


async def test_aliased_node_fields_are_read_together(api: ApiClient, settings: Settings) -> None:
    created = [await session_with_messages(api, f"alias {n}") for n in range(5)]
    fields = "{ id ... on Session { name } }"
    one = await counted(api, settings.db_name, f'{{ n0: node(id: "{created[0][0]}") {fields} }}')
    five = await counted(
        api,
        settings.db_name,
        "{ "
        + " ".join(f'n{n}: node(id: "{s}") {fields}' for n, (s, _) in enumerate(created))
        + " }",
    )

    assert five == one, (dict(one), dict(five))


def cost(document: str, variables: dict[str, Any] | None = None) -> int:
    return operation_cost(
        create_schema()._schema,
        parse(document),
        operation_name=None,
        variables=variables,
        default_page_size=20,
        field_page_sizes=PAGE_SIZES,
        list_arguments=LIST_ARGUMENTS,
    )


def test_the_cost_of_nodes_grows_with_the_number_of_ids() -> None:
    per_session = 1 + 500  # the messages field, and 500 messages
    assert cost(HEAVY_NODES, {"ids": ["a"]}) == 1 + per_session
    assert cost(HEAVY_NODES, {"ids": ["a", "b", "c"]}) == 1 + 3 * per_session
    assert cost('{ nodes(ids: "a") { id ... on Session { name } } }') == 1


def test_the_cost_of_nodes_whose_ids_are_not_known_assumes_the_most_allowed() -> None:
    document = """
    query Q($ids: [ID!]!) { nodes(ids: $ids) { ... on Session { messages { nodes { id } } } } }
    """
    assert cost(document) == 1 + NODES_MAX * (1 + PAGE_SIZES[("Session", "messages")])


async def test_nodes_over_the_cost_limit_are_refused_before_they_run(api: ApiClient) -> None:
    ids = [str(uuid.uuid4()) for _ in range(NODES_MAX)]

    error = await api.error(HEAVY_NODES, {"ids": ids})

    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["cost"] == 1 + NODES_MAX * 501
