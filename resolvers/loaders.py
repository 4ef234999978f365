"""Per-request DataLoaders: N sessions, or N sessions' messages, in one database command."""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from storage import MessageRecord, MessageStore, SessionRecord, SessionStore
from storage.messages import SeqRange


class Loaders:
    """The loaders of one request, scoped to the caller's organization."""

    def __init__(self, org_id: str, sessions: SessionStore, messages: MessageStore) -> None:
        self._org_id = org_id
        self._sessions = sessions
        self._messages = messages
        self.session_by_id = DataLoader[str, SessionRecord | None](self._load_sessions_by_id)
        self.messages_by_seq_range = DataLoader[SeqRange, list[MessageRecord]](
            self._load_messages_by_seq_range
        )

    async def _load_sessions_by_id(self, keys: Sequence[str]) -> list[SessionRecord | None]:
        found = await self._sessions.get_many(self._org_id, list(keys))
        return [found.get(session_id) for session_id in keys]

    async def _load_messages_by_seq_range(
        self, keys: Sequence[SeqRange]
    ) -> list[list[MessageRecord]]:
        found = await self._messages.in_ranges(self._org_id, list(keys))
        return [
            [m for m in found.get(session_id, []) if lo <= m["seq"] <= hi]
            for session_id, lo, hi in keys
        ]
