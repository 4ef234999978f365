"""Relay's `Node` interface: the objects a client can fetch again by their id alone."""

from __future__ import annotations

import strawberry


@strawberry.interface(
    description="An object with an id unique among all sessions and messages, which "
    "`node(id:)` and `nodes(ids:)` fetch again."
)
class Node:
    id: strawberry.ID = strawberry.field(description="The object's unique id.")
