"""Stores narrowed to a set of sessions, for access tokens scoped to particular sessions.

Every read and write of a session or its messages goes through one of these for such a
caller, on top of the organization every store method already filters by: a session
outside the scope reads as absent and cannot be written. The scoped stores hold the
organization-wide store rather than share its state, so a method added to the store and
not here fails (it finds no database) instead of reading past the scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.database import Planner
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
    TimeRange,
)
from storage.sessions import SessionStore


class ScopedSessionStore(SessionStore):
    """A `SessionStore` that sees only `session_ids` (of the organization it is asked for)."""

    def __init__(self, store: SessionStore, session_ids: frozenset[str]) -> None:
        # Deliberately not SessionStore.__init__: see the module's docstring.
        self._store = store
        self._ids = session_ids

    @property
    def planner(self) -> Planner:
        """The database's planner (which reads nothing)."""
        return self._store.planner

    async def create(
        self,
        org_id: str,
        new: NewSession,
        messages: list[NewMessage],
        idempotency_key: str | None = None,
    ) -> tuple[SessionRecord, list[MessageRecord]]:
        """Refused: a new session would lie outside the scope."""
        raise SessionScopeExceeded()

    async def get(self, org_id: str, session_id: str) -> SessionRecord | None:
        """The session if it is in scope, else None without asking the database."""
        if session_id not in self._ids:
            return None
        return await self._store.get(org_id, session_id)

    async def get_many(
        self, org_id: str, session_ids: list[str], *, windows: bool = False
    ) -> dict[str, SessionRecord]:
        """The sessions among `session_ids` that are in scope and exist, by id."""
        wanted = [session_id for session_id in session_ids if session_id in self._ids]
        return await self._store.get_many(org_id, wanted, windows=windows) if wanted else {}

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
        windows: bool = False,
    ) -> Page[SessionRecord]:
        """One page of the sessions in scope that match `query`, in (order_by, id) order:
        `first` items after `after`, or `last` items before `before`, as `SessionStore.list`
        pages them."""
        found = sorted(
            await self._matching(org_id, query, windows),
            key=lambda record: (record[order_by], record["id"]),
            reverse=descending,
        )
        if after is not None:
            found = [r for r in found if _beyond(r, order_by, after, descending)]
        if before is not None:
            found = [r for r in found if _beyond(r, order_by, before, not descending)]
        if last is not None and first is None:
            items = found[max(len(found) - last, 0) :]
            return Page(items, has_next=before is not None, has_previous=len(found) > last)
        assert first is not None, "the caller picks a page size"
        return Page(found[:first], has_next=len(found) > first, has_previous=after is not None)

    async def count(self, org_id: str, query: SessionQuery) -> int:
        """How many sessions in scope match `query`."""
        return len(await self._matching(org_id, query))

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

    async def _matching(
        self, org_id: str, query: SessionQuery, windows: bool = False
    ) -> Sequence[SessionRecord]:
        """The sessions in scope that match `query`.

        A scope holds few sessions (at most 100), so they are read by id (`get_many`) and
        filtered, sorted and paged here: SecantusDB serves a lookup by `_id` from its index
        but scans the collection (explain: COLLSCAN) for an `_id: {$in}` beside the
        other filters a list query carries. `tests/test_tokens.py` checks that this and
        `SessionStore.list` and `count` agree.
        """
        ids = self._ids if query.ids is None else self._ids.intersection(query.ids)
        if not ids:
            return []
        found = await self._store.get_many(org_id, sorted(ids), windows=windows)
        return [record for record in found.values() if _matches(record, query)]


def _matches(record: SessionRecord, query: SessionQuery) -> bool:
    """Whether `record` (its status already completed when expired) passes `query`'s
    filters other than `ids`, as `storage.sessions` filters in the database."""
    if query.status is not None and record["status"] != query.status:
        return False
    if query.name is not None and record["name"] != query.name:
        return False
    customer_number = (record["customer"] or {}).get("number")
    for value, allowed in (
        (record["assistant_id"], query.assistant_ids),
        (record["phone_number_id"], query.phone_number_ids),
        (customer_number, query.customer_numbers),
    ):
        if allowed is not None and value not in allowed:
            return False
    for at, time_range in (
        (record["created_at"], query.created_at),
        (record["updated_at"], query.updated_at),
    ):
        if time_range is not None and not _within(at, time_range):
            return False
    return True


def _within(at: datetime, time_range: TimeRange) -> bool:
    # The database compares at BSON's millisecond precision.
    gt, gte, lt, lte = (
        None if bound is None else _millis(bound)
        for bound in (time_range.gt, time_range.gte, time_range.lt, time_range.lte)
    )
    return (
        (gt is None or at > gt)
        and (gte is None or at >= gte)
        and (lt is None or at < lt)
        and (lte is None or at <= lte)
    )


def _millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _beyond(
    record: SessionRecord, order_by: SessionOrderField, position: SessionPosition, descending: bool
) -> bool:
    """Whether `record` comes after `position` when sorting by (order_by, id)."""
    key = (record[order_by], record["id"])
    mark = (_millis(position.at), position.id)
    return key < mark if descending else key > mark


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

    async def get_many(self, org_id: str, message_ids: list[str]) -> dict[str, MessageRecord]:
        """The messages among `message_ids` that belong to sessions in scope, by id."""
        found = await self._store.get_many(org_id, message_ids) if message_ids else {}
        return {id: record for id, record in found.items() if record["session_id"] in self._ids}
