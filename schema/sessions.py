"""Sessions: the type, its list, and the queries and mutations on it."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from resolvers import messages as message_resolvers
from resolvers import session_inputs as inputs
from resolvers import sessions as resolvers
from resolvers.context import Info
from resolvers.pagination import PageArgs, session_cursor
from schema.assistant import Assistant
from schema.customer import Customer
from schema.documents import PerOperation
from schema.input_types import graphql_input
from schema.input_values import plain
from schema.messages import Message, MessageConnection, MessageInput, message_from_record
from schema.node import Node
from schema.pagination import PageInfo
from schema.phone_number import PhoneNumber
from storage import Page, SessionQuery, SessionRecord
from storage.records import SessionOrderField as OrderFieldValue


@strawberry.enum(description="Whether a session takes new messages.")
class SessionStatus(Enum):
    ACTIVE = "active"
    COMPLETED = "completed"


@strawberry.type(description="A conversation session of the caller's organization.")
class Session(Node):
    id: strawberry.ID = strawberry.field(description="The session's unique id (a UUID).")
    org_id: strawberry.ID = strawberry.field(description="The organization that owns it.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(
        description="When it last changed, messages appended included."
    )
    name: str | None = strawberry.field(description="Its name, at most 40 characters.")
    status: SessionStatus = strawberry.field(
        description="ACTIVE until completed or expired; an expired session reads COMPLETED."
    )
    expiration_seconds: int = strawberry.field(
        description="Its lifetime in seconds from creation "
        f"({inputs.EXPIRATION_MIN} to {inputs.EXPIRATION_MAX:,})."
    )
    expires_at: datetime = strawberry.field(description="createdAt + expirationSeconds.")
    assistant_id: strawberry.ID | None = strawberry.field(
        description="The id of an assistant kept elsewhere."
    )
    phone_number_id: strawberry.ID | None = strawberry.field(
        description="The id of a phone number kept elsewhere."
    )
    message_count: int = strawberry.field(description="How many messages it holds.")
    record: strawberry.Private[SessionRecord]

    @classmethod
    def of(cls, record: SessionRecord) -> Session:
        return cls(
            id=strawberry.ID(record["id"]),
            org_id=strawberry.ID(record["org_id"]),
            created_at=record["created_at"],
            updated_at=record["updated_at"],
            name=record["name"],
            status=SessionStatus(record["status"]),
            expiration_seconds=record["expiration_seconds"],
            expires_at=record["expires_at"],
            assistant_id=record["assistant_id"],  # type: ignore[arg-type]
            phone_number_id=record["phone_number_id"],  # type: ignore[arg-type]
            message_count=record["message_count"],
            record=record,
        )

    @strawberry.field(description="The assistant configuration given with the session.")
    def assistant(self) -> Assistant | None:
        return Assistant.from_stored(self.record["assistant"])

    @strawberry.field(description="The customer.")
    def customer(self) -> Customer | None:
        return Customer.from_stored(self.record["customer"])

    @strawberry.field(description="The Twilio phone number; its credentials are write-only.")
    def phone_number(self) -> PhoneNumber | None:
        return PhoneNumber.from_stored(self.record["phone_number"])

    @strawberry.field(
        description=f"The transcript in seq order: {message_resolvers.MESSAGES_PAGE_DEFAULT} a "
        f"page by default, at most {message_resolvers.MESSAGES_PAGE_MAX}. "
        "`last: 5` gives the five most recent."
    )
    async def messages(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> MessageConnection:
        args = PageArgs.check(
            first,
            after,
            last,
            before,
            default=message_resolvers.MESSAGES_PAGE_DEFAULT,
            maximum=message_resolvers.MESSAGES_PAGE_MAX,
        )
        page = await message_resolvers.session_messages(info.context, self.record, args)
        return MessageConnection.of(page, self.record["message_count"])


@strawberry.type(description="A session and its cursor.")
class SessionEdge:
    cursor: str = strawberry.field(description="Pass as after/before to page from here.")
    node: Session = strawberry.field(description="The session.")


def _session_edges(root: SessionConnection) -> list[SessionEdge]:
    cursors = root.cursors()
    return [SessionEdge(cursor=c, node=n) for c, n in zip(cursors, root.nodes, strict=True)]


def _session_page_info(root: SessionConnection) -> PageInfo:
    return PageInfo.of(root.cursors(), has_next=root.has_next, has_previous=root.has_previous)


@strawberry.type(description="A page of sessions.")
class SessionConnection:
    # Edges and page info are made only when asked for: most reads select `nodes` alone.
    edges: list[SessionEdge] = strawberry.field(
        resolver=_session_edges, description="The sessions with their cursors."
    )
    nodes: list[Session] = strawberry.field(description="The sessions alone.")
    page_info: PageInfo = strawberry.field(
        resolver=_session_page_info, description="Where this page sits."
    )
    query: strawberry.Private[SessionQuery]
    order_by: strawberry.Private[OrderFieldValue]
    has_next: strawberry.Private[bool]
    has_previous: strawberry.Private[bool]

    @classmethod
    def of(
        cls, page: Page[SessionRecord], order_by: OrderFieldValue, query: SessionQuery
    ) -> SessionConnection:
        return cls(
            nodes=[Session.of(record) for record in page.items],
            query=query,
            order_by=order_by,
            has_next=page.has_next,
            has_previous=page.has_previous,
        )

    def cursors(self) -> list[str]:
        """Each node's cursor, in page order."""
        order_by = self.order_by
        return [
            session_cursor(order_by, node.record[order_by], node.record["id"])
            for node in self.nodes
        ]

    @strawberry.field(description="How many sessions match the filter; counted only when asked.")
    async def total_count(self, info: Info) -> int:
        return await resolvers.count_sessions(info.context, self.query)


