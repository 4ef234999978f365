"""Messages: one document per message, numbered 1, 2, 3… within their session."""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from storage.clock import utc_now
from storage.database import Database, to_list, updated
from storage.documents import (
    PUBLIC_FIELDS,
    message_documents,
    message_from_document,
    session_from_document,
)
from storage.errors import IdempotencyKeyReused, SessionClosed, SessionNotFound
from storage.idempotency import append_record_id, request_digest
from storage.message_windows import drop_windows, windows_after
from storage.records import MessageAdded, MessageRecord, NewMessage, Publisher, SessionChanged
from storage.session_filters import open_at

SeqRange = tuple[str, int, int]
"""A session id and an inclusive range of sequence numbers."""
WINDOWS_SET = "$windows"
"""Where `_append_alone` hands the window fields to set on, in the session it returns."""
PARALLEL_RANGES = 8
"""Ranges read at once where each is its own command: enough to overlap round trips, few
enough not to open a connection per session of a page."""


def closed_reason(status: str) -> str:
    """Why a session that exists takes no messages, from its stored status."""
    return "completed" if status == "completed" else "expired"


class MessageStore:
    """Appends to and reads from the `messages` collection."""

    def __init__(self, db: Database, publish: Publisher | None = None) -> None:
        self._db = db
        self._publish = publish
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _turn(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def append(
        self,
        org_id: str,
        session_id: str,
        messages: list[NewMessage],
        idempotency_key: str | None = None,
    ) -> list[MessageRecord]:
        """Append `messages` in order after the session's last message, all or nothing.

        The session's `message_count` is incremented atomically, which reserves a block of
        sequence numbers no concurrent append can share. With an idempotency key, a retry of
        the same batch returns the messages stored the first time instead of appending again.
        """
        digest = request_digest(messages) if idempotency_key is not None else ""
        if idempotency_key is not None:
            replay = await self._replay(org_id, session_id, idempotency_key, digest)
            if replay is not None:
                return replay
        count = len(messages)

        async def write(session: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            now = utc_now()
            if session is None:
                doc, docs = await self._append_alone(org_id, session_id, messages, now)
            else:
                doc, docs = await self._append_in(session, org_id, session_id, messages, now)
            first_seq = doc["message_count"] - count + 1
            if idempotency_key is not None:
                await self._db.idempotency.insert_one(
                    {
                        "_id": append_record_id(org_id, session_id, idempotency_key),
                        "org_id": org_id,
                        "session_id": session_id,
                        "first_seq": first_seq,
                        "count": count,
                        "digest": digest,
                        "created_at": now,
                    },
                    session=session,
                )
            await self._db.messages.insert_many(docs, session=session)
            if session is None:
                # Without a transaction the windows follow the messages they hold, and only
                # while no later append has moved the count (`MessageWindows.covering` checks
                # that a window agrees with it).
                key = {"_id": session_id, "org_id": org_id, "message_count": doc["message_count"]}
                await self._db.sessions.update_one(key, {"$set": doc.pop(WINDOWS_SET)})
            drop_windows(doc)
            return doc, docs

        try:
            # Appends to one session from this process take turns rather than conflict and
            # retry inside the database; other processes still serialise by write conflict.
            async with self._turn(session_id):
                session_doc, docs = await self._db.in_transaction(write)
        except DuplicateKeyError:
            if idempotency_key is None:
                raise
            # A concurrent request with the same key committed first.
            replay = await self._replay(org_id, session_id, idempotency_key, digest)
            if replay is None:
                raise
            return replay
        records = [message_from_document(doc) for doc in docs]
        if self._publish is not None:
            for record in records:
                self._publish(MessageAdded(session_id, org_id, record))
            self._publish(SessionChanged(session_id, session_from_document(session_doc)))
        return records

    async def _append_in(
        self, session: Any, org_id: str, session_id: str, messages: list[NewMessage], now: datetime
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """In a transaction: add the messages' count to the open session's message_count and
        their windows to its document, in one update; the session after, and the documents
        of the messages (numbered after the session's last).

        The session is read first, for its count and windows, and updated only if its count
        is still the one read: a concurrent append conflicts with this transaction, which
        runs again. The read and the update by `_id` are what the embedded database serves
        from an index (see `storage.database.updated`).
        """
        key = {"_id": session_id, "org_id": org_id}
        doc: dict[str, Any] | None = await self._db.sessions.find_one(
            key, PUBLIC_FIELDS, session=session
        )
        if doc is None:
            raise SessionNotFound(session_id)
        if doc["status"] != "active" or doc["expires_at"] <= now:
            raise SessionClosed(session_id, closed_reason(doc["status"]))
        before = doc["message_count"]
        docs = message_documents(org_id, session_id, before + 1, messages, now)
        appendable = {"message_count": before, **open_at(now)}
        change = {
            "$inc": {"message_count": len(messages)},
            "$set": {"updated_at": now, **windows_after(doc, before, docs)},
        }
        result = await self._db.sessions.update_one({**key, **appendable}, change, session=session)
        if result.matched_count == 0:
            raise await self._not_appendable(org_id, session_id, now, session)
        doc.update(message_count=before + len(messages), updated_at=now)
        return doc, docs

    async def _append_alone(
        self, org_id: str, session_id: str, messages: list[NewMessage], now: datetime
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Without transactions: reserve the messages' seqs atomically (findAndModify); the
        session after, with the window fields to set once the messages are stored under
        WINDOWS_SET, and the documents of the messages."""
        key = {"_id": session_id, "org_id": org_id}
        appendable = open_at(now)
        change = {"$inc": {"message_count": len(messages)}, "$set": {"updated_at": now}}
        doc = await updated(self._db.sessions, key, change, PUBLIC_FIELDS, None, appendable)
        if doc is None:
            raise await self._not_appendable(org_id, session_id, now, None)
        before = doc["message_count"] - len(messages)
        docs = message_documents(org_id, session_id, before + 1, messages, now)
        doc[WINDOWS_SET] = windows_after(doc, before, docs)
        return doc, docs

    async def _replay(
        self, org_id: str, session_id: str, key: str, digest: str
    ) -> list[MessageRecord] | None:
        earlier = await self._db.idempotency.find_one(
            {"_id": append_record_id(org_id, session_id, key)}
        )
        if earlier is None:
            return None
        if earlier["digest"] != digest:
            raise IdempotencyKeyReused(key)
        last_seq = earlier["first_seq"] + earlier["count"] - 1
        found = await self.in_ranges(org_id, [(session_id, earlier["first_seq"], last_seq)])
        return found.get(session_id, [])

    async def _not_appendable(
        self, org_id: str, session_id: str, now: datetime, session: Any
    ) -> Exception:
        doc = await self._db.sessions.find_one(
            {"_id": session_id, "org_id": org_id},
            {"status": 1, "expires_at": 1},
            session=session,
        )
        if doc is None:
            return SessionNotFound(session_id)
        return SessionClosed(session_id, closed_reason(doc["status"]))

    async def in_ranges(
        self, org_id: str, ranges: list[SeqRange]
    ) -> dict[str, list[MessageRecord]]:
        """The messages of several sessions at once, each within its seq range, by session.

        One command serves any number of sessions: the unique (session_id, seq) index answers
        each range directly, and the first reply holds every message (no getMore). On a
        "simple" planner (the embedded database) each session's range is its own command.

        The organization is checked on each message rather than in the filter. The index
        answers the filter alone either way, and a filter field outside the index makes
        SecantusDB (the embedded database) scan the whole collection, which MongoDB does
        not. A message of another organization's session never leaves this method.
        """
        wanted = [(sid, lo, hi) for sid, lo, hi in ranges if lo <= hi]
        if not wanted:
            return {}
        if self._db.planner == "simple" and len(wanted) > 1:
            # That planner scans the collection for an `$or`, but serves each range alone
            # from the index: one command per session costs what the pages hold.
            turns = asyncio.Semaphore(PARALLEL_RANGES)

            async def one_range(one: SeqRange) -> list[dict[str, Any]]:
                async with turns:
                    return await self._in_ranges([one])

            pages = await asyncio.gather(*(one_range(one) for one in wanted))
            # Ranges of one session may overlap: each message once, in order, as from `$or`.
            unique = {doc["_id"]: doc for page in pages for doc in page}
            docs = sorted(unique.values(), key=lambda doc: (doc["session_id"], doc["seq"]))
        else:
            docs = await self._in_ranges(wanted)
        found: dict[str, list[MessageRecord]] = {}
        for doc in docs:
            if doc["org_id"] == org_id:
                found.setdefault(doc["session_id"], []).append(message_from_document(doc))
        return found

    async def _in_ranges(self, wanted: list[SeqRange]) -> list[dict[str, Any]]:
        """The stored messages in `wanted`, in (session_id, seq) order, in one command."""
        clauses = [{"session_id": sid, "seq": {"$gte": lo, "$lte": hi}} for sid, lo, hi in wanted]
        match: dict[str, Any] = clauses[0] if len(clauses) == 1 else {"$or": clauses}
        expected = sum(hi - lo + 1 for _, lo, hi in wanted)
        # One more than expected: a batch exactly the size of the result leaves the cursor
        # open on some servers, costing a getMore to learn that nothing follows.
        cursor = (
            self._db.messages.find(match)
            .sort([("session_id", ASCENDING), ("seq", ASCENDING)])
            .batch_size(expected + 1)
        )
        return await to_list(cursor)

    async def get_many(self, org_id: str, message_ids: list[str]) -> dict[str, MessageRecord]:
        """The messages among `message_ids` that belong to this organization, by id.

        One command by `_id`, which every shard would have to answer on a sharded `messages`
        collection (its key starts with `session_id`, which an id alone does not tell). The
        organization is checked on each message, as in `in_ranges`.
        """
        cursor = self._db.messages.find({"_id": {"$in": message_ids}}).batch_size(
            len(message_ids) + 1
        )
        return {
            doc["_id"]: message_from_document(doc)
            for doc in await to_list(cursor)
            if doc["org_id"] == org_id
        }
