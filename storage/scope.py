"""Stores narrowed to a set of sessions, for access tokens scoped to particular sessions.

Every read and write of a session or its messages goes through one of these for such a
caller, on top of the organization every store method already filters by: a session
outside the scope reads as absent and cannot be written. The scoped stores hold the
organization-wide store rather than share its state, so a method added to the store and
not here fails (it finds no database) instead of reading past the scope.
"""

from __future__ import annotations

from dataclasses import replace

from storage.errors import SessionNotFound, SessionScopeExceeded
from storage.messages import MessageStore, SeqRange
from storage.records import (
    MessageRecord,
    NewMessage,
    NewSession,
    Page,
    SessionChanges,
    SessionOrderField,
    SessionPosition,
    SessionQuery,
    SessionRecord,
)
from storage.sessions import SessionStore


class ScopedSessionStore(SessionStore):
    """A `SessionStore` that sees only `session_ids` (of the organization it is asked for)."""

    def __init__(self, store: SessionStore, session_ids: frozenset[str]) -> None:
        # Deliberately not SessionStore.__init__: see the module's docstring.
        self._store = store
        self._ids = session_ids

    async def create(
        self, org_id: str, new: NewSession, messages: list[NewMessage]
    ) -> tuple[SessionRecord, list[MessageRecord]]:
        """Refused: a new session would lie outside the scope."""
        raise SessionScopeExceeded()

    async def get(self, org_id: str, session_id: str) -> SessionRecord | None:
        """The session if it is in scope, else None without asking the database."""
        if session_id not in self._ids:
            return None
        return await self._store.get(org_id, session_id)

    async def get_many(self, org_id: str, session_ids: list[str]) -> dict[str, SessionRecord]:
        """The sessions among `session_ids` that are in scope and exist, by id."""
        wanted = [session_id for session_id in session_ids if session_id in self._ids]
        return await self._store.get_many(org_id, wanted) if wanted else {}

    async def list(
        self,
        org_id: str,
        query: SessionQuery,
        *,
        order_by: SessionOrderField = "created_at",
        descending: bool = True,
        first: int | None = None,
        after: SessionPosition | None = None,
        last: int | None = None,
        before: SessionPosition | None = None,
    ) -> Page[SessionRecord]:
        """One page of the sessions in scope that match `query`."""
        narrowed = self._narrowed(query)
        if narrowed is None:
            backward = last is not None and first is None
            if backward:
                return Page([], has_next=before is not None, has_previous=False)
            return Page([], has_next=False, has_previous=after is not None)
        return await self._store.list(
            org_id,
            narrowed,
            order_by=order_by,
            descending=descending,
            first=first,
            after=after,
            last=last,
            before=before,
        )

    async def count(self, org_id: str, query: SessionQuery) -> int:
        """How many sessions in scope match `query`."""
        narrowed = self._narrowed(query)
        return 0 if narrowed is None else await self._store.count(org_id, narrowed)

    async def update(self, org_id: str, session_id: str, changes: SessionChanges) -> SessionRecord:
        """Change a session in scope; any other reads as absent."""
        if session_id not in self._ids:
            raise SessionNotFound(session_id)
        return await self._store.update(org_id, session_id, changes)

    async def delete(self, org_id: str, session_id: str) -> SessionRecord:
        """Delete a session in scope; any other reads as absent."""
        if session_id not in self._ids:
            raise SessionNotFound(session_id)
        return await self._store.delete(org_id, session_id)

    def _narrowed(self, query: SessionQuery) -> SessionQuery | None:
        """`query` limited to the scope's ids; None when nothing can match."""
        ids = self._ids if query.ids is None else self._ids.intersection(query.ids)
        return replace(query, ids=tuple(sorted(ids))) if ids else None


class ScopedMessageStore(MessageStore):
    """A `MessageStore` that reads and appends only within `session_ids`."""

    def __init__(self, store: MessageStore, session_ids: frozenset[str]) -> None:
        # Deliberately not MessageStore.__init__: see the module's docstring.
        self._store = store
        self._ids = session_ids

    async def append(
        self,
        org_id: str,
        session_id: str,
        messages: list[NewMessage],
        idempotency_key: str | None = None,
    ) -> list[MessageRecord]:
        """Append to a session in scope; any other reads as absent."""
        if session_id not in self._ids:
            raise SessionNotFound(session_id)
        return await self._store.append(org_id, session_id, messages, idempotency_key)

    async def in_ranges(
        self, org_id: str, ranges: list[SeqRange]
    ) -> dict[str, list[MessageRecord]]:
        """The messages of the sessions in scope among `ranges`."""
        wanted = [seq_range for seq_range in ranges if seq_range[0] in self._ids]
        return await self._store.in_ranges(org_id, wanted) if wanted else {}
