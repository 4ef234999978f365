"""Per-request DataLoaders: N sessions, N messages, or N sessions' messages, in one command."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from strawberry.dataloader import DataLoader

from storage import MessageRecord, MessageStore, SessionRecord, SessionStore
from storage.messages import SeqRange


@dataclass(frozen=True, slots=True)
class SessionNode:
    """What `node(id:)` found: a session."""

    record: SessionRecord


@dataclass(frozen=True, slots=True)
class MessageNode:
    """What `node(id:)` found: a message."""

    record: MessageRecord


def is_record_id(value: str) -> bool:
    """Whether `value` could name a stored session or message: both get UUIDv4 ids in
    canonical form (`SessionStore.create`, `message_documents`)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class Loaders:
    """The loaders of one request, scoped to the caller's organization. Each is made when
    first used (most requests use one or two): a request pays only for what it reads."""

    def __init__(self, org_id: str, sessions: SessionStore, messages: MessageStore) -> None:
        self._org_id = org_id
        self._sessions = sessions
        self._messages = messages

    @cached_property
    def session_by_id(self) -> DataLoader[str, SessionRecord | None]:
        """Sessions by id, N of them in one command."""
        return DataLoader(self._load_sessions_by_id)

    @cached_property
    def session_with_windows_by_id(self) -> DataLoader[str, SessionRecord | None]:
        """Sessions by id with their message windows, for a page of their messages."""
        return DataLoader(self._load_sessions_with_windows_by_id)

    @cached_property
    def messages_by_seq_range(self) -> DataLoader[SeqRange, list[MessageRecord]]:
        """Messages by (session id, first seq, last seq), N sessions' ranges in one batch."""
        return DataLoader(self._load_messages_by_seq_range)

    @cached_property
    def node_by_id(self) -> DataLoader[str, SessionNode | MessageNode | None]:
        """Sessions and messages by id, for `node(id:)` and `nodes(ids:)`."""
        return DataLoader(self._load_nodes_by_id)

    async def _load_sessions_by_id(self, keys: Sequence[str]) -> list[SessionRecord | None]:
        found = await self._sessions.get_many(self._org_id, list(keys))
        return [found.get(session_id) for session_id in keys]

    async def _load_sessions_with_windows_by_id(
        self, keys: Sequence[str]
    ) -> list[SessionRecord | None]:
        found = await self._sessions.get_many(self._org_id, list(keys), windows=True)
        return [found.get(session_id) for session_id in keys]

    async def _load_messages_by_seq_range(
        self, keys: Sequence[SeqRange]
    ) -> list[list[MessageRecord]]:
        found = await self._messages.in_ranges(self._org_id, list(keys))
        return [
            [m for m in found.get(session_id, []) if lo <= m["seq"] <= hi]
            for session_id, lo, hi in keys
        ]

    async def _load_nodes_by_id(
        self, keys: Sequence[str]
    ) -> list[SessionNode | MessageNode | None]:
        """Sessions and messages share one id space (random UUIDs) without saying which is
        which: the ids are looked up among sessions first, and those not found there among
        messages, so N session ids cost one command and N message ids two."""
        wanted = [key for key in dict.fromkeys(keys) if is_record_id(key)]
        found: dict[str, SessionNode | MessageNode] = {}
        if wanted:
            sessions = await self._sessions.get_many(self._org_id, wanted)
            found.update((key, SessionNode(record)) for key, record in sessions.items())
        rest = [key for key in wanted if key not in found]
        if rest:
            messages = await self._messages.get_many(self._org_id, rest)
            found.update((key, MessageNode(record)) for key, record in messages.items())
        return [found.get(key) for key in keys]
