"""The shapes that cross the storage boundary: plain dicts, typed for the reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

from storage.message_windows import MessageWindows

SessionStatusValue = Literal["active", "completed"]
SessionOrderField = Literal["created_at", "updated_at"]
MessageRoleValue = Literal["system", "user", "assistant", "tool", "developer"]


class SessionRecord(TypedDict):
    """A stored session as the storage layer returns it (`_id` mapped to `id`)."""

    id: str
    org_id: str
    name: str | None
    status: SessionStatusValue
    expiration_seconds: int
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    assistant_id: str | None
    assistant: dict[str, Any] | None
    customer: dict[str, Any] | None
    phone_number_id: str | None
    phone_number: dict[str, Any] | None
    message_count: int
    message_windows: NotRequired[MessageWindows]
    """Its first and last messages, on records read for a page of its messages."""


class NewSession(TypedDict):
    """What a new session is made of; the server sets ids, times and counts."""

    name: str | None
    status: SessionStatusValue
    expiration_seconds: int
    assistant_id: str | None
    assistant: dict[str, Any] | None
    customer: dict[str, Any] | None
    phone_number_id: str | None
    phone_number: dict[str, Any] | None
    phone_number_secrets: dict[str, Any] | None


class SessionChanges(TypedDict, total=False):
    """Fields an update may change; an absent key is left as it is."""

    name: str | None
    status: SessionStatusValue
    expiration_seconds: int


class NewMessage(TypedDict):
    """One message to append; `fields` holds the variant's own fields (snake_case)."""

    role: MessageRoleValue
    fields: dict[str, Any]


class MessageRecord(TypedDict):
    """A stored message (`_id` mapped to `id`); variant fields sit beside these keys."""

    id: str
    session_id: str
    org_id: str
    seq: int
    role: MessageRoleValue
    created_at: datetime
    content: NotRequired[str | None]
    metadata: NotRequired[dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Bounds on a timestamp; any bound may be absent."""

    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Filters for listing sessions; every given filter must match."""

    status: SessionStatusValue | None = None
    name: str | None = None
    ids: tuple[str, ...] | None = None
    assistant_ids: tuple[str, ...] | None = None
    phone_number_ids: tuple[str, ...] | None = None
    customer_numbers: tuple[str, ...] | None = None
    created_at: TimeRange | None = None
    updated_at: TimeRange | None = None


@dataclass(frozen=True, slots=True)
class SessionPosition:
    """A place in an ordered session list: the order field's value and the id."""

    at: datetime
    id: str


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results, in display order, and whether more lie on either side."""

    items: list[T]
    has_next: bool
    has_previous: bool


@dataclass(frozen=True, slots=True)
class MessageAdded:
    """A message was appended to a session."""

    session_id: str
    org_id: str
    message: MessageRecord


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """A session was created or changed (`session` set) or deleted (`session` None)."""

    session_id: str
    session: SessionRecord | None


Event = MessageAdded | SessionChanged
Publisher = Callable[[Event], None]
"""Hands an event to this process's subscribers."""
