"""Session queries and mutations, on behalf of the caller's organization."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from resolvers.context import Context
from resolvers.errors import BadUserInput, NotFound, bad_input
from resolvers.inputs import ANY_MAX
from resolvers.messages import new_messages
from resolvers.pagination import PageArgs, session_position
from resolvers.session_inputs import (
    CreateSessionRequest,
    DateTimeFilter,
    SessionFilter,
    SessionOrder,
    UpdateSessionInput,
)
from storage import (
    MessageRecord,
    NewSession,
    Page,
    SessionChanges,
    SessionQuery,
    SessionRecord,
    TimeRange,
)
from storage.records import SessionOrderField

SESSIONS_PAGE_DEFAULT = 20
SESSIONS_PAGE_MAX = 100
DEFAULT_ORDER = SessionOrder()


async def session_by_id(
    ctx: Context, session_id: str, windows: bool = False
) -> SessionRecord | None:
    """The session, or None when it is absent or belongs to another organization; with
    `windows`, with its message windows. Several `session(id:)` fields of one request
    (aliases) are read with one command."""
    loader = ctx.loaders.session_with_windows_by_id if windows else ctx.loaders.session_by_id
    session: SessionRecord | None = await loader.load(session_id)
    return session


def session_query(filter_: dict[str, Any] | None) -> SessionQuery:
    """The storage query for a `SessionFilter` given as a plain dict."""
    if not filter_:
        return SessionQuery()
    try:
        valid = SessionFilter.model_validate(filter_)
    except ValidationError as error:
        raise bad_input(error, "filter") from None
    lists: dict[str, tuple[str, ...] | None] = {}
    for one, many, many_name, target in (
        (None, valid.id_any, "idAny", "ids"),
        (valid.assistant_id, valid.assistant_id_any, "assistantIdAny", "assistant_ids"),
        (
            valid.phone_number_id,
            valid.phone_number_id_any,
            "phoneNumberIdAny",
            "phone_number_ids",
        ),
        (
            valid.customer_number,
            valid.customer_number_any,
            "customerNumberAny",
            "customer_numbers",
        ),
    ):
        if many is not None and len(many) > ANY_MAX:
            raise BadUserInput(
                f"filter.{many_name} has {len(many)} values; at most {ANY_MAX} are allowed.",
                fields=[f"filter.{many_name}"],
            )
        values = many
        if one is not None:
            values = [one] if many is None else [v for v in many if v == one]
        lists[target] = None if values is None else tuple(values)
    return SessionQuery(
        status=valid.status,
        name=valid.name,
        created_at=_time_range(valid.created_at),
        updated_at=_time_range(valid.updated_at),
        **lists,
    )


def _time_range(bounds: DateTimeFilter | None) -> TimeRange | None:
    if bounds is None or not bounds.model_fields_set:
        return None
    return TimeRange(gt=bounds.gt, gte=bounds.gte, lt=bounds.lt, lte=bounds.lte)


def session_order(order_by: dict[str, Any] | None) -> SessionOrder:
    """The order of a session list, given as a plain `SessionOrder` dict (or None)."""
    if order_by is None:
        return DEFAULT_ORDER
    try:
        return SessionOrder.model_validate(order_by)
    except ValidationError as error:
        raise bad_input(error, "orderBy") from None


async def list_sessions(
    ctx: Context,
    args: PageArgs,
    query: SessionQuery,
    order_by: SessionOrderField,
    descending: bool,
    windows: bool = False,
) -> Page[SessionRecord]:
    """One page of the organization's sessions; with `windows`, with their message windows."""
    return await ctx.sessions.list(
        ctx.org_id,
        query,
        order_by=order_by,
        descending=descending,
        first=args.first,
        after=session_position(args.after, "after", order_by),
        last=args.last,
        before=session_position(args.before, "before", order_by),
        windows=windows,
    )


async def count_sessions(ctx: Context, query: SessionQuery) -> int:
    """How many of the organization's sessions match."""
    return await ctx.sessions.count(ctx.org_id, query)


async def create_session(
    ctx: Context, data: dict[str, Any], idempotency_key: str | None = None
) -> tuple[SessionRecord, list[MessageRecord]]:
    """Validate and store a new session with its initial messages; with an idempotency key,
    a retry of the same input returns the session the first call created."""
    ctx.check_writable()
    try:
        request = CreateSessionRequest.model_validate(
            {"input": data, "idempotencyKey": idempotency_key}
        )
    except ValidationError as error:
        raise bad_input(error) from None
    valid = request.input
    phone_public, phone_secrets = (
        valid.phone_number.public_and_secrets() if valid.phone_number else (None, None)
    )
    new: NewSession = {
        "name": valid.name,
        "status": valid.status,
        "expiration_seconds": valid.expiration_seconds,
        "assistant_id": valid.assistant_id,
        "assistant": valid.assistant.stored() if valid.assistant else None,
        "customer": valid.customer.stored() if valid.customer else None,
        "phone_number_id": valid.phone_number_id,
        "phone_number": phone_public,
        "phone_number_secrets": phone_secrets,
    }
    return await ctx.sessions.create(
        ctx.org_id, new, new_messages(valid.messages), request.idempotency_key
    )


async def update_session(ctx: Context, session_id: str, data: dict[str, Any]) -> SessionRecord:
    """Change a session's name, status or expiration."""
    ctx.check_writable()
    try:
        valid = UpdateSessionInput.model_validate(data)
    except ValidationError as error:
        raise bad_input(error, "input") from None
    changes: SessionChanges = {}
    if "name" in valid.model_fields_set:
        changes["name"] = valid.name
    if "status" in valid.model_fields_set:
        changes["status"] = valid.status
    if "expiration_seconds" in valid.model_fields_set:
        changes["expiration_seconds"] = valid.expiration_seconds
    if not changes:
        current = await ctx.sessions.get(ctx.org_id, session_id)
        if current is None:
            raise NotFound(f"No session with id {session_id!r}.", id=session_id)
        return current
    return await ctx.sessions.update(ctx.org_id, session_id, changes)


async def delete_session(ctx: Context, session_id: str) -> SessionRecord:
    """Delete a session and its transcript; return the session as it was."""
    ctx.check_writable()
    return await ctx.sessions.delete(ctx.org_id, session_id)
