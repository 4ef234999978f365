"""Subscriptions: live transcripts, session changes and the org-wide feed, over websockets."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import subscriptions as resolvers
from resolvers.context import Info
from resolvers.session_events import session_event_stream
from schema.messages import Message, message_from_record
from schema.session_events import SessionEvent
from schema.sessions import Session

MESSAGE_ADDED = "messageAdded"
SESSION_UPDATED = "sessionUpdated"
SESSION_EVENTS = "sessionEvents"
SUBSCRIPTION_FIELDS = (MESSAGE_ADDED, SESSION_UPDATED, SESSION_EVENTS)
"""The root fields of `Subscription`, as the live transports, metrics and logs name them."""


@strawberry.type(description="Watch sessions live.")
class Subscription:
    @strawberry.subscription(
        name=MESSAGE_ADDED,
        description="Each new message of a session, in seq order, exactly once. With "
        "afterSeq, messages after that seq are replayed first (resume after a dropped "
        "connection with the last seq seen). Completes when the session completes, expires "
        "or is deleted.",
    )
    async def message_added(
        self, info: Info, session_id: strawberry.ID, after_seq: int | None = None
    ) -> AsyncGenerator[Message, None]:
        async for record in resolvers.message_stream(info.context, session_id, after_seq):
            yield message_from_record(record)

    @strawberry.subscription(
        name=SESSION_UPDATED,
        description="The session each time it changes: name, status, expiry, and "
        "messageCount as messages are appended. Completes when it is deleted.",
    )
    async def session_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Session, None]:
        async for record in resolvers.session_stream(info.context, id):
            yield Session.of(record)

    @strawberry.subscription(
        name=SESSION_EVENTS,
        description="Every create, update (messages appended included), completion (by "
        "expiry too) and delete of the organization's sessions, in commit order, each once. "
        "Without after: from now on. With after (an event's cursor): every event after it, "
        "then live ones; a cursor older than the event log keeps (24 hours by default) gets "
        "CURSOR_EXPIRED.",
    )
    async def session_events(
        self, info: Info, after: str | None = None
    ) -> AsyncGenerator[SessionEvent, None]:
        context = info.context
        async for record in session_event_stream(context, after, context.session_ids):
            yield SessionEvent.of(record)
