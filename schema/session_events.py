"""The org-wide feed's types: one event per change of a session, with its cursor."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from resolvers import sessions as session_resolvers
from resolvers.context import Info
from schema.sessions import Session
from storage.session_events import SessionEventRecord


@strawberry.enum(description="What happened to a session.")
class SessionEventType(Enum):
    CREATED = strawberry.enum_value("CREATED", description="It was created.")
    UPDATED = strawberry.enum_value(
        "UPDATED",
        description="Its name, status or expiry changed, or messages were appended to it.",
    )
    COMPLETED = strawberry.enum_value(
        "COMPLETED", description="It was completed, by an update or by reaching its expiry."
    )
    DELETED = strawberry.enum_value("DELETED", description="It was deleted.")


@strawberry.type(description="One change of one of the organization's sessions.")
class SessionEvent:
    cursor: str = strawberry.field(
        description="Where this event sits in commit order; pass it as sessionEvents(after:) "
        "to resume after it."
    )
    type: SessionEventType = strawberry.field(description="What happened.")
    session_id: strawberry.ID = strawberry.field(description="The session it happened to.")
    at: datetime = strawberry.field(description="When the change was committed.")

    @strawberry.field(
        description="The session as it is now (not as it was at the event); null once deleted."
    )
    async def session(self, info: Info) -> Session | None:
        if self.type is SessionEventType.DELETED:
            return None
        record = await session_resolvers.session_by_id(info.context, self.session_id)
        return None if record is None else Session.of(record)

    @classmethod
    def of(cls, record: SessionEventRecord) -> SessionEvent:
        return cls(
            cursor=record.cursor,
            type=SessionEventType(record.type),
            session_id=strawberry.ID(record.session_id),
            at=record.at,
        )
