"""Relay's refetch fields: `node(id:)` and `nodes(ids:)` on `Query`."""

from __future__ import annotations

import strawberry

from resolvers import nodes as resolvers
from resolvers.context import Info
from resolvers.loaders import SessionNode
from schema.messages import message_from_record
from schema.node import Node
from schema.sessions import Session


def _node(found: resolvers.Node | None) -> Node | None:
    if found is None:
        return None
    if isinstance(found, SessionNode):
        return Session.of(found.record)
    return message_from_record(found.record)


@strawberry.type
class NodeQueries:
    @strawberry.field(
        description="The session or message with this id; null when there is none in the "
        "caller's organization."
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return _node(await resolvers.node_by_id(info.context, id))

    @strawberry.field(
        description=f"The sessions and messages with these ids (at most {resolvers.NODES_MAX}), "
        "in order; null for each id with none in the caller's organization."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        found = await resolvers.nodes_by_id(info.context, [str(i) for i in ids])
        return [_node(node) for node in found]