@graphql_input(inputs.DateTimeFilter)
class DateTimeFilter:
    pass


@graphql_input(inputs.SessionFilter, status=SessionStatus)
class SessionFilter:
    pass


@strawberry.enum(description="What sessions are ordered by.")
class SessionOrderField(Enum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


@strawberry.enum(description="Ascending or descending.")
class SortDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@graphql_input(
    inputs.SessionOrder, defaults_shown=True, field=SessionOrderField, direction=SortDirection
)
class SessionOrder:
    pass


@graphql_input(inputs.CreateSessionInput, status=SessionStatus)
class CreateSessionInput:
    pass


@graphql_input(inputs.UpdateSessionInput, status=SessionStatus)
class UpdateSessionInput:
    pass


def _selects_messages(selections: list[Selection]) -> bool:
    for selection in selections:
        if isinstance(selection, SelectedField) and selection.name == "messages":
            return True
        if _selects_messages(selection.selections):
            return True
    return False


_selecting_messages: PerOperation[bool] = PerOperation()


def selects_messages(info: Info) -> bool:
    """Whether the field being resolved asks for a session's `messages` anywhere below it:
    then its sessions are read with their message windows, which may answer the page.

    Decided once per operation and response path (Strawberry's `selected_fields` converts
    the whole selection below the field on every call, and evaluates no directive, so the
    answer depends on the document alone)."""
    path = tuple(info.path.as_list())
    return _selecting_messages.get(
        info.operation, path, lambda: _selects_messages(info.selected_fields)
    )


@strawberry.type
class SessionQueries:
    @strawberry.field(description="A session by id; null when absent or another org's.")
    async def session(self, info: Info, id: strawberry.ID) -> Session | None:
        record = await resolvers.session_by_id(info.context, id, selects_messages(info))
        return None if record is None else Session.of(record)

    @strawberry.field(
        description="The organization's sessions, newest first by default: "
        f"{resolvers.SESSIONS_PAGE_DEFAULT} a page, at most {resolvers.SESSIONS_PAGE_MAX}."
    )
    async def sessions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: SessionFilter | None = None,
        order_by: SessionOrder | None = None,
    ) -> SessionConnection:
        args = PageArgs.check(
            first,
            after,
            last,
            before,
            default=resolvers.SESSIONS_PAGE_DEFAULT,
            maximum=resolvers.SESSIONS_PAGE_MAX,
        )
        query = resolvers.session_query(plain(filter) if filter else None)
        order = resolvers.session_order(plain(order_by) if order_by else None)
        page = await resolvers.list_sessions(
            info.context,
            args,
            query,
            order.field,
            order.direction == "desc",
            windows=selects_messages(info),
        )
        return SessionConnection.of(page, order.field, query)


@strawberry.type
class SessionMutations:
    @strawberry.mutation(
        description="Create a session, with initial messages if given. With an "
        "idempotencyKey, a retry with the same input returns the session the first call "
        "created instead of creating another."
    )
    async def create_session(
        self, info: Info, input: CreateSessionInput, idempotency_key: str | None = None
    ) -> Session:
        record, _ = await resolvers.create_session(info.context, plain(input), idempotency_key)
        return Session.of(record)

    @strawberry.mutation(description="Change a session's name, status or expiration.")
    async def update_session(
        self, info: Info, id: strawberry.ID, input: UpdateSessionInput
    ) -> Session:
        return Session.of(await resolvers.update_session(info.context, id, plain(input)))

    @strawberry.mutation(description="Delete a session and its messages; returns it as it was.")
    async def delete_session(self, info: Info, id: strawberry.ID) -> Session:
        return Session.of(await resolvers.delete_session(info.context, id))

    @strawberry.mutation(
        description="Append 1 to 100 messages in order. With an idempotencyKey, a retry "
        "returns the messages of the first call instead of appending again."
    )
    async def add_messages(
        self,
        info: Info,
        session_id: strawberry.ID,
        messages: list[MessageInput],
        idempotency_key: str | None = None,
    ) -> list[Message]:
        records = await message_resolvers.add_messages(
            info.context, session_id, [plain(m) for m in messages], idempotency_key
        )
        return [message_from_record(r) for r in records]
