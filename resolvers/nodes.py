"""Relay's object identification: any session or message of the organization by id alone."""

from __future__ import annotations

from resolvers.context import Context
from resolvers.errors import BadUserInput
from resolvers.loaders import MessageNode, SessionNode

NODES_MAX = 100
"""The most ids one `nodes(ids:)` may ask for."""

Node = SessionNode | MessageNode


async def node_by_id(ctx: Context, node_id: str) -> Node | None:
    """The session or message with this id, or None when there is none in the organization
    (another organization's, unknown or malformed). Every node of a request is read together."""
    node: Node | None = await ctx.loaders.node_by_id.load(node_id)
    return node


async def nodes_by_id(ctx: Context, node_ids: list[str]) -> list[Node | None]:
    """`node_by_id` for each id, in order, read together; at most `NODES_MAX` ids."""
    if len(node_ids) > NODES_MAX:
        raise BadUserInput(
            f"ids has {len(node_ids)} values; at most {NODES_MAX} are allowed.", fields=["ids"]
        )
    nodes: list[Node | None] = await ctx.loaders.node_by_id.load_many(node_ids)
    return nodes
