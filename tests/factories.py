"""Test data: the sessions and messages tests create through the API, and the records the
storage tests hand the stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage import NewMessage, NewSession, SessionPosition, SessionRecord
from tests.api_client import ApiClient
from tests.operations import CREATE_SESSION_ID

MessageInput = dict[str, Any]
"""A GraphQL MessageInput, as sent in variables."""


def user_message(content: str) -> MessageInput:
    """A user message saying `content`."""
    return {"user": {"content": content}}


def user_messages(*contents: str) -> list[MessageInput]:
    """One user message per content, in order."""
    return [user_message(content) for content in contents]


def numbered_messages(count: int, first: int = 1) -> list[MessageInput]:
    """`count` user messages whose content names the seq they should get, from `first` on."""
    return user_messages(*(f"message {seq}" for seq in range(first, first + count)))


async def create_session(
    api: ApiClient, *, messages: Sequence[MessageInput] = (), **fields: Any
) -> str:
    """A new session of `api`'s organization with `fields` (CreateSessionInput's, in
    camelCase) and `messages`; returns its id."""
    session_input = {"messages": list(messages), **fields} if messages else fields
    created = await api.data(CREATE_SESSION_ID, {"input": session_input})
    session_id: str = created["createSession"]["id"]
    return session_id


SEEDED_SESSIONS = 4


async def seed_sessions(api: ApiClient) -> list[str]:
    """A few sessions with messages and every kind of detail; their ids."""
    session_ids = []
    for n in range(SEEDED_SESSIONS):
        session_id = await create_session(
            api,
            name=f"seeded {n}",
            assistant={"name": "Ava", "model": {"provider": "openai"}, "metadata": {"n": n}},
            customer={"number": "+14155550123", "name": "Alice"},
            phoneNumber={"twilioPhoneNumber": "+14155550100", "twilioAccountSid": "AC1"},
            messages=[{"user": {"content": "hi"}}, {"assistant": {"content": "hello"}}],
        )
        session_ids.append(session_id)
    return session_ids


def session_record(**changes: Any) -> NewSession:
    """What a store is handed for a new active session with nothing optional set, but for
    `changes`."""
    session: NewSession = {
        "name": None,
        "status": "active",
        "expiration_seconds": 3600,
        "assistant_id": None,
        "assistant": None,
        "customer": None,
        "phone_number_id": None,
        "phone_number": None,
        "phone_number_secrets": None,
    }
    return {**session, **changes}  # type: ignore[typeddict-item]


def message_record(content: str) -> NewMessage:
    """What a store is handed for a user message saying `content`."""
    return {"role": "user", "fields": {"content": content}}


def position_of(record: SessionRecord, order_by: str) -> SessionPosition:
    """What a store is handed as `after` or `before` to page on from `record`, in a list
    ordered by `order_by`."""
    if order_by == "created_at":
        return SessionPosition(record["created_at"], record["id"])
    if order_by == "updated_at":
        return SessionPosition(record["updated_at"], record["id"])
    raise ValueError(f"sessions are not ordered by {order_by!r}")
