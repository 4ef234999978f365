"""Subscriptions: live transcripts and session changes, over websockets on /graphql."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import subscriptions as resolvers
from resolvers.context import Info
from schema.messages import Message, message_from_record
from schema.sessions import Session


@strawberry.type(description="Watch sessions live.")
class Subscription:
    @strawberry.subscription(
        description="Each new message of a session, in seq order, exactly once. With "
        "afterSeq, messages after that seq are replayed first (resume after a dropped "
        "connection with the last seq seen). Completes when the session completes, expires "
        "or is deleted."
    )
    async def message_added(
        self, info: Info, session_id: strawberry.ID, after_seq: int | None = None
    ) -> AsyncGenerator[Message, None]:
        async for record in resolvers.message_stream(info.context, session_id, after_seq):
            yield message_from_record(record)

    @strawberry.subscription(
        description="The session each time it changes: name, status, expiry, and "
        "messageCount as messages are appended. Completes when it is deleted."
    )
    async def session_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Session, None]:
        async for record in resolvers.session_stream(info.context, id):
            yield Session.of(record)
