"""Appending to and paging through transcripts."""

from __future__ import annotations

from typing import Any, cast

from pydantic import ValidationError

from resolvers.context import Context
from resolvers.errors import bad_input
from resolvers.message_inputs import AddMessagesRequest, MessageInput
from resolvers.pagination import PageArgs, message_window
from storage import MessageRecord, NewMessage, Page, SessionRecord
from storage.documents import message_from_document
from storage.records import MessageRoleValue

MESSAGES_PAGE_DEFAULT = 50
MESSAGES_PAGE_MAX = 500


def new_messages(messages: list[MessageInput]) -> list[NewMessage]:
    """Validated inputs as the storage layer takes them."""
    result: list[NewMessage] = []
    for message in messages:
        role, fields = message.role_and_fields()
        result.append({"role": cast(MessageRoleValue, role), "fields": fields})
    return result


async def add_messages(
    ctx: Context, session_id: str, messages: list[dict[str, Any]], idempotency_key: str | None
) -> list[MessageRecord]:
    """Validate and append messages to a session, in order."""
    ctx.check_writable()
    try:
        valid = AddMessagesRequest.model_validate(
            {"messages": messages, "idempotencyKey": idempotency_key}
        )
    except ValidationError as error:
        raise bad_input(error) from None
    return await ctx.messages.append(
        ctx.org_id, session_id, new_messages(valid.messages), valid.idempotency_key
    )


async def session_messages(
    ctx: Context, session: SessionRecord, args: PageArgs
) -> Page[MessageRecord]:
    """A page of a session's transcript in seq order: from the session's message windows
    when one holds the page (storage/message_windows.py), else read, batched across
    sessions."""
    window = message_window(session["message_count"], args)
    windows = session.get("message_windows")
    held = (
        None if windows is None or window.lo > window.hi else windows.covering(window.lo, window.hi)
    )
    if held is not None:
        items = [message_from_document(doc) for doc in held]
    else:
        items = await ctx.loaders.messages_by_seq_range.load((session["id"], window.lo, window.hi))
    return Page(items, has_next=window.has_next, has_previous=window.has_previous)
